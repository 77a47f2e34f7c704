#include "proxykv/scoring/feature_channels.h"

namespace proxykv::scoring {

const std::vector<FeatureChannel>& feature_channels() {
  static const std::vector<FeatureChannel> channels{{"kvzip", FeatureEncoding::kLogMass},
                                                    {"window_attn", FeatureEncoding::kLogMass},
                                                    {"h2o", FeatureEncoding::kLogMass},
                                                    {"key_norm", FeatureEncoding::kLinear},
                                                    {"value_norm", FeatureEncoding::kLinear}};
  return channels;
}

Result<FeatureEncoding> feature_channel_encoding(const std::string& name) {
  std::string known;
  for (const auto& c : feature_channels()) {
    if (c.name == name) return c.encoding;
    known += (known.empty() ? "" : ", ") + c.name;
  }
  return invalid_argument("feature channel '" + name + "' is unknown (known: " + known + ")");
}

Status check_input_transform(const std::string& transform, const std::vector<std::string>& channels) {
  for (const auto& name : channels) {
    PROXYKV_ASSIGN_OR_RETURN(FeatureEncoding encoding, feature_channel_encoding(name));
    if (transform == "log" && encoding == FeatureEncoding::kLogMass) {
      return failed_precondition("mapper input_transform \"log\" cannot read channel '" + name +
                                 "': it arrives as log(s + 1e-6) <= 0 already, and the transform's clamp at 0 would "
                                 "make every value one constant; use input_transform \"none\"");
    }
  }
  return Status::ok();
}

}  // namespace proxykv::scoring
