#include "proxykv/eval/proxy_methods.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "proxykv/mapper/mapper_registry.h"
#include "proxykv/scoring/scorers.h"

namespace proxykv::eval {
namespace {

// Proxy features -> target scores [L_t, H_t, T], by one of the three rules.
class ProxyMethodScorer : public scoring::ScorerBase {
 public:
  ProxyMethodScorer(std::string name, const scoring::ScorerOptions& options, const ProxyMethods& methods)
      : ScorerBase(std::move(name), options), methods_(methods) {}

 protected:
  Result<at::Tensor> score(const DecoderLM& target, KvCache& cache, const at::Tensor& ids) override {
    const ModelSpec& ts = target.spec();
    const ModelSpec& ps = methods_.proxy->spec();
    proxy::FeatureOptions fopts;
    fopts.scorer = options();
    const std::string& method = name();
    auto mapper_it = methods_.mappers.find(method);
    if (mapper_it != methods_.mappers.end()) {
      auto channels_it = methods_.mapper_channels.find(method);
      if (channels_it == methods_.mapper_channels.end()) {
        return failed_precondition(method + ": no feature channels registered for its mapper");
      }
      fopts.channels = channels_it->second;
      PROXYKV_ASSIGN_OR_RETURN(proxy::ProxyFeatures f, proxy::extract_features(*methods_.proxy, ids, fopts));
      mapper::HybridAxialMapper m = mapper_it->second->mapper;
      PROXYKV_RETURN_IF_ERROR(m->check_input(f.features.unsqueeze(0)));
      at::NoGradGuard no_grad;
      at::Tensor out = m->forward(f.features.unsqueeze(0))[0];  // [Q, T]
      return out.reshape({ts.num_layers, ts.num_kv_heads, ids.size(0)});
    }
    fopts.channels = {"kvzip"};
    PROXYKV_ASSIGN_OR_RETURN(proxy::ProxyFeatures f, proxy::extract_features(*methods_.proxy, ids, fopts));
    at::Tensor rows = f.features[0];  // [P, T], log KVzip score of the proxy
    std::vector<int64_t> pick;
    if (method == "kvzip_iam") {
      pick = methods_.iam_map;
    } else {
      for (int64_t l = 0; l < ts.num_layers; ++l) {
        for (int64_t h = 0; h < ts.num_kv_heads; ++h) {
          pick.push_back((l * ps.num_layers / ts.num_layers) * ps.num_kv_heads + h * ps.num_kv_heads / ts.num_kv_heads);
        }
      }
    }
    if (static_cast<int64_t>(pick.size()) != ts.num_layers * ts.num_kv_heads) {
      return failed_precondition(method + ": head map has " + std::to_string(pick.size()) + " rows, the target needs " +
                                 std::to_string(ts.num_layers * ts.num_kv_heads));
    }
    at::Tensor index = at::tensor(pick, at::kLong);
    return rows.index_select(0, index).reshape({ts.num_layers, ts.num_kv_heads, ids.size(0)});
  }

 private:
  const ProxyMethods& methods_;
};

}  // namespace

bool ProxyMethods::provides(const std::string& method) const {
  if (!proxy) return false;
  if (method == "proxy_direct") return true;
  if (method == "kvzip_iam") return !iam_map.empty();
  return mappers.count(method) != 0;
}

std::vector<std::string> ProxyMethods::names() const {
  std::vector<std::string> out;
  if (!proxy) return out;
  out.push_back("proxy_direct");
  if (!iam_map.empty()) out.push_back("kvzip_iam");
  for (const auto& [name, m] : mappers) out.push_back(name);
  return out;
}

Result<std::unique_ptr<scoring::Scorer>> ProxyMethods::make(const std::string& method,
                                                            const scoring::ScorerOptions& options) const {
  if (!provides(method)) return failed_precondition("method '" + method + "' needs --proxy (and --mapper / --iam)");
  return std::unique_ptr<scoring::Scorer>(new ProxyMethodScorer(method, options, *this));
}

Result<std::vector<int64_t>> calibrate_iam(const std::vector<at::Tensor>& proxy_rows,
                                           const std::vector<at::Tensor>& target_rows, int64_t n_sink) {
  if (proxy_rows.empty() || proxy_rows.size() != target_rows.size()) {
    return invalid_argument("IAM calibration needs the same number (> 0) of proxy and target samples");
  }
  const int64_t P = proxy_rows[0].size(0), Q = target_rows[0].size(0);
  at::Tensor sim = at::zeros({Q, P}, at::kDouble);
  for (size_t i = 0; i < proxy_rows.size(); ++i) {
    const int64_t T = proxy_rows[i].size(1);
    if (proxy_rows[i].size(0) != P || target_rows[i].size(0) != Q || target_rows[i].size(1) != T || T <= n_sink) {
      return invalid_argument("IAM calibration sample " + std::to_string(i) + " has inconsistent shapes");
    }
    at::Tensor p = proxy_rows[i].narrow(1, n_sink, T - n_sink).to(at::kDouble);
    at::Tensor q = target_rows[i].narrow(1, n_sink, T - n_sink).to(at::kDouble);
    p = p / p.norm(2, {1}, true).clamp_min(1e-12);
    q = q / q.norm(2, {1}, true).clamp_min(1e-12);
    sim += at::matmul(q, p.t());
  }
  at::Tensor best = std::get<1>(sim.max(1));
  return std::vector<int64_t>(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + Q);
}

Result<std::vector<std::string>> mapper_channels(const std::string& dir) {
  PROXYKV_ASSIGN_OR_RETURN(std::vector<std::string> channels, mapper::read_feature_channels(dir));
  proxy::FeatureOptions check;
  check.channels = channels;
  PROXYKV_RETURN_IF_ERROR(proxy::validate_feature_options(check));
  return channels;
}

Status save_mapper_channels(const std::string& dir, const std::vector<std::string>& channels) {
  std::ofstream out(dir + "/features.json");
  out << nlohmann::json{{"channels", channels}}.dump() << "\n";
  if (!out) return invalid_argument(dir + "/features.json: cannot write");
  return Status::ok();
}

Status save_iam_map(const std::string& path, const std::vector<int64_t>& map, int64_t proxy_rows) {
  std::ofstream out(path);
  out << nlohmann::json{{"map", map}, {"proxy_rows", proxy_rows}, {"target_rows", map.size()}}.dump() << "\n";
  if (!out) return invalid_argument(path + ": cannot write");
  return Status::ok();
}

Result<std::vector<int64_t>> load_iam_map(const std::string& path, int64_t proxy_rows, int64_t target_rows) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open IAM map");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  try {
    if (j.is_discarded()) return invalid_argument(path + ": not JSON");
    auto map = j.at("map").get<std::vector<int64_t>>();
    if (j.at("proxy_rows").get<int64_t>() != proxy_rows || static_cast<int64_t>(map.size()) != target_rows) {
      return failed_precondition(path + ": IAM map is for " + std::to_string(j.at("proxy_rows").get<int64_t>()) +
                                 " proxy rows -> " + std::to_string(map.size()) + " target rows, this pair has " +
                                 std::to_string(proxy_rows) + " -> " + std::to_string(target_rows));
    }
    for (int64_t p : map) {
      if (p < 0 || p >= proxy_rows) return invalid_argument(path + ": proxy row out of range");
    }
    return map;
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(path + ": " + e.what());
  }
}

}  // namespace proxykv::eval
