#include "proxykv/model/tokenizer_added_tokens.h"

#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv::tok {
namespace {

// Start of the code point that ends just before `pos`.
std::size_t previous_code_point_start(std::string_view text, std::size_t pos) {
  std::size_t start = pos - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

bool ends_with_word(std::string_view text, std::size_t pos) {
  if (pos == 0) return false;
  std::size_t start = previous_code_point_start(text, pos);
  return is_word_char(next_code_point(text, start));
}

bool starts_with_word(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) return false;
  return is_word_char(next_code_point(text, pos));
}

// Where the run of whitespace that ends at `pos` begins (never before `floor`).
std::size_t whitespace_run_start(std::string_view text, std::size_t pos, std::size_t floor) {
  while (pos > floor) {
    const std::size_t start = previous_code_point_start(text, pos);
    std::size_t probe = start;
    if (start < floor || !is_whitespace(next_code_point(text, probe))) break;
    pos = start;
  }
  return pos;
}

std::size_t whitespace_run_end(std::string_view text, std::size_t pos) {
  while (pos < text.size()) {
    std::size_t next = pos;
    if (!is_whitespace(next_code_point(text, next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void AddedTokenMatcher::add(const std::string& pattern, int32_t token_id, bool single_word, bool lstrip, bool rstrip) {
  if (pattern.empty()) return;  // HF ignores empty added tokens
  int32_t node = 0;
  for (const char c : pattern) {
    const auto byte = static_cast<unsigned char>(c);
    const auto it = nodes_[node].children.find(byte);
    if (it != nodes_[node].children.end()) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.emplace(byte, child);
      nodes_.emplace_back();
      node = child;
    }
  }
  const auto entry = static_cast<int32_t>(entries_.size());
  entries_.push_back({pattern.size(), token_id, single_word, lstrip, rstrip});
  // A token listed twice keeps its last definition.
  nodes_[node].entry = entry;
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextSegment> segments;
  std::size_t plain_start = 0;  // end of the last token segment
  std::size_t pos = 0;
  while (pos < text.size()) {
    // Longest token starting at `pos`.
    int32_t node = 0;
    int32_t found = -1;
    for (std::size_t i = pos; i < text.size(); ++i) {
      const auto it = nodes_[node].children.find(static_cast<unsigned char>(text[i]));
      if (it == nodes_[node].children.end()) break;
      node = it->second;
      if (nodes_[node].entry >= 0) found = nodes_[node].entry;
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    const Entry& entry = entries_[found];
    std::size_t start = pos;
    std::size_t stop = pos + entry.length;
    if (entry.single_word && (ends_with_word(text, start) || starts_with_word(text, stop))) {
      // HF's automaton has consumed this match; the search resumes after it, the text stays plain.
      pos = stop;
      continue;
    }
    if (entry.lstrip) start = whitespace_run_start(text, start, plain_start);
    if (entry.rstrip) stop = whitespace_run_end(text, stop);
    if (start > plain_start) segments.push_back({plain_start, start, -1});
    segments.push_back({start, stop, entry.token_id});
    plain_start = stop;
    pos = stop;
  }
  if (plain_start < text.size()) segments.push_back({plain_start, text.size(), -1});
  return segments;
}

}  // namespace proxykv::tok
