// Finding added tokens ("<|im_start|>", "<ctx>", ...) in text before it reaches the pre-tokenizer, as HF's
// AddedVocabulary does: leftmost-longest, non-overlapping matches over a byte trie, with the single_word,
// lstrip and rstrip options of each token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace proxykv::tok {

struct TextSegment {
  std::size_t begin = 0;
  std::size_t end = 0;
  int32_t token_id = -1;  // the added token's id, or -1 for plain text
};

class AddedTokenMatcher {
 public:
  // `pattern` is the token's text as it appears where it is matched (raw or normalized text).
  void add(const std::string& pattern, int32_t token_id, bool single_word, bool lstrip, bool rstrip);
  bool empty() const { return entries_.empty(); }

  // Cuts `text` (valid UTF-8) into plain segments and added-token segments, in order, covering it; a token
  // segment includes whitespace absorbed by lstrip/rstrip. Plain segments are never empty.
  std::vector<TextSegment> split(std::string_view text) const;

 private:
  struct Entry {
    std::size_t length;
    int32_t token_id;
    bool single_word;
    bool lstrip;
    bool rstrip;
  };
  struct Node {
    std::unordered_map<unsigned char, int32_t> children;
    int32_t entry = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::vector<Entry> entries_;
};

}  // namespace proxykv::tok
