// RULER's string_match_all as TASKS.md defines it (all answers present, case-insensitive) and its mean.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxykv/tasks/task_suite.h"

namespace proxykv::tasks {
namespace {

TEST(StringMatchAllTest, EveryAnswerMustOccur) {
  EXPECT_TRUE(string_match_all("4 0 9 1", {"4 0 9 1"}));
  EXPECT_TRUE(string_match_all("the number is 4 0 9 1 . <eos>", {"4 0 9 1"}));
  EXPECT_TRUE(string_match_all("1 1 1 1 2 2 2 2", {"2 2 2 2", "1 1 1 1"}));  // order is free
  EXPECT_TRUE(string_match_all("k001 k002 k003", {"k003", "k001"}));
  EXPECT_FALSE(string_match_all("1 1 1 1", {"1 1 1 1", "2 2 2 2"}));  // one missing: no partial credit
  EXPECT_FALSE(string_match_all("4 0 9", {"4 0 9 1"}));
  EXPECT_FALSE(string_match_all("4091", {"4 0 9 1"}));  // spacing matters
  EXPECT_FALSE(string_match_all("", {"v001"}));
}

TEST(StringMatchAllTest, IsCaseInsensitiveLikeRuler) {
  EXPECT_TRUE(string_match_all("V017 is it", {"v017"}));
  EXPECT_TRUE(string_match_all("k017", {"K017"}));
  EXPECT_TRUE(string_match_all("The Grass", {"the grass", "GRASS"}));
  EXPECT_FALSE(string_match_all("the grass", {"the glass"}));
}

TEST(StringMatchAllTest, DegenerateAnswersNeverScore) {
  // Vacuous truth would count an unscorable query as right.
  EXPECT_FALSE(string_match_all("anything", {}));
  EXPECT_FALSE(string_match_all("anything", {""}));
  EXPECT_FALSE(string_match_all("anything", {"anything", ""}));
}

TEST(StringMatchAllTest, SubstringsMatchAsInRuler) {
  // RULER matches substrings, not words: a number inside a longer digit run counts. Documented in docs/tasks.md.
  EXPECT_TRUE(string_match_all("3 4 0 9 1 2", {"4 0 9 1"}));
}

TEST(StringMatchAllAccuracyTest, MeanOverQueries) {
  auto accuracy = string_match_all_accuracy({"4 0 9 1", "1 2", "v001 v002", "nothing"},
                                            {{"4 0 9 1"}, {"1 2", "3"}, {"V002"}, {"v009"}});
  ASSERT_TRUE(accuracy.is_ok());
  EXPECT_DOUBLE_EQ(accuracy.value(), 0.5);
  auto all = string_match_all_accuracy({"a"}, {{"a"}});
  ASSERT_TRUE(all.is_ok());
  EXPECT_DOUBLE_EQ(all.value(), 1.0);
}

TEST(StringMatchAllAccuracyTest, RejectsMismatchedOrEmptyLists) {
  auto mismatched = string_match_all_accuracy({"a", "b"}, {{"a"}});
  ASSERT_FALSE(mismatched.is_ok());
  EXPECT_EQ(mismatched.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("2 generated texts but 1 answer lists"), std::string::npos);
  auto empty = string_match_all_accuracy({}, {});
  ASSERT_FALSE(empty.is_ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace proxykv::tasks
