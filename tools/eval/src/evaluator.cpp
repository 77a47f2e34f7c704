#include "proxykv/eval/evaluator.h"

#include <map>
#include <tuple>

namespace proxykv::eval {
namespace {

const char* const kRequiredTokens[] = {"<bos>", "<ctx>", "</ctx>", "<q>", "<a>"};

}  // namespace

Result<Evaluator> Evaluator::create(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options) {
  for (const char* token : kRequiredTokens) {
    if (!tokenizer.token_to_id(token)) {
      return invalid_argument(std::string("the tokenizer has no '") + token +
                              "' token, which the task prompt format needs (TASKS.md)");
    }
  }
  for (const auto& method : options.methods) {
    if (method != "full") return unimplemented("eval method '" + method + "' is not available (available: full)");
  }
  if (options.max_answer_tokens < 1) return invalid_argument("max_answer_tokens must be >= 1");
  Evaluator ev(target, tokenizer, std::move(options));
  if (auto eos = tokenizer.token_to_id("<eos>")) ev.stop_ids_.push_back(*eos);
  if (target.spec().eos_token_id && (ev.stop_ids_.empty() || ev.stop_ids_[0] != *target.spec().eos_token_id)) {
    ev.stop_ids_.push_back(*target.spec().eos_token_id);
  }
  return ev;
}

at::Tensor Evaluator::encode(const std::string& text) const {
  std::vector<int32_t> ids = tokenizer_->encode(text);
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  return at::tensor(ids64, at::TensorOptions().dtype(at::kLong));
}

std::pair<KvCache, int64_t> Evaluator::prefill_context(const std::string& context) const {
  at::Tensor ids = encode("<bos> <ctx> " + context + " </ctx>");
  KvCache cache = target_->new_cache();
  PrefillOptions opts;
  opts.chunk_size = options_.chunk_size;
  target_->prefill(ids, cache, opts);
  return {std::move(cache), ids.size(0) - 3};
}

std::string Evaluator::answer(KvCache& cache, const std::string& question) const {
  std::vector<int64_t> out = target_->answer(encode("<q> " + question + " <a>"), cache, options_.max_answer_tokens,
                                             stop_ids_);
  return tokenizer_->decode(std::vector<int32_t>(out.begin(), out.end()), /*skip_special_tokens=*/true);
}

Result<EvalReport> Evaluator::run(const std::vector<tasks::TaskContext>& contexts, const ProgressFn& progress) const {
  // Rows keyed by (method, ratio, task) in first-seen order.
  std::map<std::tuple<std::string, double, std::string>, size_t> index;
  EvalReport report;
  auto row_for = [&](const std::string& method, double ratio, const std::string& task) -> EvalRow& {
    auto key = std::make_tuple(method, ratio, task);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, report.rows.size()).first;
      report.rows.push_back(EvalRow{method, ratio, task});
    }
    return report.rows[it->second];
  };
  const int64_t total = static_cast<int64_t>(contexts.size());
  for (int64_t i = 0; i < total; ++i) {
    const tasks::TaskContext& ctx = contexts[i];
    auto [cache, context_tokens] = prefill_context(ctx.context);
    for (const auto& method : options_.methods) {
      EvalRow& row = row_for(method, 1.0, ctx.task);
      row.contexts += 1;
      row.context_tokens_sum += static_cast<double>(context_tokens);
      for (const auto& q : ctx.queries) {
        row.correct += tasks::string_match_all(answer(cache, q.question), q.answers) ? 1 : 0;
        row.queries += 1;
      }
    }
    if (progress) progress(i + 1, total);
  }
  return report;
}

nlohmann::json EvalReport::to_json() const {
  nlohmann::json results = nlohmann::json::array();
  std::map<std::pair<std::string, double>, std::pair<int64_t, int64_t>> summary;  // correct, queries
  std::vector<std::pair<std::string, double>> order;
  for (const auto& r : rows) {
    results.push_back({{"method", r.method},
                       {"keep_ratio", r.keep_ratio},
                       {"task", r.task},
                       {"accuracy", r.accuracy()},
                       {"queries", r.queries},
                       {"context_tokens_mean", r.contexts ? r.context_tokens_sum / r.contexts : 0.0}});
    auto key = std::make_pair(r.method, r.keep_ratio);
    if (!summary.count(key)) order.push_back(key);
    summary[key].first += r.correct;
    summary[key].second += r.queries;
  }
  nlohmann::json sum = nlohmann::json::array();
  for (const auto& key : order) {
    const auto [correct, queries] = summary[key];
    sum.push_back({{"method", key.first},
                   {"keep_ratio", key.second},
                   {"accuracy", queries ? static_cast<double>(correct) / queries : 0.0}});
  }
  return {{"results", results}, {"summary", sum}};
}

}  // namespace proxykv::eval
