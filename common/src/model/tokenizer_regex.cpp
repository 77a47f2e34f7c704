#include "proxykv/model/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv::tok {
namespace {

std::string pcre2_error_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int length = pcre2_get_error_message(code, buffer, sizeof(buffer));
  if (length < 0) return "PCRE2 error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

struct RegexPattern::Compiled {
  explicit Compiled(pcre2_code* compiled_code) : code(compiled_code) {}
  ~Compiled() { pcre2_code_free(code); }
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;

  pcre2_code* code;
};

Result<RegexPattern> RegexPattern::compile(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return invalid_argument("regex does not compile (" + pcre2_error_message(error_code) + " at offset " +
                            std::to_string(error_offset) + ")");
  }
  auto compiled = std::make_shared<const Compiled>(code);
  // JIT is a speed-up only: pcre2_match uses the interpreter wherever JIT compilation failed.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return RegexPattern(std::move(compiled));
}

std::vector<TextSpan> RegexPattern::find_all(std::string_view text) const {
  std::vector<TextSpan> matches;
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> match_data(
      pcre2_match_data_create_from_pattern(compiled_->code, nullptr));
  if (!match_data) return matches;
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t offset = 0;
  while (offset <= text.size()) {
    // Input is valid UTF-8 (the tokenizer sanitizes it first), so PCRE2's own check is skipped.
    int rc = pcre2_match(compiled_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match_data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(compiled_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       match_data.get(), nullptr);
    }
    if (rc < 0) break;  // no match, or a match/heap limit hit: the rest does not match
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
    const std::size_t begin = ovector[0];
    const std::size_t end = ovector[1];
    if (begin > text.size() || end > text.size()) break;  // \K tricks can report odd spans; stop scanning
    if (end > begin) {
      matches.push_back({begin, end});
      offset = end;
    } else {
      // An empty match: step over one code point so the scan makes progress.
      if (begin >= text.size()) break;
      offset = begin + utf8_sequence_length(static_cast<unsigned char>(text[begin]));
    }
  }
  return matches;
}

}  // namespace proxykv::tok
