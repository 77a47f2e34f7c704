// The proxy's feature channels (services/proxy computes them, the mapper reads them) and how each is encoded in
// the features tensor, the wire and make-mapper-data shards. Torch-free: the proxy, the mapper and the tools all
// check names and encodings against this one table.
#pragma once

#include <string>
#include <vector>

#include "proxykv/core/status.h"

namespace proxykv::scoring {

enum class FeatureEncoding {
  kLogMass,  // log(s + 1e-6) of an attention mass s in [0, 1]: values <= 0
  kLinear,   // a raw non-negative magnitude (a norm)
};

struct FeatureChannel {
  std::string name;
  FeatureEncoding encoding;
};

// kvzip, window_attn, h2o (log masses), key_norm, value_norm (linear), in that order.
const std::vector<FeatureChannel>& feature_channels();

// INVALID_ARGUMENT naming the known channels when `name` is not one.
Result<FeatureEncoding> feature_channel_encoding(const std::string& name);

// Whether a mapper input transform ("log" | "symlog" | "none") can read these channels. "log" clamps at 0 before
// its log, so it turns every log-mass value into one constant: refused by channel name (FAILED_PRECONDITION).
// Unknown channel names are INVALID_ARGUMENT.
Status check_input_transform(const std::string& transform, const std::vector<std::string>& channels);

}  // namespace proxykv::scoring
