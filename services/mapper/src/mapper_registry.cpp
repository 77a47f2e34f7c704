#include "proxykv/mapper/mapper_registry.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "proxykv/model/decoder_lm.h"
#include "proxykv/transport/compatibility.h"

namespace proxykv::mapper {

Result<std::vector<std::string>> read_feature_channels(const std::string& dir) {
  const std::string path = dir + "/features.json";
  std::ifstream in(path);
  if (!in) return not_found(path + ": missing (which proxy feature channels the mapper reads)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("channels") || !j["channels"].is_array() ||
      j["channels"].empty()) {
    return invalid_argument(path + ": needs {\"channels\": [...]} with at least one channel");
  }
  std::vector<std::string> channels;
  for (const auto& c : j["channels"]) {
    if (!c.is_string()) return invalid_argument(path + ": channel names must be strings");
    channels.push_back(c.get<std::string>());
  }
  return channels;
}

Status MapperRegistry::set_device(const std::string& device) {
  PROXYKV_ASSIGN_OR_RETURN(device_, parse_device(device));
  return Status::ok();
}

Status MapperRegistry::add(const std::string& proxy_model_id, const std::string& target_model_id,
                           const std::string& dir) {
  if (proxy_model_id.empty() || target_model_id.empty()) {
    return invalid_argument("mapper " + dir + ": proxy and target model ids must not be empty");
  }
  for (const auto& p : pairs_) {
    if (p->proxy_model_id == proxy_model_id && p->target_model_id == target_model_id) {
      return invalid_argument("mapper for " + p->name() + " given twice (" + p->dir + " and " + dir + ")");
    }
  }
  PROXYKV_ASSIGN_OR_RETURN(MapperConfig config, read_mapper_config(dir));
  PROXYKV_ASSIGN_OR_RETURN(std::vector<std::string> channels, read_feature_channels(dir));
  if (static_cast<int64_t>(channels.size()) != config.shape.channels) {
    return invalid_argument(dir + ": features.json names " + std::to_string(channels.size()) +
                            " channels, mapper.json expects " + std::to_string(config.shape.channels));
  }
  auto pair = std::make_unique<MapperPair>();
  PROXYKV_ASSIGN_OR_RETURN(pair->loaded, load_mapper(dir, config.shape));
  if (device_ != at::Device(at::kCPU)) pair->loaded.mapper->to(device_);
  pair->proxy_model_id = proxy_model_id;
  pair->target_model_id = target_model_id;
  pair->dir = dir;
  pair->channels = channels;
  std::string joined;
  for (const auto& c : channels) joined += (joined.empty() ? "" : ",") + c;
  pair->compatibility_hash = transport::compatibility_hash({{"proxy", proxy_model_id},
                                                            {"target", target_model_id},
                                                            {"shape", config.shape.to_string()},
                                                            {"channels", joined}});
  pairs_.push_back(std::move(pair));
  return Status::ok();
}

Status MapperRegistry::add_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  const auto eq = spec.find('=');
  if (colon == std::string::npos || eq == std::string::npos || colon > eq || eq + 1 == spec.size()) {
    return invalid_argument("mapper spec '" + spec + "': expected PROXY_ID:TARGET_ID=DIR");
  }
  return add(spec.substr(0, colon), spec.substr(colon + 1, eq - colon - 1), spec.substr(eq + 1));
}

Result<const MapperPair*> MapperRegistry::find(const std::string& proxy_model_id,
                                               const std::string& target_model_id) const {
  const MapperPair* found = nullptr;
  int matches = 0;
  for (const auto& p : pairs_) {
    if (p->target_model_id != target_model_id) continue;
    if (!proxy_model_id.empty() && p->proxy_model_id != proxy_model_id) continue;
    found = p.get();
    ++matches;
  }
  if (matches == 1) return found;
  std::string served;
  for (const auto& n : pair_names()) served += (served.empty() ? "" : ", ") + n;
  if (matches > 1) {
    return invalid_argument("several mappers serve target '" + target_model_id +
                            "': the request must name its proxy model (served: " + served + ")");
  }
  return not_found("no mapper for proxy '" + proxy_model_id + "' -> target '" + target_model_id +
                   "' (served: " + (served.empty() ? "none" : served) + ")");
}

std::vector<std::string> MapperRegistry::pair_names() const {
  std::vector<std::string> out;
  for (const auto& p : pairs_) out.push_back(p->name());
  return out;
}

nlohmann::json MapperRegistry::trained_levels() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : pairs_) {
    out[p->name()] = p->loaded.trained_level.empty() ? "unrecorded" : p->loaded.trained_level;
  }
  return out;
}

Result<at::Tensor> map_features(const MapperPair& pair, const at::Tensor& features) {
  const MapperPairShape& s = pair.loaded.config.shape;
  if (features.dim() != 3 || features.size(0) != s.channels || features.size(1) != s.proxy_heads() ||
      features.size(2) < 1) {
    return invalid_argument("features of shape " + std::to_string(features.dim()) + "-d [" +
                            (features.dim() == 3 ? std::to_string(features.size(0)) + ", " +
                                                       std::to_string(features.size(1)) + ", " +
                                                       std::to_string(features.size(2))
                                                 : std::string("?")) +
                            "] do not fit mapper " + pair.name() + " (" + s.to_string() + ")");
  }
  HybridAxialMapper m = pair.loaded.mapper;
  const at::Device device = m->parameters().empty() ? at::Device(at::kCPU) : m->parameters().front().device();
  at::Tensor x = features.to(device, at::kFloat).unsqueeze(0);
  PROXYKV_RETURN_IF_ERROR(m->check_input(x));
  at::NoGradGuard no_grad;
  at::Tensor out = m->forward(x)[0];  // [Q, T]
  return out.reshape({s.target_layers, s.target_kv_heads, features.size(2)}).to(at::kCPU);
}

}  // namespace proxykv::mapper
