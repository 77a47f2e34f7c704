// Mapper checkpoints: a directory with
//   mapper.safetensors  every named parameter of the HybridAxialMapper, float32
//   mapper.json         {"format": "proxykv-mapper", "format_version": 1, "config": MapperConfig::to_json(),
//                        "parameters": count, "training": {...}}
// The config names the (proxy, target) pair shape the mapper fits; loading it for another pair is refused.
// "training" (optional; train-mapper writes it) records how the weights were trained: "selection_level", the
// level whose top-rho sets its loss ranked (global | layer | head | token), and free-form details ("train": the
// MapperTrainConfig, "best_epoch", "best_val_mean_recall"). A mapper serves any level; the level it was trained
// for is the one its ranking is meant for, and `proxykv eval` warns when it is asked for another.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/mapper/hybrid_axial_mapper.h"

namespace proxykv::mapper {

inline constexpr const char* kMapperFormat = "proxykv-mapper";
inline constexpr int kMapperFormatVersion = 1;

// Writes both files (each to a temporary name, then renamed). `config` may differ from mapper->config() in the
// free-form ids only: it is what gets recorded. `training`, when not null, is recorded as "training"; it must be an
// object whose "selection_level" is a level name (INVALID_ARGUMENT otherwise).
Status save_mapper(const std::string& dir, const HybridAxialMapper& mapper, const MapperConfig& config,
                   const nlohmann::json& training = nullptr);

// Reads and validates mapper.json alone (NOT_FOUND without it; INVALID_ARGUMENT when malformed, naming the file;
// UNIMPLEMENTED for another format version).
Result<MapperConfig> read_mapper_config(const std::string& dir);

struct LoadedMapper {
  HybridAxialMapper mapper{nullptr};  // in eval() mode, on the CPU
  MapperConfig config;
  std::string trained_level;  // "training.selection_level" of mapper.json; empty when the checkpoint has none
};

// Loads a checkpoint for the pair `expected`. Refuses, with a message naming both shapes, a checkpoint made for
// another pair (FAILED_PRECONDITION), a missing, extra, mis-shaped or non-float tensor, and a "training" record
// that is not an object or names no known selection level (INVALID_ARGUMENT).
Result<LoadedMapper> load_mapper(const std::string& dir, const MapperPairShape& expected);

}  // namespace proxykv::mapper
