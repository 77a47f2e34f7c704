#include "proxykv/model/model_spec.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace proxykv {
namespace {

using nlohmann::json;

// Reads optional typed keys with errors that name the key.
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  Status error(const std::string& key, const std::string& what) const {
    return invalid_argument(origin_ + ": key '" + key + "' " + what);
  }
  Status unsupported(const std::string& key, const std::string& value) const {
    return unimplemented(origin_ + ": key '" + key + "' = " + value + " is not supported");
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  Status get_int(const std::string& key, int64_t* out, bool required, int64_t min_value = 1) const {
    if (!has(key)) return required ? error(key, "is missing") : Status::ok();
    const json& v = j_.at(key);
    if (!v.is_number_integer()) return error(key, "must be an integer, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < min_value) return error(key, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
    *out = x;
    return Status::ok();
  }
  Status get_double(const std::string& key, double* out, bool required, bool positive = true) const {
    if (!has(key)) return required ? error(key, "is missing") : Status::ok();
    const json& v = j_.at(key);
    if (!v.is_number()) return error(key, "must be a number, got " + v.dump());
    double x = v.get<double>();
    if (positive && !(x > 0)) return error(key, "must be > 0, got " + v.dump());
    *out = x;
    return Status::ok();
  }
  Status get_bool(const std::string& key, bool* out) const {
    if (!has(key)) return Status::ok();
    const json& v = j_.at(key);
    if (!v.is_boolean()) return error(key, "must be a boolean, got " + v.dump());
    *out = v.get<bool>();
    return Status::ok();
  }
  Status get_string(const std::string& key, std::string* out) const {
    if (!has(key)) return Status::ok();
    const json& v = j_.at(key);
    if (!v.is_string()) return error(key, "must be a string, got " + v.dump());
    *out = v.get<std::string>();
    return Status::ok();
  }
  // bos/eos ids may be an integer or a list (Llama-3.1 instruct): the first element is used.
  Status get_token_id(const std::string& key, std::optional<int64_t>* out) const {
    if (!has(key)) return Status::ok();
    const json& v = j_.at(key);
    if (v.is_number_integer()) {
      *out = v.get<int64_t>();
    } else if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
      *out = v[0].get<int64_t>();
    } else {
      return error(key, "must be an integer or a list of integers, got " + v.dump());
    }
    return Status::ok();
  }

 private:
  const json& j_;
  std::string origin_;
};

Status parse_rope_scaling(const ConfigReader& cfg, const json& config, const std::string& origin, ModelSpec* spec) {
  if (!cfg.has("rope_scaling")) return Status::ok();
  const json& rs = config.at("rope_scaling");
  if (!rs.is_object()) return cfg.error("rope_scaling", "must be an object or null");
  std::string type;
  if (rs.contains("rope_type") && rs.at("rope_type").is_string()) {
    type = rs.at("rope_type").get<std::string>();
  } else if (rs.contains("type") && rs.at("type").is_string()) {
    type = rs.at("type").get<std::string>();
  } else {
    return cfg.error("rope_scaling", "has no string 'rope_type'");
  }
  if (type == "default") return Status::ok();
  if (type != "llama3") return cfg.unsupported("rope_scaling.rope_type", "'" + type + "'");
  ConfigReader r(rs, origin + ": rope_scaling");
  RopeScaling& s = spec->rope_scaling;
  s.type = RopeScaling::Type::kLlama3;
  PROXYKV_RETURN_IF_ERROR(r.get_double("factor", &s.factor, true));
  PROXYKV_RETURN_IF_ERROR(r.get_double("low_freq_factor", &s.low_freq_factor, true));
  PROXYKV_RETURN_IF_ERROR(r.get_double("high_freq_factor", &s.high_freq_factor, true));
  PROXYKV_RETURN_IF_ERROR(r.get_int("original_max_position_embeddings", &s.original_max_position_embeddings, true));
  if (!(s.high_freq_factor > s.low_freq_factor)) {
    return cfg.error("rope_scaling.high_freq_factor", "must be greater than low_freq_factor");
  }
  return Status::ok();
}

}  // namespace

const char* architecture_class_name(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama: return "LlamaForCausalLM";
    case Architecture::kQwen2: return "Qwen2ForCausalLM";
    case Architecture::kQwen3: return "Qwen3ForCausalLM";
  }
  return "?";
}

Result<ModelSpec> ModelSpec::from_json(const json& config, const std::string& origin) {
  if (!config.is_object()) return invalid_argument(origin + ": config must be a JSON object");
  ConfigReader cfg(config, origin);
  ModelSpec spec;

  if (!cfg.has("architectures")) return cfg.error("architectures", "is missing");
  const json& archs = config.at("architectures");
  if (!archs.is_array() || archs.size() != 1 || !archs[0].is_string()) {
    return cfg.error("architectures", "must be a list with one class name, got " + archs.dump());
  }
  const std::string arch = archs[0].get<std::string>();
  if (arch == "LlamaForCausalLM") {
    spec.arch = Architecture::kLlama;
  } else if (arch == "Qwen2ForCausalLM") {
    spec.arch = Architecture::kQwen2;
  } else if (arch == "Qwen3ForCausalLM") {
    spec.arch = Architecture::kQwen3;
  } else {
    return cfg.unsupported("architectures",
                           "'" + arch + "' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  }

  PROXYKV_RETURN_IF_ERROR(cfg.get_int("vocab_size", &spec.vocab_size, true));
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("hidden_size", &spec.hidden_size, true));
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("intermediate_size", &spec.intermediate_size, true));
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("num_hidden_layers", &spec.num_layers, true));
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("num_attention_heads", &spec.num_heads, true));
  spec.num_kv_heads = spec.num_heads;
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("num_key_value_heads", &spec.num_kv_heads, false));
  spec.max_position_embeddings = 4096;
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("max_position_embeddings", &spec.max_position_embeddings, false));
  PROXYKV_RETURN_IF_ERROR(cfg.get_double("rms_norm_eps", &spec.rms_norm_eps, false));
  PROXYKV_RETURN_IF_ERROR(cfg.get_double("rope_theta", &spec.rope_theta, false));
  PROXYKV_RETURN_IF_ERROR(cfg.get_bool("tie_word_embeddings", &spec.tie_word_embeddings));
  PROXYKV_RETURN_IF_ERROR(cfg.get_token_id("bos_token_id", &spec.bos_token_id));
  PROXYKV_RETURN_IF_ERROR(cfg.get_token_id("eos_token_id", &spec.eos_token_id));
  PROXYKV_RETURN_IF_ERROR(cfg.get_string("torch_dtype", &spec.torch_dtype));

  if (spec.num_heads % spec.num_kv_heads != 0) {
    return cfg.error("num_key_value_heads", "(" + std::to_string(spec.num_kv_heads) +
                                                ") must divide num_attention_heads (" + std::to_string(spec.num_heads) +
                                                ")");
  }
  if (cfg.has("head_dim")) {
    PROXYKV_RETURN_IF_ERROR(cfg.get_int("head_dim", &spec.head_dim, true));
  } else {
    if (spec.hidden_size % spec.num_heads != 0) {
      return cfg.error("head_dim", "is missing and hidden_size is not divisible by num_attention_heads");
    }
    spec.head_dim = spec.hidden_size / spec.num_heads;
  }
  if (spec.head_dim % 2 != 0) return cfg.error("head_dim", "must be even for rotary embeddings");

  std::string act = "silu";
  PROXYKV_RETURN_IF_ERROR(cfg.get_string("hidden_act", &act));
  if (act != "silu") return cfg.unsupported("hidden_act", "'" + act + "'");

  bool flag = false;
  PROXYKV_RETURN_IF_ERROR(cfg.get_bool("mlp_bias", &flag));
  if (flag) return cfg.unsupported("mlp_bias", "true");
  int64_t tp = 1;
  PROXYKV_RETURN_IF_ERROR(cfg.get_int("pretraining_tp", &tp, false));
  if (tp != 1) return cfg.unsupported("pretraining_tp", std::to_string(tp));

  bool attention_bias = false;
  PROXYKV_RETURN_IF_ERROR(cfg.get_bool("attention_bias", &attention_bias));
  switch (spec.arch) {
    case Architecture::kLlama: spec.qkv_bias = spec.o_bias = attention_bias; break;
    case Architecture::kQwen2:
      // Qwen2 always has q/k/v biases and never an o_proj bias, whatever the config says.
      spec.qkv_bias = true;
      spec.o_bias = false;
      break;
    case Architecture::kQwen3:
      spec.qkv_bias = spec.o_bias = attention_bias;
      spec.qk_norm = true;
      break;
  }
  if (spec.arch != Architecture::kLlama) {
    bool sliding = false;
    PROXYKV_RETURN_IF_ERROR(cfg.get_bool("use_sliding_window", &sliding));
    if (sliding) return cfg.unsupported("use_sliding_window", "true");
  }
  PROXYKV_RETURN_IF_ERROR(parse_rope_scaling(cfg, config, origin, &spec));
  if (spec.torch_dtype != "float32" && spec.torch_dtype != "bfloat16" && spec.torch_dtype != "float16") {
    return cfg.unsupported("torch_dtype", "'" + spec.torch_dtype + "'");
  }
  return spec;
}

Result<ModelSpec> ModelSpec::from_file(const std::string& config_path) {
  std::ifstream in(config_path);
  if (!in) return not_found(config_path + ": cannot open config file");
  std::stringstream buf;
  buf << in.rdbuf();
  json config = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return invalid_argument(config_path + ": not valid JSON");
  return from_json(config, config_path);
}

json ModelSpec::to_json() const {
  json j;
  j["architectures"] = {architecture_class_name(arch)};
  j["model_type"] = arch == Architecture::kLlama ? "llama" : arch == Architecture::kQwen2 ? "qwen2" : "qwen3";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (arch != Architecture::kQwen2) j["attention_bias"] = qkv_bias;
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  j["torch_dtype"] = torch_dtype;
  return j;
}

std::vector<TensorSpec> expected_tensors(const ModelSpec& s) {
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {s.vocab_size, s.hidden_size}});
  for (int64_t l = 0; l < s.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {s.hidden_size}});
    t.push_back({p + "self_attn.q_proj.weight", {s.q_dim(), s.hidden_size}});
    t.push_back({p + "self_attn.k_proj.weight", {s.kv_dim(), s.hidden_size}});
    t.push_back({p + "self_attn.v_proj.weight", {s.kv_dim(), s.hidden_size}});
    if (s.qkv_bias) {
      t.push_back({p + "self_attn.q_proj.bias", {s.q_dim()}});
      t.push_back({p + "self_attn.k_proj.bias", {s.kv_dim()}});
      t.push_back({p + "self_attn.v_proj.bias", {s.kv_dim()}});
    }
    if (s.qk_norm) {
      t.push_back({p + "self_attn.q_norm.weight", {s.head_dim}});
      t.push_back({p + "self_attn.k_norm.weight", {s.head_dim}});
    }
    t.push_back({p + "self_attn.o_proj.weight", {s.hidden_size, s.q_dim()}});
    if (s.o_bias) t.push_back({p + "self_attn.o_proj.bias", {s.hidden_size}});
    t.push_back({p + "post_attention_layernorm.weight", {s.hidden_size}});
    t.push_back({p + "mlp.gate_proj.weight", {s.intermediate_size, s.hidden_size}});
    t.push_back({p + "mlp.up_proj.weight", {s.intermediate_size, s.hidden_size}});
    t.push_back({p + "mlp.down_proj.weight", {s.hidden_size, s.intermediate_size}});
  }
  t.push_back({"model.norm.weight", {s.hidden_size}});
  if (!s.tie_word_embeddings) t.push_back({"lm_head.weight", {s.vocab_size, s.hidden_size}});
  return t;
}

int64_t ModelSpec::num_parameters() const {
  int64_t n = 0;
  for (const auto& t : expected_tensors(*this)) {
    int64_t k = 1;
    for (int64_t d : t.shape) k *= d;
    n += k;
  }
  return n;
}

}  // namespace proxykv
