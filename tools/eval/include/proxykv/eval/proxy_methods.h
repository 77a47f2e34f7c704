// The proxy-side methods of the evaluation, run in-process (the single-device regime): the proxy's features,
// mapped to the target's (layer, KV head) rows.
//   proxykv         HybridAxialMapper checkpoint (--mapper); also its ablations proxykv_linear / proxykv_mse,
//                   which are just other checkpoints registered under those names
//   proxy_direct    the proxy's own KVzip score broadcast by a fixed rule: target layer l -> proxy layer
//                   floor(l * L_p / L_t), target KV head h -> proxy KV head floor(h * H_p / H_t); no learning
//   kvzip_iam       the paper's rigid-alignment baseline: each target row copies the proxy row whose KVzip scores
//                   are most similar by cosine on calibration data (IAM-style), no learning
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "proxykv/core/status.h"
#include "proxykv/mapper/mapper_checkpoint.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/proxy/proxy_features.h"
#include "proxykv/scoring/scorer.h"

namespace proxykv::eval {

struct ProxyMethods {
  const DecoderLM* proxy = nullptr;                                   // must outlive the scorers
  std::map<std::string, std::shared_ptr<mapper::LoadedMapper>> mappers;  // method name -> checkpoint
  // method name -> the proxy feature channels its mapper reads (its features.json), in order; mappers of one
  // evaluation may read different channels (the channel ablation), each method extracts its own
  std::map<std::string, std::vector<std::string>> mapper_channels;
  std::vector<int64_t> iam_map;  // target row -> proxy row (kvzip_iam)

  bool provides(const std::string& method) const;
  std::vector<std::string> names() const;
  Result<std::unique_ptr<scoring::Scorer>> make(const std::string& method, const scoring::ScorerOptions& options) const;
};

// IAM calibration: for each target row q, the proxy row p maximising the mean over samples of
// cosine(proxy_rows[p], target_rows[q]) over non-sink tokens. proxy_rows: per sample [P, T]; target_rows: [Q, T].
Result<std::vector<int64_t>> calibrate_iam(const std::vector<at::Tensor>& proxy_rows,
                                           const std::vector<at::Tensor>& target_rows, int64_t n_sink);

// The proxy feature channels a mapper checkpoint was trained on: <dir>/features.json {"channels": [...]}, written
// by train-mapper from the data manifest.
Result<std::vector<std::string>> mapper_channels(const std::string& dir);
Status save_mapper_channels(const std::string& dir, const std::vector<std::string>& channels);

// Reads/writes the IAM map as JSON {"map": [...], "proxy_rows": P, "target_rows": Q}.
Status save_iam_map(const std::string& path, const std::vector<int64_t>& map, int64_t proxy_rows);
Result<std::vector<int64_t>> load_iam_map(const std::string& path, int64_t proxy_rows, int64_t target_rows);

}  // namespace proxykv::eval
