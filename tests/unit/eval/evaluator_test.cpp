#include "proxykv/eval/evaluator.h"

#include <gtest/gtest.h>

#include "proxykv/tasks/vocabulary.h"

namespace proxykv::eval {
namespace {

std::unique_ptr<DecoderLM> tiny_family_model() {
  ModelSpec spec;
  spec.arch = Architecture::kQwen3;
  spec.qk_norm = true;
  spec.vocab_size = tasks::kFamilyVocabSize;
  spec.hidden_size = 32;
  spec.intermediate_size = 64;
  spec.num_layers = 1;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.head_dim = 16;
  spec.max_position_embeddings = 4096;
  spec.tie_word_embeddings = true;
  spec.eos_token_id = tasks::kEosId;
  return std::move(DecoderLM::random_init(spec, 1, 0.5).value());
}

Tokenizer family_tokenizer() {
  return std::move(Tokenizer::from_json_string(tasks::family_tokenizer_json().dump(), "family").value());
}

TEST(Evaluator, ReportCountsEveryQueryAndDropsQuestionKv) {
  auto model = tiny_family_model();
  Tokenizer tok = family_tokenizer();
  auto ev = Evaluator::create(*model, tok, EvalOptions{});
  ASSERT_TRUE(ev.is_ok()) << ev.status().to_string();
  tasks::TaskSpec spec{"niah_multikey", 120, 3, 5, 2, 42};
  auto contexts = tasks::generate_tasks(spec);
  ASSERT_TRUE(contexts.is_ok());

  auto [cache, n] = ev->prefill_context((*contexts)[0].context);
  EXPECT_EQ(n, 120);
  const int64_t before = cache.length(0, 0);
  ev->answer(cache, (*contexts)[0].queries[0].question);
  EXPECT_EQ(cache.length(0, 0), before);  // the question's KV was dropped
  EXPECT_EQ(cache.next_position(), before);

  int64_t calls = 0;
  auto report = ev->run(*contexts, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 2);
  });
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(calls, 2);
  nlohmann::json j = report->to_json();
  ASSERT_EQ(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["method"], "full");
  EXPECT_EQ(j["results"][0]["keep_ratio"], 1.0);
  EXPECT_EQ(j["results"][0]["task"], "niah_multikey");
  EXPECT_EQ(j["results"][0]["queries"], 10);
  EXPECT_DOUBLE_EQ(j["results"][0]["context_tokens_mean"].get<double>(), 120.0);
  ASSERT_EQ(j["summary"].size(), 1u);
  const double acc = j["summary"][0]["accuracy"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
}

TEST(EvalReport, SummaryAveragesOverAllQueries) {
  EvalReport r;
  r.rows.push_back(EvalRow{"full", 1.0, "a", 3, 4, 100, 1});
  r.rows.push_back(EvalRow{"full", 1.0, "b", 0, 12, 300, 1});
  nlohmann::json j = r.to_json();
  EXPECT_DOUBLE_EQ(j["results"][0]["accuracy"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["summary"][0]["accuracy"].get<double>(), 3.0 / 16.0);  // per query, not mean of tasks
}

TEST(Evaluator, RefusesTokenizerWithoutPromptTokensAndUnknownMethods) {
  auto model = tiny_family_model();
  auto plain = Tokenizer::from_json_string(
      R"({"model":{"type":"WordLevel","vocab":{"a":0,"<unk>":1},"unk_token":"<unk>"},
          "pre_tokenizer":{"type":"WhitespaceSplit"}})",
      "plain");
  ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
  auto ev = Evaluator::create(*model, *plain, EvalOptions{});
  ASSERT_FALSE(ev.is_ok());
  EXPECT_NE(ev.status().message().find("<bos>"), std::string::npos);

  Tokenizer tok = family_tokenizer();
  EvalOptions opts;
  opts.methods = {"full", "magic"};
  auto bad = Evaluator::create(*model, tok, opts);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("magic"), std::string::npos);
}

}  // namespace
}  // namespace proxykv::eval
