// A compiled PCRE2 pattern (UTF + UCP: \p{L}, \s, (?i:...) and look-arounds work on code points), as used by
// the Split pre-tokenizer and the Replace normalizer/decoder of tokenizer.json. Immutable once compiled, so one
// pattern may be matched from many threads; copies share the compiled code.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "proxykv/core/status.h"

namespace proxykv::tok {

struct TextSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
};

class RegexPattern {
 public:
  // Compile errors come back as INVALID_ARGUMENT with PCRE2's message and the offset in the pattern.
  static Result<RegexPattern> compile(std::string_view pattern);

  // All non-overlapping, non-empty matches in `text` (valid UTF-8), left to right. Should the matcher give up
  // (PCRE2 match or depth limits on pathological input), the rest of the text is treated as not matching.
  std::vector<TextSpan> find_all(std::string_view text) const;

 private:
  struct Compiled;
  explicit RegexPattern(std::shared_ptr<const Compiled> compiled) : compiled_(std::move(compiled)) {}
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace proxykv::tok
