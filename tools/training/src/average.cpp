#include "proxykv/training/average.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

namespace proxykv::training {

Result<std::unique_ptr<DecoderLM>> average_decoders(const std::vector<const DecoderLM*>& models,
                                                    const std::vector<double>& weights) {
  if (models.empty()) return invalid_argument("average: no model given");
  if (!weights.empty() && weights.size() != models.size()) {
    return invalid_argument("average: " + std::to_string(weights.size()) + " weights for " +
                            std::to_string(models.size()) + " models");
  }
  std::vector<double> w = weights.empty() ? std::vector<double>(models.size(), 1.0) : weights;
  double total = 0;
  for (const double x : w) {
    if (!std::isfinite(x) || x < 0) return invalid_argument("average: a weight is negative or not finite");
    total += x;
  }
  if (total <= 0) return invalid_argument("average: the weights sum to zero");
  const nlohmann::json first = models[0]->spec().to_json();
  for (size_t i = 1; i < models.size(); ++i) {
    const nlohmann::json patch = nlohmann::json::diff(first, models[i]->spec().to_json());  // RFC 6902 operations
    if (!patch.empty()) {
      const std::string key = patch[0].at("path").get<std::string>().substr(1);  // "/intermediate_size"
      return invalid_argument("average: model " + std::to_string(i) + " differs from model 0 in config key '" + key +
                              "'");
    }
  }

  LoadOptions load;
  load.device = models[0]->options().device().str();
  load.dtype = "float32";
  PROXYKV_ASSIGN_OR_RETURN(auto out, DecoderLM::random_init(models[0]->spec(), 0, 0.02, load));
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> sum = out->weights().parameters();
  for (auto& t : sum) t.zero_();
  for (size_t i = 0; i < models.size(); ++i) {
    const std::vector<at::Tensor> p = models[i]->weights().parameters();  // one spec: the same list as `sum`
    for (size_t k = 0; k < p.size(); ++k) {
      sum[k].add_(p[k].to(sum[k].options()), w[i] / total);
    }
  }
  return out;
}

}  // namespace proxykv::training
