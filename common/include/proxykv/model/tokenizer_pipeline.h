// The text stages of a tokenizer.json around the model: normalizer, pre-tokenizer and decoder, each read from
// its JSON section into a flat list of steps (a "Sequence" is flattened into its parts). The semantics follow
// the Hugging Face `tokenizers` library (Rust); see tokenizer.h for what is supported.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/tokenizer_json.h"
#include "proxykv/model/tokenizer_regex.h"

namespace proxykv::tok {

// What a Split finds: a regex, a literal string, or every single code point of a class.
class SplitPattern {
 public:
  enum class CharClass { kWhitespace, kNumeric, kPunctuation };

  // {"Regex": "..."} or {"String": "..."}.
  static Result<SplitPattern> from_json(const Json& config, const JsonPath& at);
  static Result<SplitPattern> regex(std::string_view pattern);
  static SplitPattern literal(std::string text);
  static SplitPattern char_class(CharClass char_class);

  std::vector<TextSpan> find_all(std::string_view text) const;

 private:
  SplitPattern() = default;
  std::optional<RegexPattern> regex_;
  std::string literal_;
  std::optional<CharClass> char_class_;
};

// HF's SplitDelimiterBehavior: what happens to the matched parts.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Cuts `text` at the pattern's matches (after `invert` swaps matches and gaps) and returns the non-empty pieces.
std::vector<std::string> split_text(std::string_view text, const SplitPattern& pattern, SplitBehavior behavior,
                                    bool invert);

class Normalizer {
 public:
  // An absent or null section normalizes nothing.
  static Result<Normalizer> from_json(const Json& config, const JsonPath& at);
  std::string normalize(std::string text) const;
  bool is_identity() const { return steps_.empty(); }

 private:
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip, kPrepend, kReplace };
  struct Step {
    explicit Step(Kind step_kind) : kind(step_kind) {}
    Kind kind;
    bool strip_left = false;
    bool strip_right = false;
    std::string text;  // Prepend: the prefix; Replace: the replacement
    std::optional<SplitPattern> pattern;
  };
  Status append(const Json& config, const JsonPath& at, int depth);
  std::vector<Step> steps_;
};

class PreTokenizer {
 public:
  // An absent or null section leaves every piece whole.
  static Result<PreTokenizer> from_json(const Json& config, const JsonPath& at);
  // Splits one stretch of normalized text (between added tokens) into the words the model encodes.
  std::vector<std::string> pre_tokenize(std::string text) const;

 private:
  enum class Kind { kSplit, kPrefixSpace, kByteLevelMap };
  struct Step {
    explicit Step(Kind step_kind) : kind(step_kind) {}
    Kind kind;
    std::optional<SplitPattern> pattern;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  Status append(const Json& config, const JsonPath& at, int depth);
  std::vector<Step> steps_;
};

class Decoder {
 public:
  // An absent or null section joins the tokens with single spaces, as HF does without a decoder.
  static Result<Decoder> from_json(const Json& config, const JsonPath& at);
  std::string decode(std::vector<std::string> tokens) const;

 private:
  enum class Kind { kByteLevel, kByteFallback, kFuse, kStrip, kReplace };
  struct Step {
    explicit Step(Kind step_kind) : kind(step_kind) {}
    Kind kind;
    char32_t strip_char = 0;
    std::size_t strip_start = 0;
    std::size_t strip_stop = 0;
    std::string text;  // Replace: the replacement
    std::optional<SplitPattern> pattern;
  };
  Status append(const Json& config, const JsonPath& at, int depth);
  bool configured_ = false;
  std::vector<Step> steps_;
};

}  // namespace proxykv::tok
