// PromptFormat: the family's ids equal the tokenizer's own reading of the written-out prompt
// ("<bos> <ctx> ... </ctx>", "<q> ... <a>", the special tokens inline), on generated task contexts; a
// tokenizer without the family's tokens gets the plain format.
#include "proxykv/model/prompt_format.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv {
namespace {

std::vector<int64_t> ids_of(const Tokenizer& t, const std::string& text) {
  std::vector<int32_t> ids = t.encode(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TEST(PromptFormat, FamilyIdsAreTheWrittenOutPrompt) {
  auto tokenizer = Tokenizer::from_json_string(tasks::family_tokenizer_json().dump(), "family");
  ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  ModelSpec spec;
  spec.eos_token_id = tasks::kEosId;
  const PromptFormat f = PromptFormat::for_model(*tokenizer, spec);
  EXPECT_TRUE(f.family);
  EXPECT_EQ(f.n_sink, 2);
  ASSERT_EQ(f.stop_ids.size(), 1u);  // <eos> is the spec's eos_token_id: listed once
  EXPECT_EQ(f.stop_ids[0], tasks::kEosId);
  EXPECT_EQ(f.repeat_prompt, ids_of(*tokenizer, "<repeat>"));
  for (const std::string& task : tasks::task_families()) {
    tasks::TaskSpec ts;
    ts.task = task;
    ts.length_tokens = 200;
    ts.facts = tasks::default_facts(task);
    ts.queries = 2;
    ts.n_contexts = 2;
    ts.seed = 9;
    auto contexts = tasks::generate_tasks(ts);
    ASSERT_TRUE(contexts.is_ok()) << contexts.status().to_string();
    for (const auto& c : *contexts) {
      EXPECT_EQ(f.context_ids(*tokenizer, c.context), ids_of(*tokenizer, "<bos> <ctx> " + c.context + " </ctx>"))
          << c.id;
      for (const auto& q : c.queries) {
        EXPECT_EQ(f.question_ids(*tokenizer, q.question), ids_of(*tokenizer, "<q> " + q.question + " <a>")) << c.id;
      }
    }
  }
}

TEST(PromptFormat, OtherTokenizersGetThePlainFormat) {
  // A word-level vocabulary without the family's special tokens.
  nlohmann::json doc = {{"version", "1.0"},
                        {"added_tokens", nlohmann::json::array()},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", {{"type", "Whitespace"}}},
                        {"post_processor", nullptr},
                        {"decoder", nullptr},
                        {"model", {{"type", "WordLevel"}, {"vocab", {{"[UNK]", 0}, {"a", 1}, {"b", 2}}},
                                   {"unk_token", "[UNK]"}}}};
  auto tokenizer = Tokenizer::from_json_string(doc.dump(), "plain");
  ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  ModelSpec spec;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  const PromptFormat f = PromptFormat::for_model(*tokenizer, spec);
  EXPECT_FALSE(f.family);
  EXPECT_EQ(f.n_sink, 1);
  EXPECT_EQ(f.context_ids(*tokenizer, "b a"), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_EQ(f.question_ids(*tokenizer, "a"), (std::vector<int64_t>{1}));  // "\n" is whitespace to this vocabulary
  EXPECT_EQ(f.stop_ids, (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace proxykv
