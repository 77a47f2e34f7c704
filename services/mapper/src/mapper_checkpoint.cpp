#include "proxykv/mapper/mapper_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <ATen/core/grad_mode.h>

#include "proxykv/mapper/mapper_registry.h"
#include "proxykv/scoring/feature_channels.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv::mapper {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string shape_string(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

json architecture_only(const MapperConfig& c) {
  json j = c.to_json();
  j.erase("proxy_id");
  j.erase("target_id");
  return j;
}

Status write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return invalid_argument(tmp.string() + ": cannot write");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return invalid_argument(path.string() + ": cannot move into place: " + ec.message());
  return Status::ok();
}

// The "training" record's selection level: "" when there is no record, an error when it is malformed.
Result<std::string> training_level(const json& training, const std::string& origin) {
  if (training.is_null()) return std::string();
  if (!training.is_object() || !training.contains("selection_level") || !training.at("selection_level").is_string()) {
    return invalid_argument(origin + ": 'training' must be an object with a string 'selection_level'");
  }
  const std::string level = training.at("selection_level").get<std::string>();
  if (!scoring::parse_selection_level(level).is_ok()) {
    return invalid_argument(origin + ": training.selection_level '" + level +
                            "' is not a selection level (global | layer | head | token)");
  }
  return level;
}

Result<json> read_mapper_json(const std::string& dir) {
  const fs::path path = fs::path(dir) / "mapper.json";
  std::ifstream in(path);
  if (!in) return not_found(path.string() + ": no mapper checkpoint here (cannot open mapper.json)");
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(path.string() + ": not a valid JSON object");
  if (!j.contains("format") || j.at("format") != kMapperFormat) {
    return invalid_argument(path.string() + ": 'format' is not \"" + kMapperFormat + "\"");
  }
  if (!j.contains("format_version") || !j.at("format_version").is_number_integer()) {
    return invalid_argument(path.string() + ": missing integer 'format_version'");
  }
  if (j.at("format_version").get<int64_t>() != kMapperFormatVersion) {
    return unimplemented(path.string() + ": format_version " + j.at("format_version").dump() +
                         " is not supported by this build (it reads " + std::to_string(kMapperFormatVersion) + ")");
  }
  if (!j.contains("config")) return invalid_argument(path.string() + ": missing 'config'");
  return j;
}

}  // namespace

Status save_mapper(const std::string& dir, const HybridAxialMapper& mapper, const MapperConfig& config,
                   const json& training) {
  PROXYKV_RETURN_IF_ERROR(training_level(training, "save_mapper").status());
  if (architecture_only(config) != architecture_only(mapper->config())) {
    return invalid_argument("save_mapper: the config to record (" + architecture_only(config).dump() +
                            ") does not describe this mapper (" + architecture_only(mapper->config()).dump() + ")");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return invalid_argument(dir + ": cannot create directory: " + ec.message());

  std::vector<TensorToWrite> tensors;
  for (const auto& item : mapper->named_parameters(/*recurse=*/true)) {
    PROXYKV_ASSIGN_OR_RETURN(TensorToWrite w, from_torch(item.key(), item.value().detach().to(at::kFloat)));
    tensors.push_back(std::move(w));
  }
  PROXYKV_RETURN_IF_ERROR(write_safetensors((fs::path(dir) / "mapper.safetensors").string(), tensors,
                                            {{"format", "pt"}, {"proxykv_format", kMapperFormat}}));
  json meta{{"format", kMapperFormat},
            {"format_version", kMapperFormatVersion},
            {"config", config.to_json()},
            {"parameters", count_parameters(*mapper)}};
  if (!training.is_null()) meta["training"] = training;
  return write_text_atomically(fs::path(dir) / "mapper.json", meta.dump(2) + "\n");
}

Result<MapperConfig> read_mapper_config(const std::string& dir) {
  PROXYKV_ASSIGN_OR_RETURN(json j, read_mapper_json(dir));
  return MapperConfig::from_json(j.at("config"), (fs::path(dir) / "mapper.json").string() + ": config");
}

Result<LoadedMapper> load_mapper(const std::string& dir, const MapperPairShape& expected) {
  PROXYKV_ASSIGN_OR_RETURN(json meta, read_mapper_json(dir));
  const std::string meta_path = (fs::path(dir) / "mapper.json").string();
  PROXYKV_ASSIGN_OR_RETURN(MapperConfig config, MapperConfig::from_json(meta.at("config"), meta_path + ": config"));
  PROXYKV_ASSIGN_OR_RETURN(std::string trained_level, training_level(meta.value("training", json()), meta_path));
  if (config.shape != expected) {
    return failed_precondition(dir + ": this mapper was trained for another (proxy, target) pair: expected " +
                               expected.to_string() + ", found " + config.shape.to_string() + " (proxy_id '" +
                               config.proxy_id + "', target_id '" + config.target_id + "')");
  }
  // The channels it reads (features.json, when the checkpoint has one: train-mapper writes it) must survive its
  // input transform; a "log" mapper of log-mass channels saw one constant in training and would score blind.
  if (fs::exists(fs::path(dir) / "features.json")) {
    PROXYKV_ASSIGN_OR_RETURN(std::vector<std::string> channels, read_feature_channels(dir));
    Status readable = scoring::check_input_transform(config.input_transform, channels);
    if (!readable.is_ok()) return Status(readable.code(), dir + ": " + readable.message());
  }
  const std::string weights_path = (fs::path(dir) / "mapper.safetensors").string();
  PROXYKV_ASSIGN_OR_RETURN(auto tensors, load_all_tensors(weights_path));

  LoadedMapper loaded;
  loaded.config = config;
  loaded.trained_level = trained_level;
  try {
    loaded.mapper = HybridAxialMapper(config);
  } catch (const std::exception& e) {
    return invalid_argument(dir + ": cannot build the mapper its config describes: " + e.what());
  }
  auto params = loaded.mapper->named_parameters(/*recurse=*/true);
  std::vector<std::string> problems;
  for (const auto& item : params) {
    auto it = tensors.find(item.key());
    if (it == tensors.end()) {
      problems.push_back("missing tensor '" + item.key() + "' " + shape_string(item.value().sizes()));
    } else if (it->second.sizes() != item.value().sizes()) {
      problems.push_back("tensor '" + item.key() + "' has shape " + shape_string(it->second.sizes()) + ", expected " +
                         shape_string(item.value().sizes()));
    } else if (!at::isFloatingType(it->second.scalar_type())) {
      problems.push_back("tensor '" + item.key() + "' is not floating point");
    }
  }
  for (const auto& [name, t] : tensors) {
    if (!params.contains(name)) problems.push_back("unexpected tensor '" + name + "' " + shape_string(t.sizes()));
  }
  if (!problems.empty()) {
    std::string message = weights_path + " does not match the mapper of " + dir + "/mapper.json:";
    for (size_t i = 0; i < problems.size() && i < 8; ++i) message += (i ? "; " : " ") + problems[i];
    if (problems.size() > 8) message += "; and " + std::to_string(problems.size() - 8) + " more";
    return invalid_argument(message);
  }
  {
    at::NoGradGuard no_grad;
    for (auto& item : params) item.value().copy_(tensors.at(item.key()).to(at::kFloat));
  }
  loaded.mapper->eval();
  return loaded;
}

}  // namespace proxykv::mapper
