// Proxy features: what the small model says about each context token, per (proxy layer, proxy KV head).
//
// The proxy prefills the context once (with the observers its channels need), then computes each channel over
// its own cache. Output: float32 [C, L_p * H_p, T] (channels, proxy heads in layer-major order, tokens), finite
// everywhere, in a log domain where the raw value is a probability mass (see the channel list).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/scoring/scorer.h"

namespace proxykv::proxy {

// Channels:
//   kvzip        the proxy's own KVzip score (max reconstruction attention), log(s + 1e-6)   [default]
//   window_attn  attention received from the last `window` prompt queries (SnapKV, unpooled), log(s + 1e-6)
//   h2o          attention received from every prompt query (accumulated), log(s + 1e-6)
//   key_norm     L2 norm of the key (after RoPE)
//   value_norm   L2 norm of the value
// Sink tokens (the first n_sink) have no score of their own in the attention channels; they get the channel's
// largest finite value, the same "always keep" signal the target's labels carry.
struct FeatureOptions {
  std::vector<std::string> channels{"kvzip"};
  scoring::ScorerOptions scorer;  // n_sink, KVzip chunk and repeat prompts, window
};

const std::vector<std::string>& feature_channel_names();
Status validate_feature_options(const FeatureOptions& options);

struct ProxyFeatures {
  at::Tensor features;  // [C, L_p * H_p, T]
  double prefill_s = 0;
  double feature_s = 0;  // everything after the prefill (KVzip passes, norms)
};

// Runs the proxy over `context_ids` ([T] int64) and returns its features.
Result<ProxyFeatures> extract_features(const DecoderLM& proxy, const at::Tensor& context_ids,
                                       const FeatureOptions& options);

// Target-side labels: KVzip scores [L_t, H_t, T] flattened to [L_t * H_t, T], sinks set to the row maximum.
at::Tensor scores_to_rows(const at::Tensor& scores);

}  // namespace proxykv::proxy
