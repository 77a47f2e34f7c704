#include "proxykv/training/lm_trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "proxykv/scoring/scorer.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::training {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json tiny_config(const std::string& out_dir, int64_t steps) {
  return json{{"model",
               {{"architectures", {"Qwen3ForCausalLM"}},
                {"vocab_size", tasks::kFamilyVocabSize},
                {"hidden_size", 32},
                {"intermediate_size", 64},
                {"num_hidden_layers", 1},
                {"num_attention_heads", 2},
                {"num_key_value_heads", 1},
                {"head_dim", 16},
                {"max_position_embeddings", 4096},
                {"rope_theta", 10000.0},
                {"tie_word_embeddings", true}}},
              {"seed", 3},
              {"out_dir", out_dir},
              {"threads", 1},
              {"optimizer", {{"lr", 1e-2}, {"warmup_steps", 5}}},
              {"log_every", 10},
              {"checkpoint_every", 0},
              {"eval_every", 0},
              // Short task contexts with loss on every token: the filler sentences are learnable in a few dozen steps.
              {"phases",
               {{{"name", "tasks"},
                 {"steps", steps},
                 {"batch", 8},
                 {"mix", {{"tasks", 1.0}}},
                 {"context_min", 32},
                 {"context_max", 64},
                 {"qa_per_sequence", 1},
                 {"context_weight", 1.0}}}}};
}

fs::path temp_dir(const std::string& tag) {
  fs::path p = fs::temp_directory_path() / ("pkv-train-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

TEST(TrainLm, LossGoesDownOnATinyRun) {
  const fs::path dir = temp_dir("down");
  auto config = TrainLmConfig::from_json(tiny_config(dir.string(), 80), "tiny");
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  std::ostringstream progress;
  auto result = train_lm(*config, false, progress);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  ASSERT_EQ(result->losses.size(), 80u);
  // An untrained model is near uniform over 647 tokens (ln 647 = 6.47).
  EXPECT_GT(mean(result->losses, 0, 5), 6.0);
  EXPECT_LT(mean(result->losses, 70, 80), mean(result->losses, 0, 10) - 1.0);
  EXPECT_NE(progress.str().find("ETA"), std::string::npos);
  // The final model is an HF directory the normal loader reads.
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "tokenizer.json"));
  EXPECT_TRUE(DecoderLM::load(dir.string()).is_ok());
  fs::remove_all(dir);
}

// answer_nll: -log p(target) without sets; with (row, position, token) triples, -log of the summed probability of
// the target and those tokens at that position, the other positions unchanged; naming the target itself, or a token
// twice, adds nothing. Reference: the sums written out on random log-probabilities.
TEST(TrainLm, AnswerNllScoresASetByItsSummedProbability) {
  at::manual_seed(3);
  const at::Tensor logp = at::log_softmax(at::randn({2, 5, 7}), -1);
  const at::Tensor targets = at::randint(0, 7, {2, 5}, at::kLong);
  const at::Tensor plain = answer_nll(logp, targets, {});
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_FLOAT_EQ(plain[b][i].item<float>(), -logp[b][i][targets[b][i].item<int64_t>()].item<float>());
    }
  }
  const int64_t t12 = targets[1][2].item<int64_t>();
  const int64_t u = (t12 + 1) % 7, v = (t12 + 3) % 7;
  const at::Tensor set = answer_nll(logp, targets, {{1, 2, u}, {1, 2, v}, {1, 2, t12}, {1, 2, u}, {0, 4, 6}});
  const auto p = [&](int64_t b, int64_t i, int64_t t) { return std::exp(logp[b][i][t].item<double>()); };
  EXPECT_NEAR(set[1][2].item<double>(), -std::log(p(1, 2, t12) + p(1, 2, u) + p(1, 2, v)), 1e-5);
  const int64_t t04 = targets[0][4].item<int64_t>();
  EXPECT_NEAR(set[0][4].item<double>(), -std::log(p(0, 4, t04) + (t04 == 6 ? 0 : p(0, 4, 6))), 1e-5);
  const at::Tensor others = at::ones({2, 5}, at::kBool).index_put_({1, 2}, false).index_put_({0, 4}, false);
  EXPECT_TRUE(at::allclose(set.masked_select(others), plain.masked_select(others)));
  EXPECT_LT(set[1][2].item<float>(), plain[1][2].item<float>());
}

// The batch's triples point at the targets that predict the row's also-right positions: targets[b][j] is the row's
// token j + 1. A set-scored row of a real sample: each triple's target is a digit of the answer, the triple's token
// another digit.
TEST(TrainLm, AlsoRightTriplesAreInTheTargetsFrame) {
  TrainingSequence a, b;
  a.tokens = {2, 10, 11, 12};
  b.tokens = {2, 20, 21};
  b.also_right = {{2, 30}, {1, 31}};
  const auto t = also_right_in_targets({a, b});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0], (std::array<int64_t, 3>{1, 1, 30}));
  EXPECT_EQ(t[1], (std::array<int64_t, 3>{1, 0, 31}));

  std::mt19937_64 rng(5);
  auto row = sample_task(rng, "niah_multivalue", 200, 4, 2, 0.1f, "and", true, MultivalueOrder::kSet);
  ASSERT_TRUE(row.is_ok());
  const std::vector<int32_t>& tok = row->tokens;
  const auto is_digit = [](int64_t id) { return id >= tasks::kFirstDigitId && id < tasks::kFirstKeyId; };
  const auto triples = also_right_in_targets({*row});
  ASSERT_FALSE(triples.empty());
  for (const auto& [r, j, token] : triples) {
    EXPECT_EQ(r, 0);
    EXPECT_TRUE(is_digit(tok[j + 1]) && is_digit(token)) << j;
    EXPECT_NE(tok[j + 1], token);
  }
}

// copy_attention_nll: -log(mean over heads of probs[row, h, query, key] + 1e-6), one value per pair; reference:
// the indexing written out on random attention rows. copy_sources_in_inputs: the query is the input that predicts the
// copied token (its position - 1); chain_sources_in_inputs: the position itself.
TEST(TrainLm, CopyAttentionNllReadsTheSourceColumnOfThePredictingRow) {
  at::manual_seed(4);
  const at::Tensor probs = at::softmax(at::randn({2, 3, 6, 6}), -1);
  const std::vector<std::array<int64_t, 3>> pairs = {{0, 4, 1}, {1, 5, 2}, {1, 2, 0}};
  const at::Tensor got = copy_attention_nll(probs, pairs);
  ASSERT_EQ(got.numel(), 3);
  for (size_t k = 0; k < pairs.size(); ++k) {
    double mean = 0;
    for (int64_t h = 0; h < 3; ++h) mean += probs[pairs[k][0]][h][pairs[k][1]][pairs[k][2]].item<double>() / 3;
    EXPECT_NEAR(got[k].item<double>(), -std::log(mean + 1e-6), 1e-5) << k;
  }
  const at::Tensor any = copy_attention_nll(probs, pairs, /*any_head=*/true);
  for (size_t k = 0; k < pairs.size(); ++k) {
    double none = 1;
    for (int64_t h = 0; h < 3; ++h) none *= 1 - probs[pairs[k][0]][h][pairs[k][1]][pairs[k][2]].item<double>();
    EXPECT_NEAR(any[k].item<double>(), -std::log(1 - none + 1e-6), 1e-4) << k;
  }
  // one head on the source, the others elsewhere: "any" is (near) 0, "all" is log 3
  at::Tensor one = at::zeros({1, 3, 2, 2});
  one.index_put_({0, 0, 1, 0}, 1.0);
  one.index_put_({0, 1, 1, 1}, 1.0);
  one.index_put_({0, 2, 1, 1}, 1.0);
  EXPECT_NEAR(copy_attention_nll(one, {{0, 1, 0}}, true).item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(copy_attention_nll(one, {{0, 1, 0}}, false).item<double>(), std::log(3.0), 1e-5);
  TrainingSequence a, b;
  a.tokens = {2, 10, 11, 12, 13};
  b.tokens = {2, 20, 21, 22, 20};
  b.copy_from = {{4, 1}};
  const auto in = copy_sources_in_inputs({a, b});
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0], (std::array<int64_t, 3>{1, 3, 1}));
  // chain_sources_in_inputs: a context position attends itself, no shift
  b.chain_from = {{3, 1}};
  const auto chain = chain_sources_in_inputs({a, b});
  ASSERT_EQ(chain.size(), 1u);
  EXPECT_EQ(chain[0], (std::array<int64_t, 3>{1, 3, 1}));
  EXPECT_TRUE(chain_sources_in_inputs({a}).empty());
}

// attention_supervision on the recall drill: the attention loss on the copy sources falls on a tiny 2-layer run,
// and the progress line reports it; a phase without it reports none.
TEST(TrainLm, AttentionSupervisionLowersTheAttentionLoss) {
  const fs::path dir = temp_dir("attn");
  json j = tiny_config(dir.string(), 120);
  j["model"]["num_hidden_layers"] = 2;
  j["log_every"] = 20;
  j["phases"] = json::array({{{"name", "drill"},
                              {"steps", 120},
                              {"batch", 16},
                              {"mix", {{"recall", 1.0}}},
                              {"recall_facts_min", 4},
                              {"recall_facts_max", 8},
                              {"attention_supervision", 1.0}}});
  auto config = TrainLmConfig::from_json(j, "tiny");
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  std::ostringstream progress;
  auto result = train_lm(*config, false, progress);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  std::vector<double> attn;
  std::istringstream lines(progress.str());
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find(" attn_loss ");
    if (at != std::string::npos) attn.push_back(std::stod(line.substr(at + 11)));
  }
  ASSERT_EQ(attn.size(), 6u) << progress.str();
  EXPECT_LT(attn.back(), attn.front() - 0.5) << progress.str();
  fs::remove_all(dir);

  j["phases"][0]["attention_supervision"] = 0.0;
  j["phases"][0]["steps"] = 20;
  auto plain = TrainLmConfig::from_json(j, "tiny");
  ASSERT_TRUE(plain.is_ok());
  std::ostringstream quiet;
  ASSERT_TRUE(train_lm(*plain, false, quiet).is_ok());
  EXPECT_EQ(quiet.str().find("attn_loss"), std::string::npos);
  fs::remove_all(dir);

  j["phases"][0]["attention_supervision"] = 1.0;
  j["phases"][0]["attention_supervision_layer"] = 2;  // a 2-layer model
  auto missing = TrainLmConfig::from_json(j, "tiny");
  ASSERT_TRUE(missing.is_ok());
  auto refused = train_lm(*missing, false, quiet);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().to_string().find("attention_supervision_layer 2"), std::string::npos);
  fs::remove_all(dir);
}

// init_from starts a run from a trained model's weights (a pruned target, for the proxy); a model of another shape
// is refused.
TEST(TrainLm, InitFromStartsFromTheGivenWeights) {
  const fs::path trained = temp_dir("init-src"), next = temp_dir("init-next");
  std::ostringstream sink;
  auto first = TrainLmConfig::from_json(tiny_config(trained.string(), 80), "first");
  ASSERT_TRUE(first.is_ok());
  auto done = train_lm(*first, false, sink);
  ASSERT_TRUE(done.is_ok());
  json cfg = tiny_config(next.string(), 3);
  cfg["init_from"] = trained.string();
  auto second = TrainLmConfig::from_json(cfg, "second");
  ASSERT_TRUE(second.is_ok());
  std::ostringstream progress;
  auto cont = train_lm(*second, false, progress);
  ASSERT_TRUE(cont.is_ok()) << cont.status().to_string();
  EXPECT_NE(progress.str().find("initialised from"), std::string::npos);
  EXPECT_LT(cont->losses[0], mean(done->losses, 70, 80) + 0.5);  // not the ~6.5 of a random init
  cfg["model"]["hidden_size"] = 48;
  auto other = TrainLmConfig::from_json(cfg, "other");
  ASSERT_TRUE(other.is_ok());
  auto refused = train_lm(*other, false, sink);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("init_from describes another model"), std::string::npos);
  fs::remove_all(trained);
  fs::remove_all(next);
}

// A random 2-layer model with 4 query / 2 KV heads over the family's vocabulary.
std::unique_ptr<DecoderLM> gqa_model(uint64_t seed) {
  json model_json = tiny_config("unused", 1)["model"];
  model_json["num_hidden_layers"] = 2;
  model_json["num_attention_heads"] = 4;
  model_json["num_key_value_heads"] = 2;
  auto spec = ModelSpec::from_json(model_json, "tiny");
  throw_if_error(spec.status());
  auto model = DecoderLM::random_init(*spec, seed, 0.5, {});
  throw_if_error(model.status());
  return std::move(model).value();
}

// The evaluator's way to a KVzip selection of `prompt` (through `</ctx>`): prefill, score (sinks <bos> <ctx>, the
// <repeat> prompt), select at keep `rho`. Returns the kept mask [L, H, n].
at::Tensor kvzip_kept(const DecoderLM& model, const std::vector<int32_t>& prompt_ids, double rho,
                      scoring::SelectionLevel level) {
  scoring::ScorerOptions so;
  so.n_sink = 2;
  so.repeat_prompt_first = so.repeat_prompt_rest = {tasks::kRepeatId};
  auto scorer = scoring::make_scorer("kvzip", so);
  throw_if_error(scorer.status());
  const int64_t n = static_cast<int64_t>(prompt_ids.size());
  const at::Tensor prompt =
      at::tensor(std::vector<int64_t>(prompt_ids.begin(), prompt_ids.end()), at::dtype(at::kLong));
  KvCache cache = model.new_cache();
  PrefillOptions popts;
  popts.observer = (*scorer)->begin(model, n);
  model.prefill(prompt, cache, popts);
  auto scores = (*scorer)->finish(model, cache, prompt);
  throw_if_error(scores.status());
  auto keep = scoring::select_entries(*scores, rho, level, 2);
  throw_if_error(keep.status());
  EXPECT_NEAR(keep->ratio(), rho, 1.0 / static_cast<double>(n));
  return keep->mask(n);
}

// With a scorer, a picked row's queries after `</ctx>` see exactly the cache that scorer's own selection on the model
// leaves (the same prefill and scores as the evaluator's, keep ratio 1 - rate), in every layer and head at its own
// place in the [L, B, H, T, T] mask; the context's own rows and a row without a question see everything.
TEST(ContextDrop, ScorerDropsWhatItsSelectionOfTheModelEvicts) {
  const std::unique_ptr<DecoderLM> model = gqa_model(11);
  auto row = [](const std::string& text) {
    std::vector<int32_t> t{tasks::kBosId, tasks::kCtxId};
    for (int32_t id : tasks::family_encode(text)) t.push_back(id);
    t.push_back(tasks::kCtxEndId);
    return t;
  };
  std::vector<int32_t> task = row("the sky is blue . the magic number for k001 is 5 0 6 9 . the sun is bright in the "
                                  "morning . var x1 = 4 4 1 2 . the grass is green .");
  const int64_t n = static_cast<int64_t>(task.size());  // the prompt, through `</ctx>`
  task.push_back(tasks::kQuestionId);
  for (int32_t id : tasks::family_encode("what is the magic number for k001 ?")) task.push_back(id);
  task.push_back(tasks::kAnswerId);
  std::vector<int32_t> other = row("the sky is blue . the sun is bright .");
  other.push_back(tasks::kRepeatId);
  const int64_t T = static_cast<int64_t>(task.size());

  for (const std::string level : {"token", "head", "global"}) {
    ContextDropOptions options;
    options.share = 1.0;
    options.min_rate = options.max_rate = 0.7;  // keep 0.3
    options.scorer = "kvzip";
    options.level = level;
    std::mt19937_64 rng(3);
    auto mask = scored_drop_mask(*model, {other, task}, T, options, rng);
    ASSERT_TRUE(mask.is_ok()) << mask.status().to_string();
    ASSERT_TRUE(mask->defined());
    ASSERT_EQ(mask->sizes(), (at::IntArrayRef{2, 2, 2, T, T}));

    const at::Tensor kept = kvzip_kept(*model, std::vector<int32_t>(task.begin(), task.begin() + n), 0.3,
                                       *scoring::parse_selection_level(level));  // [L, H, n]

    const at::Tensor m = mask->select(1, 1);                          // [L, H, T, T]
    EXPECT_FALSE(mask->select(1, 0).any().item<bool>()) << level;     // no question after the context: untouched
    EXPECT_FALSE(m.narrow(2, 0, n).any().item<bool>()) << level;      // the prompt's own rows see everything
    EXPECT_FALSE(m.narrow(3, n, T - n).any().item<bool>()) << level;  // nothing after the prompt is dropped
    for (int64_t i = n; i < T; ++i) {
      EXPECT_TRUE(at::equal(m.select(2, i).narrow(2, 0, n), kept.logical_not())) << level << " row " << i;
    }
  }

  // With layers, the selection evicts only there: the listed layers drop what it does not keep, the others nothing.
  {
    ContextDropOptions options;
    options.share = 1.0;
    options.min_rate = options.max_rate = 0.7;
    options.scorer = "kvzip";
    options.level = "token";
    options.layers = {1};
    std::mt19937_64 rng(3);
    auto mask = scored_drop_mask(*model, {other, task}, T, options, rng);
    ASSERT_TRUE(mask.is_ok()) << mask.status().to_string();
    ASSERT_TRUE(mask->defined());
    const at::Tensor kept = kvzip_kept(*model, std::vector<int32_t>(task.begin(), task.begin() + n), 0.3,
                                       scoring::SelectionLevel::kToken);  // [L, H, n]
    const at::Tensor m = mask->select(1, 1);                              // [L, H, T, T]
    EXPECT_FALSE(m.select(0, 0).any().item<bool>());                      // layer 0 keeps everything
    EXPECT_TRUE(m.select(0, 1).any().item<bool>());
    for (int64_t i = n; i < T; ++i) {
      EXPECT_TRUE(at::equal(m.select(0, 1).select(1, i).narrow(1, 0, n), kept.select(0, 1).logical_not())) << i;
    }
  }

  // share 0 picks no row: nothing dropped, no mask.
  ContextDropOptions off;
  off.scorer = "kvzip";
  off.max_rate = 0.5;
  std::mt19937_64 rng(3);
  auto none = scored_drop_mask(*model, {task}, T, off, rng);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->defined());
}

// With `repeat`, a reconstruction row (`<repeat>` right after `</ctx>`) is picked as a task row is: its repeated
// words see exactly what the scorer's selection on its own prompt keeps. Without it, such a row is never touched
// (and draws nothing: the task row's drop is the same either way).
TEST(ContextDrop, RepeatRowsSeeTheirEvictedContextWithTheOption) {
  const std::unique_ptr<DecoderLM> model = gqa_model(13);
  const std::string text = "the sky is blue . the magic number for k001 is 5 0 6 9 . the grass is green .";
  std::vector<int32_t> rep{tasks::kBosId, tasks::kCtxId};
  for (int32_t id : tasks::family_encode(text)) rep.push_back(id);
  rep.push_back(tasks::kCtxEndId);
  const int64_t n = static_cast<int64_t>(rep.size());  // the prompt, through `</ctx>`
  rep.push_back(tasks::kRepeatId);
  for (int32_t id : tasks::family_encode(text)) rep.push_back(id);
  const int64_t T = static_cast<int64_t>(rep.size());

  ContextDropOptions options;
  options.share = 1.0;
  options.min_rate = options.max_rate = 0.6;  // keep 0.4
  options.scorer = "kvzip";
  {
    std::mt19937_64 rng(5);
    auto none = scored_drop_mask(*model, {rep}, T, options, rng);
    ASSERT_TRUE(none.is_ok());
    EXPECT_FALSE(none->defined()) << "a reconstruction row is not a candidate without the option";
  }
  options.repeat = true;
  std::mt19937_64 rng(5);
  auto mask = scored_drop_mask(*model, {rep}, T, options, rng);
  ASSERT_TRUE(mask.is_ok()) << mask.status().to_string();
  ASSERT_TRUE(mask->defined());

  const at::Tensor kept = kvzip_kept(*model, std::vector<int32_t>(rep.begin(), rep.begin() + n), 0.4,
                                     scoring::SelectionLevel::kToken);  // [L, H, n]
  const at::Tensor m = mask->select(1, 0);  // [L, H, T, T]
  EXPECT_FALSE(m.narrow(2, 0, n).any().item<bool>());  // the context's own rows see everything
  for (int64_t i = n; i < T; ++i) {
    EXPECT_TRUE(at::equal(m.select(2, i).narrow(2, 0, n), kept.logical_not())) << "row " << i;
  }
  EXPECT_TRUE(m.select(2, T - 1).narrow(2, 0, n).any().item<bool>());  // something is dropped at keep 0.4

  // The random draws take the option too: the row's repeated words see filler dropped.
  ContextDropOptions random_drop;
  random_drop.share = 1.0;
  random_drop.min_rate = random_drop.max_rate = 1.0;
  random_drop.repeat = true;
  std::mt19937_64 rng2(5);
  at::Tensor r = context_drop_mask({rep}, T, 2, 2, random_drop, rng2);
  ASSERT_TRUE(r.defined());
  EXPECT_FALSE(r.select(1, 0).narrow(2, 0, n).any().item<bool>());
  EXPECT_TRUE(r.select(1, 0).select(2, T - 1).narrow(2, 0, n).any().item<bool>());
}

// repeat_drop_openers: a picked reconstruction row's repeated words see every context position but the sentence
// openers (the word after `<ctx>` and after each `.`); the context itself, a task row and an unpicked row see all.
TEST(OpenerDrop, RepeatedWordsLoseExactlyTheSentenceOpeners) {
  const std::string text = "the sky is blue . the magic number for k001 is 5 0 6 9 . birds sing in the morning .";
  std::vector<int32_t> rep{tasks::kBosId, tasks::kCtxId};
  for (int32_t id : tasks::family_encode(text)) rep.push_back(id);
  const int64_t e = static_cast<int64_t>(rep.size());  // the index of `</ctx>`
  rep.push_back(tasks::kCtxEndId);
  rep.push_back(tasks::kRepeatId);
  for (int32_t id : tasks::family_encode(text)) rep.push_back(id);
  std::vector<int32_t> task(rep.begin(), rep.begin() + e + 1);
  task.push_back(tasks::kQuestionId);
  for (int32_t id : tasks::family_encode("what is the magic number for k001 ?")) task.push_back(id);
  const int64_t T = static_cast<int64_t>(rep.size());

  // The openers by hand: `the` at 2, `the` after the first `.`, `birds` after the second.
  const std::vector<int32_t> words = tasks::family_encode(text);  // at rep[2 + k]
  std::set<int64_t> openers{2};
  for (size_t k = 0; k + 1 < words.size(); ++k) {
    if (tasks::family_decode({words[k]}) == ".") openers.insert(static_cast<int64_t>(k) + 3);
  }
  ASSERT_EQ(openers.size(), 3u);

  std::mt19937_64 rng(3);
  const at::Tensor m = opener_drop_mask({task, rep}, T, 1.0, rng);
  ASSERT_TRUE(m.defined());
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{1, 2, 1, T, T}));
  EXPECT_FALSE(m.select(1, 0).any().item<bool>()) << "a task row is not a reconstruction row";
  const at::Tensor r = m.select(1, 1).select(0, 0).select(0, 0);  // [T, T]
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < T; ++j) {
      const bool want = i > e && openers.count(j) > 0;
      EXPECT_EQ(r[i][j].item<bool>(), want) << "query " << i << " key " << j;
    }
  }

  // share 0: nothing dropped; a share between draws per row, so some of many rows are picked and some are not.
  std::mt19937_64 rng0(3);
  EXPECT_FALSE(opener_drop_mask({rep}, T, 0.0, rng0).defined());
  std::mt19937_64 rng_half(3);
  const at::Tensor half = opener_drop_mask(std::vector<std::vector<int32_t>>(64, rep), T, 0.5, rng_half);
  ASSERT_TRUE(half.defined());
  const int64_t picked = half.flatten(2).any(2).sum().item<int64_t>();
  EXPECT_GT(picked, 16);
  EXPECT_LT(picked, 48);
}

TEST(ContextDrop, ThinsOnlyFillerForTheQueriesAfterTheContext) {
  using tasks::family_encode;
  auto row = [](const std::string& text) {
    std::vector<int32_t> t{tasks::kBosId, tasks::kCtxId};
    for (int32_t id : family_encode(text)) t.push_back(id);
    return t;
  };
  // A task sequence (context, then a question) and a repeat-like one (no question after the context).
  std::vector<int32_t> task = row("the sky is blue . the magic number for k001 is 5 0 6 9 . the sun is bright in the morning .");
  const int64_t e = static_cast<int64_t>(task.size());
  task.push_back(tasks::kCtxEndId);
  task.push_back(tasks::kQuestionId);
  for (int32_t id : family_encode("what is the magic number for k001 ?")) task.push_back(id);
  task.push_back(tasks::kAnswerId);
  std::vector<int32_t> other = row("the sky is blue . the sun is bright .");
  other.push_back(tasks::kCtxEndId);
  other.push_back(tasks::kRepeatId);
  const int64_t T = static_cast<int64_t>(task.size());
  auto is_fact = [](int32_t id) { return id >= tasks::kFirstDigitId; };

  ContextDropOptions all_filler;
  all_filler.share = 1.0;
  std::mt19937_64 rng(3);
  at::Tensor ever = at::zeros({T}, at::kBool);
  for (int trial = 0; trial < 50; ++trial) {
    at::Tensor m = context_drop_mask({task, other}, T, 2, 2, all_filler, rng);
    if (!m.defined()) continue;
    ASSERT_EQ(m.sizes(), (at::IntArrayRef{2, 2, 2, T, T}));
    EXPECT_FALSE(m.select(1, 1).any().item<bool>());                // no question after the context: untouched
    EXPECT_FALSE(m.select(1, 0).narrow(2, 0, e + 1).any().item<bool>());  // the context's own rows see everything
    const at::Tensor cols = m.select(1, 0).narrow(2, e + 1, T - e - 1).any(2).any(0).any(0);  // [T]
    for (int64_t j = 0; j < T; ++j) {
      if (!cols[j].item<bool>()) continue;
      ever[j] = true;
      EXPECT_TRUE(j >= 2 && j < e) << j;  // sinks, </ctx> and the question are never dropped
      EXPECT_FALSE(is_fact(task[j]) || is_fact(task[j - 1]) || is_fact(task[j + 1])) << j;
    }
    // Every row after the context sees the same thinned context (an evicted entry is gone for all of them).
    EXPECT_TRUE(at::equal(m.select(1, 0).select(2, e + 1), m.select(1, 0).select(2, T - 1)));
  }
  EXPECT_GT(ever.sum().item<int64_t>(), 10);  // the filler does get dropped
  std::mt19937_64 rng2(3);
  EXPECT_FALSE(context_drop_mask({task}, T, 2, 2, ContextDropOptions{}, rng2).defined());  // share 0: off

  // Facts droppable, layer 0 only: the digits do get dropped there, layer 1 is never thinned, and the draws are
  // those of the plain mask (same stream: every entry the plain mask drops in layer 0 is dropped here too).
  ContextDropOptions facts_layer0 = all_filler;
  facts_layer0.facts = true;
  facts_layer0.layers = {0};
  std::mt19937_64 rng3(5), rng4(5);
  at::Tensor facts_ever = at::zeros({T}, at::kBool);
  for (int trial = 0; trial < 50; ++trial) {
    at::Tensor plain = context_drop_mask({task}, T, 2, 2, all_filler, rng3);
    at::Tensor m = context_drop_mask({task}, T, 2, 2, facts_layer0, rng4);
    if (!m.defined()) continue;
    EXPECT_FALSE(m.select(0, 1).any().item<bool>());  // layer 1 keeps everything
    if (plain.defined()) {
      EXPECT_TRUE(at::equal(plain.select(0, 0) & m.select(0, 0), plain.select(0, 0)));
    }
    const at::Tensor cols = m.select(1, 0).narrow(2, e + 1, T - e - 1).any(2).any(0).any(0);  // [T]
    for (int64_t j = 0; j < T; ++j) {
      if (!cols[j].item<bool>()) continue;
      EXPECT_TRUE(j >= 2 && j < e) << j;  // the sinks and </ctx> still stay
      if (is_fact(task[j])) facts_ever[j] = true;
    }
  }
  EXPECT_GT(facts_ever.sum().item<int64_t>(), 3);  // the key and digits of the fact get dropped

  // Structure, whole tokens: the key and digits always stay, the fact's `for`, `is` and `.` do get dropped, and a
  // dropped position is dropped in every layer and head at once; the plain mask's drops are a subset (same draws).
  ContextDropOptions structure_tokens = all_filler;
  structure_tokens.structure = true;
  structure_tokens.whole_tokens = true;
  std::mt19937_64 rng5(7), rng6(7);
  std::set<std::string> structure_dropped;
  for (int trial = 0; trial < 50; ++trial) {
    at::Tensor plain = context_drop_mask({task}, T, 2, 2, all_filler, rng5);
    at::Tensor m = context_drop_mask({task}, T, 2, 2, structure_tokens, rng6);
    if (!m.defined()) continue;
    const at::Tensor q = m.select(1, 0).select(2, T - 1);  // [layers, heads, T]: what the last query row misses
    if (plain.defined()) {
      // Whole tokens change which (layer, head) entries go, not which draws are made: the (0, 0) entries agree.
      const at::Tensor pq = plain.select(1, 0).select(2, T - 1);
      EXPECT_TRUE(at::equal(pq[0][0] & q[0][0], pq[0][0]));
    }
    for (int64_t j = 0; j < T; ++j) {
      const bool dropped = q[0][0][j].item<bool>();
      EXPECT_TRUE(at::equal(q.select(2, j), at::full({2, 2}, dropped, at::kBool))) << j;  // everywhere or nowhere
      if (!dropped) continue;
      EXPECT_TRUE(j >= 2 && j < e) << j;
      EXPECT_FALSE(is_fact(task[j])) << j;
      if (is_fact(task[j - 1]) || is_fact(task[j + 1])) structure_dropped.insert(tasks::family_decode({task[j]}));
    }
  }
  EXPECT_TRUE(structure_dropped.count("for") && structure_dropped.count("is") && structure_dropped.count("."));
}

// Against the plain statement: query row i does not see key column j exactly when j is at or after the row's first
// `<q>` and another `<q>` lies in (j, i].
TEST(QueryIsolation, EachQuestionSeesTheContextAndItselfOnly) {
  using tasks::family_encode;
  std::vector<int32_t> row{tasks::kBosId, tasks::kCtxId};
  for (int32_t id : family_encode("the magic number for k001 is 5 0 6 9 . the sun is bright .")) row.push_back(id);
  row.push_back(tasks::kCtxEndId);
  for (int q = 0; q < 3; ++q) {
    row.push_back(tasks::kQuestionId);
    for (int32_t id : family_encode("what is the magic number for k001 ?")) row.push_back(id);
    row.push_back(tasks::kAnswerId);
    for (int32_t id : family_encode("k001 is 5 0 6 9")) row.push_back(id);
    row.push_back(tasks::kEosId);
  }
  std::vector<int32_t> one_question(row.begin(), std::find(row.begin(), row.end(), tasks::kEosId) + 1);
  std::vector<int32_t> no_question{tasks::kBosId, tasks::kCtxId, tasks::kCtxEndId, tasks::kRepeatId};
  const int64_t T = static_cast<int64_t>(row.size()) - 2;  // the batch's inputs stop before the last token
  const at::Tensor m = query_isolation_mask({row, one_question, no_question}, T);
  ASSERT_TRUE(m.defined());
  ASSERT_EQ(m.sizes(), (at::IntArrayRef{1, 3, 1, T, T}));
  const int64_t first_q = std::find(row.begin(), row.end(), tasks::kQuestionId) - row.begin();
  int64_t hidden = 0;
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t j = 0; j < T; ++j) {
      bool expect = false;
      if (j >= first_q) {
        for (int64_t q = j + 1; q <= i; ++q) expect = expect || row[q] == tasks::kQuestionId;
      }
      ASSERT_EQ(m[0][0][0][i][j].item<bool>(), expect) << i << " " << j;
      hidden += expect;
    }
  }
  EXPECT_GT(hidden, 0);
  EXPECT_FALSE(m.select(1, 1).any().item<bool>());  // one question: nothing to hide
  EXPECT_FALSE(m.select(1, 2).any().item<bool>());
  EXPECT_FALSE(query_isolation_mask({one_question, no_question}, T).defined());

  auto phase = PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"isolate_queries", true}}, "test");
  ASSERT_TRUE(phase.is_ok()) << phase.status().to_string();
  EXPECT_TRUE(phase->isolate_queries);
  EXPECT_FALSE(PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}}, "test")->isolate_queries);
}

TEST(TrainLm, ResumeContinuesExactly) {
  const fs::path a = temp_dir("straight"), b = temp_dir("resumed");
  std::ostringstream sink;
  auto straight = TrainLmConfig::from_json(tiny_config(a.string(), 20), "a");
  ASSERT_TRUE(straight.is_ok());
  auto full = train_lm(*straight, false, sink);
  ASSERT_TRUE(full.is_ok());
  ASSERT_EQ(full->losses.size(), 20u);

  // The same run interrupted after 12 steps, then resumed from its checkpoint.
  auto cut = TrainLmConfig::from_json(tiny_config(b.string(), 20), "b");
  ASSERT_TRUE(cut.is_ok());
  auto first = train_lm(*cut, false, sink, /*stop_after=*/12);
  ASSERT_TRUE(first.is_ok());
  ASSERT_EQ(first->losses.size(), 12u);
  EXPECT_FALSE(fs::exists(b / "model.safetensors"));  // not finished: only the checkpoint exists
  auto second = train_lm(*cut, true, sink);
  ASSERT_TRUE(second.is_ok());
  ASSERT_EQ(second->losses.size(), 8u);
  EXPECT_NE(sink.str().find("resumed from"), std::string::npos);
  for (size_t i = 0; i < 20; ++i) {
    const double got = i < 12 ? first->losses[i] : second->losses[i - 12];
    EXPECT_NEAR(got, full->losses[i], 1e-5) << "step " << i;
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

// A checkpoint names the phases of the config that wrote it. Resuming it with a config that appends a phase works;
// with a config whose phases differ it is refused (it would go on training another curriculum at the checkpoint's
// step), and the message names both phase lists.
TEST(TrainLm, ResumeRefusesACheckpointOfAnotherCurriculum) {
  const fs::path dir = temp_dir("curriculum");
  std::ostringstream sink;
  auto first = TrainLmConfig::from_json(tiny_config(dir.string(), 4), "first");
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(train_lm(*first, false, sink).is_ok());

  json other = tiny_config(dir.string(), 6);
  other["phases"][0]["name"] = "other";
  auto mismatched = TrainLmConfig::from_json(other, "other");
  ASSERT_TRUE(mismatched.is_ok());
  auto refused = train_lm(*mismatched, true, sink);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("[\"tasks\",4]"), std::string::npos) << refused.status().message();
  EXPECT_NE(refused.status().message().find("[\"other\",6]"), std::string::npos) << refused.status().message();

  json longer = tiny_config(dir.string(), 6);  // the same phase run longer is another schedule too
  auto stretched = TrainLmConfig::from_json(longer, "longer");
  ASSERT_TRUE(stretched.is_ok());
  EXPECT_FALSE(train_lm(*stretched, true, sink).is_ok());

  json appended = tiny_config(dir.string(), 4);
  json extra = appended["phases"][0];
  extra["name"] = "more";
  extra["steps"] = 2;
  appended["phases"].push_back(extra);
  auto grown = TrainLmConfig::from_json(appended, "appended");
  ASSERT_TRUE(grown.is_ok());
  auto resumed = train_lm(*grown, true, sink);
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().message();
  EXPECT_EQ(resumed->losses.size(), 2u);
  fs::remove_all(dir);
}

// A phase with until_copy_loss ends at the first log point where the copy loss is below the threshold; the
// shortened schedule is kept in the checkpoint, so a resumed run continues in the next phase.
TEST(TrainLm, GatedPhaseEndsEarlyAndResumesInTheNextPhase) {
  const fs::path dir = temp_dir("gated");
  json j = tiny_config(dir.string(), 10);
  j["phases"] = json::array(
      {{{"name", "induction"},
        {"steps", 1000},
        {"batch", 4},
        {"mix", {{"induction", 1.0}}},
        {"induction_length", 32},
        {"until_copy_loss", 100.0}},  // any finite copy loss is below 100: ends at the first log point (step 10)
       {{"name", "tasks"},
        {"steps", 10},
        {"batch", 4},
        {"mix", {{"tasks", 1.0}}},
        {"context_min", 32},
        {"context_max", 48},
        {"qa_per_sequence", 1}}});
  auto config = TrainLmConfig::from_json(j, "gated");
  ASSERT_TRUE(config.is_ok()) << config.status().to_string();
  std::ostringstream progress;
  auto first = train_lm(*config, false, progress, /*stop_after=*/15);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->losses.size(), 15u);
  EXPECT_NE(progress.str().find("phase 'induction' ends at step 10"), std::string::npos) << progress.str();
  EXPECT_NE(progress.str().find("copy_loss"), std::string::npos);
  // Steps 11-15 ran the next phase of a 20-step schedule.
  EXPECT_NE(progress.str().find("stopped at step 15/20"), std::string::npos) << progress.str();
  auto second = train_lm(*config, true, progress);
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(second->losses.size(), 5u);  // 20 steps in all: 10 gated + 10
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));

  // A threshold below any reachable loss never fires: the phase runs its full length.
  j["phases"][0]["until_copy_loss"] = 1e-9;
  j["phases"][0]["steps"] = 20;
  auto never = TrainLmConfig::from_json(j, "never");
  ASSERT_TRUE(never.is_ok());
  fs::remove_all(dir);
  auto run = train_lm(*never, false, progress);
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(run->losses.size(), 30u);
  fs::remove_all(dir);
}

// A phase with its own lr holds it after a 50-step warm-up, whatever the cosine of the other phases is doing; the
// phases without one follow the cosine over the whole schedule.
TEST(TrainLmConfig, PhaseLearningRateOverridesTheCosine) {
  json j = tiny_config("/tmp/x", 100);
  j["phases"].push_back(j["phases"][0]);
  j["phases"][1]["name"] = "own-lr";
  j["phases"][1]["lr"] = 1e-3;
  auto c = TrainLmConfig::from_json(j, "cfg");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_DOUBLE_EQ(learning_rate_at(*c, 0), 1e-2 / 5);  // the run's warm-up (5 steps)
  // Cosine over 200 steps: halfway through the decay at step 5 + 195 / 2.
  const double progress = 45.0 / 195.0;
  EXPECT_NEAR(learning_rate_at(*c, 50), 1e-2 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress))), 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate_at(*c, 100), 1e-3 / 50);
  EXPECT_DOUBLE_EQ(learning_rate_at(*c, 124), 1e-3 * 25 / 50);
  EXPECT_DOUBLE_EQ(learning_rate_at(*c, 149), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate_at(*c, 199), 1e-3);
  j["phases"][1]["lr"] = -1;
  auto bad = TrainLmConfig::from_json(j, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("lr must be"), std::string::npos);
}

TEST(TrainLmConfig, ErrorsNameTheProblem) {
  json bad = tiny_config("/tmp/x", 10);
  bad["model"]["vocab_size"] = 100;
  auto c = TrainLmConfig::from_json(bad, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("vocab_size"), std::string::npos);

  bad = tiny_config("/tmp/x", 10);
  bad["phases"][0]["mix"] = {{"induction", 0.0}};
  c = TrainLmConfig::from_json(bad, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("mix"), std::string::npos);

  bad = tiny_config("/tmp/x", 10);
  bad["phases"][0]["tasks"] = {"niah_nonsense"};
  c = TrainLmConfig::from_json(bad, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("niah_nonsense"), std::string::npos);

  bad = tiny_config("/tmp/x", 10);
  bad["phases"][0]["until_copy_loss"] = 1.0;  // no induction sequences in that phase: could never fire
  c = TrainLmConfig::from_json(bad, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("until_copy_loss"), std::string::npos);

  // context_drop_scorer: a scorer that evicts, a known level, a keep ratio above 0, and no random-draw options
  // (context_drop_layers is not one: it limits the scorer's eviction to those layers).
  auto scorer_phase = [](const json& extra) {
    json cfg = tiny_config("/tmp/x", 10);
    cfg["phases"][0]["context_drop_share"] = 0.5;
    cfg["phases"][0]["context_drop_max"] = 0.8;
    cfg["phases"][0]["context_drop_scorer"] = "kvzip";
    for (const auto& [k, v] : extra.items()) cfg["phases"][0][k] = v;
    return TrainLmConfig::from_json(cfg, "cfg.json");
  };
  auto ok = scorer_phase(json::object());
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->phases[0].context_drop.scorer, "kvzip");
  EXPECT_EQ(ok->phases[0].context_drop.level, "token");
  EXPECT_FALSE(ok->phases[0].context_drop.repeat);
  auto with_repeat = scorer_phase({{"context_drop_repeat", true}});
  ASSERT_TRUE(with_repeat.is_ok()) << with_repeat.status().to_string();
  EXPECT_TRUE(with_repeat->phases[0].context_drop.repeat);
  auto with_layers = scorer_phase({{"context_drop_layers", {0}}});
  ASSERT_TRUE(with_layers.is_ok()) << with_layers.status().to_string();
  EXPECT_EQ(with_layers->phases[0].context_drop.layers, (std::vector<int64_t>{0}));
  bad = tiny_config("/tmp/x", 10);
  bad["phases"][0]["context_drop_repeat"] = true;  // no dropout in the phase: nothing to apply it to
  c = TrainLmConfig::from_json(bad, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("_repeat need context_drop_share > 0"), std::string::npos)
      << c.status().message();
  for (const auto& [extra, needle] : std::vector<std::pair<json, std::string>>{
           {{{"context_drop_scorer", "full"}}, "not a scorer that evicts"},
           {{{"context_drop_scorer", "kvzipp"}}, "kvzipp"},
           {{{"context_drop_level", "row"}}, "'row'"},
           {{{"context_drop_max", 1.0}}, "context_drop_max < 1"},
           {{{"context_drop_structure", true}}, "takes none of"}}) {
    c = scorer_phase(extra);
    ASSERT_FALSE(c.is_ok()) << extra.dump();
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
  }

  // repeat_drop_openers: a share in [0, 1] of reconstruction rows, which the phase must have.
  json openers = tiny_config("/tmp/x", 10);
  openers["phases"][0]["mix"] = {{"recall", 0.5}, {"repeat", 0.5}};
  openers["phases"][0]["repeat_drop_openers"] = 0.7;
  auto with_openers = TrainLmConfig::from_json(openers, "cfg.json");
  ASSERT_TRUE(with_openers.is_ok()) << with_openers.status().to_string();
  EXPECT_DOUBLE_EQ(with_openers->phases[0].repeat_drop_openers, 0.7);
  openers["phases"][0]["repeat_drop_openers"] = 1.5;
  c = TrainLmConfig::from_json(openers, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("repeat_drop_openers must lie in [0, 1]"), std::string::npos);
  openers["phases"][0]["repeat_drop_openers"] = 0.7;
  openers["phases"][0]["mix"] = {{"recall", 1.0}};
  c = TrainLmConfig::from_json(openers, "cfg.json");
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("needs reconstruction rows"), std::string::npos) << c.status().message();

  EXPECT_EQ(TrainLmConfig::from_file("/nonexistent.json").status().code(), StatusCode::kNotFound);
}

// Where a config's init_from comes from in a clean clone: committed weights, or the out_dir of a committed trial
// config that is itself rebuildable this way (a chain like the target's, whose middle steps write under build/).
// Returns the chain's committed root ("" when it starts from random weights), or an error naming the broken link.
Result<std::string> resolve_init_chain(const std::string& init_from) {
  const fs::path root(PROXYKV_SOURCE_DIR);
  std::string dir = init_from;
  for (int depth = 0; depth < 32 && !dir.empty(); ++depth) {
    if (fs::exists(root / dir / "model.safetensors") && dir.rfind("build/", 0) != 0) return dir;
    std::string next;
    bool found = false;
    for (const auto& entry : fs::directory_iterator(root / "models/configs/trials")) {
      if (entry.path().extension() != ".json") continue;
      auto c = TrainLmConfig::from_file(entry.path().string());
      if (c.is_ok() && c->out_dir == dir) {
        next = c->init_from;
        found = true;
        break;
      }
    }
    if (!found) return not_found("'" + dir + "' is neither committed nor a trial's out_dir");
    dir = next;
  }
  if (dir.empty()) return std::string();
  return invalid_argument("init_from chain longer than 32 steps (a cycle?)");
}

// The committed training configs load (so a phase option added or mistyped there fails here, not hours into a
// run), and each writes to models/<its name>, which scripts/device-train.sh and stage-model.sh rely on. A starting
// point must be rebuildable from the repo alone: CI runs on a clean clone, where nothing under build/ exists.
TEST(TrainLmConfig, CommittedConfigsLoad) {
  for (const std::string name : {"proxy", "proxy-v1", "proxy-v2", "proxy-v3", "target"}) {
    auto c = TrainLmConfig::from_file(std::string(PROXYKV_SOURCE_DIR) + "/models/configs/" + name + ".json");
    ASSERT_TRUE(c.is_ok()) << name << ": " << c.status().to_string();
    EXPECT_EQ(c->out_dir, "models/" + name);
    EXPECT_FALSE(c->phases.empty()) << name;
    if (!c->init_from.empty()) {
      auto chain = resolve_init_chain(c->init_from);
      EXPECT_TRUE(chain.is_ok()) << name << ": " << chain.status().to_string();
    }
  }
  // The target's chain ends in weights committed under models/trials (k6 starts from k5's step 300).
  auto target = TrainLmConfig::from_file(std::string(PROXYKV_SOURCE_DIR) + "/models/configs/target.json");
  ASSERT_TRUE(target.is_ok());
  if (!target->init_from.empty()) {
    auto chain = resolve_init_chain(target->init_from);
    ASSERT_TRUE(chain.is_ok()) << chain.status().to_string();
    EXPECT_TRUE(chain->rfind("models/", 0) == 0) << *chain;
  }
  EXPECT_FALSE(resolve_init_chain("build/no-such-run").is_ok());
}

// Issue 3 bounds the bundled models: the whole of models/ under 30 MB (decimal; counted as git stores it, so a
// symlink is its link, not its target). The finished runs' checkpoints link their model.safetensors to the model
// beside them (the same bytes; a resumed run writes a real file in the new checkpoint).
TEST(BundledModels, StayUnder30MB) {
  uintmax_t bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(PROXYKV_SOURCE_DIR) / "models")) {
    if (entry.is_symlink()) {
      EXPECT_TRUE(fs::exists(entry.path())) << entry.path() << " is a dangling link";
      continue;
    }
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  EXPECT_LT(bytes, 30'000'000u);
}

// The trial configs (models/configs/trials, named in docs/training.md with the commands that ran them) load too.
TEST(TrainLmConfig, CommittedTrialConfigsLoad) {
  int seen = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(PROXYKV_SOURCE_DIR) / "models/configs/trials")) {
    if (entry.path().extension() != ".json") continue;
    auto c = TrainLmConfig::from_file(entry.path().string());
    EXPECT_TRUE(c.is_ok()) << entry.path() << ": " << c.status().to_string();
    ++seen;
  }
  EXPECT_GE(seen, 1);
}

}  // namespace
}  // namespace proxykv::training
