#include "proxykv/eval/evaluator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <tuple>

namespace proxykv::eval {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

const char* const kRequiredTokens[] = {"<bos>", "<ctx>", "</ctx>", "<q>", "<a>", "<repeat>"};

}  // namespace

Result<Evaluator> Evaluator::create(const DecoderLM& target, const Tokenizer& tokenizer, EvalOptions options) {
  for (const char* token : kRequiredTokens) {
    if (!tokenizer.token_to_id(token)) {
      return invalid_argument(std::string("the tokenizer has no '") + token +
                              "' token, which the task prompt format needs (TASKS.md)");
    }
  }
  std::vector<std::string> known = scoring::scorer_names();
  if (options.proxy_methods) {
    for (const auto& n : options.proxy_methods->names()) known.push_back(n);
  }
  for (const auto& method : options.methods) {
    if (std::find(known.begin(), known.end(), method) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return unimplemented("eval method '" + method + "' is not available (available: " + list +
                           "; proxykv, proxy_direct and kvzip_iam need --proxy, --mapper and --iam)");
    }
  }
  for (double r : options.ratios) {
    if (!(r > 0 && r <= 1)) return invalid_argument("keep ratio " + std::to_string(r) + " is outside (0, 1]");
  }
  if (options.max_answer_tokens < 1) return invalid_argument("max_answer_tokens must be >= 1");
  Evaluator ev(target, tokenizer, std::move(options));
  ev.format_ = PromptFormat::for_model(tokenizer, target.spec());
  scoring::apply_prompt_format(ev.format_, ev.scorer_options_);
  ev.scorer_options_.kvzip_chunk = ev.options_.kvzip_chunk;
  ev.scorer_options_.seed = ev.options_.seed;
  ev.scorer_options_.prefill_chunk = ev.options_.chunk_size;
  return ev;
}

at::Tensor Evaluator::to_tensor(const std::vector<int64_t>& ids) const {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong));
}

at::Tensor Evaluator::context_prompt(const std::string& context) const {
  return to_tensor(format_.context_ids(*tokenizer_, context));
}

std::string Evaluator::answer(KvCache& cache, const std::string& question) const {
  std::vector<int64_t> out =
      target_->answer(to_tensor(format_.question_ids(*tokenizer_, question)), cache, options_.max_answer_tokens,
                      format_.stop_ids);
  return tokenizer_->decode(std::vector<int32_t>(out.begin(), out.end()), /*skip_special_tokens=*/true);
}

Result<EvalReport> Evaluator::run(const std::vector<tasks::TaskContext>& contexts, const ProgressFn& progress) const {
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
  const bool want_kvzip_recall =
      std::find(options_.methods.begin(), options_.methods.end(), "kvzip") != options_.methods.end();
  const int64_t total = static_cast<int64_t>(contexts.size());
  for (int64_t i = 0; i < total; ++i) {
    const tasks::TaskContext& ctx = contexts[i];
    const at::Tensor prompt = context_prompt(ctx.context);
    const int64_t T = prompt.size(0);
    const double context_tokens =
        static_cast<double>(T - format_.n_sink - static_cast<int64_t>(format_.context_suffix.size()));

    // One prefill with every scorer that observes it.
    std::vector<std::unique_ptr<scoring::Scorer>> scorers;
    std::vector<double> score_s(options_.methods.size(), 0.0);
    ObserverFanOut fan_out;
    for (size_t m = 0; m < options_.methods.size(); ++m) {
      const std::string& method = options_.methods[m];
      const bool from_proxy = options_.proxy_methods && options_.proxy_methods->provides(method);
      PROXYKV_ASSIGN_OR_RETURN(auto scorer, from_proxy ? options_.proxy_methods->make(method, scorer_options_)
                                                       : scoring::make_scorer(method, scorer_options_));
      if (AttentionObserver* obs = scorer->begin(*target_, T)) fan_out.add(obs, &score_s[m]);
      scorers.push_back(std::move(scorer));
    }
    KvCache cache = target_->new_cache();
    PrefillOptions popts;
    popts.chunk_size = options_.chunk_size;
    popts.observer = fan_out.empty() ? nullptr : &fan_out;
    auto t_prefill = Clock::now();
    target_->prefill(prompt, cache, popts);
    report.prefill_s_sum += seconds(t_prefill);
    report.contexts += 1;

    std::vector<std::string> full_answers;
    for (const auto& q : ctx.queries) full_answers.push_back(answer(cache, q.question));

    // Scores of every method, then every ratio by real eviction of a copy of the cache.
    std::vector<at::Tensor> scores(options_.methods.size());
    for (size_t m = 0; m < options_.methods.size(); ++m) {
      auto t0 = Clock::now();
      PROXYKV_ASSIGN_OR_RETURN(scores[m], scorers[m]->finish(*target_, cache, prompt));
      score_s[m] += seconds(t0);
    }
    // --whole-words: the context positions every selection keeps on top (once per context, not per method x ratio).
    const at::Tensor forced = options_.whole_token_ids.empty()
                                  ? at::Tensor()
                                  : at::isin(prompt, at::tensor(options_.whole_token_ids, at::kLong));
    std::map<double, scoring::KeepSet> kvzip_sets;
    if (want_kvzip_recall) {
      const size_t k = std::find(options_.methods.begin(), options_.methods.end(), "kvzip") - options_.methods.begin();
      for (double rho : options_.ratios) {
        PROXYKV_ASSIGN_OR_RETURN(kvzip_sets[rho], scoring::select_entries(scores[k], rho, options_.level, format_.n_sink, options_.head_floor));
      }
    }
    for (size_t m = 0; m < options_.methods.size(); ++m) {
      const std::string& method = options_.methods[m];
      const bool is_full = method == "full";
      const std::vector<double> ratios = is_full ? std::vector<double>{1.0} : options_.ratios;
      for (double rho : ratios) {
        EvalRow& row = row_for(method, rho, ctx.task);
        row.contexts += 1;
        row.context_tokens_sum += context_tokens;
        row.score_s_sum += score_s[m];
        auto record = [&](size_t q, const std::string& text, bool correct) {
          if (!options_.record_answers) return;
          report.answers.push_back(EvalAnswer{ctx.id, ctx.task, method, rho, ctx.queries[q].question,
                                              ctx.queries[q].answers, text, correct, text == full_answers[q]});
        };
        if (is_full) {
          row.kv_bytes_sum += static_cast<double>(cache.used_bytes());
          for (size_t q = 0; q < ctx.queries.size(); ++q) {
            const bool correct = tasks::string_match_all(full_answers[q], ctx.queries[q].answers);
            row.correct += correct ? 1 : 0;
            row.same_as_full += 1;
            row.queries += 1;
            record(q, full_answers[q], correct);
          }
          continue;
        }
        PROXYKV_ASSIGN_OR_RETURN(scoring::KeepSet keep,
                                 scoring::select_entries(scores[m], rho, options_.level, format_.n_sink, options_.head_floor));
        for (int64_t l : options_.whole_layers) {
          for (at::Tensor& kept : keep.keep[static_cast<size_t>(l)]) {
            keep.kept += T - kept.numel();
            kept = at::arange(T, at::kLong);
          }
        }
        if (forced.defined()) {
          for (auto& layer : keep.keep) {
            for (at::Tensor& kept : layer) {
              at::Tensor mask = forced.clone();
              mask.index_fill_(0, kept, true);
              keep.kept += mask.sum().item<int64_t>() - kept.numel();
              kept = mask.nonzero().view({-1});
            }
          }
        }
        if (want_kvzip_recall) {
          row.recall_vs_kvzip_sum += scoring::keep_recall(keep, kvzip_sets.at(rho), T);
          row.recall_count += 1;
        }
        KvCache compressed = cache.clone();
        PROXYKV_RETURN_IF_ERROR(compressed.compact(keep.keep));
        row.kv_bytes_sum += static_cast<double>(compressed.used_bytes());
        for (size_t q = 0; q < ctx.queries.size(); ++q) {
          const std::string text = answer(compressed, ctx.queries[q].question);
          const bool correct = tasks::string_match_all(text, ctx.queries[q].answers);
          row.correct += correct ? 1 : 0;
          row.same_as_full += text == full_answers[q] ? 1 : 0;
          row.queries += 1;
          record(q, text, correct);
        }
      }
    }
    if (progress) progress(i + 1, total);
  }
  return report;
}

nlohmann::json EvalAnswer::to_json() const {
  return {{"id", context_id}, {"task", task},     {"method", method},   {"keep_ratio", keep_ratio},
          {"question", question}, {"answers", expected}, {"output", output}, {"correct", correct},
          {"same_as_full", same_as_full}};
}

nlohmann::json EvalReport::to_json() const {
  nlohmann::json results = nlohmann::json::array();
  struct Sum {
    int64_t correct = 0, queries = 0, same = 0, contexts = 0;
    double kv_bytes = 0, score_s = 0;
  };
  std::map<std::pair<std::string, double>, Sum> summary;
  std::vector<std::pair<std::string, double>> order;
  for (const auto& r : rows) {
    const double n = std::max<int64_t>(r.contexts, 1);
    nlohmann::json row = {{"method", r.method},
                          {"keep_ratio", r.keep_ratio},
                          {"task", r.task},
                          {"accuracy", r.accuracy()},
                          {"queries", r.queries},
                          {"context_tokens_mean", r.context_tokens_sum / n},
                          {"kv_bytes", r.kv_bytes_sum / n},
                          {"score_s", r.score_s_sum / n},
                          {"fidelity", r.queries ? static_cast<double>(r.same_as_full) / r.queries : 0.0}};
    if (r.recall_count) row["recall_vs_kvzip"] = r.recall_vs_kvzip_sum / r.recall_count;
    results.push_back(row);
    auto key = std::make_pair(r.method, r.keep_ratio);
    if (!summary.count(key)) order.push_back(key);
    Sum& s = summary[key];
    s.correct += r.correct;
    s.queries += r.queries;
    s.same += r.same_as_full;
    s.contexts += r.contexts;
    s.kv_bytes += r.kv_bytes_sum;
    s.score_s += r.score_s_sum;
  }
  nlohmann::json sum = nlohmann::json::array();
  for (const auto& key : order) {
    const Sum& s = summary[key];
    const double q = std::max<int64_t>(s.queries, 1), c = std::max<int64_t>(s.contexts, 1);
    sum.push_back({{"method", key.first},
                   {"keep_ratio", key.second},
                   {"accuracy", s.correct / q},
                   {"queries", s.queries},
                   {"fidelity", s.same / q},
                   {"kv_bytes", s.kv_bytes / c},
                   {"score_s", s.score_s / c}});
  }
  return {{"results", results}, {"summary", sum}, {"prefill_s", contexts ? prefill_s_sum / contexts : 0.0}};
}

Status plot_accuracy(const nlohmann::json& report, const std::string& png_path, const std::string& title) {
  namespace fs = std::filesystem;
  const fs::path data = fs::path(png_path).replace_extension(".plot.dat");
  std::map<std::string, std::vector<std::pair<double, double>>> lines;
  double full = -1;
  for (const auto& row : report.at("summary")) {
    const std::string method = row.at("method").get<std::string>();
    if (method == "full") {
      full = row.at("accuracy").get<double>();
    } else {
      lines[method].emplace_back(row.at("keep_ratio").get<double>(), row.at("accuracy").get<double>());
    }
  }
  std::ofstream out(data);
  for (auto& [method, points] : lines) {
    std::sort(points.begin(), points.end());
    out << "# " << method << "\n";
    for (const auto& [x, y] : points) out << x << " " << y << "\n";
    out << "\n\n";
  }
  out.close();
  if (!out) return invalid_argument(data.string() + ": cannot write plot data");
  std::string script = "set terminal pngcairo size 900,600 font ',11'\nset output '" + png_path + "'\nset title '" +
                       title +
                       "'\nset xlabel 'keep ratio (fraction of KV kept)'\n"
                       "set ylabel 'accuracy'\nset yrange [0:1.05]\nset xrange [0:1]\nset grid\nset key bottom right\n";
  std::string plot = "plot ";
  int i = 0;
  for (const auto& entry : lines) {
    plot += (i ? ", " : "") + std::string("'") + data.string() + "' index " + std::to_string(i) +
            " with linespoints lw 2 title '" + entry.first + "'";
    ++i;
  }
  if (full >= 0) plot += std::string(i ? ", " : "") + std::to_string(full) + " with lines dt 2 lw 2 title 'full'";
  if (plot == "plot ") return invalid_argument("nothing to plot");
  script += plot + "\n";
  FILE* gp = ::popen("gnuplot 2>&1", "w");
  if (!gp) return unimplemented("gnuplot could not be started (install gnuplot-nox)");
  std::fputs(script.c_str(), gp);
  const int rc = ::pclose(gp);
  if (rc != 0) return unimplemented("gnuplot failed (exit " + std::to_string(rc) + "); is gnuplot-nox installed?");
  return Status::ok();
}

}  // namespace proxykv::eval
