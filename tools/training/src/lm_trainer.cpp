#include "proxykv/training/lm_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <optional>
#include <ostream>
#include <sstream>

#include <ATen/Parallel.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/types.h>  // clip_grad.h uses torch::Tensor without including it

#include <torch/nn/utils/clip_grad.h>

#include "proxykv/model/prompt_format.h"
#include "proxykv/scoring/scorer.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"
#include "proxykv/model/threads.h"

namespace proxykv::training {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h";
  out << std::setw(s >= 3600 ? 2 : 1) << std::setfill('0') << (s % 3600) / 60 << "m" << std::setw(2) << s % 60 << "s";
  return out.str();
}

// The curriculum's phase lengths as run: a gated phase (until_copy_loss) may end before its `steps`; the
// lengths of gated phases that ended are kept in the checkpoint so that a resumed run sees the same schedule.
struct Schedule {
  std::vector<int64_t> lengths;

  explicit Schedule(const TrainLmConfig& c) {
    for (const auto& p : c.phases) lengths.push_back(p.steps);
  }
  int64_t total() const {
    int64_t n = 0;
    for (int64_t l : lengths) n += l;
    return n;
  }
  int64_t start_of(size_t phase) const {
    int64_t n = 0;
    for (size_t i = 0; i < phase; ++i) n += lengths[i];
    return n;
  }
  size_t phase_at(int64_t step) const {
    int64_t end = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      end += lengths[i];
      if (step < end) return i;
    }
    return lengths.size() - 1;
  }
};

// Linear warm-up, then cosine decay to min_lr_ratio over the schedule as run; a phase with its own `lr` holds that
// rate after a warm-up over its first min(50, steps) steps.
double lr_at(const TrainLmConfig& c, const Schedule& schedule, int64_t step) {
  const size_t phase = schedule.phase_at(step);
  if (c.phases[phase].lr > 0) {
    const int64_t warmup = std::clamp<int64_t>(schedule.lengths[phase], 1, 50);
    const int64_t into = step - schedule.start_of(phase);
    return c.phases[phase].lr * static_cast<double>(std::min(into + 1, warmup)) / static_cast<double>(warmup);
  }
  const int64_t total = std::max<int64_t>(1, schedule.total());
  if (step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  const double progress = static_cast<double>(step - c.warmup_steps) / std::max<int64_t>(1, total - c.warmup_steps);
  const double cosine = 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress)));
  return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * cosine);
}

}  // namespace

std::vector<std::array<int64_t, 3>> also_right_in_targets(const std::vector<TrainingSequence>& rows) {
  std::vector<std::array<int64_t, 3>> out;
  for (size_t b = 0; b < rows.size(); ++b) {
    // targets[:, j] is tokens[:, j + 1]: a row's position i is the targets' i - 1 (position 0 has no loss).
    for (const auto& [i, token] : rows[b].also_right) {
      if (i > 0) out.push_back({static_cast<int64_t>(b), static_cast<int64_t>(i) - 1, static_cast<int64_t>(token)});
    }
  }
  return out;
}

namespace {

// (a, b, c) triples as an [N, 3] long tensor on `device`, for index_put_ / index with its three columns.
at::Tensor triples_tensor(const std::vector<std::array<int64_t, 3>>& triples, const at::Device& device) {
  const auto n = static_cast<int64_t>(triples.size());
  at::Tensor index = at::empty({n, 3}, at::kLong);
  auto ix = index.accessor<int64_t, 2>();
  for (int64_t k = 0; k < n; ++k) {
    for (int c = 0; c < 3; ++c) ix[k][c] = triples[k][c];
  }
  return index.to(device);
}

}  // namespace

at::Tensor answer_nll(const at::Tensor& logp, const at::Tensor& targets,
                      const std::vector<std::array<int64_t, 3>>& also_right) {
  if (also_right.empty()) return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  // -log of the set's probability: logsumexp over the allowed tokens of log p (one token: its own log p exactly).
  at::Tensor allowed = at::zeros(logp.sizes(), logp.options().dtype(at::kBool));
  allowed.scatter_(-1, targets.unsqueeze(-1), true);
  const auto n = static_cast<int64_t>(also_right.size());
  const at::Tensor index = triples_tensor(also_right, logp.device());
  allowed.index_put_({index.select(1, 0), index.select(1, 1), index.select(1, 2)},
                     at::ones({n}, allowed.options()));
  return -logp.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity()).logsumexp(-1);
}

namespace {

// A member's (position, source) pairs of a batch's rows as (row, position + shift, source).
std::vector<std::array<int64_t, 3>> pairs_in_inputs(const std::vector<TrainingSequence>& rows,
                                                    std::vector<std::pair<int32_t, int32_t>> TrainingSequence::*pairs,
                                                    int64_t shift) {
  std::vector<std::array<int64_t, 3>> out;
  for (size_t b = 0; b < rows.size(); ++b) {
    for (const auto& [pos, src] : rows[b].*pairs) out.push_back({static_cast<int64_t>(b), pos + shift, src});
  }
  return out;
}

}  // namespace

std::vector<std::array<int64_t, 3>> copy_sources_in_inputs(const std::vector<TrainingSequence>& rows) {
  return pairs_in_inputs(rows, &TrainingSequence::copy_from, -1);
}

std::vector<std::array<int64_t, 3>> chain_sources_in_inputs(const std::vector<TrainingSequence>& rows) {
  return pairs_in_inputs(rows, &TrainingSequence::chain_from, 0);
}

at::Tensor copy_attention_nll(const at::Tensor& probs, const std::vector<std::array<int64_t, 3>>& pairs,
                              bool any_head) {
  const at::Tensor index = triples_tensor(pairs, probs.device());
  // probs[rows, :, queries, keys] -> [N, H]
  const at::Tensor picked = probs.permute({0, 2, 3, 1}).index({index.select(1, 0), index.select(1, 1), index.select(1, 2)});
  const at::Tensor p = picked.to(at::kFloat);
  if (!any_head) return -(p.mean(1) + 1e-6).log();
  const at::Tensor none = (1 - p.clamp_max(1 - 1e-6)).log().sum(1).exp();  // prod_h (1 - p_h)
  return -(1 - none + 1e-6).log();
}

double learning_rate_at(const TrainLmConfig& config, int64_t step) { return lr_at(config, Schedule(config), step); }

namespace {

struct Batch {
  at::Tensor inputs, targets, weights, copied;  // copied: 1 where a copy predicts the target (induction)
  at::Tensor key_drop;                          // forward_batch's context dropout mask, or undefined
  std::vector<std::array<int64_t, 3>> also_right;  // (row, position in targets, token): answer_nll's sets
  std::vector<std::array<int64_t, 3>> attention_pairs;  // (row, query, key): copy_attention_nll's pairs, if supervised
  int64_t tokens = 0;
};

Result<Batch> make_batch(const TrainLmConfig& c, const DecoderLM& model, int64_t step, const PhaseMix& phase) {
  const ModelSpec& spec = model.spec();
  std::mt19937_64 rng(c.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull + 1);
  std::vector<TrainingSequence> seqs;
  size_t max_len = 2;
  for (int64_t b = 0; b < phase.batch; ++b) {
    PROXYKV_ASSIGN_OR_RETURN(TrainingSequence s, sample_from_phase(rng, phase));
    max_len = std::max(max_len, s.tokens.size());
    seqs.push_back(std::move(s));
  }
  const int64_t B = phase.batch, T = static_cast<int64_t>(max_len);
  at::Tensor tokens = at::full({B, T}, tasks::kPadId, at::kLong);
  at::Tensor weights = at::zeros({B, T}, at::kFloat);
  at::Tensor copied = at::zeros({B, T}, at::kFloat);
  auto tok = tokens.accessor<int64_t, 2>();
  auto w = weights.accessor<float, 2>();
  auto cp = copied.accessor<float, 2>();
  Batch batch;
  for (int64_t b = 0; b < B; ++b) {
    for (size_t i = 0; i < seqs[b].tokens.size(); ++i) {
      tok[b][i] = seqs[b].tokens[i];
      w[b][i] = seqs[b].weights[i];
      if (i < seqs[b].copied.size()) cp[b][i] = seqs[b].copied[i];
    }
    batch.tokens += static_cast<int64_t>(seqs[b].tokens.size());
  }
  batch.inputs = tokens.narrow(1, 0, T - 1);
  batch.targets = tokens.narrow(1, 1, T - 1);
  batch.also_right = also_right_in_targets(seqs);
  if (phase.attention_supervision > 0) {
    batch.attention_pairs = phase.attention_supervision_chain ? chain_sources_in_inputs(seqs) : copy_sources_in_inputs(seqs);
  }
  batch.weights = weights.narrow(1, 1, T - 1);
  batch.copied = copied.narrow(1, 1, T - 1);
  std::vector<std::vector<int32_t>> rows;  // the masks below read the rows' tokens
  if (phase.context_drop.share > 0 || phase.isolate_queries || phase.repeat_drop_openers > 0) {
    for (const auto& s : seqs) rows.push_back(s.tokens);
  }
  if (phase.context_drop.share > 0) {
    // Its own stream, so that turning it on leaves the sampled data of every step as it was.
    std::mt19937_64 drop_rng(c.seed * 0xD1B54A32D192ED03ull + static_cast<uint64_t>(step) * 0x94D049BB133111EBull + 7);
    if (phase.context_drop.scorer.empty()) {
      batch.key_drop =
          context_drop_mask(rows, T - 1, spec.num_layers, spec.num_kv_heads, phase.context_drop, drop_rng);
    } else {
      PROXYKV_ASSIGN_OR_RETURN(batch.key_drop, scored_drop_mask(model, rows, T - 1, phase.context_drop, drop_rng));
    }
  }
  if (phase.repeat_drop_openers > 0) {
    // Its own stream again: turning it on changes neither the sampled data nor the context dropout of a step.
    std::mt19937_64 opener_rng(c.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull +
                               11);
    const at::Tensor openers = opener_drop_mask(rows, T - 1, phase.repeat_drop_openers, opener_rng);
    if (openers.defined()) batch.key_drop = batch.key_drop.defined() ? batch.key_drop.logical_or(openers) : openers;
  }
  if (phase.isolate_queries) {
    const at::Tensor isolation = query_isolation_mask(rows, T - 1);
    if (isolation.defined()) batch.key_drop = batch.key_drop.defined() ? batch.key_drop.logical_or(isolation) : isolation;
  }
  return batch;
}

void set_trainable(DecoderLM& model) {
  for (at::Tensor p : model.weights().parameters()) p.requires_grad_(true);
}

std::vector<torch::optim::OptimizerParamGroup> param_groups(const DecoderLM& model, double weight_decay) {
  std::vector<at::Tensor> decay, no_decay;
  for (const at::Tensor& p : model.weights().parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decay, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions().weight_decay(weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions().weight_decay(0.0)));
  return groups;
}

// The config's phases as a checkpoint records them: [[name, steps], ...].
json curriculum(const TrainLmConfig& c) {
  json phases = json::array();
  for (const auto& phase : c.phases) phases.push_back(json::array({phase.name, phase.steps}));
  return phases;
}

Status save_checkpoint(const TrainLmConfig& c, const Schedule& schedule, const DecoderLM& model,
                       torch::optim::AdamW& opt, int64_t step) {
  const fs::path dir = fs::path(c.out_dir) / "checkpoint";
  const fs::path tmp = fs::path(c.out_dir) / "checkpoint.tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  PROXYKV_RETURN_IF_ERROR(model.save(tmp.string()));
  try {
    torch::save(opt, (tmp / "optimizer.pt").string());
  } catch (const std::exception& e) {
    return invalid_argument(tmp.string() + ": cannot save optimizer state: " + e.what());
  }
  json state{{"step", step}, {"seed", c.seed}};
  json ended = json::object();  // gated phases that ended early: name -> length as run
  for (size_t i = 0; i < c.phases.size(); ++i) {
    if (c.phases[i].until_copy_loss > 0 && schedule.lengths[i] != c.phases[i].steps) {
      ended[c.phases[i].name] = schedule.lengths[i];
    }
  }
  state["gated_phase_steps"] = ended;
  state["phases"] = curriculum(c);  // a resume checks that its config continues it (check_curriculum)
  std::ofstream((tmp / "trainer_state.json").string()) << state.dump() << "\n";
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);  // the previous checkpoint stays whole until the new one is complete
  if (ec) return invalid_argument(dir.string() + ": cannot move checkpoint into place: " + ec.message());
  return Status::ok();
}

// A row whose queries see its context thinned: the index of its `</ctx>` and the drop rate drawn for it. A task
// sequence (a `<q>` after its `</ctx>`) is a candidate, and with `options.repeat` a reconstruction row (`<repeat>`
// right after `</ctx>`); a candidate is picked with probability `share` (one draw) and then draws its rate in
// [min_rate, max_rate] (a second draw). Not a candidate: no draw.
struct PickedRow {
  int64_t ctx_end = 0;
  double rate = 0;
};

// A reconstruction row: `<repeat>` right after the `</ctx>` at `end`.
bool is_repeat_row(const std::vector<int32_t>& t, std::vector<int32_t>::const_iterator end) {
  return end != t.end() && end + 1 != t.end() && *(end + 1) == tasks::kRepeatId;
}

std::optional<PickedRow> pick_row(const std::vector<int32_t>& t, const ContextDropOptions& options,
                                  std::mt19937_64& rng) {
  const auto end = std::find(t.begin(), t.end(), tasks::kCtxEndId);
  if (end == t.end()) return std::nullopt;
  const bool task = std::find(end, t.end(), tasks::kQuestionId) != t.end();
  const bool repeat = options.repeat && is_repeat_row(t, end);
  if (!task && !repeat) return std::nullopt;
  if (uniform01(rng) >= options.share) return std::nullopt;
  const double rate = options.min_rate + (options.max_rate - options.min_rate) * uniform01(rng);
  return PickedRow{end - t.begin(), rate};
}

}  // namespace

at::Tensor context_drop_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T, int64_t layers,
                             int64_t kv_heads, const ContextDropOptions& options, std::mt19937_64& rng) {
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<bool> thinned(static_cast<size_t>(layers), options.layers.empty());
  for (int64_t l : options.layers) {
    if (l >= 0 && l < layers) thinned[static_cast<size_t>(l)] = true;
  }
  at::Tensor cols = at::zeros({layers, B, kv_heads, 1, T}, at::kBool);  // dropped entries
  at::Tensor after = at::zeros({1, B, 1, T, 1}, at::kBool);             // the queries that see them dropped
  auto col = cols.accessor<bool, 5>();
  auto row = after.accessor<bool, 5>();
  bool any = false;
  auto is_fact = [](int32_t id) { return id >= tasks::kFirstDigitId && id < tasks::kFamilyVocabSize; };
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& t = rows[static_cast<size_t>(b)];
    const std::optional<PickedRow> picked = pick_row(t, options, rng);
    if (!picked) continue;
    const double rate = picked->rate;
    const int64_t e = picked->ctx_end;
    for (int64_t i = e + 1; i < std::min<int64_t>(T, static_cast<int64_t>(t.size())); ++i) row[0][b][0][i][0] = true;
    for (int64_t j = 2; j < std::min<int64_t>(e, T); ++j) {
      const bool droppable = options.facts || (options.structure && !is_fact(t[j])) ||
                             (!is_fact(t[j]) && !is_fact(t[j - 1]) && (j + 1 >= e || !is_fact(t[j + 1])));
      bool first = false;  // the draw of (layer 0, head 0): whole_tokens applies it everywhere
      for (int64_t l = 0; l < layers; ++l) {
        for (int64_t h = 0; h < kv_heads; ++h) {
          // Drawn for every entry, droppable or not, so the options change no later draw.
          bool d = uniform01(rng) < rate;
          if (l == 0 && h == 0) first = d;
          if (options.whole_tokens) d = first;
          if (droppable && d && thinned[static_cast<size_t>(l)]) col[l][b][h][0][j] = any = true;
        }
      }
    }
  }
  if (!any) return {};
  return cols & after;  // [layers, B, kv_heads, T, T]
}

at::Tensor query_isolation_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T) {
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor is_question = at::zeros({B, T}, at::kLong);
  auto q = is_question.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& t = rows[static_cast<size_t>(b)];
    for (int64_t i = 0; i < std::min<int64_t>(T, static_cast<int64_t>(t.size())); ++i) q[b][i] = t[i] == tasks::kQuestionId;
  }
  const at::Tensor segment = is_question.cumsum(1);  // n(i); padding continues the last segment, and is not trained
  const at::Tensor seg_i = segment.unsqueeze(2), seg_j = segment.unsqueeze(1);  // [B, T, 1], [B, 1, T]
  const at::Tensor drop = seg_j.gt(0).logical_and(seg_j.lt(seg_i));  // [B, T, T]
  if (!drop.any().item<bool>()) return at::Tensor();
  return drop.view({1, B, 1, T, T});
}

at::Tensor opener_drop_mask(const std::vector<std::vector<int32_t>>& rows, int64_t T, double share,
                            std::mt19937_64& rng) {
  const int32_t period = tasks::family_token_id(".");
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor cols = at::zeros({1, B, 1, 1, T}, at::kBool);   // the openers
  at::Tensor after = at::zeros({1, B, 1, T, 1}, at::kBool);  // the repeated words that do not see them
  auto col = cols.accessor<bool, 5>();
  auto row = after.accessor<bool, 5>();
  bool any = false;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& t = rows[static_cast<size_t>(b)];
    const auto end = std::find(t.begin(), t.end(), tasks::kCtxEndId);
    if (!is_repeat_row(t, end)) continue;
    if (uniform01(rng) >= share) continue;
    const auto start = std::find(t.begin(), end, tasks::kCtxId);
    if (start == end) continue;
    const int64_t s = start - t.begin(), e = end - t.begin();
    bool dropped = false;
    for (int64_t j = s + 1; j < std::min(e, T); ++j) {
      if (t[static_cast<size_t>(j - 1)] == tasks::kCtxId || t[static_cast<size_t>(j - 1)] == period) {
        col[0][b][0][0][j] = dropped = true;
      }
    }
    if (!dropped) continue;
    for (int64_t i = e + 1; i < std::min<int64_t>(T, static_cast<int64_t>(t.size())); ++i) row[0][b][0][i][0] = true;
    any = true;
  }
  if (!any) return {};
  return cols & after;  // [1, B, 1, T, T]
}

Result<at::Tensor> scored_drop_mask(const DecoderLM& model, const std::vector<std::vector<int32_t>>& rows, int64_t T,
                                    const ContextDropOptions& options, std::mt19937_64& rng) {
  const ModelSpec& spec = model.spec();
  const int64_t B = static_cast<int64_t>(rows.size()), L = spec.num_layers, H = spec.num_kv_heads;
  PROXYKV_ASSIGN_OR_RETURN(const scoring::SelectionLevel level, scoring::parse_selection_level(options.level));
  // What the evaluator gives the family's scorers (eval/evaluator.cpp): the family prompt format's sinks and KVzip
  // repeat prompt, the default reconstruction chunk and prefill chunk. The format is read once per process.
  static const PromptFormat format = [] {
    const Tokenizer tokenizer =
        std::move(Tokenizer::from_json_string(tasks::family_tokenizer_json().dump(), "family").value());
    return PromptFormat::for_model(tokenizer, ModelSpec{});
  }();
  scoring::ScorerOptions so;
  scoring::apply_prompt_format(format, so);
  at::Tensor cols = at::zeros({L, B, H, 1, T}, at::kBool);  // dropped entries
  at::Tensor after = at::zeros({1, B, 1, T, 1}, at::kBool);  // the queries that see them dropped
  bool any = false;
  at::NoGradGuard no_grad;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& t = rows[static_cast<size_t>(b)];
    const std::optional<PickedRow> picked = pick_row(t, options, rng);
    if (!picked) continue;
    const double rate = picked->rate;
    const int64_t n = picked->ctx_end + 1;  // the prompt the serving path prefills: through `</ctx>`
    if (n >= T) continue;
    const at::Tensor prompt = at::tensor(std::vector<int64_t>(t.begin(), t.begin() + n), at::dtype(at::kLong));
    PROXYKV_ASSIGN_OR_RETURN(std::unique_ptr<scoring::Scorer> scorer, scoring::make_scorer(options.scorer, so));
    KvCache cache = model.new_cache();
    PrefillOptions popts;
    popts.chunk_size = so.prefill_chunk;
    popts.observer = scorer->begin(model, n);
    model.prefill(prompt, cache, popts);
    PROXYKV_ASSIGN_OR_RETURN(const at::Tensor scores, scorer->finish(model, cache, prompt));
    PROXYKV_ASSIGN_OR_RETURN(const scoring::KeepSet keep, scoring::select_entries(scores, 1.0 - rate, level, so.n_sink));
    at::Tensor dropped = keep.mask(n).logical_not();  // [L, H, n]
    if (!options.layers.empty()) {  // only the listed layers are thinned; the others keep the whole context
      at::Tensor thinned = at::zeros({L, 1, 1}, at::kBool);
      for (int64_t l : options.layers) thinned[l] = true;
      dropped = dropped & thinned;
    }
    if (!dropped.any().item<bool>()) continue;
    cols.select(1, b).narrow(-1, 0, n).copy_(dropped.unsqueeze(2));
    after.select(1, b).narrow(2, n, T - n).fill_(true);
    any = true;
  }
  if (!any) return at::Tensor();
  return cols & after;  // [layers, B, kv_heads, T, T]
}

Result<TrainLmConfig> TrainLmConfig::from_json(const json& j, const std::string& origin) {
  TrainLmConfig c;
  try {
    c.model_config = j.at("model");
    c.seed = j.value("seed", c.seed);
    c.out_dir = j.at("out_dir").get<std::string>();
    c.threads = j.value("threads", c.threads);
    c.device = j.value("device", c.device);
    c.init_std = j.value("init_std", c.init_std);
    c.init_from = j.value("init_from", c.init_from);
    const json opt = j.value("optimizer", json::object());
    c.lr = opt.value("lr", c.lr);
    if (opt.contains("betas")) {
      c.beta1 = opt.at("betas").at(0).get<double>();
      c.beta2 = opt.at("betas").at(1).get<double>();
    }
    c.weight_decay = opt.value("weight_decay", c.weight_decay);
    c.clip = opt.value("clip", c.clip);
    c.min_lr_ratio = opt.value("min_lr_ratio", c.min_lr_ratio);
    c.warmup_steps = opt.value("warmup_steps", c.warmup_steps);
    c.log_every = j.value("log_every", c.log_every);
    c.checkpoint_every = j.value("checkpoint_every", c.checkpoint_every);
    c.eval_every = j.value("eval_every", c.eval_every);
    const json ev = j.value("eval", json::object());
    c.eval_length = ev.value("length", c.eval_length);
    c.eval_contexts = ev.value("contexts", c.eval_contexts);
    c.eval_queries = ev.value("queries", c.eval_queries);
    c.eval_seed = ev.value("seed", c.eval_seed);
    c.eval_tasks = ev.value("tasks", std::vector<std::string>{});
    if (!j.at("phases").is_array() || j.at("phases").empty()) return invalid_argument(origin + ": 'phases' is empty");
    for (const auto& p : j.at("phases")) {
      PROXYKV_ASSIGN_OR_RETURN(PhaseMix phase, PhaseMix::from_json(p, origin));
      c.phases.push_back(std::move(phase));
    }
  } catch (const json::exception& e) {
    return invalid_argument(origin + ": " + e.what());
  }
  PROXYKV_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::from_json(c.model_config, origin + ": model"));
  if (spec.vocab_size != tasks::kFamilyVocabSize) {
    return invalid_argument(origin + ": model.vocab_size must be the family's " +
                            std::to_string(tasks::kFamilyVocabSize));
  }
  if (c.lr <= 0 || c.warmup_steps < 1 || c.threads < 0 || c.log_every < 1) {
    return invalid_argument(origin + ": need lr > 0, warmup_steps >= 1, threads >= 0, log_every >= 1");
  }
  for (const PhaseMix& p : c.phases) {
    if (!p.context_drop.scorer.empty()) {
      const auto& names = scoring::scorer_names();
      if (p.context_drop.scorer == "full" ||
          std::find(names.begin(), names.end(), p.context_drop.scorer) == names.end()) {
        return invalid_argument(origin + ": phase '" + p.name + "': context_drop_scorer '" + p.context_drop.scorer +
                                "' is not a scorer that evicts (kvzip, snapkv, h2o, ...)");
      }
      if (!scoring::parse_selection_level(p.context_drop.level).is_ok()) {
        return invalid_argument(origin + ": phase '" + p.name + "': context_drop_level '" + p.context_drop.level +
                                "' is not global, layer, head or token");
      }
    }
    for (int64_t l : p.context_drop.layers) {
      if (l >= spec.num_layers) {
        return invalid_argument(origin + ": phase '" + p.name + "': context_drop_layers names layer " +
                                std::to_string(l) + ", the model has " + std::to_string(spec.num_layers));
      }
    }
  }
  return c;
}

Result<TrainLmConfig> TrainLmConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open training config");
  std::stringstream buf;
  buf << in.rdbuf();
  json j = json::parse(buf.str(), nullptr, false);
  if (j.is_discarded()) return invalid_argument(path + ": not valid JSON");
  return from_json(j, path);
}

Result<RetrievalScore> evaluate_retrieval(const DecoderLM& model, const std::vector<std::string>& task_names,
                                          int64_t length, int contexts, int queries, uint64_t seed) {
  RetrievalScore score;
  double total_correct = 0;
  const auto& names = task_names.empty() ? tasks::task_families() : task_names;
  for (const auto& task : names) {
    tasks::TaskSpec spec{task, length, tasks::default_facts(task), queries, contexts, seed};
    PROXYKV_ASSIGN_OR_RETURN(auto generated, tasks::generate_tasks(spec));
    int correct = 0, asked = 0;
    for (const auto& ctx : generated) {
      std::vector<int32_t> prompt{tasks::kBosId, tasks::kCtxId};
      for (int32_t id : tasks::family_encode(ctx.context)) prompt.push_back(id);
      prompt.push_back(tasks::kCtxEndId);
      KvCache cache = model.new_cache();
      std::vector<int64_t> p64(prompt.begin(), prompt.end());
      model.prefill(at::tensor(p64, at::TensorOptions().dtype(at::kLong)), cache);
      for (const auto& q : ctx.queries) {
        std::vector<int32_t> question{tasks::kQuestionId};
        for (int32_t id : tasks::family_encode(q.question)) question.push_back(id);
        question.push_back(tasks::kAnswerId);
        std::vector<int64_t> q64(question.begin(), question.end());
        std::vector<int64_t> answer =
            model.answer(at::tensor(q64, at::TensorOptions().dtype(at::kLong)), cache, 32, {tasks::kEosId});
        const std::string text = tasks::family_decode(std::vector<int32_t>(answer.begin(), answer.end()));
        correct += tasks::string_match_all(text, q.answers) ? 1 : 0;
        ++asked;
      }
    }
    score.accuracy[task] = asked ? static_cast<double>(correct) / asked : 0.0;
    total_correct += correct;
    score.queries += asked;
  }
  score.mean = score.queries ? total_correct / score.queries : 0.0;
  return score;
}

namespace {

// A checkpoint records its config's phases (name, steps). A resume may append phases (how every trial here grew
// from the curriculum), but a config whose phases do not start with the checkpoint's would continue another model's
// training at its step count, silently: refused. Checkpoints written before the record resume as before.
Status check_curriculum(const TrainLmConfig& c, const json& state, const std::string& ckpt) {
  if (!state.contains("phases")) return Status::ok();
  const json& saved = state.at("phases");
  const json ours = curriculum(c);
  if (saved.is_array() && saved.size() <= ours.size() && std::equal(saved.begin(), saved.end(), ours.begin())) {
    return Status::ok();
  }
  return failed_precondition(ckpt + ": the checkpoint was written by a config with the phases " + saved.dump() +
                             "; this config's phases " + ours.dump() +
                             " do not continue them. Resume with the config that wrote it (appending phases is "
                             "fine), or train into another out_dir");
}

}  // namespace

Result<TrainLmResult> train_lm(const TrainLmConfig& c, bool resume, std::ostream& progress, int64_t stop_after) {
  set_compute_threads(c.threads);
  PROXYKV_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::from_json(c.model_config, "model"));
  LoadOptions load{c.device, "float32"};
  std::error_code ec;
  fs::create_directories(c.out_dir, ec);
  if (ec) return invalid_argument(c.out_dir + ": cannot create: " + ec.message());

  const fs::path ckpt = fs::path(c.out_dir) / "checkpoint";
  int64_t start_step = 0;
  Schedule schedule(c);
  std::unique_ptr<DecoderLM> model;
  const bool from_checkpoint = resume && fs::exists(ckpt / "trainer_state.json");
  if (from_checkpoint) {
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::load(ckpt.string(), load));
    std::ifstream in(ckpt / "trainer_state.json");
    json state = json::parse(in, nullptr, false);
    if (state.is_discarded() || !state.contains("step")) return invalid_argument(ckpt.string() + ": bad trainer_state");
    start_step = state.at("step").get<int64_t>();
    PROXYKV_RETURN_IF_ERROR(check_curriculum(c, state, ckpt.string()));
    const json gated = state.value("gated_phase_steps", json::object());
    if (!gated.is_object()) return invalid_argument(ckpt.string() + ": bad gated_phase_steps in trainer_state");
    for (const auto& [name, steps] : gated.items()) {
      if (!steps.is_number_integer()) return invalid_argument(ckpt.string() + ": bad gated_phase_steps." + name);
      bool found = false;
      for (size_t i = 0; i < c.phases.size(); ++i) {
        if (c.phases[i].name == name && c.phases[i].until_copy_loss > 0) {
          schedule.lengths[i] = std::min(steps.get<int64_t>(), c.phases[i].steps);
          found = true;
        }
      }
      if (!found) {
        return invalid_argument(ckpt.string() + ": checkpoint ended gated phase '" + name +
                                "' early, but the config has no such gated phase");
      }
    }
  } else if (!c.init_from.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::load(c.init_from, load));
    if (model->spec().to_json() != spec.to_json()) {
      return invalid_argument(c.init_from + ": init_from describes another model than the config's \"model\": " +
                              model->spec().to_json().dump() + " vs " + spec.to_json().dump());
    }
    progress << "initialised from " << c.init_from << "\n";
  } else {
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::random_init(spec, c.seed, c.init_std, load));
  }
  for (const PhaseMix& p : c.phases) {
    if (p.attention_supervision > 0 && p.attention_supervision_layer >= spec.num_layers) {
      return invalid_argument("phase '" + p.name + "': attention_supervision_layer " +
                              std::to_string(p.attention_supervision_layer) + " but the model has " +
                              std::to_string(spec.num_layers) + " layers (0.." + std::to_string(spec.num_layers - 1) +
                              ", or -1 for the last)");
    }
  }
  set_trainable(*model);
  torch::optim::AdamW opt(param_groups(*model, c.weight_decay),
                          torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}));
  if (from_checkpoint) {
    try {
      torch::load(opt, (ckpt / "optimizer.pt").string());
    } catch (const std::exception& e) {
      return invalid_argument(ckpt.string() + ": cannot load optimizer state: " + e.what());
    }
    progress << "resumed from " << ckpt.string() << " at step " << start_step << "\n";
  }
  progress << "training " << architecture_class_name(spec.arch) << " " << spec.num_layers << " layers, hidden "
           << spec.hidden_size << ", " << spec.num_parameters() << " params; " << schedule.total() << " steps; threads "
           << at::get_num_threads() << "\n";

  TrainLmResult result;
  auto t_start = std::chrono::steady_clock::now();
  int64_t tokens_since = 0;
  double loss_sum = 0, copy_sum = 0, attention_sum = 0;
  int64_t loss_count = 0, copy_count = 0, attention_count = 0;
  auto t_log = t_start;
  const int64_t stop_step = stop_after > 0 ? start_step + stop_after : std::numeric_limits<int64_t>::max();
  result.steps = start_step;
  for (int64_t step = start_step; step < std::min(schedule.total(), stop_step); ++step) {
    const size_t phase_index = schedule.phase_at(step);
    const PhaseMix& phase = c.phases[phase_index];
    PROXYKV_ASSIGN_OR_RETURN(Batch batch, make_batch(c, *model, step, phase));
    const double lr = lr_at(c, schedule, step);
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    at::Tensor attention;
    const bool supervised = !batch.attention_pairs.empty();
    at::Tensor logits = model->forward_batch(batch.inputs, batch.key_drop, supervised ? &attention : nullptr,
                                             phase.attention_supervision_layer);
    at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
    at::Tensor nll = answer_nll(logp, batch.targets, batch.also_right);
    const at::Tensor lm_loss = (nll * batch.weights).sum() / batch.weights.sum().clamp_min(1.0);
    at::Tensor loss = lm_loss;  // what is optimised; the progress line and result.losses report lm_loss
    if (supervised) {
      const at::Tensor attention_loss = copy_attention_nll(attention, batch.attention_pairs, phase.attention_supervision_any_head).mean();
      attention_sum += attention_loss.item<double>();
      ++attention_count;
      loss = loss + phase.attention_supervision * attention_loss;
    }
    const double n_copied = batch.copied.sum().item<double>();
    if (n_copied > 0) {
      copy_sum += (nll.detach() * batch.copied).sum().item<double>() / n_copied;
      ++copy_count;
    }
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->weights().parameters(), c.clip);
    opt.step();

    const double l = lm_loss.item<double>();
    if (!std::isfinite(l)) return internal_error("loss is not finite at step " + std::to_string(step));
    result.losses.push_back(l);
    loss_sum += l;
    ++loss_count;
    tokens_since += batch.tokens;
    result.steps = step + 1;

    const int64_t total = schedule.total();
    if ((step + 1) % c.log_every == 0 || step + 1 == total) {
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - t_log).count();
      const double elapsed = std::chrono::duration<double>(now - t_start).count();
      const double eta = elapsed / (step + 1 - start_step) * (total - step - 1);
      progress << "step " << step + 1 << "/" << total << " [" << phase.name << "] loss " << std::fixed
               << std::setprecision(4) << loss_sum / loss_count << " lr " << std::scientific << std::setprecision(2)
               << lr << std::fixed << std::setprecision(0) << " tok/s " << tokens_since / std::max(dt, 1e-9)
               << " elapsed " << format_duration(elapsed) << " ETA " << format_duration(eta);
      const double copy_loss = copy_count ? copy_sum / copy_count : -1;
      if (copy_count) progress << " copy_loss " << std::setprecision(3) << copy_loss;
      if (attention_count) progress << " attn_loss " << std::setprecision(3) << attention_sum / attention_count;
      progress << std::endl;
      t_log = now;
      tokens_since = 0;
      loss_sum = copy_sum = attention_sum = 0;
      loss_count = copy_count = attention_count = 0;
      if (phase.until_copy_loss > 0 && copy_loss >= 0 && copy_loss < phase.until_copy_loss &&
          step + 1 < schedule.start_of(phase_index) + schedule.lengths[phase_index]) {
        schedule.lengths[phase_index] = step + 1 - schedule.start_of(phase_index);
        progress << "phase '" << phase.name << "' ends at step " << step + 1 << ": copy loss " << std::setprecision(4)
                 << copy_loss
                 << " < " << phase.until_copy_loss << "; " << schedule.total() << " steps in all now" << std::endl;
        PROXYKV_RETURN_IF_ERROR(save_checkpoint(c, schedule, *model, opt, step + 1));
      }
    }
    if (c.eval_every > 0 && (step + 1) % c.eval_every == 0) {
      PROXYKV_ASSIGN_OR_RETURN(RetrievalScore s, evaluate_retrieval(*model, c.eval_tasks, c.eval_length,
                                                                    c.eval_contexts, c.eval_queries, c.eval_seed));
      progress << "eval step " << step + 1 << " length " << c.eval_length << ": mean " << std::setprecision(3)
               << s.mean;
      for (const auto& [task, acc] : s.accuracy) progress << " " << task << " " << acc;
      progress << std::endl;
    }
    if (c.checkpoint_every > 0 && (step + 1) % c.checkpoint_every == 0) {
      PROXYKV_RETURN_IF_ERROR(save_checkpoint(c, schedule, *model, opt, step + 1));
    }
  }
  PROXYKV_RETURN_IF_ERROR(save_checkpoint(c, schedule, *model, opt, result.steps));
  if (result.steps < schedule.total()) {
    progress << "stopped at step " << result.steps << "/" << schedule.total() << "; continue with --resume"
             << std::endl;
    return result;
  }
  PROXYKV_RETURN_IF_ERROR(model->save(c.out_dir));
  PROXYKV_RETURN_IF_ERROR(tasks::write_family_tokenizer((fs::path(c.out_dir) / "tokenizer.json").string()));
  return result;
}

}  // namespace proxykv::training
