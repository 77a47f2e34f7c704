// The task generators against shared/TASKS.md: lengths, templates, fact placement, distinct keys, queries with
// replacement, determinism, and invalid specs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"
#include "tasks_test_util.h"

namespace proxykv::tasks {
namespace {

using test::ContextFacts;
using test::derive_answers;
using test::read_context;
using test::TempDir;
using test::words_of;

TaskSpec spec_for(const std::string& task, int64_t length, int facts, int queries = 8, int n = 3, uint64_t seed = 11) {
  return TaskSpec{task, length, facts, queries, n, seed};
}

std::vector<TaskContext> generate_or_die(const TaskSpec& spec) {
  auto result = generate_tasks(spec);
  EXPECT_TRUE(result.is_ok()) << result.status().to_string();
  return result.is_ok() ? std::move(result).value() : std::vector<TaskContext>{};
}

// Writes through the interchange format and reads back, so every check below sees what an evaluator would see.
std::vector<TaskContext> through_jsonl(const std::vector<TaskContext>& contexts) {
  TempDir dir;
  const std::string path = dir.file("tasks.jsonl");
  EXPECT_TRUE(write_task_file(path, contexts).is_ok());
  auto read = read_task_file(path);
  EXPECT_TRUE(read.is_ok()) << read.status().to_string();
  return read.is_ok() ? std::move(read).value() : std::vector<TaskContext>{};
}

// The shortest filler sentence has 4 words, so a leftover of 1 to 3 words cannot be filled.
constexpr int64_t kLengthSlack = 3;

TEST(TaskGeneratorsTest, HitsLengthForEveryFamily) {
  for (const std::string& task : task_families()) {
    for (const int64_t length : {256, 1000, 4096}) {
      SCOPED_TRACE(task + " at " + std::to_string(length));
      for (const TaskContext& context : generate_or_die(spec_for(task, length, default_facts(task)))) {
        const auto words = static_cast<int64_t>(words_of(context.context).size());
        EXPECT_LE(words, length);
        EXPECT_GE(words, length - kLengthSlack);
      }
    }
  }
}

TEST(TaskGeneratorsTest, LengthIsExactUnlessLeftoverIsShorterThanAnySentence) {
  // niah_multikey with 2 facts: 22 fact words; sweep every length from the facts alone to a few sentences more.
  for (int64_t length = 22; length <= 160; ++length) {
    const auto contexts = generate_or_die(spec_for("niah_multikey", length, 2, 1, 2, static_cast<uint64_t>(length)));
    for (const TaskContext& context : contexts) {
      const auto words = static_cast<int64_t>(words_of(context.context).size());
      const int64_t leftover = length - 22;
      EXPECT_EQ(words, leftover >= 1 && leftover <= 3 ? 22 : length) << "length " << length;
    }
  }
}

TEST(TaskGeneratorsTest, EveryAnswerIsDerivableFromTheContext) {
  struct Case {
    std::string task;
    int facts;
  };
  const std::vector<Case> cases = {{"niah_single", 1},       {"niah_multikey", 2},    {"niah_multikey", 12},
                                   {"niah_multivalue", 1},   {"niah_multivalue", 5},  {"niah_multiquery", 2},
                                   {"niah_multiquery", 9},   {"kv_retrieval", 1},     {"kv_retrieval", 64},
                                   {"variable_tracking", 1}, {"variable_tracking", 6}};
  for (const Case& c : cases) {
    for (const int64_t length : {256, 1000}) {
      SCOPED_TRACE(c.task + " facts " + std::to_string(c.facts) + " length " + std::to_string(length));
      const TaskSpec spec = spec_for(c.task, length, c.facts, 10, 4, 5);
      const auto contexts = through_jsonl(generate_or_die(spec));
      ASSERT_EQ(contexts.size(), 4u);
      for (const TaskContext& context : contexts) {
        EXPECT_EQ(context.task, c.task);
        const ContextFacts facts = read_context(context.context);
        EXPECT_TRUE(facts.errors.empty()) << facts.errors.front();

        // The facts the spec asked for, with distinct keys.
        if (c.task == "niah_multivalue") {
          ASSERT_EQ(facts.magic.size(), 1u);
          const auto& numbers = facts.magic.begin()->second;
          EXPECT_EQ(numbers.size(), static_cast<std::size_t>(c.facts));
          EXPECT_EQ(std::set<std::string>(numbers.begin(), numbers.end()).size(), numbers.size());
        } else if (c.task == "kv_retrieval") {
          EXPECT_EQ(facts.kv.size(), static_cast<std::size_t>(c.facts));
          std::set<std::string> values;
          for (const auto& [key, vs] : facts.kv) {
            EXPECT_EQ(vs.size(), 1u) << key << " appears in several facts";
            values.insert(vs.begin(), vs.end());
          }
          EXPECT_EQ(values.size(), facts.kv.size()) << "values repeat";
        } else if (c.task == "variable_tracking") {
          EXPECT_EQ(facts.var_number.size(), static_cast<std::size_t>(c.facts));
          EXPECT_EQ(facts.var_copy.size(), static_cast<std::size_t>(c.facts * (kChainKeys - 1)));
          EXPECT_EQ(facts.fact_sentences, c.facts * kChainKeys);
        } else {
          EXPECT_EQ(facts.magic.size(), static_cast<std::size_t>(c.facts));
          for (const auto& [key, numbers] : facts.magic) EXPECT_EQ(numbers.size(), 1u) << key << " is repeated";
        }

        // niah_single and niah_multivalue have one distinct question, and ask it once.
        const bool single_question = c.task == "niah_single" || c.task == "niah_multivalue";
        EXPECT_EQ(context.queries.size(), single_question ? 1u : 10u);
        for (const TaskQuery& query : context.queries) {
          SCOPED_TRACE(query.question);
          std::vector<std::string> expected = derive_answers(facts, query.question);
          ASSERT_FALSE(expected.empty()) << "question not answerable from the context";
          std::vector<std::string> answers = query.answers;
          if (c.task == "variable_tracking") {
            EXPECT_EQ(answers.size(), static_cast<std::size_t>(kChainKeys));
            std::sort(answers.begin(), answers.end());
          }
          EXPECT_EQ(answers, expected);
          if (c.task == "niah_multiquery") {
            EXPECT_EQ(answers.size(), static_cast<std::size_t>(std::min(c.facts, kMultiqueryKeysPerQuestion)));
          }
          EXPECT_TRUE(string_match_all(test::join_words(query.answers, 0, query.answers.size()), query.answers));
        }
      }
    }
  }
}

std::set<std::string> joined_set() {
  return std::set<std::string>(joined_filler_sentences().begin(), joined_filler_sentences().end());
}

std::set<std::string> joined_or_short() {
  std::set<std::string> out = joined_set();
  out.insert(filler_sentences().begin(), filler_sentences().end());
  return out;
}

TEST(TaskGeneratorsTest, JoinedHaystackHoldsOnlyJoinedSentencesAndTheSameFacts) {
  const std::set<std::string> joined = joined_set();
  for (const std::string& task : task_families()) {
    for (const int64_t length : {256, 1000}) {
      SCOPED_TRACE(task + " at " + std::to_string(length));
      TaskSpec spec = spec_for(task, length, default_facts(task), 6, 3, 9);
      const auto short_contexts = generate_or_die(spec);
      spec.haystack = HaystackKind::kJoined;
      const auto contexts = through_jsonl(generate_or_die(spec));
      ASSERT_EQ(contexts.size(), short_contexts.size());
      for (std::size_t i = 0; i < contexts.size(); ++i) {
        const ContextFacts facts = read_context(contexts[i].context, joined);
        EXPECT_TRUE(facts.errors.empty()) << facts.errors.front();
        EXPECT_GT(facts.filler_sentences, 0);
        // Every budget of 18+ words is met exactly with sentences of 9 to 16 words.
        EXPECT_EQ(facts.words, length);
        for (const TaskQuery& query : contexts[i].queries) {
          std::vector<std::string> expected = derive_answers(facts, query.question);
          std::vector<std::string> answers = query.answers;
          if (task == "variable_tracking") std::sort(answers.begin(), answers.end());
          EXPECT_EQ(answers, expected) << query.question;
        }
        // The haystack is not part of the seed: the same keys hold the same numbers and values.
        const ContextFacts short_facts = read_context(short_contexts[i].context);
        EXPECT_EQ(facts.magic, short_facts.magic);
        EXPECT_EQ(facts.kv, short_facts.kv);
        EXPECT_EQ(facts.var_number, short_facts.var_number);
        EXPECT_EQ(facts.var_copy, short_facts.var_copy);
        EXPECT_NE(contexts[i].context, short_contexts[i].context);
      }
    }
  }
}

TEST(TaskGeneratorsTest, JoinedHaystackFillsWhatItCannotWithShortSentences) {
  // niah_multikey with 2 facts: 22 fact words. Joined sentences (9-16 words) cannot make a leftover of 4-8 or 17
  // words; those take short sentences, so the length rule stays the short haystack's.
  for (int64_t length = 22; length <= 80; ++length) {
    TaskSpec spec = spec_for("niah_multikey", length, 2, 1, 2, static_cast<uint64_t>(length));
    spec.haystack = HaystackKind::kJoined;
    for (const TaskContext& context : generate_or_die(spec)) {
      const int64_t leftover = length - 22;
      const ContextFacts facts = read_context(context.context, joined_or_short());
      EXPECT_TRUE(facts.errors.empty()) << facts.errors.front();
      EXPECT_EQ(facts.words, leftover >= 1 && leftover <= 3 ? 22 : length) << "length " << length;
      const ContextFacts as_joined = read_context(context.context, joined_set());
      const bool joined_fits = leftover <= 3 || (leftover >= 9 && leftover != 17);
      EXPECT_EQ(as_joined.errors.empty(), joined_fits) << "length " << length;
    }
  }
}

TEST(TaskGeneratorsTest, HaystackKindNamesParseBackAndOthersAreRefused) {
  for (const HaystackKind kind : {HaystackKind::kShort, HaystackKind::kJoined}) {
    auto parsed = parse_haystack_kind(haystack_kind_name(kind));
    ASSERT_TRUE(parsed.is_ok());
    EXPECT_EQ(*parsed, kind);
  }
  for (const char* bad : {"", "Joined", "long", "short "}) {
    auto parsed = parse_haystack_kind(bad);
    ASSERT_FALSE(parsed.is_ok()) << bad;
    EXPECT_NE(parsed.status().to_string().find(std::string("\"") + bad + "\""), std::string::npos)
        << parsed.status().to_string();
  }
}

TEST(TaskGeneratorsTest, QueriesAreDrawnWithReplacement) {
  // Asking each fact once would let "a key not asked yet" score well (TASKS.md); with replacement keys repeat.
  for (const char* task : {"niah_multikey", "kv_retrieval", "variable_tracking"}) {
    const auto contexts = generate_or_die(spec_for(task, 2048, 8, 32, 4));
    for (const TaskContext& context : contexts) {
      std::set<std::string> questions;
      for (const TaskQuery& query : context.queries) questions.insert(query.question);
      EXPECT_LT(questions.size(), context.queries.size()) << task;  // 32 draws among <= 8 facts must repeat
    }
  }
}

TEST(TaskGeneratorsTest, FactsSpreadOverTheWholeContext) {
  // The needle of niah_single sits at a uniformly random sentence boundary: over many contexts it lands in every
  // tenth of the context, and no tenth takes more than a fair share several times over.
  const int64_t length = 1000;
  const auto contexts = generate_or_die(spec_for("niah_single", length, 1, 1, 400, 3));
  std::vector<int> deciles(10, 0);
  for (const TaskContext& context : contexts) {
    const ContextFacts facts = read_context(context.context);
    ASSERT_EQ(facts.fact_word_offsets.size(), 1u);
    ++deciles[std::min<int64_t>(9, facts.fact_word_offsets[0] * 10 / length)];
  }
  for (const int count : deciles) {
    EXPECT_GT(count, 15);
    EXPECT_LT(count, 80);
  }
}

TEST(TaskGeneratorsTest, KeysAreDistinctWithinAContext) {
  for (const char* task : {"niah_multikey", "niah_multiquery", "kv_retrieval"}) {
    for (const TaskContext& context : generate_or_die(spec_for(task, 4096, 200, 4, 3))) {
      std::vector<std::string> keys;
      for (const std::string& word : words_of(context.context)) {
        if (test::is_key(word)) keys.push_back(word);
      }
      EXPECT_EQ(keys.size(), 200u);
      EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size()) << task;
    }
  }
  for (const TaskContext& context : generate_or_die(spec_for("variable_tracking", 4096, 51, 4, 2))) {
    const ContextFacts facts = read_context(context.context);
    EXPECT_TRUE(facts.errors.empty()) << facts.errors.front();  // would list a reassigned variable
    EXPECT_EQ(facts.var_number.size() + facts.var_copy.size(), 255u);
  }
}

TEST(TaskGeneratorsTest, EveryEmittedWordIsInTheVocabulary) {
  for (const std::string& task : task_families()) {
    for (const TaskContext& context : generate_or_die(spec_for(task, 1000, default_facts(task), 8, 5))) {
      std::vector<std::string> texts = {context.context};
      for (const TaskQuery& query : context.queries) {
        texts.push_back(query.question);
        texts.insert(texts.end(), query.answers.begin(), query.answers.end());
      }
      for (const std::string& text : texts) {
        for (const std::string& word : words_of(text)) {
          EXPECT_NE(family_token_id(word), kUnkId) << task << ": '" << word << "'";
          EXPECT_GE(family_token_id(word), kFirstStructureId) << task << ": a special in the text: " << word;
        }
      }
    }
  }
}

TEST(TaskGeneratorsTest, IdsNameTaskLengthAndIndex) {
  const auto contexts = generate_or_die(spec_for("niah_multikey", 2048, 4, 2, 12));
  ASSERT_EQ(contexts.size(), 12u);
  EXPECT_EQ(contexts[0].id, "niah_multikey-2048-0000");
  EXPECT_EQ(contexts[7].id, "niah_multikey-2048-0007");
  EXPECT_EQ(contexts[11].id, "niah_multikey-2048-0011");
}

TEST(TaskGeneratorsTest, SameSeedGivesByteIdenticalFiles) {
  TempDir dir;
  for (const std::string& task : task_families()) {
    const TaskSpec spec = spec_for(task, 1000, default_facts(task), 6, 5, 42);
    ASSERT_TRUE(write_task_file(dir.file("a.jsonl"), generate_or_die(spec)).is_ok());
    ASSERT_TRUE(write_task_file(dir.file("b.jsonl"), generate_or_die(spec)).is_ok());
    TaskSpec other = spec;
    other.seed = 43;
    ASSERT_TRUE(write_task_file(dir.file("c.jsonl"), generate_or_die(other)).is_ok());
    const std::string a = test::read_bytes(dir.file("a.jsonl"));
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, test::read_bytes(dir.file("b.jsonl"))) << task;
    EXPECT_NE(a, test::read_bytes(dir.file("c.jsonl"))) << task;
  }
}

TEST(TaskGeneratorsTest, ContextsDoNotDependOnHowManyAreDrawnOrAsked) {
  const auto few = generate_or_die(spec_for("niah_multikey", 512, 6, 3, 2, 9));
  const auto many = generate_or_die(spec_for("niah_multikey", 512, 6, 10, 5, 9));
  ASSERT_EQ(few.size(), 2u);
  for (std::size_t i = 0; i < few.size(); ++i) {
    EXPECT_EQ(few[i].context, many[i].context);
    // The first queries are the same ones: more queries only extend the list.
    EXPECT_TRUE(std::equal(few[i].queries.begin(), few[i].queries.end(), many[i].queries.begin()));
  }
  // Different contexts of one spec differ.
  EXPECT_NE(many[0].context, many[1].context);
}

// Pins the generator's output: the suite must stay identical across machines, standard libraries and releases
// (held-out files and trained models depend on it). If a change here is intended, it invalidates every task file
// made before it: update the constant and say so in docs/tasks.md.
TEST(TaskGeneratorsTest, OutputIsPinned) {
  std::string all;
  for (const std::string& task : task_families()) {
    auto text = format_task_jsonl(generate_or_die(spec_for(task, 200, default_facts(task), 3, 2, 20240607)));
    ASSERT_TRUE(text.is_ok());
    all += text.value();
  }
  uint64_t hash = 0xCBF29CE484222325ull;  // FNV-1a
  for (const char c : all) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  EXPECT_EQ(hash, 0xc19961adaf811441ull) << std::hex << "got 0x" << hash << "\n" << all.substr(0, 600);
}

TEST(TaskGeneratorsTest, UniformBelowIsInRangeAndCoversIt) {
  std::mt19937_64 rng(1);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const uint64_t x = uniform_below(rng, 7);
    ASSERT_LT(x, 7u);
    ++counts[x];
  }
  for (const int count : counts) EXPECT_NEAR(count, 1000, 150);
  EXPECT_EQ(uniform_below(rng, 1), 0u);
  // A bound just over half of 2^64 rejects about half the draws: still terminates and stays in range.
  const uint64_t big = (uint64_t{1} << 63) + 12345;
  for (int i = 0; i < 100; ++i) EXPECT_LT(uniform_below(rng, big), big);
}

TEST(TaskGeneratorsTest, RejectsInvalidSpecs) {
  struct Case {
    TaskSpec spec;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {spec_for("niah_everything", 256, 1), "unknown task 'niah_everything'"},
      {spec_for("niah_multikey", 256, 24), "24 facts take 264 tokens, more than length_tokens = 256"},
      {spec_for("variable_tracking", 256, 10), "more than length_tokens"},
      {spec_for("niah_single", 256, 2), "exactly one fact"},
      {spec_for("kv_retrieval", 100000, 257), "257 distinct keys"},
      {spec_for("variable_tracking", 100000, 52), "260 distinct keys"},
      {spec_for("niah_multikey", 0, 1), "length_tokens must be in"},
      {spec_for("niah_multikey", 256, 0), "facts must be >= 1"},
      {spec_for("niah_multikey", 256, 2, 0), "queries must be >= 1"},
      {spec_for("niah_multikey", 256, 2, 1, 0), "n_contexts must be >= 1"},
  };
  for (const Case& c : cases) {
    auto result = generate_tasks(c.spec);
    ASSERT_FALSE(result.is_ok()) << c.message_part;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(result.status().message().find(c.message_part), std::string::npos) << result.status().message();
  }
  // Exactly full: the facts alone fill the context.
  auto full = generate_tasks(spec_for("kv_retrieval", 64, 16, 2, 1));
  ASSERT_TRUE(full.is_ok()) << full.status().to_string();
  EXPECT_EQ(words_of(full.value()[0].context).size(), 64u);
}

}  // namespace
}  // namespace proxykv::tasks
