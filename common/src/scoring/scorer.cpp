// make_scorer: the method registry, option validation, and the checks every scorer's finish() shares.
#include "proxykv/scoring/scorer.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "proxykv/scoring/scorers.h"

namespace proxykv::scoring {
namespace {

struct Method {
  const char* name;
  std::unique_ptr<Scorer> (*make)(const ScorerOptions&);
};

// The order of scorer_names().
constexpr Method kMethods[] = {
    {"full", make_full_scorer},           {"kvzip", make_kvzip_scorer},   {"snapkv", make_snapkv_scorer},
    {"streaming", make_streaming_scorer}, {"h2o", make_h2o_scorer},       {"laprox", make_laprox_scorer},
    {"knorm", make_knorm_scorer},         {"random", make_random_scorer},
};

std::string joined_names() {
  std::string out;
  for (const std::string& n : scorer_names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string str(int64_t v) {
  return std::to_string(v);
}

}  // namespace

const std::vector<std::string>& scorer_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Method& m : kMethods) v.emplace_back(m.name);
    return v;
  }();
  return names;
}

void apply_prompt_format(const PromptFormat& format, ScorerOptions& options) {
  options.n_sink = format.n_sink;
  options.repeat_prompt_first = format.repeat_prompt;
  options.repeat_prompt_rest = format.repeat_prompt;
}

Status validate_scorer_options(const ScorerOptions& o) {
  if (o.n_sink < 0) return invalid_argument("ScorerOptions.n_sink must be >= 0, got " + str(o.n_sink));
  if (o.kvzip_chunk < 1) return invalid_argument("ScorerOptions.kvzip_chunk must be >= 1, got " + str(o.kvzip_chunk));
  if (o.repeat_overlap < 0) {
    return invalid_argument("ScorerOptions.repeat_overlap must be >= 0, got " + str(o.repeat_overlap));
  }
  if (o.window < 1) return invalid_argument("ScorerOptions.window must be >= 1, got " + str(o.window));
  if (o.pool_kernel < 1 || o.pool_kernel % 2 == 0) {
    // An even kernel with padding kernel/2 would change the length (SnapKV uses 5 or 7).
    return invalid_argument("ScorerOptions.pool_kernel must be odd and >= 1, got " + str(o.pool_kernel));
  }
  if (o.pool != "max" && o.pool != "avg") {
    return invalid_argument("ScorerOptions.pool '" + o.pool + "' is not one of max, avg");
  }
  if (o.prefill_chunk < 1) {
    return invalid_argument("ScorerOptions.prefill_chunk must be >= 1, got " + str(o.prefill_chunk));
  }
  return Status::ok();
}

Result<std::unique_ptr<Scorer>> make_scorer(const std::string& method, const ScorerOptions& options) {
  for (const Method& m : kMethods) {
    if (method != m.name) continue;
    PROXYKV_RETURN_IF_ERROR(validate_scorer_options(options));
    return m.make(options);
  }
  return invalid_argument("scoring method '" + method + "' is not one of " + joined_names());
}

Result<at::Tensor> ScorerBase::finish(const DecoderLM& model, KvCache& cache, const at::Tensor& context_ids) {
  const ModelSpec& spec = model.spec();
  if (!context_ids.defined() || context_ids.dim() != 1 || context_ids.numel() == 0 ||
      !at::isIntegralType(context_ids.scalar_type(), /*includeBool=*/false)) {
    return invalid_argument(name_ + ": context_ids must be a non-empty 1-D integer tensor");
  }
  const int64_t T = context_ids.size(0);
  if (cache.num_layers() != spec.num_layers || cache.num_kv_heads() != spec.num_kv_heads ||
      cache.head_dim() != spec.head_dim) {
    return invalid_argument(name_ + ": the cache does not belong to this model (layers, KV heads or head_dim)");
  }
  if (!cache.is_uniform()) {
    return failed_precondition(name_ + ": the cache is ragged (evicted); scoring needs every head at the prompt's " +
                               str(T) + " entries");
  }
  if (cache.length(0, 0) != T) {
    return failed_precondition(name_ + ": the cache holds " + str(cache.length(0, 0)) + " entries per head, the " +
                               "prompt has " + str(T) + " tokens");
  }
  try {
    at::Tensor ids = context_ids.to(at::kCPU, at::kLong).contiguous();
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor raw, score(model, cache, ids));
    const std::vector<int64_t> expected{spec.num_layers, spec.num_kv_heads, T};
    if (raw.sizes() != at::IntArrayRef(expected)) {
      return internal_error(name_ + ": scores have the wrong shape");
    }
    at::Tensor scores = raw.to(at::kCPU, at::kFloat).contiguous();
    if (scores.data_ptr() == raw.data_ptr()) scores = scores.clone();  // never hand out a view of scorer state
    const int64_t sinks = std::min(options_.n_sink, T);
    if (sinks > 0) scores.narrow(2, 0, sinks).fill_(std::numeric_limits<float>::infinity());
    return scores;
  } catch (const std::exception& e) {
    return internal_error(name_ + ": scoring failed: " + e.what());
  }
}

at::Tensor pool_along_tokens(const at::Tensor& scores, int64_t kernel, const std::string& pool) {
  const int64_t n = scores.size(-1);
  if (kernel <= 1 || n == 0) return scores.clone();
  at::Tensor x = scores.reshape({-1, 1, n});
  at::Tensor pooled = pool == "avg" ? at::avg_pool1d(x, {kernel}, {1}, {kernel / 2}, /*ceil_mode=*/false,
                                                     /*count_include_pad=*/true)
                                    : at::max_pool1d(x, {kernel}, {1}, {kernel / 2});
  return pooled.reshape(scores.sizes());
}

}  // namespace proxykv::scoring
