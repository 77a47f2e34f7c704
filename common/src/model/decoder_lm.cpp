#include "proxykv/model/decoder_lm.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/logging.h"
#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<at::ScalarType> compute_dtype(const std::string& dtype, const at::Device& device) {
  if (dtype == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (dtype == "float32") return at::kFloat;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "float16") return at::kHalf;
  return invalid_argument("dtype '" + dtype + "' is not one of auto, float32, bfloat16, float16");
}

// HF name -> tensor, for assembling (load) or splitting (save) the fused compute layout.
using NamedTensors = std::map<std::string, at::Tensor>;

ModelWeights assemble(const ModelSpec& spec, NamedTensors& t) {
  ModelWeights w;
  w.embed = t.at("model.embed_tokens.weight");
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights lw;
    lw.input_norm = t.at(p + "input_layernorm.weight");
    lw.w_qkv = at::cat(
        {t.at(p + "self_attn.q_proj.weight"), t.at(p + "self_attn.k_proj.weight"), t.at(p + "self_attn.v_proj.weight")},
        0);
    if (spec.qkv_bias) {
      lw.b_qkv = at::cat(
          {t.at(p + "self_attn.q_proj.bias"), t.at(p + "self_attn.k_proj.bias"), t.at(p + "self_attn.v_proj.bias")}, 0);
    }
    if (spec.qk_norm) {
      lw.q_norm = t.at(p + "self_attn.q_norm.weight");
      lw.k_norm = t.at(p + "self_attn.k_norm.weight");
    }
    lw.w_o = t.at(p + "self_attn.o_proj.weight");
    if (spec.o_bias) lw.b_o = t.at(p + "self_attn.o_proj.bias");
    lw.post_norm = t.at(p + "post_attention_layernorm.weight");
    lw.w_gate_up = at::cat({t.at(p + "mlp.gate_proj.weight"), t.at(p + "mlp.up_proj.weight")}, 0);
    lw.w_down = t.at(p + "mlp.down_proj.weight");
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = t.at("model.norm.weight");
  w.lm_head = spec.tie_word_embeddings ? w.embed : t.at("lm_head.weight");
  return w;
}

NamedTensors split(const ModelSpec& spec, const ModelWeights& w) {
  NamedTensors t;
  t["model.embed_tokens.weight"] = w.embed;
  const int64_t qd = spec.q_dim(), kvd = spec.kv_dim(), inter = spec.intermediate_size;
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const LayerWeights& lw = w.layers[l];
    t[p + "input_layernorm.weight"] = lw.input_norm;
    t[p + "self_attn.q_proj.weight"] = lw.w_qkv.narrow(0, 0, qd);
    t[p + "self_attn.k_proj.weight"] = lw.w_qkv.narrow(0, qd, kvd);
    t[p + "self_attn.v_proj.weight"] = lw.w_qkv.narrow(0, qd + kvd, kvd);
    if (spec.qkv_bias) {
      t[p + "self_attn.q_proj.bias"] = lw.b_qkv.narrow(0, 0, qd);
      t[p + "self_attn.k_proj.bias"] = lw.b_qkv.narrow(0, qd, kvd);
      t[p + "self_attn.v_proj.bias"] = lw.b_qkv.narrow(0, qd + kvd, kvd);
    }
    if (spec.qk_norm) {
      t[p + "self_attn.q_norm.weight"] = lw.q_norm;
      t[p + "self_attn.k_norm.weight"] = lw.k_norm;
    }
    t[p + "self_attn.o_proj.weight"] = lw.w_o;
    if (spec.o_bias) t[p + "self_attn.o_proj.bias"] = lw.b_o;
    t[p + "post_attention_layernorm.weight"] = lw.post_norm;
    t[p + "mlp.gate_proj.weight"] = lw.w_gate_up.narrow(0, 0, inter);
    t[p + "mlp.up_proj.weight"] = lw.w_gate_up.narrow(0, inter, inter);
    t[p + "mlp.down_proj.weight"] = lw.w_down;
  }
  t["model.norm.weight"] = w.final_norm;
  if (!spec.tie_word_embeddings) t["lm_head.weight"] = w.lm_head;
  return t;
}

}  // namespace

std::vector<at::Tensor> ModelWeights::parameters() const {
  std::vector<at::Tensor> p{embed};
  for (const auto& l : layers) {
    for (const at::Tensor* t : {&l.input_norm, &l.w_qkv, &l.b_qkv, &l.q_norm, &l.k_norm, &l.w_o, &l.b_o, &l.post_norm,
                                &l.w_gate_up, &l.w_down}) {
      if (t->defined()) p.push_back(*t);
    }
  }
  p.push_back(final_norm);
  if (!lm_head.is_same(embed)) p.push_back(lm_head);
  return p;
}

Result<at::Device> parse_device(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  if (device.rfind("cuda", 0) == 0) {
    int index = 0;
    if (device.size() > 4) {
      if (device[4] != ':' || device.size() == 5) return invalid_argument("device '" + device + "' is malformed");
      try {
        index = std::stoi(device.substr(5));
      } catch (const std::exception&) {
        return invalid_argument("device '" + device + "' is malformed");
      }
    }
    if (!at::hasCUDA()) return unimplemented("device '" + device + "': this LibTorch build has no CUDA");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return invalid_argument("device '" + device + "' is not cpu, cuda or cuda:N");
}

DecoderLM::DecoderLM(ModelSpec spec, at::TensorOptions options, ModelWeights weights)
    : spec_(std::move(spec)), options_(options), weights_(std::move(weights)), rope_(spec_, options.device()) {}

Result<std::unique_ptr<DecoderLM>> DecoderLM::load(const std::string& model_dir, const LoadOptions& options) {
  namespace fs = std::filesystem;
  PROXYKV_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::from_file((fs::path(model_dir) / "config.json").string()));
  PROXYKV_ASSIGN_OR_RETURN(at::Device device, parse_device(options.device));
  PROXYKV_ASSIGN_OR_RETURN(at::ScalarType dtype, compute_dtype(options.dtype, device));
  PROXYKV_ASSIGN_OR_RETURN(SafetensorsCheckpoint ckpt, SafetensorsCheckpoint::open(model_dir));

  NamedTensors tensors;
  for (const TensorSpec& ts : expected_tensors(spec)) {
    if (!ckpt.contains(ts.name)) {
      return invalid_argument(model_dir + ": tensor '" + ts.name + "' is missing (" +
                              architecture_class_name(spec.arch) + " with this config.json needs it)");
    }
    PROXYKV_ASSIGN_OR_RETURN(TensorView view, ckpt.get(ts.name));
    if (view.shape != ts.shape) {
      return invalid_argument(model_dir + ": tensor '" + ts.name + "' has shape " + shape_string(view.shape) +
                              ", config.json implies " + shape_string(ts.shape));
    }
    if (view.dtype != DType::kF32 && view.dtype != DType::kF16 && view.dtype != DType::kBF16) {
      return invalid_argument(model_dir + ": tensor '" + ts.name + "' has dtype " + dtype_name(view.dtype) +
                              ", expected a float type");
    }
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor t, to_torch(view));
    tensors[ts.name] = t.to(device, dtype);
  }
  auto logger = get_logger("model");
  logger->info("loaded {} ({}, {} layers, hidden {}, {} params) on {} as {}", model_dir,
               architecture_class_name(spec.arch), spec.num_layers, spec.hidden_size, spec.num_parameters(),
               device.str(), c10::toString(dtype));
  ModelWeights weights = assemble(spec, tensors);
  return std::unique_ptr<DecoderLM>(
      new DecoderLM(std::move(spec), at::TensorOptions().dtype(dtype).device(device), std::move(weights)));
}

Result<std::unique_ptr<DecoderLM>> DecoderLM::random_init(const ModelSpec& spec, uint64_t seed, double init_std,
                                                          const LoadOptions& options) {
  PROXYKV_ASSIGN_OR_RETURN(at::Device device, parse_device(options.device));
  PROXYKV_ASSIGN_OR_RETURN(at::ScalarType dtype, compute_dtype(options.dtype, device));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  NamedTensors tensors;
  for (const TensorSpec& ts : expected_tensors(spec)) {
    const bool is_norm = ts.name.find("norm.weight") != std::string::npos;
    const bool is_bias = ts.name.size() > 5 && ts.name.compare(ts.name.size() - 5, 5, ".bias") == 0;
    at::Tensor t;
    if (is_norm) {
      t = at::ones(ts.shape, at::kFloat);
    } else if (is_bias) {
      t = at::zeros(ts.shape, at::kFloat);
    } else {
      t = at::normal(0.0, init_std, ts.shape, gen);
    }
    tensors[ts.name] = t.to(device, dtype);
  }
  ModelWeights weights = assemble(spec, tensors);
  return std::unique_ptr<DecoderLM>(
      new DecoderLM(spec, at::TensorOptions().dtype(dtype).device(device), std::move(weights)));
}

Status DecoderLM::save(const std::string& dir) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return invalid_argument(dir + ": cannot create directory: " + ec.message());
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : split(spec_, weights_)) {
    PROXYKV_ASSIGN_OR_RETURN(TensorToWrite w, from_torch(name, t.to(at::kFloat)));
    out.push_back(std::move(w));
  }
  PROXYKV_RETURN_IF_ERROR(write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}}));
  ModelSpec saved = spec_;
  saved.torch_dtype = "float32";
  std::ofstream config(fs::path(dir) / "config.json");
  config << saved.to_json().dump(2) << "\n";
  if (!config) return invalid_argument(dir + ": cannot write config.json");
  return Status::ok();
}

KvCache DecoderLM::new_cache() const {
  return KvCache(spec_.num_layers, spec_.num_kv_heads, spec_.head_dim, options_);
}

at::Tensor DecoderLM::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + spec_.rms_norm_eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor DecoderLM::mlp(const LayerWeights& w, const at::Tensor& x) const {
  at::Tensor gate_up = at::linear(x, w.w_gate_up);
  const int64_t inter = spec_.intermediate_size;
  return at::linear(at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter), w.w_down);
}

at::Tensor DecoderLM::forward_chunk(const at::Tensor& ids, KvCache& cache, bool all_logits,
                                    AttentionObserver* observer) const {
  const int64_t n = ids.size(0);
  const int64_t H = spec_.num_heads, Hkv = spec_.num_kv_heads, D = spec_.head_dim;
  const int64_t qd = spec_.q_dim(), kvd = spec_.kv_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor positions =
      at::arange(cache.next_position(), cache.next_position() + n, at::TensorOptions().dtype(at::kLong));
  auto [cos, sin] = rope_.cos_sin(positions.to(options_.device()));

  at::Tensor x = at::embedding(weights_.embed, ids.to(options_.device()));  // [n, hidden]
  for (int64_t l = 0; l < spec_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    at::Tensor h = rms_norm(x, w.input_norm);
    at::Tensor qkv = w.b_qkv.defined() ? at::linear(h, w.w_qkv, w.b_qkv) : at::linear(h, w.w_qkv);
    at::Tensor q = qkv.narrow(1, 0, qd).view({n, H, D});
    at::Tensor k = qkv.narrow(1, qd, kvd).view({n, Hkv, D});
    at::Tensor v = qkv.narrow(1, qd + kvd, kvd).view({n, Hkv, D});
    if (spec_.qk_norm) {
      q = rms_norm(q, w.q_norm);
      k = rms_norm(k, w.k_norm);
    }
    q = RotaryEmbedding::apply(q.transpose(0, 1), cos, sin);  // [H, n, D]
    k = RotaryEmbedding::apply(k.transpose(0, 1), cos, sin);  // [Hkv, n, D]
    cache.append(l, k, v.transpose(0, 1));
    if (observer) observer->on_queries(l, q, cache, n);
    at::Tensor attn = cached_attention(q, cache, l, n, scale, observer);  // [H, n, D]
    attn = attn.transpose(0, 1).reshape({n, qd});
    x = x + (w.b_o.defined() ? at::linear(attn, w.w_o, w.b_o) : at::linear(attn, w.w_o));
    x = x + mlp(w, rms_norm(x, w.post_norm));
  }
  cache.advance_position(n);
  at::Tensor last = all_logits ? x : x.narrow(0, n - 1, 1);
  return at::linear(rms_norm(last, weights_.final_norm), weights_.lm_head).to(at::kFloat);
}

at::Tensor DecoderLM::prefill(const at::Tensor& ids, KvCache& cache, const PrefillOptions& options) const {
  at::NoGradGuard no_grad;
  const int64_t T = ids.size(0);
  if (T == 0) throw std::invalid_argument("DecoderLM::prefill: no tokens");
  const int64_t chunk = std::max<int64_t>(1, options.chunk_size);
  KvCache::Snapshot snap = cache.snapshot();
  cache.reserve(T);
  std::vector<at::Tensor> logits;
  at::Tensor last;
  for (int64_t start = 0; start < T; start += chunk) {
    const int64_t n = std::min(chunk, T - start);
    const bool is_last = start + n == T;
    at::Tensor out = forward_chunk(ids.narrow(0, start, n), cache, options.all_logits, options.observer);
    if (options.all_logits) {
      logits.push_back(out);
    } else if (is_last) {
      last = out;
    }
  }
  if (!options.commit) cache.restore(snap);
  return options.all_logits ? at::cat(logits, 0) : last;
}

at::Tensor DecoderLM::decode_step(int64_t token, KvCache& cache) const {
  at::NoGradGuard no_grad;
  at::Tensor ids = at::full({1}, token, at::TensorOptions().dtype(at::kLong));
  return forward_chunk(ids, cache, false, nullptr)[0];
}

std::vector<int64_t> DecoderLM::generate_greedy(const at::Tensor& prompt, KvCache& cache, int64_t max_new_tokens,
                                                const std::vector<int64_t>& stop_ids) const {
  std::vector<int64_t> out;
  if (max_new_tokens <= 0) return out;
  at::Tensor logits = prefill(prompt, cache)[0];
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t next = logits.argmax().item<int64_t>();
    out.push_back(next);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    if (i + 1 < max_new_tokens) logits = decode_step(next, cache);
  }
  return out;
}

std::vector<int64_t> DecoderLM::answer(const at::Tensor& question, KvCache& cache, int64_t max_new_tokens,
                                       const std::vector<int64_t>& stop_ids) const {
  const KvCache::Snapshot before = cache.snapshot();
  std::vector<int64_t> out = generate_greedy(question, cache, max_new_tokens, stop_ids);
  cache.restore(before);
  if (!out.empty() && std::find(stop_ids.begin(), stop_ids.end(), out.back()) != stop_ids.end()) out.pop_back();
  return out;
}

at::Tensor DecoderLM::forward_batch(const at::Tensor& ids, const at::Tensor& key_drop, at::Tensor* attention,
                                    int64_t attention_layer) const {
  if (attention_layer < 0) attention_layer = spec_.num_layers - 1;
  TORCH_CHECK(attention == nullptr || attention_layer < spec_.num_layers, "forward_batch: no layer ", attention_layer);
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t H = spec_.num_heads, Hkv = spec_.num_kv_heads, D = spec_.head_dim, G = spec_.group_size();
  const int64_t qd = spec_.q_dim(), kvd = spec_.kv_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto [cos, sin] = rope_.cos_sin(at::arange(T, at::TensorOptions().dtype(at::kLong).device(options_.device())));
  at::Tensor causal = at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(options_.device())).triu(1);
  const at::Tensor drop_all = key_drop.defined() ? key_drop.to(options_.device()) : at::Tensor();

  at::Tensor x = at::embedding(weights_.embed, ids.to(options_.device()));  // [B, T, hidden]
  for (int64_t l = 0; l < spec_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    at::Tensor h = rms_norm(x, w.input_norm);
    at::Tensor qkv = w.b_qkv.defined() ? at::linear(h, w.w_qkv, w.b_qkv) : at::linear(h, w.w_qkv);
    at::Tensor q = qkv.narrow(2, 0, qd).view({B, T, H, D});
    at::Tensor k = qkv.narrow(2, qd, kvd).view({B, T, Hkv, D});
    at::Tensor v = qkv.narrow(2, qd + kvd, kvd).view({B, T, Hkv, D});
    if (spec_.qk_norm) {
      q = rms_norm(q, w.q_norm);
      k = rms_norm(k, w.k_norm);
    }
    q = RotaryEmbedding::apply(q.transpose(1, 2), cos, sin).view({B, Hkv, G, T, D});
    k = RotaryEmbedding::apply(k.transpose(1, 2), cos, sin).unsqueeze(2);  // [B, Hkv, 1, T, D]
    at::Tensor vv = v.transpose(1, 2).unsqueeze(2);
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).to(at::kFloat) * scale;  // [B, Hkv, G, T, T]
    scores = scores.masked_fill(causal, -std::numeric_limits<float>::infinity());
    if (drop_all.defined()) {
      const at::Tensor drop = drop_all.size(0) == 1 ? drop_all[0] : drop_all[l];  // [B|1, Hkv|1, T|1, T]
      scores = scores.masked_fill(drop.unsqueeze(2), -std::numeric_limits<float>::infinity());
    }
    at::Tensor probs = at::softmax(scores, -1);
    if (attention != nullptr && l == attention_layer) *attention = probs.view({B, H, T, T});
    at::Tensor attn = at::matmul(probs.to(vv.scalar_type()), vv);  // [B, Hkv, G, T, D]
    attn = attn.view({B, H, T, D}).transpose(1, 2).reshape({B, T, qd});
    x = x + (w.b_o.defined() ? at::linear(attn, w.w_o, w.b_o) : at::linear(attn, w.w_o));
    x = x + mlp(w, rms_norm(x, w.post_norm));
  }
  return at::linear(rms_norm(x, weights_.final_norm), weights_.lm_head);
}

}  // namespace proxykv
