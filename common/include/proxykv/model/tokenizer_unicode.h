// Text helpers of the tokenizer: UTF-8 walking and repair, Unicode normalization and character classes
// (both from utf8proc, so no Unicode tables live in this project), and the GPT-2 byte-level alphabet.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace proxykv::tok {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Replaces every ill-formed subsequence of `text` with U+FFFD (one per maximal subpart, as WHATWG and Python's
// errors="replace" do), so that everything downstream may assume valid UTF-8.
std::string sanitize_utf8(std::string_view text);
bool is_valid_utf8(std::string_view text);

// Decodes the code point starting at `pos` of valid UTF-8 and advances `pos` past it.
char32_t next_code_point(std::string_view text, std::size_t& pos);
void append_utf8(std::string& out, char32_t cp);
// Byte length of the UTF-8 sequence that starts with `lead` (1 for stray continuation bytes).
std::size_t utf8_sequence_length(unsigned char lead);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };
// `text` must be valid UTF-8.
std::string unicode_normalize(std::string_view text, NormalizationForm form);
// Simple (one-to-one) Unicode lowercase mapping of every code point.
std::string unicode_lowercase(std::string_view text);

// Rust's char::is_whitespace (the White_Space property): categories Zs/Zl/Zp plus \t \n \v \f \r and U+0085.
bool is_whitespace(char32_t cp);
// Rust's char::is_numeric: categories Nd, Nl, No.
bool is_numeric(char32_t cp);
// Rust regex's Unicode \w, which HF's single_word check uses: letters, marks, Nd/Nl, Pc and ZWNJ/ZWJ
// (categories stand in for the Alphabetic property).
bool is_word_char(char32_t cp);
// HF's is_punc: ASCII punctuation or any Unicode P* category.
bool is_punctuation(char32_t cp);

// The GPT-2 byte <-> printable code point bijection (bytes_to_unicode in openai/gpt-2 encoder.py).
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& instance();

  // UTF-8 of the code point that stands for `byte`.
  const std::string& encode_byte(unsigned char byte) const { return byte_to_utf8_[byte]; }
  // Maps every byte of `bytes` to its code point.
  std::string encode(std::string_view bytes) const;
  // The byte a code point stands for, or -1 when it is not part of the alphabet.
  int decode_code_point(char32_t cp) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> byte_to_utf8_;
  std::array<char32_t, 256> byte_to_cp_{};
  std::array<int16_t, 0x100 + 68> cp_to_byte_{};  // the alphabet spans U+0021..U+0143
};

}  // namespace proxykv::tok
