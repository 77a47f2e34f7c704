#include "proxykv/target/target_engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <utility>

#include <ATen/ATen.h>

#include "proxykv/core/logging.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/prompt_format.h"
#include "proxykv/model/threads.h"
#include "proxykv/scoring/scorer.h"
#include "proxykv/scoring/scorers.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/target/compressed_context.h"
#include "proxykv/target/mask_provider.h"

namespace proxykv::target {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

constexpr const char* kProxyMethod = "proxykv";
constexpr const char* kFullMethod = "full";

std::vector<int64_t> encode64(const Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> ids = tokenizer.encode(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

// FNV-1a 64 over (layer, head, kept count, indices) of every head, in order; see CompressionStats::mask_digest.
std::string keep_digest(const scoring::KeepSet& keep) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](int64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  for (size_t l = 0; l < keep.keep.size(); ++l) {
    for (size_t hd = 0; hd < keep.keep[l].size(); ++hd) {
      at::Tensor idx = keep.keep[l][hd].to(at::kLong).contiguous();
      mix(static_cast<int64_t>(l));
      mix(static_cast<int64_t>(hd));
      mix(idx.numel());
      const int64_t* d = idx.data_ptr<int64_t>();
      for (int64_t i = 0; i < idx.numel(); ++i) mix(d[i]);
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

at::Tensor to_tensor(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong));
}

// Streams decoded text: each token's piece is what it adds to the decoded text so far. Text that ends in an
// incomplete UTF-8 character (U+FFFD at the end) is held back until a later token completes it.
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id) {
    ids_.push_back(id);
    return advance(/*final=*/false);
  }
  std::string finish() { return advance(/*final=*/true); }
  const std::vector<int32_t>& ids() const { return ids_; }
  const std::string& text() const { return emitted_; }

 private:
  std::string advance(bool final) {
    std::string full = tokenizer_.decode(ids_, /*skip_special_tokens=*/true);
    static const std::string kReplacement = "\xEF\xBF\xBD";
    if (!final && full.size() >= kReplacement.size() &&
        full.compare(full.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0) {
      return {};
    }
    if (full.compare(0, emitted_.size(), emitted_) != 0) {
      // The decoder rewrote earlier text (rare: a strip decoder); what was sent stays, the rest is appended.
      if (!final) return {};
      std::string piece = full.size() > emitted_.size() ? full.substr(emitted_.size()) : std::string();
      emitted_ += piece;
      return piece;
    }
    std::string piece = full.substr(emitted_.size());
    emitted_ = std::move(full);
    return piece;
  }

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  std::string emitted_;
};

// The scorer's observer, and the fallback's when "proxykv" might need one, attached to the one prefill.
struct ScoringPlan {
  std::string method;                       // what is scored locally: the requested method, or the fallback for proxykv
  std::unique_ptr<scoring::Scorer> scorer;  // null for full
  std::unique_ptr<PendingMask> pending;     // proxykv with a provider that took the request
  std::string fallback_reason;
};

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
  }
  return "abort";
}

const CompressionStats& context_stats(const CompressedContext& context) {
  return context.stats;
}

struct TargetEngine::Impl {
  std::unique_ptr<DecoderLM> model;
  Tokenizer tokenizer;
  EngineOptions options;
  PromptFormat format;
  scoring::ScorerOptions scorer_options;
  std::vector<std::string> methods;
  std::shared_ptr<spdlog::logger> log = get_logger("target");

  std::mutex model_mutex;  // every use of the model and of a context's cache
  std::mutex provider_mutex;
  std::shared_ptr<MaskProvider> provider;

  Impl(std::unique_ptr<DecoderLM> m, Tokenizer t, EngineOptions o)
      : model(std::move(m)), tokenizer(std::move(t)), options(std::move(o)) {}

  std::shared_ptr<MaskProvider> mask_provider() {
    std::lock_guard<std::mutex> lock(provider_mutex);
    return provider;
  }

  std::vector<int64_t> context_ids(const std::string& context) const { return format.context_ids(tokenizer, context); }
  std::vector<int64_t> question_ids(const std::string& question) const {
    return format.question_ids(tokenizer, question);
  }

  Status check_length(int64_t tokens, const char* what) const {
    if (tokens > options.max_context_tokens) {
      return out_of_range(std::string(what) + " has " + std::to_string(tokens) + " tokens, more than the limit of " +
                          std::to_string(options.max_context_tokens) + " (max_context_tokens)");
    }
    return Status::ok();
  }

  Status validate(const CompressionRequest& request) const {
    if (std::find(methods.begin(), methods.end(), request.method) == methods.end()) {
      std::string list;
      for (const auto& m : methods) list += (list.empty() ? "" : ", ") + m;
      return invalid_argument("unknown compression method '" + request.method + "' (available: " + list + ")");
    }
    if (!(request.keep_ratio > 0.0 && request.keep_ratio <= 1.0)) {
      return invalid_argument("keep_ratio must lie in (0, 1], got " + std::to_string(request.keep_ratio));
    }
    auto level = scoring::parse_selection_level(request.level);
    if (!level.is_ok()) return level.status();
    return scoring::check_head_floor(request.head_floor, *level);
  }

  // Chooses what scores the context and starts the remote mask request; runs before the prefill.
  Result<ScoringPlan> plan(const CompressionRequest& request, const at::Tensor& ids, scoring::SelectionLevel level) {
    ScoringPlan p;
    p.method = request.method;
    if (request.method == kProxyMethod) {
      p.method = options.fallback_method;
      if (auto provider = mask_provider()) {
        MaskRequest mr;
        mr.model_name = options.model_name;
        mr.context_ids = ids;
        mr.num_layers = model->spec().num_layers;
        mr.num_kv_heads = model->spec().num_kv_heads;
        mr.keep_ratio = request.keep_ratio;
        mr.level = level;
        mr.head_floor = request.head_floor;
        mr.n_sink = format.n_sink;
        mr.deadline = Clock::now() + std::chrono::milliseconds(options.mask_deadline_ms);
        p.pending = provider->request(mr);
      }
      if (!p.pending) p.fallback_reason = kFallbackProxyUnavailable;
    }
    // The local scorer observes the prefill even when a mask is pending, so a late or bad mask costs no second
    // prefill.
    if (p.method != kFullMethod) {
      PROXYKV_ASSIGN_OR_RETURN(p.scorer, scoring::make_scorer(p.method, scorer_options));
    }
    return p;
  }

  // A remote keep set must fit this cache exactly, or it is not used.
  std::string check_mask(const scoring::KeepSet& keep, int64_t T) const {
    const int64_t L = model->spec().num_layers, H = model->spec().num_kv_heads;
    if (static_cast<int64_t>(keep.keep.size()) != L) return "mask has " + std::to_string(keep.keep.size()) + " layers";
    for (const auto& layer : keep.keep) {
      if (static_cast<int64_t>(layer.size()) != H) return "mask has a layer with the wrong number of KV heads";
      for (const auto& idx : layer) {
        if (!idx.defined() || idx.dim() != 1 || idx.scalar_type() != at::kLong) return "mask indices are not int64 [n]";
        if (idx.numel() == 0) continue;
        if (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= T) return "mask index outside the context";
        if (idx.numel() > 1 && !(idx.slice(0, 1) > idx.slice(0, 0, -1)).all().item<bool>()) {
          return "mask indices are not ascending and unique";
        }
      }
    }
    return {};
  }

  // Prefills `ids` into a fresh cache and compresses it. `lock` holds model_mutex; it is released while a
  // proxykv request waits for its mask after the prefill (the new cache is this request's alone), so another
  // request's prefill can use the target meanwhile, and taken again for scoring and eviction.
  Result<std::shared_ptr<CompressedContext>> compress_ids(at::Tensor ids, const CompressionRequest& request,
                                                          Clock::time_point started,
                                                          std::unique_lock<std::mutex>& lock) {
    PROXYKV_RETURN_IF_ERROR(validate(request));
    PROXYKV_ASSIGN_OR_RETURN(scoring::SelectionLevel level, scoring::parse_selection_level(request.level));
    const int64_t T = ids.size(0);
    auto ctx = std::make_shared<CompressedContext>(CompressedContext{model->new_cache(), ids, CompressionStats{}});
    CompressionStats& st = ctx->stats;
    st.context_tokens = T;
    st.keep_ratio = request.keep_ratio;
    st.requested_method = request.method;
    st.level = request.level;
    st.head_floor = request.head_floor;
    st.tokenize_s = seconds_since(started);
    if (T == 0) {
      st.method = request.method == kProxyMethod ? options.fallback_method : request.method;
      return ctx;
    }

    PROXYKV_ASSIGN_OR_RETURN(ScoringPlan p, plan(request, ids, level));
    st.method = p.method;
    st.fallback_reason = p.fallback_reason;
    PrefillOptions popts;
    popts.chunk_size = options.prefill_chunk;
    popts.observer = p.scorer ? p.scorer->begin(*model, T) : nullptr;
    auto t0 = Clock::now();
    model->prefill(ids, ctx->cache, popts);
    st.prefill_s = seconds_since(t0);
    st.kv_bytes_full = ctx->cache.used_bytes();
    st.total_entries = ctx->cache.total_entries();

    std::optional<scoring::KeepSet> keep;
    if (p.pending) {
      auto tw = Clock::now();
      lock.unlock();
      MaskOutcome outcome = p.pending->wait();
      lock.lock();
      st.mask_wait_s = seconds_since(tw);
      if (outcome.ok) {
        std::string bad = check_mask(outcome.keep, T);
        if (bad.empty()) {
          keep = std::move(outcome.keep);
          st.method = kProxyMethod;
        } else {
          st.fallback_reason = kFallbackInvalidMask;
          log->warn("proxykv mask refused ({}); falling back to {}", bad, p.method);
        }
      } else {
        st.fallback_reason = outcome.fallback_reason.empty() ? "proxy_error" : outcome.fallback_reason;
        log->warn("proxykv mask failed ({}: {}); falling back to {}", st.fallback_reason, outcome.detail, p.method);
      }
    }
    if (!keep && p.scorer) {
      auto ts = Clock::now();
      PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, p.scorer->finish(*model, ctx->cache, ids));
      PROXYKV_ASSIGN_OR_RETURN(
          keep, scoring::select_entries(scores, request.keep_ratio, level, format.n_sink, request.head_floor));
      st.score_s = seconds_since(ts);
    }
    if (keep) {
      auto tc = Clock::now();
      PROXYKV_RETURN_IF_ERROR(ctx->cache.compact(keep->keep));
      st.compact_s = seconds_since(tc);
      st.mask_digest = keep_digest(*keep);
    }
    st.kv_bytes = ctx->cache.used_bytes();
    st.kept_entries = ctx->cache.total_entries();
    st.total_s = seconds_since(started);
    return ctx;
  }

  // Feeds `prompt` after what `cache` holds, decodes greedily, then restores the cache; holds model_mutex.
  GenerationResult generate(KvCache& cache, const std::vector<int64_t>& prompt, const GenerationOptions& gen,
                            const TokenCallback& on_token, Clock::time_point started) {
    GenerationResult r;
    r.prompt_tokens = static_cast<int64_t>(prompt.size());
    const KvCache::Snapshot before = cache.snapshot();
    struct Restore {
      KvCache& cache;
      const KvCache::Snapshot& snap;
      ~Restore() { cache.restore(snap); }
    } restore{cache, before};
    TextStreamer streamer(tokenizer);
    PrefillOptions popts;
    popts.chunk_size = options.prefill_chunk;
    at::Tensor logits = model->prefill(to_tensor(prompt), cache, popts)[0];
    r.finish_reason = FinishReason::kLength;
    for (int64_t i = 0; i < gen.max_tokens; ++i) {
      const int64_t next = logits.argmax().item<int64_t>();
      if (i == 0) r.time_to_first_token_s = seconds_since(started);
      if (std::find(format.stop_ids.begin(), format.stop_ids.end(), next) != format.stop_ids.end()) {
        r.finish_reason = FinishReason::kStop;
        break;
      }
      TokenEvent ev{static_cast<int32_t>(next), streamer.push(static_cast<int32_t>(next))};
      if (on_token && !on_token(ev)) {
        r.finish_reason = FinishReason::kAbort;
        break;
      }
      if (i + 1 < gen.max_tokens) logits = model->decode_step(next, cache);
    }
    std::string rest = streamer.finish();
    if (!rest.empty() && on_token && r.finish_reason != FinishReason::kAbort) {
      // Held-back text (an incomplete character at the end) goes out with no token of its own.
      on_token(TokenEvent{-1, rest});
    }
    r.token_ids = streamer.ids();
    r.text = streamer.text();
    r.completion_tokens = static_cast<int64_t>(r.token_ids.size());
    r.total_s = seconds_since(started);
    return r;
  }

  Status check_generation(const GenerationOptions& gen) const {
    if (gen.max_tokens < 1 || gen.max_tokens > options.max_new_tokens) {
      return out_of_range("max_tokens must lie in [1, " + std::to_string(options.max_new_tokens) + "], got " +
                          std::to_string(gen.max_tokens));
    }
    return Status::ok();
  }
};

TargetEngine::TargetEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TargetEngine::~TargetEngine() = default;

Result<std::unique_ptr<TargetEngine>> TargetEngine::load(const EngineOptions& options) {
  namespace fs = std::filesystem;
  const fs::path dir(options.model_dir);
  const fs::path tokenizer_path = dir / "tokenizer.json";
  if (!fs::exists(tokenizer_path)) {
    return not_found(tokenizer_path.string() + ": no tokenizer.json in the model directory");
  }
  PROXYKV_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::from_file(tokenizer_path.string()));
  LoadOptions lo;
  lo.device = options.device;
  lo.dtype = options.dtype;
  set_compute_threads(options.torch_threads);  // LibTorch's pool and OpenBLAS's (threads.h); 0 leaves both
  PROXYKV_ASSIGN_OR_RETURN(auto model, DecoderLM::load(options.model_dir, lo));
  EngineOptions o = options;
  if (o.model_name.empty()) {
    fs::path p = dir.has_filename() ? dir : dir.parent_path();
    o.model_name = p.filename().string();
  }
  return create(std::move(model), std::move(tokenizer), std::move(o));
}

Result<std::unique_ptr<TargetEngine>> TargetEngine::create(std::unique_ptr<DecoderLM> model, Tokenizer tokenizer,
                                                           EngineOptions options) {
  if (!model) return invalid_argument("no model");
  if (options.model_name.empty()) options.model_name = "target";
  if (options.max_context_tokens < 1) return invalid_argument("max_context_tokens must be >= 1");
  if (options.max_new_tokens < 1) return invalid_argument("max_new_tokens must be >= 1");
  if (options.prefill_chunk < 1) return invalid_argument("prefill_chunk must be >= 1");
  if (options.mask_deadline_ms < 1) return invalid_argument("mask_deadline_ms must be >= 1");
  if (tokenizer.vocab_size() > model->spec().vocab_size) {
    return invalid_argument("the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                            " tokens, more than the model's vocab_size " + std::to_string(model->spec().vocab_size));
  }
  const std::vector<std::string>& local = scoring::scorer_names();
  if (options.fallback_method == kProxyMethod ||
      std::find(local.begin(), local.end(), options.fallback_method) == local.end()) {
    std::string list;
    for (const auto& m : local) list += (list.empty() ? "" : ", ") + m;
    return invalid_argument("fallback_method '" + options.fallback_method + "' is not a local method (" + list + ")");
  }
  auto impl = std::make_unique<Impl>(std::move(model), std::move(tokenizer), std::move(options));
  impl->format = PromptFormat::for_model(impl->tokenizer, impl->model->spec());
  impl->methods = local;
  impl->methods.push_back(kProxyMethod);
  scoring::ScorerOptions& so = impl->scorer_options;
  scoring::apply_prompt_format(impl->format, so);
  so.kvzip_chunk = impl->options.kvzip_chunk;
  so.seed = impl->options.seed;
  so.prefill_chunk = impl->options.prefill_chunk;
  PROXYKV_RETURN_IF_ERROR(scoring::validate_scorer_options(so));
  if (impl->format.stop_ids.empty()) {
    impl->log->warn("model {} has no <eos> token or eos_token_id: answers end at max_tokens", impl->options.model_name);
  }
  return std::unique_ptr<TargetEngine>(new TargetEngine(std::move(impl)));
}

const std::string& TargetEngine::model_name() const {
  return impl_->options.model_name;
}
const EngineOptions& TargetEngine::options() const {
  return impl_->options;
}
const Tokenizer& TargetEngine::tokenizer() const {
  return impl_->tokenizer;
}
const DecoderLM& TargetEngine::model() const {
  return *impl_->model;
}
const std::vector<std::string>& TargetEngine::methods() const {
  return impl_->methods;
}
Status TargetEngine::validate(const CompressionRequest& request) const {
  return impl_->validate(request);
}

void TargetEngine::set_mask_provider(std::shared_ptr<MaskProvider> provider) {
  std::lock_guard<std::mutex> lock(impl_->provider_mutex);
  impl_->provider = std::move(provider);
}

Result<int64_t> TargetEngine::context_tokens(const std::string& context) const {
  try {
    const int64_t n = static_cast<int64_t>(impl_->context_ids(context).size());
    PROXYKV_RETURN_IF_ERROR(impl_->check_length(n, "the context"));
    return n;
  } catch (const std::exception& e) {
    return internal_error(std::string("tokenizing the context failed: ") + e.what());
  }
}

Result<int64_t> TargetEngine::prompt_tokens(const std::string& prompt) const {
  try {
    const int64_t n = static_cast<int64_t>(impl_->tokenizer.encode(prompt).size());
    if (n == 0) return invalid_argument("the prompt has no tokens");
    PROXYKV_RETURN_IF_ERROR(impl_->check_length(n, "the prompt"));
    return n;
  } catch (const std::exception& e) {
    return internal_error(std::string("tokenizing the prompt failed: ") + e.what());
  }
}

Result<std::shared_ptr<CompressedContext>> TargetEngine::compress_context(const std::string& context,
                                                                          const CompressionRequest& request) {
  try {
    const auto started = Clock::now();
    PROXYKV_RETURN_IF_ERROR(impl_->validate(request));
    std::vector<int64_t> ids = impl_->context_ids(context);
    PROXYKV_RETURN_IF_ERROR(impl_->check_length(static_cast<int64_t>(ids.size()), "the context"));
    std::unique_lock<std::mutex> lock(impl_->model_mutex);
    return impl_->compress_ids(to_tensor(ids), request, started, lock);
  } catch (const std::exception& e) {
    return internal_error(std::string("compressing the context failed: ") + e.what());
  }
}

Result<GenerationResult> TargetEngine::answer(CompressedContext& context, const std::string& question,
                                              const GenerationOptions& options, const TokenCallback& on_token) {
  try {
    const auto started = Clock::now();
    PROXYKV_RETURN_IF_ERROR(impl_->check_generation(options));
    std::vector<int64_t> q = impl_->question_ids(question);
    const int64_t total = context.stats.context_tokens + static_cast<int64_t>(q.size()) + options.max_tokens;
    PROXYKV_RETURN_IF_ERROR(impl_->check_length(total, "the context with the question and max_tokens"));
    std::lock_guard<std::mutex> lock(impl_->model_mutex);
    return impl_->generate(context.cache, q, options, on_token, started);
  } catch (const std::exception& e) {
    return internal_error(std::string("answering failed: ") + e.what());
  }
}

Result<GenerationResult> TargetEngine::complete(const std::string& prompt,
                                                const std::optional<CompressionRequest>& compression,
                                                const GenerationOptions& options, const TokenCallback& on_token,
                                                CompressionStats* stats) {
  try {
    const auto started = Clock::now();
    PROXYKV_RETURN_IF_ERROR(impl_->check_generation(options));
    const CompressionRequest request = compression.value_or(CompressionRequest{});
    PROXYKV_RETURN_IF_ERROR(impl_->validate(request));
    std::vector<int64_t> ids = encode64(impl_->tokenizer, prompt);
    if (ids.empty()) return invalid_argument("the prompt has no tokens");
    PROXYKV_RETURN_IF_ERROR(impl_->check_length(static_cast<int64_t>(ids.size()), "the prompt"));
    // Everything but the last token is the compressed "context"; the last token starts the decoding.
    std::vector<int64_t> last(ids.end() - 1, ids.end());
    ids.pop_back();
    std::unique_lock<std::mutex> lock(impl_->model_mutex);
    PROXYKV_ASSIGN_OR_RETURN(auto ctx, impl_->compress_ids(to_tensor(ids), request, started, lock));
    if (stats) *stats = ctx->stats;
    GenerationResult r = impl_->generate(ctx->cache, last, options, on_token, started);
    r.prompt_tokens = static_cast<int64_t>(ids.size()) + 1;
    return r;
  } catch (const std::exception& e) {
    return internal_error(std::string("completion failed: ") + e.what());
  }
}

}  // namespace proxykv::target
