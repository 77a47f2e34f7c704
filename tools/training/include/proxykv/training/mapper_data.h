// Mapper training data: proxy features and target KVzip labels per context, in safetensors shards.
//
// Layout of a data directory:
//   manifest.json          {"format": "proxykv-mapper-data/1", "channels": [...], "proxy": {...}, "target": {...},
//                           "n_sink", "kvzip_chunk", "contexts", "shards": [{"file", "contexts"}]}
//   shard-00000.safetensors  tensors features.<i> float32 [C, P, T_i] and labels.<i> float32 [Q, T_i]; metadata
//                            "samples": JSON list of {"id", "task", "tokens"} in shard order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/tokenizer.h"
#include "proxykv/proxy/proxy_features.h"
#include "proxykv/tasks/task_suite.h"

namespace proxykv::training {

struct MapperSample {
  std::string id;
  std::string task;
  at::Tensor features;  // [C, P, T]
  at::Tensor labels;    // [Q, T]
};

struct MapperDataOptions {
  proxy::FeatureOptions features;  // channels and scorer options (KVzip chunk, repeat prompt, n_sink)
  int64_t contexts_per_shard = 64;
  int64_t limit = 0;  // contexts at most (0: all)
};

// Runs proxy features and target KVzip over every context of `contexts` (prompt `<bos> <ctx> ... </ctx>` with the
// shared tokenizer) and writes the shards and manifest into `out_dir`. `progress` gets (done, total).
Status make_mapper_data(const DecoderLM& proxy, const DecoderLM& target, const Tokenizer& tokenizer,
                        const std::vector<tasks::TaskContext>& contexts, const MapperDataOptions& options,
                        const std::string& out_dir, const std::function<void(int64_t, int64_t)>& progress = {});

struct MapperDataset {
  nlohmann::json manifest;
  std::vector<MapperSample> samples;
};

// The file name of shard i of a data directory ("shard-00000.safetensors", ...).
std::string mapper_shard_name(size_t i);

// Reads a data directory written by make_mapper_data, validating shapes against the manifest.
Result<MapperDataset> read_mapper_data(const std::string& dir);

}  // namespace proxykv::training
