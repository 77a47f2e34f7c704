// The family vocabulary: its fixed layout, the filler sentences, and the HF tokenizer.json written from it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/tasks/vocabulary.h"
#include "tasks_test_util.h"

namespace proxykv::tasks {
namespace {

TEST(VocabularyTest, LayoutIsTheDocumentedOne) {
  const auto& vocab = family_vocabulary();
  ASSERT_EQ(vocab.size(), static_cast<std::size_t>(kFamilyVocabSize));
  EXPECT_EQ(kFamilyVocabSize, 647);

  const std::vector<std::string> specials = {"<pad>", "<unk>",  "<bos>", "<eos>", "<sep>",
                                             "<ctx>", "</ctx>", "<q>",   "<a>",   "<repeat>"};
  for (int id = 0; id < kNumSpecials; ++id) EXPECT_EQ(vocab[id], specials[id]) << id;
  EXPECT_EQ(vocab[kBosId], "<bos>");
  EXPECT_EQ(vocab[kCtxEndId], "</ctx>");
  EXPECT_EQ(vocab[kRepeatId], "<repeat>");

  const std::vector<std::string> structure = {"is",    ".",  "?",   "what", "the",   "magic", "number", "for",
                                              "value", "of", "var", "=",    "which", "equal", "and"};
  for (int i = 0; i < kNumStructureWords; ++i) EXPECT_EQ(vocab[kFirstStructureId + i], structure[i]);
  EXPECT_EQ(vocab[kFirstFillerId], "grass");
  EXPECT_EQ(vocab[kFirstFillerId + kNumFillerWords - 1], "calm");
  for (int d = 0; d < 10; ++d) EXPECT_EQ(vocab[kFirstDigitId + d], std::string(1, static_cast<char>('0' + d)));
  EXPECT_EQ(vocab[kFirstKeyId], "k000");
  EXPECT_EQ(vocab[kFirstKeyId + 17], "k017");
  EXPECT_EQ(vocab[kFirstKeyId + 255], "k255");
  EXPECT_EQ(vocab[kFirstValueId], "v000");
  EXPECT_EQ(vocab[kFirstValueId + 255], "v255");
  // The published ids of the first word of each section (docs/tasks.md).
  EXPECT_EQ(kFirstStructureId, 10);
  EXPECT_EQ(kFirstFillerId, 25);
  EXPECT_EQ(kFirstDigitId, 125);
  EXPECT_EQ(kFirstKeyId, 135);
  EXPECT_EQ(kFirstValueId, 391);
}

TEST(VocabularyTest, TokensAreUniqueAndLookUp) {
  const auto& vocab = family_vocabulary();
  EXPECT_EQ(std::set<std::string>(vocab.begin(), vocab.end()).size(), vocab.size());
  for (int32_t id = 0; id < kFamilyVocabSize; ++id) EXPECT_EQ(family_token_id(vocab[id]), id);
  EXPECT_EQ(family_token_id("k256"), kUnkId);
  EXPECT_EQ(family_token_id("Grass"), kUnkId);  // no normalizer: case matters
  EXPECT_EQ(family_token_id(""), kUnkId);
  for (const std::string& word : filler_words()) {
    EXPECT_EQ(word.find_first_of(" \t\n"), std::string::npos);
    for (const char c : word) EXPECT_TRUE(c >= 'a' && c <= 'z') << word;
  }
}

TEST(VocabularyTest, FillerSentencesUseOnlyFillerWordsAndEveryOne) {
  const std::set<std::string> filler(filler_words().begin(), filler_words().end());
  const std::set<std::string> allowed_structure = {"the", "is", "and", "."};
  std::set<std::string> used;
  std::set<std::size_t> lengths;
  ASSERT_EQ(filler_sentences().size(), 40u);
  EXPECT_EQ(std::set<std::string>(filler_sentences().begin(), filler_sentences().end()).size(), 40u);
  for (const std::string& sentence : filler_sentences()) {
    const auto words = test::words_of(sentence);
    ASSERT_FALSE(words.empty());
    EXPECT_EQ(words.back(), ".") << sentence;
    EXPECT_EQ(test::join_words(words, 0, words.size()), sentence) << "single spaces only";
    for (std::size_t i = 0; i + 1 < words.size(); ++i) {
      EXPECT_TRUE(filler.count(words[i]) || (allowed_structure.count(words[i]) && words[i] != "."))
          << "'" << words[i] << "' in '" << sentence << "'";
      used.insert(words[i]);
    }
    lengths.insert(words.size());
  }
  for (const std::string& word : filler) EXPECT_TRUE(used.count(word)) << word << " is in no sentence";
  // The generators fill any budget of 4+ words exactly because every length from 4 to 8 occurs.
  EXPECT_EQ(lengths, (std::set<std::size_t>{4, 5, 6, 7, 8}));
}

TEST(VocabularyTest, JoinedSentencesPairEachSentenceWithTheNext) {
  const auto& single = filler_sentences();
  const auto& joined = joined_filler_sentences();
  ASSERT_EQ(joined.size(), single.size());
  std::set<std::size_t> lengths;
  for (std::size_t k = 0; k < joined.size(); ++k) {
    const auto first = test::words_of(single[k]);
    const auto second = test::words_of(single[(k + 1) % single.size()]);
    std::vector<std::string> expected(first.begin(), first.end() - 1);  // without its "."
    expected.push_back("and");
    expected.insert(expected.end(), second.begin(), second.end());
    const auto words = test::words_of(joined[k]);
    EXPECT_EQ(words, expected) << joined[k];
    EXPECT_EQ(std::count(words.begin(), words.end(), "."), 1) << "one sentence, one full stop: " << joined[k];
    lengths.insert(words.size());
  }
  EXPECT_EQ(std::set<std::string>(joined.begin(), joined.end()).size(), joined.size());
  // Every length from 9 to 16 occurs (no two 4-word sentences are neighbours), so sequences of them make every
  // budget of 9-16 or 18+ words exactly; the generators fill the others with short sentences.
  EXPECT_EQ(lengths, (std::set<std::size_t>{9, 10, 11, 12, 13, 14, 15, 16}));
}

TEST(VocabularyTest, EncodeSplitsOnWhitespaceAndDecodeJoins) {
  const std::vector<int32_t> ids = family_encode("<bos> <ctx>  the magic\tnumber for k017 is 4 0 9 1 .\n</ctx> zebra");
  const std::vector<int32_t> expected = {kBosId,
                                         kCtxId,
                                         kFirstStructureId + 4,
                                         kFirstStructureId + 5,
                                         kFirstStructureId + 6,
                                         kFirstStructureId + 7,
                                         kFirstKeyId + 17,
                                         kFirstStructureId,
                                         kFirstDigitId + 4,
                                         kFirstDigitId,
                                         kFirstDigitId + 9,
                                         kFirstDigitId + 1,
                                         kFirstStructureId + 1,
                                         kCtxEndId,
                                         kUnkId};
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(family_decode(ids), "<bos> <ctx> the magic number for k017 is 4 0 9 1 . </ctx> <unk>");
  EXPECT_EQ(family_decode({-1, kFamilyVocabSize}), "<unk> <unk>");
  EXPECT_TRUE(family_encode("  \n ").empty());
}

TEST(TokenizerJsonTest, FollowsTheHfSchema) {
  const nlohmann::ordered_json doc = family_tokenizer_json();
  std::vector<std::string> keys;
  for (const auto& item : doc.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"version", "truncation", "padding", "added_tokens", "normalizer",
                                            "pre_tokenizer", "post_processor", "decoder", "model"}));
  EXPECT_EQ(doc["version"], "1.0");
  for (const char* key : {"truncation", "padding", "normalizer", "post_processor", "decoder"}) {
    EXPECT_TRUE(doc[key].is_null()) << key;
  }
  EXPECT_EQ(doc["pre_tokenizer"], nlohmann::ordered_json({{"type", "WhitespaceSplit"}}));

  const auto& added = doc["added_tokens"];
  ASSERT_TRUE(added.is_array());
  ASSERT_EQ(added.size(), 10u);
  for (int id = 0; id < kNumSpecials; ++id) {
    const auto& token = added[id];
    std::vector<std::string> fields;
    for (const auto& item : token.items()) fields.push_back(item.key());
    EXPECT_EQ(fields,
              (std::vector<std::string>{"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}));
    EXPECT_EQ(token["id"], id);
    EXPECT_EQ(token["content"], special_tokens()[id]);
    EXPECT_EQ(token["single_word"], false);
    EXPECT_EQ(token["lstrip"], false);
    EXPECT_EQ(token["rstrip"], false);
    EXPECT_EQ(token["normalized"], false);
    EXPECT_EQ(token["special"], true);
  }

  const auto& model = doc["model"];
  EXPECT_EQ(model["type"], "WordLevel");
  EXPECT_EQ(model["unk_token"], "<unk>");
  ASSERT_TRUE(model["vocab"].is_object());
  ASSERT_EQ(model["vocab"].size(), static_cast<std::size_t>(kFamilyVocabSize));
  int32_t expected_id = 0;
  for (const auto& item : model["vocab"].items()) {  // in id order, as HF writes it
    EXPECT_EQ(item.key(), family_vocabulary()[expected_id]);
    EXPECT_EQ(item.value(), expected_id);
    ++expected_id;
  }
}

TEST(TokenizerJsonTest, WrittenFileIsValidJsonAndStable) {
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  ASSERT_TRUE(write_family_tokenizer(path).is_ok());
  const std::string bytes = test::read_bytes(path);
  const auto parsed = nlohmann::ordered_json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_EQ(parsed, family_tokenizer_json());
  ASSERT_TRUE(write_family_tokenizer(path).is_ok());
  EXPECT_EQ(test::read_bytes(path), bytes);

  const Status bad = write_family_tokenizer(dir.file("no/such/dir/tokenizer.json"));
  EXPECT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("no/such/dir/tokenizer.json"), std::string::npos);
}

}  // namespace
}  // namespace proxykv::tasks
