// make_scorer and what every scorer owes the evaluation: shape, sinks, an untouched cache, errors as statuses;
// the cheap heuristics (full, random, knorm, streaming) and SnapKV's pooling on hand-made inputs.
#include <algorithm>
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "proxykv/model/prompt_format.h"
#include "proxykv/scoring/scorers.h"
#include "proxykv/tasks/vocabulary.h"
#include "scoring_test_util.h"

namespace proxykv::scoring {
namespace {

using testing::random_prompt;
using testing::score_prompt;
using testing::scorer_for;
using testing::tiny_model;

constexpr float kInf = std::numeric_limits<float>::infinity();

ScorerOptions small_options() {
  ScorerOptions o;
  o.n_sink = 2;
  o.window = 12;
  o.pool_kernel = 5;
  o.kvzip_chunk = 23;
  o.repeat_prompt_first = {7, 8, 9};
  o.repeat_prompt_rest = {7, 8};
  o.repeat_overlap = 4;
  o.prefill_chunk = 16;
  return o;
}

TEST(MakeScorer, EveryListedMethodIsMadeUnderItsName) {
  const std::vector<std::string> expected{"full", "kvzip", "snapkv", "streaming", "h2o", "laprox", "knorm", "random"};
  EXPECT_EQ(scorer_names(), expected);
  for (const std::string& method : scorer_names()) {
    auto scorer = make_scorer(method, ScorerOptions{});
    ASSERT_TRUE(scorer.is_ok()) << method << ": " << scorer.status().to_string();
    EXPECT_EQ((*scorer)->name(), method);
  }
}

TEST(MakeScorer, UnknownMethodNamesItAndListsTheAvailableOnes) {
  auto scorer = make_scorer("nope", ScorerOptions{});
  ASSERT_FALSE(scorer.is_ok());
  EXPECT_EQ(scorer.status().code(), StatusCode::kInvalidArgument);
  const std::string& msg = scorer.status().message();
  EXPECT_NE(msg.find("'nope'"), std::string::npos) << msg;
  for (const std::string& method : scorer_names()) EXPECT_NE(msg.find(method), std::string::npos) << msg;
}

TEST(MakeScorer, InvalidOptionsAreRefusedByFieldName) {
  const std::vector<std::pair<std::string, void (*)(ScorerOptions&)>> cases{
      {"pool", [](ScorerOptions& o) { o.pool = "median"; }},
      {"pool_kernel", [](ScorerOptions& o) { o.pool_kernel = 4; }},
      {"window", [](ScorerOptions& o) { o.window = 0; }},
      {"kvzip_chunk", [](ScorerOptions& o) { o.kvzip_chunk = 0; }},
      {"n_sink", [](ScorerOptions& o) { o.n_sink = -1; }},
      {"repeat_overlap", [](ScorerOptions& o) { o.repeat_overlap = -2; }},
      {"prefill_chunk", [](ScorerOptions& o) { o.prefill_chunk = 0; }},
  };
  for (const auto& [field, spoil] : cases) {
    ScorerOptions o;
    spoil(o);
    auto scorer = make_scorer("snapkv", o);
    ASSERT_FALSE(scorer.is_ok()) << field;
    EXPECT_EQ(scorer.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(scorer.status().message().find("ScorerOptions." + field), std::string::npos) << scorer.status().message();
  }
}

class EveryScorer : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryScorer, ShapeSinksAndAnUntouchedCache) {
  auto model = tiny_model();
  const ModelSpec& spec = model->spec();
  const ScorerOptions opts = small_options();
  for (int64_t T : {3, 41, 77}) {
    auto scorer = scorer_for(GetParam(), opts);
    at::Tensor ids = random_prompt(T, spec.vocab_size, 100 + T);
    KvCache cache = model->new_cache();
    PrefillOptions prefill;
    prefill.chunk_size = 16;
    prefill.observer = scorer->begin(*model, T);
    model->prefill(ids, cache, prefill);
    const KvCache before = cache.clone();

    auto scores = scorer->finish(*model, cache, ids);
    ASSERT_TRUE(scores.is_ok()) << scores.status().to_string();
    EXPECT_EQ(scores->sizes(), (std::vector<int64_t>{spec.num_layers, spec.num_kv_heads, T}));
    EXPECT_EQ(scores->scalar_type(), at::kFloat);
    EXPECT_TRUE(scores->device().is_cpu());
    EXPECT_TRUE(scores->narrow(2, 0, std::min(opts.n_sink, T)).eq(kInf).all().item<bool>()) << "sinks are +inf";
    EXPECT_FALSE(scores->isnan().any().item<bool>());

    EXPECT_EQ(cache.next_position(), before.next_position());
    for (int64_t l = 0; l < spec.num_layers; ++l) {
      for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
        ASSERT_EQ(cache.length(l, h), T);
        EXPECT_TRUE(at::equal(cache.keys(l, h), before.keys(l, h))) << "layer " << l << " head " << h;
        EXPECT_TRUE(at::equal(cache.values(l, h), before.values(l, h))) << "layer " << l << " head " << h;
      }
    }
  }
}

TEST_P(EveryScorer, RaggedOrMismatchedCacheIsAnError) {
  auto model = tiny_model();
  const int64_t T = 30;
  at::Tensor ids = random_prompt(T, model->spec().vocab_size, 5);
  auto scorer = scorer_for(GetParam(), small_options());
  KvCache cache = model->new_cache();
  PrefillOptions prefill;
  prefill.observer = scorer->begin(*model, T);
  model->prefill(ids, cache, prefill);

  auto short_ids = scorer->finish(*model, cache, ids.narrow(0, 0, T - 1));
  ASSERT_FALSE(short_ids.is_ok());
  EXPECT_EQ(short_ids.status().code(), StatusCode::kFailedPrecondition) << short_ids.status().to_string();

  std::vector<std::vector<at::Tensor>> keep(model->spec().num_layers);
  for (auto& layer : keep) {
    for (int64_t h = 0; h < model->spec().num_kv_heads; ++h) layer.push_back(at::arange(T - h, at::kLong));
  }
  ASSERT_TRUE(cache.compact(keep).is_ok());
  auto ragged = scorer->finish(*model, cache, ids);
  ASSERT_FALSE(ragged.is_ok());
  EXPECT_EQ(ragged.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(ragged.status().message().find("ragged"), std::string::npos) << ragged.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(Scorers, EveryScorer, ::testing::ValuesIn(scorer_names()),
                         [](const auto& info) { return info.param; });

class ObservingScorer : public ::testing::TestWithParam<std::string> {};

TEST_P(ObservingScorer, PrefillWithoutItsObserverIsAnError) {
  auto model = tiny_model();
  const int64_t T = 30;
  at::Tensor ids = random_prompt(T, model->spec().vocab_size, 6);
  auto scorer = scorer_for(GetParam(), small_options());
  KvCache cache = model->new_cache();
  model->prefill(ids, cache);  // begin() never called

  auto no_begin = scorer->finish(*model, cache, ids);
  ASSERT_FALSE(no_begin.is_ok());
  EXPECT_EQ(no_begin.status().code(), StatusCode::kFailedPrecondition) << no_begin.status().to_string();

  ASSERT_NE(scorer->begin(*model, T), nullptr);  // observer returned but not attached to the prefill
  auto unobserved = scorer->finish(*model, cache, ids);
  ASSERT_FALSE(unobserved.is_ok());
  EXPECT_EQ(unobserved.status().code(), StatusCode::kFailedPrecondition) << unobserved.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(Scorers, ObservingScorer, ::testing::Values("h2o", "snapkv", "laprox"),
                         [](const auto& info) { return info.param; });

// The scorer options a prompt format decides: its sinks and KVzip's repeat prompt for both chunk kinds; the
// other options are left as the caller set them.
TEST(ApplyPromptFormat, SinksAndRepeatPromptComeFromTheFormat) {
  auto tokenizer = Tokenizer::from_json_string(tasks::family_tokenizer_json().dump(), "family");
  ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  const PromptFormat family = PromptFormat::for_model(*tokenizer, ModelSpec{});
  ScorerOptions o;
  o.n_sink = 5;
  o.kvzip_chunk = 17;
  o.window = 3;
  apply_prompt_format(family, o);
  EXPECT_EQ(o.n_sink, 2);
  EXPECT_EQ(o.repeat_prompt_first, std::vector<int64_t>{*tokenizer->token_to_id("<repeat>")});
  EXPECT_EQ(o.repeat_prompt_rest, o.repeat_prompt_first);
  EXPECT_EQ(o.kvzip_chunk, 17);
  EXPECT_EQ(o.window, 3);

  PromptFormat plain;  // a model with a BOS and an English repeat instruction
  plain.context_prefix = {7};
  plain.n_sink = 1;
  plain.repeat_prompt = {11, 12, 13};
  apply_prompt_format(plain, o);
  EXPECT_EQ(o.n_sink, 1);
  EXPECT_EQ(o.repeat_prompt_first, (std::vector<int64_t>{11, 12, 13}));
  EXPECT_EQ(o.repeat_prompt_rest, (std::vector<int64_t>{11, 12, 13}));
}

TEST(FullScorer, OnesBeyondTheSinks) {
  auto model = tiny_model();
  at::Tensor ids = random_prompt(20, model->spec().vocab_size, 1);
  auto full = scorer_for("full", small_options());
  auto run = score_prompt(*model, *full, ids, 16);
  ASSERT_TRUE(run.scores.is_ok());
  EXPECT_TRUE(run.scores->narrow(2, 2, 18).eq(1.0f).all().item<bool>());
}

TEST(RandomScorer, DeterministicPerSeedUniformInUnitInterval) {
  auto model = tiny_model();
  at::Tensor ids = random_prompt(50, model->spec().vocab_size, 2);
  ScorerOptions o = small_options();
  o.seed = 7;
  auto a = score_prompt(*model, *scorer_for("random", o), ids, 16).scores.value();
  auto scorer = scorer_for("random", o);
  auto b = score_prompt(*model, *scorer, ids, 16).scores.value();
  auto b_again = score_prompt(*model, *scorer, ids, 16).scores.value();  // the same scorer, a second context
  o.seed = 8;
  auto c = score_prompt(*model, *scorer_for("random", o), ids, 16).scores.value();
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_TRUE(at::equal(b, b_again));
  EXPECT_FALSE(at::equal(a, c));
  at::Tensor body = a.narrow(2, 2, 48);
  EXPECT_GE(body.min().item<float>(), 0.0f);
  EXPECT_LT(body.max().item<float>(), 1.0f);
  EXPECT_GT(body.std().item<float>(), 0.2f);  // uniform: std 0.289
}

TEST(KnormScorer, MinusTheKeyNormSoLowNormKeysWin) {
  auto model = tiny_model(Architecture::kLlama);  // no k_norm: key norms vary
  const int64_t T = 45;
  at::Tensor ids = random_prompt(T, model->spec().vocab_size, 3);
  auto run = score_prompt(*model, *scorer_for("knorm", small_options()), ids, 16);
  ASSERT_TRUE(run.scores.is_ok());
  double err = 0.0;
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t h = 0; h < 2; ++h) {
      at::Tensor norms = run.cache.keys(l, h).to(at::kDouble).pow(2).sum(-1).sqrt();  // [T]
      at::Tensor s = run.scores->select(0, l).select(0, h).narrow(0, 2, T - 2);
      EXPECT_TRUE(s.le(0).all().item<bool>()) << "scores are minus norms";
      err = std::max(err, (s.to(at::kDouble) + norms.narrow(0, 2, T - 2)).abs().max().item<double>());
      EXPECT_EQ(s.argmax().item<int64_t>(), norms.narrow(0, 2, T - 2).argmin().item<int64_t>());
    }
  }
  EXPECT_LE(err, 1e-5);
  std::cout << "[ max err ] knorm " << err << "\n";
}

TEST(StreamingScorer, RecentTokensWinTheSameEverywhere) {
  auto model = tiny_model();
  const int64_t T = 33;
  at::Tensor ids = random_prompt(T, model->spec().vocab_size, 4);
  auto run = score_prompt(*model, *scorer_for("streaming", small_options()), ids, 16);
  ASSERT_TRUE(run.scores.is_ok());
  at::Tensor body = run.scores->narrow(2, 2, T - 2);
  EXPECT_TRUE((body.narrow(2, 1, T - 3) > body.narrow(2, 0, T - 3)).all().item<bool>()) << "increasing in t";
  EXPECT_TRUE(at::equal(body, body[0][0].expand_as(body))) << "identical across layers and heads";
}

// Hand-made: a spike of 5 at index 2 and of 1 at index 8; an edge value of 2 at index 0.
TEST(PoolAlongTokens, MaxAndAvgWithSnapkvPadding) {
  at::Tensor x = at::tensor({2.0f, 0.0f, 5.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}).view({1, 1, 10});
  at::Tensor max3 = pool_along_tokens(x, 3, "max").view({10});
  EXPECT_TRUE(at::equal(max3, at::tensor({2.0f, 5.0f, 5.0f, 5.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f})));
  at::Tensor avg3 = pool_along_tokens(x, 3, "avg").view({10});
  // Zero padding counts in the mean at the edges (count_include_pad): (0 + 2 + 0) / 3 at index 0.
  at::Tensor expect_avg3 = at::tensor({2.0f, 7.0f, 5.0f, 5.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f}) / 3.0f;
  EXPECT_TRUE(at::allclose(avg3, expect_avg3));
  at::Tensor max5 = pool_along_tokens(x, 5, "max").view({10});
  EXPECT_TRUE(at::equal(max5, at::tensor({5.0f, 5.0f, 5.0f, 5.0f, 5.0f, 0.0f, 1.0f, 1.0f, 1.0f, 1.0f})));
  EXPECT_TRUE(at::equal(pool_along_tokens(x, 1, "max"), x));
  // Shorter than the kernel, and a leading shape of [2, 3].
  at::Tensor y = at::arange(12, at::kFloat).view({2, 3, 2});
  EXPECT_TRUE(at::equal(pool_along_tokens(y, 7, "max"), y.amax(-1, true).expand({2, 3, 2})));
}

}  // namespace
}  // namespace proxykv::scoring
