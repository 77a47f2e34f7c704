// Tokenizer: hand-made tokenizer.json files whose ids are worked out by hand, the split behaviors and
// normalization pieces against HF's documented results, and malformed files that must fail with clear errors.
#include "proxykv/model/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/model/tokenizer_pipeline.h"
#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

json special_token(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// The tiny family's shape: WordLevel, Whitespace pre-tokenizer, no decoder.
json word_level_json() {
  const std::vector<std::string> specials = {"<pad>", "<unk>",  "<bos>", "<eos>", "<sep>",
                                             "<ctx>", "</ctx>", "<q>",   "<a>",   "<repeat>"};
  json vocab = json::object();
  json added = json::array();
  for (std::size_t i = 0; i < specials.size(); ++i) {
    vocab[specials[i]] = i;
    added.push_back(special_token(static_cast<int>(i), specials[i]));
  }
  const std::vector<std::string> words = {"the", "sky", "is", "blue", ".", "k042", "?", "what"};
  for (std::size_t i = 0; i < words.size(); ++i) vocab[words[i]] = 10 + i;  // 10 .. 17
  for (int d = 0; d < 10; ++d) vocab[std::to_string(d)] = 18 + d;           // 18 .. 27
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Whitespace"}}},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}}}};
}

// A byte-level BPE in the GPT-2 layout with a handful of merges.
//   "hello"  -> h e l l o -> he l l o -> he ll o -> hell o -> hello            = [11]
//   " world" -> Ġ w o r l d -> Ġw o r l d -> Ġw or l d -> Ġwor l d             = [14, 2, 6]
json byte_level_bpe_json(bool merges_as_pairs = false) {
  json vocab = {{"h", 0},   {"e", 1},   {"l", 2},     {"o", 3},  {"w", 4},     {"r", 5},
                {"d", 6},   {"Ġ", 7},   {"he", 8},    {"ll", 9}, {"hell", 10}, {"hello", 11},
                {"Ġw", 12}, {"or", 13}, {"Ġwor", 14}, {"!", 15}, {"Ã", 16},    {"©", 17}};
  const std::vector<std::pair<std::string, std::string>> merge_pairs = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}};
  json merges = json::array();
  for (const auto& [left, right] : merge_pairs) {
    if (merges_as_pairs) {
      merges.push_back(json::array({left, right}));
    } else {
      merges.push_back(std::string(left).append(" ").append(right));
    }
  }
  json added = json::array({special_token(18, "<|endoftext|>")});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

Tokenizer load(const json& document) {
  auto tokenizer = Tokenizer::from_json_string(document.dump(), "test.json");
  EXPECT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  return std::move(tokenizer).value();
}

Status load_error(const std::string& text) {
  auto tokenizer = Tokenizer::from_json_string(text, "tokenizer.json");
  EXPECT_FALSE(tokenizer.is_ok());
  return tokenizer.status();
}

// ---- WordLevel ----

TEST(WordLevelTokenizer, EncodesPromptWithSpecialTokens) {
  const Tokenizer tokenizer = load(word_level_json());
  EXPECT_EQ(tokenizer.model_type(), "WordLevel");
  EXPECT_EQ(tokenizer.encode("<bos> <ctx> the sky is blue . </ctx>"), (Ids{2, 5, 10, 11, 12, 13, 14, 6}));
  EXPECT_EQ(tokenizer.encode("<q> what is k042 ? <a>"), (Ids{7, 17, 12, 15, 16, 8}));
  EXPECT_EQ(tokenizer.encode("<repeat> 4 2"), (Ids{9, 22, 20}));
  // Specials are found without surrounding spaces too, and Whitespace splits "k042?" into word and punctuation.
  EXPECT_EQ(tokenizer.encode("<bos>the</ctx>k042?"), (Ids{2, 10, 6, 15, 16}));
  EXPECT_EQ(tokenizer.encode("  the\t\nsky  "), (Ids{10, 11}));
  EXPECT_EQ(tokenizer.encode(""), Ids{});
}

TEST(WordLevelTokenizer, UnknownWordsMapToUnk) {
  const Tokenizer tokenizer = load(word_level_json());
  EXPECT_EQ(tokenizer.encode("the cat is blue"), (Ids{10, 1, 12, 13}));
  EXPECT_EQ(tokenizer.encode("<bogus>"), (Ids{1, 1, 1}));  // "<", "bogus", ">"
}

TEST(WordLevelTokenizer, DecodeJoinsWithSpaces) {
  const Tokenizer tokenizer = load(word_level_json());
  const Ids ids = {2, 5, 10, 11, 12, 13, 14, 6};
  EXPECT_EQ(tokenizer.decode(ids), "<bos> <ctx> the sky is blue . </ctx>");
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special_tokens=*/true), "the sky is blue .");
  EXPECT_EQ(tokenizer.decode({10, 999, -1, 11}), "the sky");  // unknown ids are skipped
}

TEST(WordLevelTokenizer, VocabularyLookups) {
  const Tokenizer tokenizer = load(word_level_json());
  EXPECT_EQ(tokenizer.vocab_size(), 28);
  EXPECT_EQ(tokenizer.token_to_id("<ctx>"), 5);
  EXPECT_EQ(tokenizer.token_to_id("blue"), 13);
  EXPECT_EQ(tokenizer.token_to_id("green"), std::nullopt);
  EXPECT_EQ(tokenizer.id_to_token(6), "</ctx>");
  EXPECT_EQ(tokenizer.id_to_token(27), "9");
  EXPECT_EQ(tokenizer.id_to_token(28), "");
  EXPECT_EQ(tokenizer.id_to_token(-3), "");
  EXPECT_TRUE(tokenizer.is_special(2));
  EXPECT_FALSE(tokenizer.is_special(10));
  EXPECT_FALSE(tokenizer.is_special(1000));
  EXPECT_EQ(tokenizer.added_tokens().size(), 10u);
}

TEST(WordLevelTokenizer, CopiesShareTheVocabulary) {
  std::optional<Tokenizer> copy;
  {
    const Tokenizer original = load(word_level_json());
    copy = original;
  }
  EXPECT_EQ(copy->encode("the sky"), (Ids{10, 11}));
}

TEST(WordLevelTokenizer, FromFileNamesTheFile) {
  const std::string path = ::testing::TempDir() + "/proxykv_tokenizer_test.json";
  {
    std::ofstream out(path);
    out << word_level_json().dump(2);
  }
  auto tokenizer = Tokenizer::from_file(path);
  ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
  EXPECT_EQ(tokenizer->encode("the sky"), (Ids{10, 11}));
  std::remove(path.c_str());

  auto missing = Tokenizer::from_file(path);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

// ---- byte-level BPE ----

TEST(ByteLevelBpeTokenizer, AppliesMergesByRank) {
  const Tokenizer tokenizer = load(byte_level_bpe_json());
  EXPECT_EQ(tokenizer.model_type(), "BPE");
  EXPECT_EQ(tokenizer.encode("hello"), (Ids{11}));
  EXPECT_EQ(tokenizer.encode(" world"), (Ids{14, 2, 6}));
  EXPECT_EQ(tokenizer.encode("hello world"), (Ids{11, 14, 2, 6}));
  // Equal ranks merge leftmost first: l l l -> ll l.
  EXPECT_EQ(tokenizer.encode("lll"), (Ids{9, 2}));
  // "hel" cannot reach "hell": he l.
  EXPECT_EQ(tokenizer.encode("hel"), (Ids{8, 2}));
  // Punctuation is its own pre-token: "hello", "!".
  EXPECT_EQ(tokenizer.encode("hello!"), (Ids{11, 15}));
}

TEST(ByteLevelBpeTokenizer, MergePairsAndStringsAgree) {
  const Tokenizer from_strings = load(byte_level_bpe_json(false));
  const Tokenizer from_pairs = load(byte_level_bpe_json(true));
  for (const char* text : {"hello world", "lll", "held word", "or or wor"}) {
    EXPECT_EQ(from_strings.encode(text), from_pairs.encode(text)) << text;
  }
}

TEST(ByteLevelBpeTokenizer, BytesOutsideAsciiRoundTrip) {
  const Tokenizer tokenizer = load(byte_level_bpe_json());
  // é is C3 A9, written Ã © in the byte-level alphabet.
  EXPECT_EQ(tokenizer.encode("\xC3\xA9"), (Ids{16, 17}));
  EXPECT_EQ(tokenizer.decode({16, 17}), "\xC3\xA9");
  // NFC composes e + U+0301 into é before encoding.
  EXPECT_EQ(tokenizer.encode("e\xCC\x81"), (Ids{16, 17}));
  // A character cut in half decodes to U+FFFD, as HF's from_utf8_lossy does.
  EXPECT_EQ(tokenizer.decode({16}), "\xEF\xBF\xBD");
}

TEST(ByteLevelBpeTokenizer, AddedTokensSplitTheTextFirst) {
  const Tokenizer tokenizer = load(byte_level_bpe_json());
  EXPECT_EQ(tokenizer.encode("hello<|endoftext|> world"), (Ids{11, 18, 14, 2, 6}));
  EXPECT_EQ(tokenizer.decode({11, 18, 14, 2, 6}), "hello<|endoftext|> world");
  EXPECT_EQ(tokenizer.decode({11, 18, 14, 2, 6}, /*skip_special_tokens=*/true), "hello world");
  EXPECT_EQ(tokenizer.vocab_size(), 19);
}

TEST(ByteLevelBpeTokenizer, UnknownCharactersUseUnkWhenConfigured) {
  json document = byte_level_bpe_json();
  // Without an unk token, bytes missing from the vocabulary are dropped (HF does the same).
  EXPECT_EQ(load(document).encode("hexo"), (Ids{8, 3}));
  document["model"]["vocab"]["<unk>"] = 19;
  document["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(load(document).encode("hexxo"), (Ids{8, 19, 19, 3}));
  document["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(document).encode("hexxo"), (Ids{8, 19, 3}));
}

TEST(ByteLevelBpeTokenizer, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json document = byte_level_bpe_json();
  // "hl" is in the vocabulary but no merge builds it.
  document["model"]["vocab"]["hl"] = 19;
  EXPECT_EQ(load(document).encode("hl"), (Ids{0, 2}));
  document["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(document).encode("hl"), (Ids{19}));
}

TEST(ByteLevelBpeTokenizer, InvalidUtf8DoesNotCrash) {
  json document = byte_level_bpe_json();
  document["model"]["vocab"]["ï"] = 19;  // EF BF BD, U+FFFD in the byte-level alphabet
  document["model"]["vocab"]["¿"] = 20;
  document["model"]["vocab"]["½"] = 21;
  const Tokenizer tokenizer = load(document);
  // Each ill-formed subsequence becomes one U+FFFD.
  EXPECT_EQ(tokenizer.encode("he\xFFllo"), tokenizer.encode("he\xEF\xBF\xBDllo"));
  EXPECT_EQ(tokenizer.encode("\xE2\x82"), (Ids{19, 20, 21}));
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 200; ++round) {
    std::string text(static_cast<std::size_t>(round % 40), '\0');
    for (char& c : text) c = static_cast<char>(byte(rng));
    const Ids ids = tokenizer.encode(text);
    const std::string decoded = tokenizer.decode(ids);
    EXPECT_TRUE(tok::is_valid_utf8(decoded));
  }
}

TEST(ByteLevelBpeTokenizer, ConcurrentEncodesAgree) {
  const Tokenizer tokenizer = load(byte_level_bpe_json());
  const Ids expected = tokenizer.encode("hello world lll hel");
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::vector<int> mismatches(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) mismatches[t] += tokenizer.encode("hello world lll hel") != expected;
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const int count : mismatches) EXPECT_EQ(count, 0);
}

TEST(TokenizerAddedTokens, StripAndSingleWordOptions) {
  json document = byte_level_bpe_json();
  json token = special_token(19, "<m>");
  token["lstrip"] = true;
  token["rstrip"] = true;
  document["added_tokens"].push_back(token);
  json word = special_token(20, "he");
  word["single_word"] = true;
  document["added_tokens"].push_back(word);
  const Tokenizer tokenizer = load(document);
  // lstrip/rstrip swallow the spaces around <m>.
  EXPECT_EQ(tokenizer.encode("hello  <m>  hello"), (Ids{11, 19, 11}));
  // "he" as a word on its own is the added token; inside "hello" it is not.
  EXPECT_EQ(tokenizer.encode("he"), (Ids{20}));
  EXPECT_EQ(tokenizer.encode("hello"), (Ids{11}));
}

// ---- pipeline pieces ----

std::vector<std::string> split_dashes(tok::SplitBehavior behavior) {
  return tok::split_text("the-final--countdown", tok::SplitPattern::literal("-"), behavior, false);
}

// The examples of HF's SplitDelimiterBehavior documentation.
TEST(TokenizerSplitBehavior, MatchesHuggingFaceDocumentation) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_dashes(tok::SplitBehavior::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split_dashes(tok::SplitBehavior::kIsolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split_dashes(tok::SplitBehavior::kMergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split_dashes(tok::SplitBehavior::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split_dashes(tok::SplitBehavior::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
  const auto regex = tok::SplitPattern::regex("\\s+");
  ASSERT_TRUE(regex.is_ok());
  EXPECT_EQ(tok::split_text("a  b c", *regex, tok::SplitBehavior::kRemoved, /*invert=*/false), (V{"a", "b", "c"}));
  EXPECT_EQ(tok::split_text("a  b c", *regex, tok::SplitBehavior::kRemoved, /*invert=*/true), (V{"  ", " "}));
}

TEST(TokenizerPreTokenizer, DigitsAndQwenSplit) {
  using V = std::vector<std::string>;
  const auto digits = tok::PreTokenizer::from_json(json{{"type", "Digits"}, {"individual_digits", true}},
                                                   tok::JsonPath("t", "pre_tokenizer"));
  ASSERT_TRUE(digits.is_ok());
  EXPECT_EQ(digits->pre_tokenize("abc123d4"), (V{"abc", "1", "2", "3", "d", "4"}));
  const json qwen = {
      {"type", "Split"},
      {"pattern",
       {{"Regex",
         "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
      {"behavior", "Isolated"},
      {"invert", false}};
  const auto split = tok::PreTokenizer::from_json(qwen, tok::JsonPath("t", "pre_tokenizer"));
  ASSERT_TRUE(split.is_ok()) << split.status().to_string();
  EXPECT_EQ(split->pre_tokenize("It'S 42  apples!\n\nOK"),
            (V{"It", "'S", " ", "4", "2", " ", " apples", "!\n\n", "OK"}));
}

TEST(TokenizerUnicode, SanitizeReplacesMaximalSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(tok::sanitize_utf8("ok"), "ok");
  EXPECT_EQ(tok::sanitize_utf8("\xC3"), fffd);
  EXPECT_EQ(tok::sanitize_utf8("\xE2\x82"), fffd);                    // one truncated sequence, one U+FFFD
  EXPECT_EQ(tok::sanitize_utf8("\xF0\x80"), fffd + fffd);             // overlong lead, stray continuation
  EXPECT_EQ(tok::sanitize_utf8("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogates are ill-formed
  EXPECT_EQ(tok::sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(TokenizerUnicode, ByteLevelAlphabetIsTheGpt2Table) {
  const auto& alphabet = tok::ByteLevelAlphabet::instance();
  EXPECT_EQ(alphabet.encode_byte(' '), "Ġ");   // U+0120
  EXPECT_EQ(alphabet.encode_byte('\n'), "Ċ");  // U+010A
  EXPECT_EQ(alphabet.encode_byte('A'), "A");
  EXPECT_EQ(alphabet.encode_byte(0xAD), "Ń");  // soft hyphen, the last non-printable byte: U+0143
  for (int b = 0; b < 256; ++b) {
    std::string text = alphabet.encode_byte(static_cast<unsigned char>(b));
    std::size_t pos = 0;
    EXPECT_EQ(alphabet.decode_code_point(tok::next_code_point(text, pos)), b);
  }
}

// ---- malformed files ----

TEST(MalformedTokenizer, MissingModel) {
  json document = word_level_json();
  document.erase("model");
  const Status status = load_error(document.dump());
  EXPECT_NE(status.message().find("tokenizer.json: model is missing"), std::string::npos) << status.to_string();
}

TEST(MalformedTokenizer, VocabWithWrongTypes) {
  json document = word_level_json();
  document["model"]["vocab"]["the"] = "ten";
  Status status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.vocab['the'] must be an integer id"), std::string::npos) << status.to_string();
  document["model"]["vocab"] = json::array({"a", "b"});
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.vocab must be an object"), std::string::npos) << status.to_string();
  document = word_level_json();
  document["model"]["vocab"]["the"] = -4;
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.vocab['the'] has id -4"), std::string::npos) << status.to_string();
  document["model"]["vocab"]["the"] = 1LL << 40;
  EXPECT_FALSE(Tokenizer::from_json_string(document.dump(), "t").is_ok());
  document["model"]["vocab"]["the"] = 5000000;  // within the id bound, but far too sparse for 28 tokens
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("ids this sparse are not supported"), std::string::npos) << status.to_string();
  document["model"]["vocab"]["the"] = 11;  // "sky" has 11 too
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("has id 11"), std::string::npos) << status.to_string();
}

TEST(MalformedTokenizer, UnknownTypesAreNamed) {
  json document = word_level_json();
  document["model"]["type"] = "Unigram";
  Status status = load_error(document.dump());
  EXPECT_EQ(status.code(), StatusCode::kUnimplemented);
  EXPECT_NE(status.message().find("tokenizer.json: model.type 'Unigram' is not supported"), std::string::npos)
      << status.to_string();

  document = word_level_json();
  document["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("tokenizer.json: pre_tokenizer.type 'Metaspace' is not supported"), std::string::npos)
      << status.to_string();

  document = word_level_json();
  document["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", json::array({{{"type", "Whitespace"}}, {{"type", "Magic"}}})}};
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("pre_tokenizer.pretokenizers[1].type 'Magic' is not supported"), std::string::npos)
      << status.to_string();

  document = word_level_json();
  document["normalizer"] = {{"type", "Precompiled"}};
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("normalizer.type 'Precompiled'"), std::string::npos) << status.to_string();

  document = word_level_json();
  document["decoder"] = {{"type", "WordPiece"}};
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("decoder.type 'WordPiece'"), std::string::npos) << status.to_string();
}

TEST(MalformedTokenizer, MergesNamingUnknownTokens) {
  json document = byte_level_bpe_json();
  document["model"]["merges"].push_back("zz q");
  Status status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.merges[7] names token 'zz' which is not in model.vocab"), std::string::npos)
      << status.to_string();

  document = byte_level_bpe_json();
  document["model"]["merges"].push_back("h d");  // both known, but "hd" is not in the vocabulary
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.merges[7] names token 'hd'"), std::string::npos) << status.to_string();

  document = byte_level_bpe_json();
  document["model"]["merges"].push_back("nospace");
  status = load_error(document.dump());
  EXPECT_NE(status.message().find("model.merges[7] must be two tokens"), std::string::npos) << status.to_string();

  document = byte_level_bpe_json();
  document["model"]["merges"].push_back(json::array({"h", 3}));
  EXPECT_FALSE(Tokenizer::from_json_string(document.dump(), "t").is_ok());
}

TEST(MalformedTokenizer, OtherBadValues) {
  EXPECT_NE(load_error("[1, 2]").message().find("must be a JSON object"), std::string::npos);
  EXPECT_NE(load_error("").message().find("not valid JSON"), std::string::npos);

  json document = word_level_json();
  document["model"]["unk_token"] = "<nope>";
  EXPECT_NE(load_error(document.dump()).message().find("model.unk_token names token '<nope>'"), std::string::npos);

  document = word_level_json();
  document["added_tokens"][3]["id"] = -1;
  EXPECT_NE(load_error(document.dump()).message().find("added_tokens[3].id is -1"), std::string::npos);

  document = word_level_json();
  document["added_tokens"][3]["special"] = "yes";
  EXPECT_NE(load_error(document.dump()).message().find("added_tokens[3].special must be a boolean"), std::string::npos);

  document = word_level_json();
  document["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(load_error(document.dump()).message().find("pre_tokenizer.pattern.Regex regex does not compile"),
            std::string::npos);

  document = word_level_json();
  document["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Sideways"}};
  EXPECT_NE(load_error(document.dump()).message().find("pre_tokenizer.behavior 'Sideways' is not supported"),
            std::string::npos);

  document = byte_level_bpe_json();
  document["model"]["dropout"] = 0.1;
  EXPECT_NE(load_error(document.dump()).message().find("model.dropout '0.1' is not supported"), std::string::npos);

  // Sequences nested without end.
  json nested = {{"type", "NFC"}};
  for (int i = 0; i < 20; ++i) nested = {{"type", "Sequence"}, {"normalizers", json::array({nested})}};
  document = word_level_json();
  document["normalizer"] = nested;
  EXPECT_NE(load_error(document.dump()).message().find("nests Sequences too deeply"), std::string::npos);
}

TEST(MalformedTokenizer, TruncatedAndCorruptedFilesFailCleanly) {
  const std::string text = word_level_json().dump();
  for (std::size_t length = 0; length < text.size(); ++length) {
    auto tokenizer = Tokenizer::from_json_string(text.substr(0, length), "tokenizer.json");
    EXPECT_FALSE(tokenizer.is_ok()) << "truncated at " << length;
  }
  const std::string bpe = byte_level_bpe_json().dump();
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> position(0, bpe.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 2000; ++round) {
    std::string corrupted = bpe;
    for (int flips = 0; flips < 3; ++flips) corrupted[position(rng)] = static_cast<char>(byte(rng));
    auto tokenizer = Tokenizer::from_json_string(corrupted, "tokenizer.json");
    if (tokenizer.is_ok()) {
      (void)tokenizer->encode("hello world <|endoftext|> \xFF");
    } else {
      EXPECT_EQ(tokenizer.status().message().rfind("tokenizer.json: ", 0), 0u) << tokenizer.status().message();
    }
  }
}

}  // namespace
}  // namespace proxykv
