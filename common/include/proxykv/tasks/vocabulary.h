// The tiny model family's word-level vocabulary (shared/TASKS.md): one whitespace-separated word = one token.
//
// Layout, by id (stable forever: the family's models are trained on these ids):
//   [0, 10)     specials      <pad> <unk> <bos> <eos> <sep> <ctx> </ctx> <q> <a> <repeat>
//   [10, 25)    structure     is . ? what the magic number for value of var = which equal and
//   [25, 125)   filler        100 ordinary lowercase words, in the order of filler_words()
//   [125, 135)  digits        0 ... 9
//   [135, 391)  keys          k000 ... k255
//   [391, 647)  values        v000 ... v255
// New words may only ever be appended after the values; nothing before them may move.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"

namespace proxykv::tasks {

// Ids of the specials, in vocabulary order.
enum SpecialTokenId : int32_t {
  kPadId = 0,
  kUnkId = 1,
  kBosId = 2,
  kEosId = 3,
  kSepId = 4,
  kCtxId = 5,
  kCtxEndId = 6,
  kQuestionId = 7,
  kAnswerId = 8,
  kRepeatId = 9,
};

inline constexpr int32_t kNumSpecials = 10;
inline constexpr int32_t kNumStructureWords = 15;
inline constexpr int32_t kNumFillerWords = 100;
inline constexpr int32_t kNumDigits = 10;
inline constexpr int32_t kNumKeys = 256;
inline constexpr int32_t kNumValues = 256;

inline constexpr int32_t kFirstStructureId = kNumSpecials;
inline constexpr int32_t kFirstFillerId = kFirstStructureId + kNumStructureWords;
inline constexpr int32_t kFirstDigitId = kFirstFillerId + kNumFillerWords;
inline constexpr int32_t kFirstKeyId = kFirstDigitId + kNumDigits;
inline constexpr int32_t kFirstValueId = kFirstKeyId + kNumKeys;
inline constexpr int32_t kFamilyVocabSize = kFirstValueId + kNumValues;  // 647

// The word lists of each section, in id order.
const std::vector<std::string>& special_tokens();
const std::vector<std::string>& structure_words();
const std::vector<std::string>& filler_words();

// The fixed haystack sentences (40), built from filler words and the structure words "the", "is", "and"; each
// ends with ".". A fixed, small set keeps the haystack predictable, so a model need not keep filler KV.
const std::vector<std::string>& filler_sentences();

// The "joined" haystack's 40 sentences: sentence k is filler sentence k without its final ".", then "and", then
// filler sentence (k + 1) % 40 (9 to 16 words). Its second half is fixed by its first, so a model that knows the
// pairs reads one choice per 9-16 words instead of one per 4-8 (docs/tasks.md, "Haystacks").
const std::vector<std::string>& joined_filler_sentences();

// "k007", "v123", "4": the words of key i, value i (i in [0, 256)) and digit d (d in [0, 10)).
std::string key_word(int i);
std::string value_word(int i);
std::string digit_word(int d);

// Every token, indexed by id (size kFamilyVocabSize).
const std::vector<std::string>& family_vocabulary();

// Id of one word, or kUnkId when the vocabulary does not have it.
int32_t family_token_id(std::string_view word);

// Ids of a text split on ASCII whitespace, as the family tokenizer.json encodes it (no <bos>/<eos> added).
std::vector<int32_t> family_encode(std::string_view text);

// Words of the ids, joined by single spaces; ids outside the vocabulary decode as <unk>.
std::string family_decode(const std::vector<int32_t>& ids);

// The HF tokenizer.json of the vocabulary: WordLevel model, WhitespaceSplit pre-tokenizer, the specials as added
// tokens, no normalizer, post-processor or decoder (HF joins tokens with spaces when there is no decoder).
// Keys are in the order HF itself writes them, and the vocab is in id order, so the file is byte-stable.
nlohmann::ordered_json family_tokenizer_json();

// Writes family_tokenizer_json() to `path` (2-space indented, trailing newline).
Status write_family_tokenizer(const std::string& path);

}  // namespace proxykv::tasks
