#include "proxykv/training/lm_data.h"

#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "proxykv/tasks/vocabulary.h"

namespace proxykv::training {
namespace {

TEST(LmData, InductionSequencesRepeatEarlierSpans) {
  std::mt19937_64 rng(5);
  int copies_found = 0;
  for (int n = 0; n < 20; ++n) {
    TrainingSequence s = sample_induction(rng, 128);
    ASSERT_EQ(s.tokens.size(), 128u);
    EXPECT_EQ(s.tokens[0], tasks::kBosId);
    EXPECT_EQ(s.weights[0], 0.f);
    for (size_t i = 1; i < s.tokens.size(); ++i) {
      EXPECT_GE(s.tokens[i], tasks::kFirstKeyId);
      EXPECT_LT(s.tokens[i], tasks::kFamilyVocabSize);
    }
    // Some 4-gram after position 8 occurs earlier too: a copied span.
    for (size_t i = 12; i + 4 <= s.tokens.size() && copies_found <= n; ++i) {
      for (size_t j = 1; j + 4 <= i; ++j) {
        if (std::equal(s.tokens.begin() + i, s.tokens.begin() + i + 4, s.tokens.begin() + j)) {
          ++copies_found;
          break;
        }
      }
    }
  }
  EXPECT_GE(copies_found, 18);
}

// copied[i] marks exactly the tokens an induction head can predict: the bigram (tokens[i-1], tokens[i])
// occurred earlier, so "find the previous occurrence of tokens[i-1], copy its successor" works.
TEST(LmData, InductionCopiedFlagsMarkPredictableTokens) {
  std::mt19937_64 rng(11);
  size_t flagged = 0, total = 0;
  for (int n = 0; n < 20; ++n) {
    TrainingSequence s = sample_induction(rng, 128);
    ASSERT_EQ(s.copied.size(), s.tokens.size());
    EXPECT_EQ(s.copied[0], 0);
    for (size_t i = 1; i < s.tokens.size(); ++i) {
      total++;
      if (!s.copied[i]) continue;
      flagged++;
      bool seen = false;
      for (size_t j = 1; j + 1 < i && !seen; ++j)
        seen = s.tokens[j - 1] == s.tokens[i - 1] && s.tokens[j] == s.tokens[i];
      EXPECT_TRUE(seen) << "sequence " << n << " position " << i;
    }
  }
  // Copies are about half the segments, 4-16 tokens each, first token unflagged.
  EXPECT_GT(flagged, total / 4);
  EXPECT_LT(flagged, total * 3 / 4);
  // The other samplers carry no flags.
  EXPECT_TRUE(sample_recall(rng, 4, 4, 0.1f).copied.empty());
}

TEST(LmData, RecallWeightsOnlyQueriedValuesFully) {
  std::mt19937_64 rng(9);
  TrainingSequence s = sample_recall(rng, 8, 12, 0.1f);
  ASSERT_EQ(s.tokens.size(), 1 + 16 + 1 + 24u);
  int full_weight = 0;
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    if (s.weights[i] == 1.f) {
      ++full_weight;
      EXPECT_GE(s.tokens[i], tasks::kFirstValueId);
      // The value was given for the same key in the facts.
      bool found = false;
      for (size_t f = 1; f < 17; f += 2) found |= s.tokens[f] == s.tokens[i - 1] && s.tokens[f + 1] == s.tokens[i];
      EXPECT_TRUE(found) << "position " << i;
    }
  }
  EXPECT_EQ(full_weight, 12);
}

// The "sentences" template: facts "k is v ." and queries "<q> k ? <a> v": the key two before the value in both.
TEST(LmData, SentenceRecallPutsTheKeyTwoBeforeTheValue) {
  std::mt19937_64 rng(9);
  TrainingSequence s = sample_recall(rng, 8, 12, 0.1f, /*sentences=*/true);
  ASSERT_EQ(s.tokens.size(), 1 + 8 * 4 + 1 + 12 * 5u);
  const int32_t is = tasks::family_encode("is")[0], dot = tasks::family_encode(".")[0],
                question_mark = tasks::family_encode("?")[0];
  std::map<int32_t, int32_t> facts;
  for (int f = 0; f < 8; ++f) {
    const size_t at = 1 + 4 * f;
    EXPECT_EQ(s.tokens[at + 1], is);
    EXPECT_EQ(s.tokens[at + 3], dot);
    facts[s.tokens[at]] = s.tokens[at + 2];
  }
  EXPECT_EQ(s.tokens[33], tasks::kSepId);
  int full_weight = 0;
  for (int q = 0; q < 12; ++q) {
    const size_t at = 34 + 5 * q;
    EXPECT_EQ(s.tokens[at], tasks::kQuestionId);
    EXPECT_EQ(s.tokens[at + 2], question_mark);
    EXPECT_EQ(s.tokens[at + 3], tasks::kAnswerId);
    ASSERT_EQ(facts.count(s.tokens[at + 1]), 1u) << "query " << q << " asks for a key that is not a fact";
    EXPECT_EQ(s.tokens[at + 4], facts[s.tokens[at + 1]]);
    EXPECT_EQ(s.weights[at + 4], 1.f);
  }
  for (float w : s.weights) full_weight += w == 1.f ? 1 : 0;
  EXPECT_EQ(full_weight, 12);
  auto bad =
      PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {"recall_template", "x"}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("recall_template"), std::string::npos);
}

// Digit runs: off by default (only keys and values), all digits at probability 1 (copies of digits included).
TEST(LmData, InductionDigitRunsFollowTheirProbability) {
  auto is_digit = [](int32_t t) { return t >= tasks::kFirstDigitId && t < tasks::kFirstDigitId + tasks::kNumDigits; };
  std::mt19937_64 rng(21);
  size_t digits_half = 0, total = 0;
  for (int n = 0; n < 20; ++n) {
    TrainingSequence off = sample_induction(rng, 128, 0.0);
    TrainingSequence all = sample_induction(rng, 128, 1.0);
    TrainingSequence half = sample_induction(rng, 128, 0.5);
    for (size_t i = 1; i < 128; ++i) {
      EXPECT_FALSE(is_digit(off.tokens[i]));
      EXPECT_TRUE(is_digit(all.tokens[i])) << "sequence " << n << " position " << i;
      digits_half += is_digit(half.tokens[i]) ? 1 : 0;
      ++total;
    }
  }
  EXPECT_GT(digits_half, total / 4);
  EXPECT_LT(digits_half, total * 3 / 4);
}

// With the digit options off, the samplers draw exactly what they drew before the options existed, so the
// phases already run (and the shipped models) replay: the fingerprint below was printed by the code of commit
// b181231 for the same calls (FNV-1a over the tokens, then the generator's next draw).
TEST(LmData, DigitOptionsOffReplayTheEarlierSequences) {
  std::mt19937_64 rng(3);
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const TrainingSequence& s) {
    for (int32_t t : s.tokens) {
      h ^= static_cast<uint32_t>(t);
      h *= 1099511628211ull;
    }
  };
  for (int n = 0; n < 3; ++n) mix(sample_induction(rng, 128, /*digit_runs=*/0.0));
  mix(sample_recall(rng, 8, 12, 0.1f, /*sentences=*/false, /*value_digits=*/0));
  mix(sample_recall(rng, 8, 12, 0.1f, /*sentences=*/true, /*value_digits=*/0));
  EXPECT_EQ(h, 6885670808458561080ull);
  EXPECT_EQ(rng() % 1000, 969u);
}

// Digit values: "k is d d d d ." facts, "<q> k ? <a> d d d d" queries, the four digits weight 1.
TEST(LmData, SentenceRecallWithDigitValuesAnswersTheWholeNumber) {
  std::mt19937_64 rng(17);
  TrainingSequence s = sample_recall(rng, 6, 10, 0.1f, /*sentences=*/true, /*value_digits=*/4);
  ASSERT_EQ(s.tokens.size(), 1 + 6 * 7 + 1 + 10 * 8u);
  std::map<int32_t, std::vector<int32_t>> facts;
  for (int f = 0; f < 6; ++f) {
    const size_t at = 1 + 7 * f;
    for (size_t d = 0; d < 4; ++d) {
      EXPECT_GE(s.tokens[at + 2 + d], tasks::kFirstDigitId);
      EXPECT_LT(s.tokens[at + 2 + d], tasks::kFirstDigitId + tasks::kNumDigits);
    }
    facts[s.tokens[at]] = std::vector<int32_t>(s.tokens.begin() + at + 2, s.tokens.begin() + at + 6);
  }
  int full_weight = 0;
  for (int q = 0; q < 10; ++q) {
    const size_t at = 44 + 8 * q;
    ASSERT_EQ(facts.count(s.tokens[at + 1]), 1u);
    EXPECT_EQ(std::vector<int32_t>(s.tokens.begin() + at + 4, s.tokens.begin() + at + 8), facts[s.tokens[at + 1]]);
  }
  for (float w : s.weights) full_weight += w == 1.f ? 1 : 0;
  EXPECT_EQ(full_weight, 40);
  for (const char* key : {"induction_digit_runs", "recall_value_digits", "recall_digit_share"}) {
    auto bad = PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {key, -1}}, "cfg");
    ASSERT_FALSE(bad.is_ok()) << key;
    EXPECT_NE(bad.status().message().find(key), std::string::npos);
  }
}

// recall_digit_share: each recall sequence takes digit values with that probability, else value tokens.
TEST(LmData, RecallDigitShareMixesBothAnswerShapes) {
  auto count_digit_sequences = [](double share) {
    auto phase = PhaseMix::from_json(nlohmann::json{{"steps", 1},
                                                    {"mix", {{"recall", 1.0}}},
                                                    {"recall_template", "sentences"},
                                                    {"recall_value_digits", 4},
                                                    {"recall_digit_share", share}},
                                     "cfg");
    EXPECT_TRUE(phase.is_ok()) << phase.status().to_string();
    std::mt19937_64 rng(23);
    int digit_sequences = 0;
    for (int n = 0; n < 400; ++n) {
      auto s = sample_from_phase(rng, *phase);
      EXPECT_TRUE(s.is_ok());
      const bool digits = std::any_of(s->tokens.begin(), s->tokens.end(), [](int32_t t) {
        return t >= tasks::kFirstDigitId && t < tasks::kFirstDigitId + tasks::kNumDigits;
      });
      const bool values = std::any_of(s->tokens.begin(), s->tokens.end(), [](int32_t t) {
        return t >= tasks::kFirstValueId && t < tasks::kFirstValueId + tasks::kNumValues;
      });
      EXPECT_NE(digits, values);  // one shape per sequence
      digit_sequences += digits;
    }
    return digit_sequences;
  };
  EXPECT_EQ(count_digit_sequences(1.0), 400);
  EXPECT_EQ(count_digit_sequences(0.0), 0);
  const int half = count_digit_sequences(0.5);
  EXPECT_GT(half, 150);  // binomial(400, 0.5): 200 +- 10, so 150..250 holds far beyond 4 sigma
  EXPECT_LT(half, 250);
}

// The "var" template: chains of "var kX = RHS ." statements, then single hops "<q> which var equal RHS ? <a> kX":
// parsed back, each answer is the one key assigned that right-hand side, chains start at a number, every key is
// assigned once and is a right-hand side at most once, and only the answer keys carry full weight.
TEST(LmData, VarRecallAsksTheKeyAssignedEachRightHandSide) {
  const int32_t var = tasks::family_encode("var")[0], eq = tasks::family_encode("=")[0],
                dot = tasks::family_encode(".")[0], which = tasks::family_encode("which")[0],
                qmark = tasks::family_encode("?")[0];
  const auto is_key = [](int32_t t) { return t >= tasks::kFirstKeyId && t < tasks::kFirstKeyId + tasks::kNumKeys; };
  const auto is_digit = [](int32_t t) {
    return t >= tasks::kFirstDigitId && t < tasks::kFirstDigitId + tasks::kNumDigits;
  };
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    std::mt19937_64 rng(seed);
    const TrainingSequence s = sample_var_recall(rng, 12, 10, 0.1f);
    ASSERT_EQ(s.tokens.size(), s.weights.size());
    std::map<std::vector<int32_t>, int32_t> lhs_of;  // RHS words -> the key assigned them
    std::set<int32_t> assigned;
    size_t i = 1, statements = 0, chains = 0;
    while (s.tokens[i] != tasks::kSepId) {
      ASSERT_EQ(s.tokens[i], var) << seed;
      ASSERT_TRUE(is_key(s.tokens[i + 1]));
      ASSERT_EQ(s.tokens[i + 2], eq);
      const int32_t lhs = s.tokens[i + 1];
      std::vector<int32_t> rhs;
      for (i += 3; s.tokens[i] != dot; ++i) rhs.push_back(s.tokens[i]);
      ++i;
      if (rhs.size() == 4) {
        EXPECT_TRUE(std::all_of(rhs.begin(), rhs.end(), is_digit));
        ++chains;
      } else {
        ASSERT_EQ(rhs.size(), 1u);
        EXPECT_EQ(assigned.count(rhs[0]), 1u) << "a hop starts from a key assigned before it";
      }
      EXPECT_TRUE(assigned.insert(lhs).second) << "each key is assigned once";
      EXPECT_TRUE(lhs_of.emplace(rhs, lhs).second) << "each right-hand side has one key";
      ++statements;
    }
    EXPECT_EQ(statements, 12u);
    EXPECT_GE(chains, 1u);
    int answers = 0;
    for (++i; i < s.tokens.size();) {
      ASSERT_EQ(s.tokens[i], tasks::kQuestionId);
      ASSERT_EQ(s.tokens[i + 1], which);
      std::vector<int32_t> rhs;
      for (i += 4; s.tokens[i] != qmark; ++i) rhs.push_back(s.tokens[i]);
      ASSERT_EQ(s.tokens[i + 1], tasks::kAnswerId);
      ASSERT_EQ(lhs_of.count(rhs), 1u);
      EXPECT_EQ(s.tokens[i + 2], lhs_of[rhs]);
      EXPECT_EQ(s.weights[i + 2], 1.f);
      ++answers;
      i += 3;
    }
    EXPECT_EQ(answers, 10);
    EXPECT_EQ(std::count(s.weights.begin(), s.weights.end(), 1.f), 10);
  }
  // The template is chosen by recall_template; an unknown one is refused with the choices named.
  auto phase = PhaseMix::from_json(
      nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {"recall_template", "var"}, {"recall_facts_max", 6}},
      "cfg");
  ASSERT_TRUE(phase.is_ok()) << phase.status().to_string();
  std::mt19937_64 rng(5);
  auto drawn = sample_from_phase(rng, *phase);
  ASSERT_TRUE(drawn.is_ok());
  EXPECT_EQ(drawn->tokens[1], var);
  auto bad = PhaseMix::from_json(
      nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {"recall_template", "reverse"}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("\"var\""), std::string::npos);
}

// recall_var_chains 1: every query is the task's own question, a chain's number, answered by the whole chain
// ("kA and kB and ... <eos>"), each key the one assigned the key before it, the chain followed to its end.
TEST(LmData, VarRecallChainQueriesFollowTheWholeChain) {
  const int32_t dot = tasks::family_encode(".")[0], qmark = tasks::family_encode("?")[0],
                and_word = tasks::family_encode("and")[0];
  for (uint64_t seed : {7u, 8u, 9u}) {
    std::mt19937_64 rng(seed);
    const TrainingSequence s = sample_var_recall(rng, 16, 6, 0.1f, 4, /*chain_share=*/1.0);
    std::map<std::vector<int32_t>, int32_t> lhs_of;
    size_t i = 1;
    while (s.tokens[i] != tasks::kSepId) {
      const int32_t lhs = s.tokens[i + 1];
      std::vector<int32_t> rhs;
      for (i += 3; s.tokens[i] != dot; ++i) rhs.push_back(s.tokens[i]);
      ++i;
      lhs_of[rhs] = lhs;
    }
    int queries = 0, weighted = 0;
    for (++i; i < s.tokens.size(); ++queries) {
      ASSERT_EQ(s.tokens[i], tasks::kQuestionId);
      std::vector<int32_t> number;
      for (i += 4; s.tokens[i] != qmark; ++i) number.push_back(s.tokens[i]);
      ASSERT_EQ(number.size(), 4u) << "a chain query starts from the chain's number";
      ASSERT_EQ(s.tokens[i + 1], tasks::kAnswerId);
      i += 2;
      std::vector<int32_t> want{number};
      for (auto it = lhs_of.find(want); it != lhs_of.end(); it = lhs_of.find(want)) {
        if (want.size() == 1) {
          EXPECT_EQ(s.tokens[i], and_word);
          ++weighted;
          ++i;
        }
        EXPECT_EQ(s.tokens[i], it->second);
        EXPECT_EQ(s.weights[i], 1.f);
        ++weighted;
        want = {s.tokens[i++]};
      }
      ASSERT_EQ(s.tokens[i], tasks::kEosId) << "the chain ends where no key is assigned its last key";
      ++weighted;
      ++i;
    }
    EXPECT_EQ(queries, 6);
    EXPECT_EQ(std::count(s.weights.begin(), s.weights.end(), 1.f), weighted);
  }
  auto bad = PhaseMix::from_json(nlohmann::json{{"steps", 1},
                                                {"mix", {{"recall", 1.0}}},
                                                {"recall_template", "var"},
                                                {"recall_var_chains", 1.5}},
                                 "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("recall_var_chains"), std::string::npos);
}

TEST(LmData, TaskSequenceEndsWithWeightedAnswers) {
  std::mt19937_64 rng(11);
  auto s = sample_task(rng, "niah_multikey", 200, 4, 2, 0.1f);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->tokens[0], tasks::kBosId);
  EXPECT_EQ(s->tokens[1], tasks::kCtxId);
  EXPECT_EQ(s->tokens.back(), tasks::kEosId);
  EXPECT_EQ(s->weights.back(), 1.f);
  // Two answers of 4 digits plus <eos> each carry full weight.
  int full = 0;
  for (float w : s->weights) full += w == 1.f;
  EXPECT_EQ(full, 10);
}

// answer_separator: several answers of one query come out as "d d d d and d d d d ...", the same digits as
// without it (same seed, same context), and the separator words carry the answers' full weight.
TEST(LmData, AnswerSeparatorMarksWhereEachAnswerEnds) {
  static const int32_t kAnd = tasks::family_encode("and").at(0);
  auto answer_of = [](const TrainingSequence& s) {  // the tokens between the last <a> and the final <eos>
    auto a = std::find(s.tokens.rbegin(), s.tokens.rend(), tasks::kAnswerId).base();
    return std::vector<int32_t>(a, s.tokens.end() - 1);
  };
  std::mt19937_64 plain_rng(29), sep_rng(29);
  auto plain = sample_task(plain_rng, "niah_multivalue", 200, 3, 1, 0.1f);
  auto sep = sample_task(sep_rng, "niah_multivalue", 200, 3, 1, 0.1f, "and");
  ASSERT_TRUE(plain.is_ok() && sep.is_ok());
  const std::vector<int32_t> with = answer_of(*sep), without = answer_of(*plain);
  ASSERT_EQ(with.size(), 3 * 4 + 2u);  // three numbers, two separators
  std::vector<int32_t> stripped;
  for (size_t i = 0; i < with.size(); ++i) {
    if (i % 5 == 4) {
      EXPECT_EQ(with[i], kAnd) << i;
    } else {
      stripped.push_back(with[i]);
    }
  }
  EXPECT_EQ(stripped, without);
  for (const char* bad : {"zebra", "and and"}) {
    auto phase =
        PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"answer_separator", bad}}, "cfg");
    ASSERT_FALSE(phase.is_ok()) << bad;
    EXPECT_NE(phase.status().message().find("answer_separator"), std::string::npos);
  }
}

// answer_restate: the hand-made cases of compose_answer, then on generated niah contexts every restated
// "KEY is d d d d" of a training answer stands verbatim in the context, and the answers without the restated
// keys are the plain ones (same seed).
TEST(LmData, AnswerRestateCopiesEachFactAsTheContextStatesIt) {
  EXPECT_EQ(compose_answer("niah_multiquery", "what is the magic number for k001 and k002 ?", {"1 2", "3 4"}, "and", true),
            "k001 is 1 2 and k002 is 3 4");
  EXPECT_EQ(compose_answer("niah_multivalue", "what is the magic number for k007 ?", {"1 2", "3 4"}, "and", true),
            "k007 is 1 2 and 3 4");
  EXPECT_EQ(compose_answer("niah_single", "what is the magic number for k007 ?", {"5 6"}, "", true), "k007 is 5 6");
  EXPECT_EQ(compose_answer("niah_single", "what is the magic number for k007 ?", {"5 6"}, "", false), "5 6");
  EXPECT_EQ(compose_answer("variable_tracking", "which var equal 1 2 ?", {"k001", "k002"}, "and", true),
            "k001 and k002");
  EXPECT_EQ(compose_answer("kv_retrieval", "what is the value of k001 ?", {"v002"}, "", true), "v002");

  static const int32_t kAnd = tasks::family_encode("and").at(0);
  for (const char* task : {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery"}) {
    std::mt19937_64 plain_rng(31), restate_rng(31);
    auto plain = sample_task(plain_rng, task, 300, 4, 3, 0.1f, "and");
    auto restated = sample_task(restate_rng, task, 300, 4, 3, 0.1f, "and", true);
    ASSERT_TRUE(plain.is_ok() && restated.is_ok()) << task;
    const auto& t = restated->tokens;
    const auto ctx_end = std::find(t.begin(), t.end(), tasks::kCtxEndId);
    ASSERT_NE(ctx_end, t.end());
    const std::vector<int32_t> context(t.begin(), ctx_end);
    int restated_spans = 0;
    for (auto a = std::find(ctx_end, t.end(), tasks::kAnswerId); a != t.end();
         a = std::find(a + 1, t.end(), tasks::kAnswerId)) {
      const auto eos = std::find(a, t.end(), tasks::kEosId);
      std::vector<int32_t> answer(a + 1, eos);
      // split at "and": each part that starts with a key is "KEY is d d d d", and must be in the context
      for (auto b = answer.begin(); b != answer.end();) {
        const auto e = std::find(b, answer.end(), kAnd);
        const std::vector<int32_t> part(b, e);
        if (part.front() >= tasks::kFirstKeyId && part.front() < tasks::kFirstKeyId + tasks::kNumKeys) {
          ASSERT_GE(part.size(), 3u);
          EXPECT_NE(std::search(context.begin(), context.end(), part.begin(), part.end()), context.end())
              << task << ": " << tasks::family_decode(part);
          ++restated_spans;
        }
        b = e == answer.end() ? e : e + 1;
      }
    }
    EXPECT_GE(restated_spans, 1) << task;
    // the restated sequence is the plain one with "KEY is" inserted
    EXPECT_EQ(restated->tokens.size(), plain->tokens.size() + 2 * static_cast<size_t>(restated_spans)) << task;
  }
}

// copy_from of the recall drill: every queried value token has one pair, whose source is that token's place in the
// queried key's own fact. Reference: the fact found by scanning the context for the query's key.
TEST(LmData, RecallCopySourcesPointIntoTheQueriedKeysFact) {
  for (const bool sentences : {false, true}) {
    for (const int digits : {0, 4}) {
      std::mt19937_64 rng(17);
      const TrainingSequence s = sample_recall(rng, 12, 6, 0.1f, sentences, digits);
      const auto& t = s.tokens;
      const auto sep = std::find(t.begin(), t.end(), tasks::kSepId) - t.begin();
      const int value_len = digits > 0 ? digits : 1;
      ASSERT_EQ(s.copy_from.size(), static_cast<size_t>(6 * value_len));
      for (size_t k = 0; k < s.copy_from.size(); ++k) {
        const auto [pos, src] = s.copy_from[k];
        const int d = static_cast<int>(k) % value_len;
        // the query's key: before "?" and "<a>" with sentences, right before the value otherwise
        const int32_t key = t[pos - d - (sentences ? 3 : 1)];
        ASSERT_GE(key, tasks::kFirstKeyId);
        ASSERT_LT(key, tasks::kFirstValueId);
        int64_t fact = -1;
        for (int64_t i = 1; i < sep; ++i) {
          if (t[i] == key) fact = i;
        }
        ASSERT_GE(fact, 0);
        EXPECT_EQ(src, fact + (sentences ? 2 : 1) + d) << sentences << " " << digits << " " << k;
        EXPECT_EQ(t[src], t[pos]);
        EXPECT_EQ(s.weights[pos], 1.f);
      }
    }
  }
}

// chain_from: inside the context, each digit of a key's statement "kA is N" after its first points at the same digit
// of that key's statement just before it; a key stated once has none. Checked against the statements found by a
// plain scan of the context: per key, (statements - 1) x 4 pairs for 4-digit numbers.
TEST(LmData, ChainSourcesLinkEachStatementOfAKeyToTheOneBefore) {
  const auto is_key = [](int32_t id) { return id >= tasks::kFirstKeyId && id < tasks::kFirstValueId; };
  const auto is_digit = [](int32_t id) { return id >= tasks::kFirstDigitId && id < tasks::kFirstDigitId + tasks::kNumDigits; };
  const int32_t kIs = tasks::family_encode("is").at(0);
  const auto check = [&](const TrainingSequence& s, int64_t ctx_end, const std::string& what) -> size_t {
    const auto& t = s.tokens;
    std::map<int32_t, std::vector<int64_t>> runs;  // key -> the first digit of each of its statements
    for (int64_t c = 0; c + 2 < ctx_end; ++c) {
      if (is_key(t[c]) && t[c + 1] == kIs && is_digit(t[c + 2])) runs[t[c]].push_back(c + 2);
    }
    std::set<std::pair<int32_t, int32_t>> expected;
    for (const auto& [key, starts] : runs) {
      for (size_t i = 1; i < starts.size(); ++i) {
        for (int64_t j = 0; j < 4; ++j) expected.insert({static_cast<int32_t>(starts[i] + j), static_cast<int32_t>(starts[i - 1] + j)});
      }
    }
    const std::set<std::pair<int32_t, int32_t>> got(s.chain_from.begin(), s.chain_from.end());
    EXPECT_EQ(got.size(), s.chain_from.size()) << what;  // no pair twice
    EXPECT_EQ(got, expected) << what;
    for (const auto& [pos, src] : s.chain_from) {
      EXPECT_LT(src, pos) << what;
      EXPECT_LT(pos, ctx_end) << what;
    }
    return s.chain_from.size();
  };
  for (const char* task : {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "kv_retrieval"}) {
    std::mt19937_64 rng(31);
    auto row = sample_task(rng, task, 300, 4, 3, 0.1f, "and", true);
    ASSERT_TRUE(row.is_ok()) << task;
    const int64_t ctx_end = std::find(row->tokens.begin(), row->tokens.end(), tasks::kCtxEndId) - row->tokens.begin();
    const size_t pairs = check(*row, ctx_end, task);
    // niah_multivalue states its one key 4 times (facts = 4); the others state each key once
    EXPECT_EQ(pairs, std::string(task) == "niah_multivalue" ? 12u : 0u) << task;
  }
  std::mt19937_64 drill_rng(37);
  const TrainingSequence d = sample_multi_recall(drill_rng, 12, 4, 0.1f, 4, MultivalueOrder::kContext);
  const int64_t sep = std::find(d.tokens.begin(), d.tokens.end(), tasks::kSepId) - d.tokens.begin();
  EXPECT_GT(check(d, sep, "multi drill"), 0u);  // 12 statements over fewer keys: some key repeats
}

// copy_from of task rows: each source is the same token, inside the context, in "KEY is" + its number, KEY the
// answer's key (kv_retrieval: the question's): every digit of every restated niah answer gets one, a multivalue
// number after "and" too, and every kv value; a key comes from the question, variable_tracking's from "var KEY =".
TEST(LmData, TaskCopySourcesEndTheAnswersKeyAnchoredSpanInTheContext) {
  const auto is_key = [](int32_t id) { return id >= tasks::kFirstKeyId && id < tasks::kFirstValueId; };
  for (const char* task : {"niah_single", "niah_multiquery", "niah_multivalue", "kv_retrieval"}) {
    std::mt19937_64 rng(23);
    auto row = sample_task(rng, task, 300, 4, 3, 0.1f, "and", true);
    ASSERT_TRUE(row.is_ok()) << task;
    const auto& t = row->tokens;
    const int64_t ctx_end = std::find(t.begin(), t.end(), tasks::kCtxEndId) - t.begin();
    for (const auto& [pos, src] : row->copy_from) {
      EXPECT_EQ(t[src], t[pos]) << task;
      if (is_key(t[pos])) {  // from the question: after </ctx>, before the answer's <a>
        ASSERT_GT(src, ctx_end) << task;
        EXPECT_EQ(std::count(t.begin() + src, t.begin() + pos, tasks::kAnswerId), 1) << task;
        continue;
      }
      ASSERT_GT(src, 1);
      ASSERT_LT(src, ctx_end) << task;
      // the source ends "KEY is" + the current number up to pos
      int64_t run = pos;
      while (t[run - 1] >= tasks::kFirstDigitId && t[run - 1] < tasks::kFirstKeyId) --run;
      int64_t key_at = pos;
      while (!is_key(t[key_at])) --key_at;
      const int64_t digits = pos - run + 1;
      EXPECT_TRUE(std::equal(t.begin() + run, t.begin() + pos + 1, t.begin() + src - digits + 1)) << task;
      EXPECT_EQ(t[src - digits], tasks::family_encode("is").at(0)) << task;
      EXPECT_EQ(t[src - digits - 1], t[key_at]) << task;
    }
    const auto questions = static_cast<size_t>(std::count(t.begin(), t.end(), tasks::kAnswerId));
    ASSERT_GE(questions, 1u);
    if (std::string(task) == "kv_retrieval") {
      // not restated: the question's key; each value "vB" of "kA is vB ."
      EXPECT_EQ(row->copy_from.size(), questions) << task;
    } else {
      // every digit of every answer (random 4-digit numbers: each "kA is N" stands once in this context)
      size_t answer_digits = 0;
      for (size_t i = ctx_end; i < t.size(); ++i) {
        answer_digits += row->weights[i] == 1.f &&
                         ((t[i] >= tasks::kFirstDigitId && t[i] < tasks::kFirstKeyId) || is_key(t[i]));
      }
      EXPECT_EQ(row->copy_from.size(), answer_digits) << task;
      EXPECT_GE(row->copy_from.size(), questions * 4u) << task;
    }
  }
  // The multi-value drill: every number's digits come from the fact of the question's key that states it.
  for (const MultivalueOrder order : {MultivalueOrder::kContext, MultivalueOrder::kSet}) {
    std::mt19937_64 drill_rng(29);
    const TrainingSequence d = sample_multi_recall(drill_rng, 12, 4, 0.1f, 4, order);
    const int64_t sep = std::find(d.tokens.begin(), d.tokens.end(), tasks::kSepId) - d.tokens.begin();
    size_t answer_tokens = 0;  // digits and the restated key
    for (size_t i = sep; i < d.tokens.size(); ++i) {
      answer_tokens += d.weights[i] == 1.f && ((d.tokens[i] >= tasks::kFirstDigitId && d.tokens[i] < tasks::kFirstKeyId) ||
                                               is_key(d.tokens[i]));
    }
    EXPECT_EQ(d.copy_from.size(), answer_tokens);
    for (const auto& [pos, src] : d.copy_from) {
      EXPECT_EQ(d.tokens[src], d.tokens[pos]);
      if (is_key(d.tokens[pos])) {
        EXPECT_EQ(d.tokens[src + 1], tasks::family_encode("?").at(0));  // the question's key
        continue;
      }
      ASSERT_LT(src, sep);
      // the source's fact "kX is d d d d": its key is the question's
      int64_t fact_key = src, question_key = pos;
      while (!is_key(d.tokens[fact_key])) --fact_key;
      while (d.tokens[question_key] != tasks::kAnswerId) --question_key;
      EXPECT_EQ(d.tokens[fact_key], d.tokens[question_key - 2]);
    }
  }
  std::mt19937_64 rng(23);
  auto vt = sample_task(rng, "variable_tracking", 300, 4, 3, 0.1f, "and", true);
  ASSERT_TRUE(vt.is_ok());
  // every key of every chain answer, from the statement "var KEY = ..." that assigns it
  static const int32_t kVar = tasks::family_encode("var").at(0), kEqual = tasks::family_encode("=").at(0);
  size_t vt_keys = 0;
  const int64_t vt_ctx_end = std::find(vt->tokens.begin(), vt->tokens.end(), tasks::kCtxEndId) - vt->tokens.begin();
  for (size_t i = vt_ctx_end; i < vt->tokens.size(); ++i) vt_keys += vt->weights[i] == 1.f && is_key(vt->tokens[i]);
  ASSERT_GT(vt_keys, 0u);
  EXPECT_EQ(vt->copy_from.size(), vt_keys);
  for (const auto& [pos, src] : vt->copy_from) {
    EXPECT_EQ(vt->tokens[src], vt->tokens[pos]);
    EXPECT_EQ(vt->tokens[src - 1], kVar);
    EXPECT_EQ(vt->tokens[src + 1], kEqual);
  }
}

TEST(LmData, FactsMaxCapsTheFactsOfTaskContexts) {
  static const int32_t kMagic = tasks::family_encode("magic").at(0);
  auto most_facts = [](int facts_max) {  // the largest fact count over many multivalue contexts of 1024 words
    auto phase = PhaseMix::from_json(nlohmann::json{{"steps", 1},
                                                    {"mix", {{"tasks", 1.0}}},
                                                    {"tasks", {"niah_multivalue"}},
                                                    {"context_min", 1024},
                                                    {"context_max", 1024},
                                                    {"facts_max", facts_max}},
                                     "cfg");
    EXPECT_TRUE(phase.is_ok());
    std::mt19937_64 rng(31);
    long most = 0;
    for (int i = 0; i < 40; ++i) {
      auto s = sample_from_phase(rng, *phase);
      EXPECT_TRUE(s.is_ok());
      const auto end = std::find(s->tokens.begin(), s->tokens.end(), tasks::kCtxEndId);
      most = std::max<long>(most, std::count(s->tokens.begin(), end, kMagic));
    }
    return most;
  };
  EXPECT_EQ(most_facts(4), 4);  // capped, and the cap is reached
  EXPECT_GT(most_facts(0), 4);  // uncapped: up to 16 facts at 1024 words
  auto bad = PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"facts_max", -1}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("facts_max"), std::string::npos);
}

TEST(LmData, RepeatSequenceCopiesTheContext) {
  std::mt19937_64 rng(13);
  auto s = sample_repeat(rng, "kv_retrieval", 300, 1000, 0.1f);
  ASSERT_TRUE(s.is_ok());
  auto it = std::find(s->tokens.begin(), s->tokens.end(), tasks::kRepeatId);
  ASSERT_NE(it, s->tokens.end());
  const size_t ctx_len = static_cast<size_t>(it - s->tokens.begin()) - 3;  // <bos> <ctx> ... </ctx>
  const size_t repeated = s->tokens.end() - it - 1;
  ASSERT_EQ(repeated, ctx_len);  // chunk longer than the context: the whole context, no prefix
  EXPECT_TRUE(std::equal(it + 1, s->tokens.end(), s->tokens.begin() + 2));
}

// The filler sentences of a drawn row's context (the words between <ctx> and </ctx>, cut after each "."; facts, which
// hold a key or a digit, left out).
std::vector<std::string> filler_of(const TrainingSequence& s) {
  static const int32_t kFullStop = tasks::family_token_id(".");
  const auto begin = std::find(s.tokens.begin(), s.tokens.end(), tasks::kCtxId) + 1;
  const auto end = std::find(begin, s.tokens.end(), tasks::kCtxEndId);
  std::vector<std::string> out;
  std::vector<int32_t> sentence;
  bool fact = false;
  for (auto it = begin; it != end; ++it) {
    sentence.push_back(*it);
    fact = fact || *it >= tasks::kFirstDigitId;  // digits, keys and values come after the filler words
    if (*it == kFullStop) {
      if (!fact) out.push_back(tasks::family_decode(sentence));
      sentence.clear();
      fact = false;
    }
  }
  return out;
}

// haystack_joined: the share of task and reconstruction contexts drawn on the joined haystack. At 1 every filler
// sentence is a joined one (the lengths drawn here leave no budget the joined sentences cannot make), at 0.5 both
// kinds occur, at 0 (the default) only short ones. With haystack_joined_rows "tasks" the reconstruction rows stay
// short.
TEST(LmData, HaystackJoinedShareDecidesTheFillerOfEachContext) {
  const std::set<std::string> joined(tasks::joined_filler_sentences().begin(), tasks::joined_filler_sentences().end());
  const std::set<std::string> single(tasks::filler_sentences().begin(), tasks::filler_sentences().end());
  auto rows_of_kind = [&](double share) {  // {joined rows, short rows} over 30 task and reconstruction rows
    nlohmann::json j{{"steps", 1}, {"mix", {{"tasks", 1.0}, {"repeat", 1.0}}}, {"context_min", 128}, {"context_max", 256}};
    if (share > 0) j["haystack_joined"] = share;
    auto phase = PhaseMix::from_json(j, "cfg");
    EXPECT_TRUE(phase.is_ok()) << phase.status().to_string();
    std::mt19937_64 rng(17);
    std::pair<int, int> kinds{0, 0};
    for (int i = 0; i < 30; ++i) {
      auto s = sample_from_phase(rng, *phase);
      EXPECT_TRUE(s.is_ok());
      const std::vector<std::string> filler = filler_of(*s);
      EXPECT_FALSE(filler.empty());
      const auto in = [&](const std::set<std::string>& set) {
        return std::all_of(filler.begin(), filler.end(), [&](const std::string& f) { return set.count(f) > 0; });
      };
      EXPECT_TRUE(in(joined) != in(single)) << "one kind per context";
      kinds.first += in(joined);
      kinds.second += in(single);
    }
    return kinds;
  };
  EXPECT_EQ(rows_of_kind(1.0), std::make_pair(30, 0));
  EXPECT_EQ(rows_of_kind(0.0), std::make_pair(0, 30));
  const auto half = rows_of_kind(0.5);
  EXPECT_GT(half.first, 5);
  EXPECT_GT(half.second, 5);

  for (const double bad_share : {-0.1, 1.5}) {
    auto bad = PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"haystack_joined", bad_share}},
                                   "cfg");
    ASSERT_FALSE(bad.is_ok());
    EXPECT_NE(bad.status().message().find("haystack_joined must lie in [0, 1]"), std::string::npos);
  }
  // haystack_joined_rows "tasks": task rows joined, reconstruction rows short.
  auto tasks_only = PhaseMix::from_json(nlohmann::json{{"steps", 1},
                                                       {"mix", {{"tasks", 1.0}, {"repeat", 1.0}}},
                                                       {"context_min", 128},
                                                       {"context_max", 256},
                                                       {"haystack_joined", 1.0},
                                                       {"haystack_joined_rows", "tasks"}},
                                    "cfg");
  ASSERT_TRUE(tasks_only.is_ok()) << tasks_only.status().to_string();
  std::mt19937_64 rng(23);
  int task_rows = 0, repeat_rows = 0;
  for (int i = 0; i < 30; ++i) {
    auto s = sample_from_phase(rng, *tasks_only);
    ASSERT_TRUE(s.is_ok());
    const bool repeat = std::count(s->tokens.begin(), s->tokens.end(), tasks::kRepeatId) > 0;
    const std::set<std::string>& want = repeat ? single : joined;
    for (const std::string& f : filler_of(*s)) EXPECT_TRUE(want.count(f)) << (repeat ? "repeat row: " : "task row: ") << f;
    (repeat ? repeat_rows : task_rows) += 1;
  }
  EXPECT_GT(task_rows, 5);
  EXPECT_GT(repeat_rows, 5);
  auto bad_rows = PhaseMix::from_json(
      nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"haystack_joined", 0.5}, {"haystack_joined_rows", "repeat"}},
      "cfg");
  ASSERT_FALSE(bad_rows.is_ok());
  EXPECT_NE(bad_rows.status().message().find("haystack_joined_rows must be"), std::string::npos);
  auto repeat_only = PhaseMix::from_json(
      nlohmann::json{{"steps", 1}, {"mix", {{"repeat", 1.0}}}, {"haystack_joined", 0.5}, {"haystack_joined_rows", "tasks"}},
      "cfg");
  EXPECT_FALSE(repeat_only.is_ok());

  auto no_contexts =
      PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {"haystack_joined", 0.5}}, "cfg");
  ASSERT_FALSE(no_contexts.is_ok());
  EXPECT_NE(no_contexts.status().message().find("needs task or reconstruction rows"), std::string::npos);
}

TEST(LmData, PhaseFromJsonValidates) {
  auto ok = PhaseMix::from_json({{"name", "p"}, {"steps", 10}, {"mix", {{"tasks", 1.0}}}}, "cfg");
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->w_task, 1.0);
  auto bad = PhaseMix::from_json({{"name", "p"}, {"mix", {{"tasks", 1.0}}}}, "cfg");
  EXPECT_FALSE(bad.is_ok());
  bad = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"context_min", 1}}, "cfg");
  EXPECT_FALSE(bad.is_ok());
  auto set = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"multivalue_order", "set"}}, "cfg");
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  EXPECT_EQ(set->multivalue_order, MultivalueOrder::kSet);
  bad = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"multivalue_order", "sorted"}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().to_string().find("\"set\""), std::string::npos);
  bad = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"attention_supervision", -1.0}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().to_string().find("attention_supervision"), std::string::npos);
  bad = PhaseMix::from_json(
      {{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"attention_supervision", 1.0}, {"context_drop_share", 0.5}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().to_string().find("context_drop_share"), std::string::npos);
  bad = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"attention_supervision_heads", "some"}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().to_string().find("\"any\""), std::string::npos);
  auto chain = PhaseMix::from_json(
      {{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"attention_supervision", 1.0}, {"attention_supervision_sources", "chain"}},
      "cfg");
  ASSERT_TRUE(chain.is_ok()) << chain.status().to_string();
  EXPECT_TRUE(chain->attention_supervision_chain);
  EXPECT_FALSE(set->attention_supervision_chain);  // "answers" by default
  bad = PhaseMix::from_json({{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"attention_supervision_sources", "facts"}}, "cfg");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().to_string().find("\"chain\""), std::string::npos);
}


// "kA is N1 and N2 ..." -> {"N1", "N2", ...}: the numbers of a restated multi-value answer.
std::vector<std::string> answer_numbers(const std::string& answer) {
  std::vector<std::string> out;
  std::string rest = answer.substr(answer.find(" is ") + 4);
  for (size_t at; (at = rest.find(" and ")) != std::string::npos; rest = rest.substr(at + 5)) {
    out.push_back(rest.substr(0, at));
  }
  out.push_back(rest);
  return out;
}

// multivalue_order "reverse": the same rows (same seed, same context and questions), with every multivalue answer's
// numbers listed latest first; other tasks' answers do not change.
TEST(LmData, MultivalueOrderReverseListsTheLatestFirst) {
  auto last_answer = [](const TrainingSequence& s) {
    auto a = std::find(s.tokens.rbegin(), s.tokens.rend(), tasks::kAnswerId).base();
    return tasks::family_decode({a, s.tokens.end() - 1});
  };
  for (uint64_t seed : {31u, 32u, 33u}) {
    std::mt19937_64 fwd_rng(seed), rev_rng(seed);
    auto fwd = sample_task(fwd_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kContext);
    auto rev = sample_task(rev_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kReverse);
    ASSERT_TRUE(fwd.is_ok() && rev.is_ok());
    ASSERT_EQ(fwd->tokens.size(), rev->tokens.size());
    const auto a = std::find(fwd->tokens.begin(), fwd->tokens.end(), tasks::kAnswerId) - fwd->tokens.begin();
    EXPECT_TRUE(std::equal(fwd->tokens.begin(), fwd->tokens.begin() + a + 1, rev->tokens.begin()));  // same context
    std::vector<std::string> want = answer_numbers(last_answer(*fwd));
    ASSERT_EQ(want.size(), 4u);
    // The forward answer is the context's order: each number's fact stands after the previous one's.
    const std::string context = tasks::family_decode({fwd->tokens.begin(), fwd->tokens.begin() + a});
    size_t at = 0;
    for (const std::string& n : want) {
      const size_t found = context.find(" is " + n + " .", at);
      ASSERT_NE(found, std::string::npos) << n;
      at = found + 1;
    }
    std::reverse(want.begin(), want.end());
    EXPECT_EQ(answer_numbers(last_answer(*rev)), want);
    EXPECT_EQ(last_answer(*rev).substr(0, 8), last_answer(*fwd).substr(0, 8));  // "kA is" restated first either way

    std::mt19937_64 mq_fwd(seed), mq_rev(seed);
    auto q_fwd = sample_task(mq_fwd, "niah_multiquery", 300, 4, 2, 0.1f, "and", true, MultivalueOrder::kContext);
    auto q_rev = sample_task(mq_rev, "niah_multiquery", 300, 4, 2, 0.1f, "and", true, MultivalueOrder::kReverse);
    ASSERT_TRUE(q_fwd.is_ok() && q_rev.is_ok());
    EXPECT_EQ(q_fwd->tokens, q_rev->tokens);

    std::mt19937_64 drill_fwd(seed), drill_rev(seed);
    const TrainingSequence d_fwd = sample_multi_recall(drill_fwd, 12, 6, 0.1f, 4, MultivalueOrder::kContext);
    const TrainingSequence d_rev = sample_multi_recall(drill_rev, 12, 6, 0.1f, 4, MultivalueOrder::kReverse);
    ASSERT_EQ(d_fwd.tokens.size(), d_rev.tokens.size());
    size_t i = std::find(d_fwd.tokens.begin(), d_fwd.tokens.end(), tasks::kSepId) - d_fwd.tokens.begin();
    EXPECT_TRUE(std::equal(d_fwd.tokens.begin(), d_fwd.tokens.begin() + i, d_rev.tokens.begin()));
    while (true) {  // each answer: the same numbers, reversed
      const auto a_f = std::find(d_fwd.tokens.begin() + i, d_fwd.tokens.end(), tasks::kAnswerId);
      if (a_f == d_fwd.tokens.end()) break;
      const auto e_f = std::find(a_f, d_fwd.tokens.end(), tasks::kEosId);
      const auto a_r = d_rev.tokens.begin() + (a_f - d_fwd.tokens.begin());
      const auto e_r = d_rev.tokens.begin() + (e_f - d_fwd.tokens.begin());
      std::vector<std::string> n = answer_numbers(tasks::family_decode({a_f + 1, e_f}));
      std::reverse(n.begin(), n.end());
      EXPECT_EQ(answer_numbers(tasks::family_decode({a_r + 1, e_r})), n);
      i = static_cast<size_t>(e_f - d_fwd.tokens.begin()) + 1;
    }
  }
  auto phase = [](const char* order) {
    return PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}, {"multivalue_order", order}},
                               "cfg");
  };
  ASSERT_TRUE(phase("reverse").is_ok());
  EXPECT_EQ(phase("reverse")->multivalue_order, MultivalueOrder::kReverse);
  EXPECT_EQ(phase("context")->multivalue_order, MultivalueOrder::kContext);
  EXPECT_EQ(phase("shuffled")->multivalue_order, MultivalueOrder::kShuffled);
  auto bad = phase("sideways");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("multivalue_order"), std::string::npos) << bad.status().message();
  EXPECT_EQ(PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"tasks", 1.0}}}}, "cfg")->multivalue_order,
            MultivalueOrder::kContext);
}

// multivalue_order "shuffled": the same context as in context order, and an answer that holds exactly the key's
// numbers in an order drawn per answer (over seeds, orders other than the context's and the reverse occur); the drill
// too: each answer is a permutation of its key's numbers.
TEST(LmData, MultivalueOrderShuffledPermutesEachAnswer) {
  int other_orders = 0;
  for (uint64_t seed = 40; seed < 60; ++seed) {
    std::mt19937_64 fwd_rng(seed), shuf_rng(seed);
    auto fwd = sample_task(fwd_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kContext);
    auto shuf = sample_task(shuf_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kShuffled);
    ASSERT_TRUE(fwd.is_ok() && shuf.is_ok());
    const auto a = std::find(fwd->tokens.begin(), fwd->tokens.end(), tasks::kAnswerId) - fwd->tokens.begin();
    ASSERT_EQ(fwd->tokens.size(), shuf->tokens.size());
    EXPECT_TRUE(std::equal(fwd->tokens.begin(), fwd->tokens.begin() + a + 1, shuf->tokens.begin()));
    const std::vector<std::string> in_context =
        answer_numbers(tasks::family_decode({fwd->tokens.begin() + a + 1, fwd->tokens.end() - 1}));
    const std::vector<std::string> got =
        answer_numbers(tasks::family_decode({shuf->tokens.begin() + a + 1, shuf->tokens.end() - 1}));
    ASSERT_EQ(in_context.size(), 4u);
    EXPECT_TRUE(std::is_permutation(got.begin(), got.end(), in_context.begin(), in_context.end()));
    const std::vector<std::string> reversed(in_context.rbegin(), in_context.rend());
    other_orders += got != in_context && got != reversed;
  }
  EXPECT_GT(other_orders, 10);  // 22 of the 24 orders of four numbers are neither

  std::mt19937_64 rng(7);
  const TrainingSequence d = sample_multi_recall(rng, 12, 6, 0.1f, 4, MultivalueOrder::kShuffled);
  std::map<std::string, std::vector<std::string>> facts;  // key -> its numbers
  size_t i = 1;
  for (; d.tokens[i] != tasks::kSepId; i += 11) {
    const std::string fact = tasks::family_decode({d.tokens.begin() + i, d.tokens.begin() + i + 11});
    const std::vector<std::string> n = answer_numbers(fact.substr(fact.find(" for ") + 5));
    facts[fact.substr(fact.find(" for ") + 5, 4)].push_back(n[0].substr(0, n[0].size() - 2));  // drop " ."
  }
  int answers = 0;
  while (true) {
    const auto q = std::find(d.tokens.begin() + i, d.tokens.end(), tasks::kAnswerId);
    if (q == d.tokens.end()) break;
    const auto e = std::find(q, d.tokens.end(), tasks::kEosId);
    const std::string answer = tasks::family_decode({q + 1, e});
    const std::vector<std::string> got = answer_numbers(answer);
    const std::vector<std::string>& want = facts.at(answer.substr(0, 4));
    EXPECT_TRUE(std::is_permutation(got.begin(), got.end(), want.begin(), want.end())) << answer;
    i = static_cast<size_t>(e - d.tokens.begin()) + 1;
    ++answers;
  }
  EXPECT_EQ(answers, 6);
}

// multivalue_order "set": the tokens of "shuffled" (same draw), plus, at each digit of a number, that digit of every
// number not yet written whose earlier digits agree, as also right; nothing else (the restated key, "and", <eos>,
// the last number's digits) has an alternative. The reference walks the decoded answer's strings.
TEST(LmData, MultivalueOrderSetAcceptsEveryNumberNotYetWritten) {
  int with_alternatives = 0;
  for (uint64_t seed = 40; seed < 60; ++seed) {
    std::mt19937_64 shuf_rng(seed), set_rng(seed);
    auto shuf = sample_task(shuf_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kShuffled);
    auto set = sample_task(set_rng, "niah_multivalue", 300, 4, 1, 0.1f, "and", true, MultivalueOrder::kSet);
    ASSERT_TRUE(shuf.is_ok() && set.is_ok());
    EXPECT_EQ(shuf->tokens, set->tokens);
    EXPECT_EQ(shuf->weights, set->weights);
    EXPECT_TRUE(shuf->also_right.empty());
    const auto a = std::find(set->tokens.begin(), set->tokens.end(), tasks::kAnswerId) - set->tokens.begin();
    const std::vector<std::string> got =
        answer_numbers(tasks::family_decode({set->tokens.begin() + a + 1, set->tokens.end() - 1}));
    ASSERT_EQ(got.size(), 4u);
    // Expected (position, token) pairs: the answer is <a> kA is N1 and N2 and N3 and N4 <eos>, one token per word.
    std::set<std::pair<int32_t, int32_t>> want;
    int32_t pos = static_cast<int32_t>(a) + 3;  // N1's first digit
    for (size_t j = 0; j < got.size(); ++j) {
      const std::vector<std::string> left(got.begin() + static_cast<std::ptrdiff_t>(j), got.end());
      for (size_t c = 0; c < got[j].size(); c += 2, ++pos) {  // "d d d d": a digit every other character
        for (const auto& other : left) {
          if (other.compare(0, c, got[j], 0, c) == 0 && other[c] != got[j][c]) {
            want.emplace(pos, tasks::family_encode(std::string(1, other[c])).at(0));
          }
        }
      }
      ++pos;  // "and", or <eos> after the last
    }
    const std::set<std::pair<int32_t, int32_t>> have(set->also_right.begin(), set->also_right.end());
    EXPECT_EQ(have.size(), set->also_right.size()) << "no pair twice";
    EXPECT_EQ(have, want) << tasks::family_decode({set->tokens.begin() + a + 1, set->tokens.end()});
    with_alternatives += !want.empty();
  }
  EXPECT_EQ(with_alternatives, 20);  // four numbers of four random digits: the first digits differ nearly always

  // The drill too: every also-right token is a digit inside an answer, after <a>.
  std::mt19937_64 rng(7);
  const TrainingSequence d = sample_multi_recall(rng, 12, 6, 0.1f, 4, MultivalueOrder::kSet);
  EXPECT_FALSE(d.also_right.empty());
  const auto sep = std::find(d.tokens.begin(), d.tokens.end(), tasks::kSepId) - d.tokens.begin();
  for (const auto& [i, t] : d.also_right) {
    EXPECT_GT(i, sep);
    EXPECT_EQ(d.weights[i], 1.f);
    const auto is_digit = [](int32_t id) { return id >= tasks::kFirstDigitId && id < tasks::kFirstKeyId; };
    EXPECT_TRUE(is_digit(d.tokens[i]) && is_digit(t)) << i;
  }
}

TEST(LmData, MultiRecallListsEveryNumberOfTheKeyInContextOrder) {
  int multi_answers = 0;
  for (uint64_t seed : {11u, 12u, 13u}) {
    std::mt19937_64 rng(seed);
    const TrainingSequence s = sample_multi_recall(rng, 12, 6, 0.1f, 4);
    ASSERT_EQ(s.tokens.size(), s.weights.size());
    // The facts: "the magic number for kA is d d d d ." each; every key's numbers in context order.
    std::map<std::string, std::vector<std::string>> numbers_of;
    size_t i = 1;
    int facts = 0;
    for (; s.tokens[i] != tasks::kSepId; i += 11, ++facts) {
      const std::string fact = tasks::family_decode({s.tokens.begin() + i, s.tokens.begin() + i + 11});
      ASSERT_EQ(fact.rfind("the magic number for k", 0), 0u) << fact;
      const std::string key = fact.substr(21, 4), rest = fact.substr(25);
      ASSERT_EQ(rest.substr(0, 4), " is ") << fact;
      ASSERT_EQ(rest.back(), '.') << fact;
      numbers_of[key].push_back(rest.substr(4, rest.size() - 6));
    }
    EXPECT_EQ(facts, 12);
    // The queries: the niah question, then the answer answer_restate writes for niah_multivalue, then <eos>.
    int queries = 0;
    size_t weighted = 0;
    for (++i; i < s.tokens.size(); ++queries) {
      ASSERT_EQ(s.tokens[i], tasks::kQuestionId);
      const auto a = std::find(s.tokens.begin() + i, s.tokens.end(), tasks::kAnswerId);
      const auto eos = std::find(a, s.tokens.end(), tasks::kEosId);
      ASSERT_NE(eos, s.tokens.end());
      const std::string question = tasks::family_decode({s.tokens.begin() + i + 1, a});
      const std::string key = question.substr(question.size() - 6, 4);
      ASSERT_EQ(question, "what is the magic number for " + key + " ?");
      ASSERT_TRUE(numbers_of.count(key)) << key;
      EXPECT_EQ(tasks::family_decode({a + 1, eos}),
                compose_answer("niah_multivalue", question, numbers_of[key], "and", /*restate=*/true));
      for (auto t = a + 1; t <= eos; ++t) EXPECT_EQ(s.weights[t - s.tokens.begin()], 1.f);
      weighted += static_cast<size_t>(eos - a);
      if (numbers_of[key].size() > 1) ++multi_answers;
      i = static_cast<size_t>(eos - s.tokens.begin()) + 1;
    }
    EXPECT_EQ(queries, 6);
    EXPECT_EQ(static_cast<size_t>(std::count(s.weights.begin(), s.weights.end(), 1.f)), weighted);
  }
  EXPECT_GT(multi_answers, 3);  // keys with several numbers are asked, not only single ones
  auto phase = PhaseMix::from_json(nlohmann::json{{"steps", 1}, {"mix", {{"recall", 1.0}}}, {"recall_template", "multi"}},
                                   "cfg");
  ASSERT_TRUE(phase.is_ok()) << phase.status().message();
  EXPECT_TRUE(phase->recall_multi);
}

}  // namespace
}  // namespace proxykv::training
