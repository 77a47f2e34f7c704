// ModelSpec: what a Hugging Face config.json says about a decoder, validated once at load.
//
// Supported: LlamaForCausalLM (incl. rope_scaling type llama3), Qwen2ForCausalLM (q/k/v bias),
// Qwen3ForCausalLM (per-head q_norm/k_norm before RoPE); GQA; explicit or derived head_dim; tied or untied
// embeddings. Unknown keys are ignored; a known key with a value we do not support is refused by name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "proxykv/core/status.h"

namespace proxykv {

enum class Architecture { kLlama, kQwen2, kQwen3 };

const char* architecture_class_name(Architecture arch);  // "LlamaForCausalLM", ...

struct RopeScaling {
  enum class Type { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelSpec {
  Architecture arch = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 always; Llama/Qwen3 when attention_bias
  bool o_bias = false;    // Llama/Qwen3 when attention_bias (Qwen2 never)
  bool qk_norm = false;   // Qwen3
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::string torch_dtype = "float32";

  int64_t group_size() const { return num_heads / num_kv_heads; }
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  int64_t num_parameters() const;

  // Parses and validates a config.json object; `origin` (a path) prefixes every error message.
  static Result<ModelSpec> from_json(const nlohmann::json& config, const std::string& origin);
  static Result<ModelSpec> from_file(const std::string& config_path);
  // The config.json that describes this spec (what save_pretrained would write for it).
  nlohmann::json to_json() const;
};

// What one HF tensor of a checkpoint is: its name and its expected shape under a spec. The loader and its
// error messages are driven by this table (llama.cpp's tensor-name tables).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> expected_tensors(const ModelSpec& spec);

}  // namespace proxykv
