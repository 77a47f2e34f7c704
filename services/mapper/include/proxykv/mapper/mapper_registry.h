// MapperRegistry: the mapper checkpoints a mapper service serves, keyed by (proxy model id, target model id).
// The domain side of proxykv-mapper: no sockets here (DESIGN §3), so the same code runs in-process in tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/mapper/mapper_checkpoint.h"
#include "proxykv/scoring/selection.h"

namespace proxykv::mapper {

// The proxy feature channels a checkpoint reads: <dir>/features.json {"channels": [...]} (train-mapper writes
// it from the data manifest). Names are not validated here (the proxy library owns them).
Result<std::vector<std::string>> read_feature_channels(const std::string& dir);

struct MapperPair {
  std::string proxy_model_id;
  std::string target_model_id;
  std::string dir;
  std::vector<std::string> channels;
  LoadedMapper loaded;
  // transport::compatibility_hash of {proxy, target, shape, channels}: what requests for this pair must carry
  // when they carry one (docs/protocol.md).
  std::string compatibility_hash;

  std::string name() const { return proxy_model_id + "->" + target_model_id; }
};

class MapperRegistry {
 public:
  // Where the mappers added from now on run: "cpu" (default), "cuda" or "cuda:N" (an unavailable device is an
  // error naming it). map_features moves the features there and the scores back to the CPU.
  Status set_device(const std::string& device);

  // Loads <dir> (mapper.json, mapper.safetensors, features.json) as the mapper of proxy -> target. A second
  // checkpoint for the same pair is refused (ALREADY: INVALID_ARGUMENT).
  Status add(const std::string& proxy_model_id, const std::string& target_model_id, const std::string& dir);
  // Parses "PROXY_ID:TARGET_ID=DIR" (the --mappers flag) and adds it.
  Status add_spec(const std::string& spec);
  // The pair's mapper; with an empty proxy id, the only mapper for that target. NOT_FOUND naming what is served.
  Result<const MapperPair*> find(const std::string& proxy_model_id, const std::string& target_model_id) const;
  std::vector<std::string> pair_names() const;
  // Each pair's "training.selection_level" (pair name -> level; "unrecorded" for a checkpoint without one): the
  // mapper service logs it at start and shows it in /health.
  nlohmann::json trained_levels() const;
  bool empty() const { return pairs_.empty(); }

 private:
  std::vector<std::unique_ptr<MapperPair>> pairs_;
  at::Device device_{at::kCPU};
};

// The mapper step: proxy features [C, P, T] (float, any device) -> target scores [L_t, H_t, T] on the CPU, computed
// on the device the pair's mapper lives on. Checks the shape against the pair (INVALID_ARGUMENT naming both).
Result<at::Tensor> map_features(const MapperPair& pair, const at::Tensor& features);

}  // namespace proxykv::mapper
