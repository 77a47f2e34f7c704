// Tokenizer: a Hugging Face tokenizer.json, loaded without Python.
//
// Supported (anything else is refused at load time with an error naming the key and value, e.g.
// "tokenizer.json: pre_tokenizer.type 'Metaspace' is not supported"):
//   model          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token, fuse_unk, byte_fallback,
//                  ignore_merges, continuing_subword_prefix, end_of_word_suffix; dropout must be null or 0) and
//                  WordLevel (vocab, unk_token, which must be in the vocab).
//   normalizer     NFC, NFD, NFKC, NFKD (utf8proc), Lowercase (simple case mapping), Strip, Prepend, Replace,
//                  Sequence.
//   pre_tokenizer  Split (Regex or String pattern, all five behaviors, invert), ByteLevel (add_prefix_space,
//                  use_regex with the GPT-2 pattern), Whitespace, WhitespaceSplit, Digits (individual_digits),
//                  Punctuation, BertPreTokenizer, CharDelimiterSplit, Sequence. Regexes run on PCRE2 with UTF and
//                  UCP, whose \s, \p{L}, \p{N} and (?i:...) agree with Oniguruma, which HF uses.
//   decoder        ByteLevel, ByteFallback, Fuse, Strip, Replace, Sequence; none: tokens joined with one space.
//   added_tokens   matched in the raw text before normalization, leftmost-longest, as HF does; tokens with
//                  "normalized": true are matched in the normalized text instead. lstrip/rstrip absorb the
//                  adjacent whitespace, single_word requires no word character on either side, "special"
//                  drives decode(skip_special_tokens) and is_special().
//   ignored        post_processor (encode never adds BOS/EOS: callers add what their prompt format needs),
//                  truncation, padding, ByteLevel.trim_offsets (offsets are not computed).
//
// Input text that is not valid UTF-8 is repaired before encoding: each ill-formed subsequence becomes U+FFFD,
// as Python's bytes.decode(errors="replace") would produce.
//
// A Tokenizer is immutable after loading and safe to use from many threads; copies share the loaded data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxykv/core/status.h"

namespace proxykv {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class Tokenizer {
 public:
  // Reads a tokenizer.json; errors name the file and the key at fault.
  static Result<Tokenizer> from_file(const std::string& path);
  // `origin` names the document in error messages (a file name, "<inline>").
  static Result<Tokenizer> from_json_string(const std::string& json, const std::string& origin);

  // Token ids of `text`, added tokens written in it included; nothing is added around it (no BOS).
  std::vector<int32_t> encode(std::string_view text) const;
  // Text of `ids` through the decoder; ids outside the vocabulary are skipped, as HF does. The ByteLevel
  // decoder turns byte sequences that are not valid UTF-8 (a character cut between tokens) into U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token string of `id` ("" when no token has it).
  std::string id_to_token(int32_t id) const;
  // Max id + 1 over the model's vocabulary and the added tokens.
  int32_t vocab_size() const;
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;
  // "BPE" or "WordLevel".
  std::string model_type() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace proxykv
