// Mapper checkpoints: a directory with
//   mapper.safetensors  every named parameter of the HybridAxialMapper, float32
//   mapper.json         {"format": "proxykv-mapper", "format_version": 1, "config": MapperConfig::to_json(),
//                        "parameters": count}
// The config names the (proxy, target) pair shape the mapper fits; loading it for another pair is refused.
#pragma once

#include <string>

#include "proxykv/core/status.h"
#include "proxykv/mapper/hybrid_axial_mapper.h"

namespace proxykv::mapper {

inline constexpr const char* kMapperFormat = "proxykv-mapper";
inline constexpr int kMapperFormatVersion = 1;

// Writes both files (each to a temporary name, then renamed). `config` may differ from mapper->config() in the
// free-form ids only: it is what gets recorded.
Status save_mapper(const std::string& dir, const HybridAxialMapper& mapper, const MapperConfig& config);

// Reads and validates mapper.json alone (NOT_FOUND without it; INVALID_ARGUMENT when malformed, naming the file;
// UNIMPLEMENTED for another format version).
Result<MapperConfig> read_mapper_config(const std::string& dir);

struct LoadedMapper {
  HybridAxialMapper mapper{nullptr};  // in eval() mode, on the CPU
  MapperConfig config;
};

// Loads a checkpoint for the pair `expected`. Refuses, with a message naming both shapes, a checkpoint made for
// another pair (FAILED_PRECONDITION), and a missing, extra, mis-shaped or non-float tensor (INVALID_ARGUMENT).
Result<LoadedMapper> load_mapper(const std::string& dir, const MapperPairShape& expected);

}  // namespace proxykv::mapper
