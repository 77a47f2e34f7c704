// Helpers shared by the task-suite tests: a temporary directory and an independent reader of generated contexts
// that recovers the facts by scanning the words, so the tests check the generators against the templates of
// shared/TASKS.md rather than against their own code.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::tasks::test {

// A fresh directory under the system temp dir, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "proxykv-tasks-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

inline std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  return std::vector<std::string>(std::istream_iterator<std::string>(in), std::istream_iterator<std::string>());
}

inline bool is_key(const std::string& w) {
  return w.size() == 4 && w[0] == 'k' && std::all_of(w.begin() + 1, w.end(), ::isdigit);
}
inline bool is_value(const std::string& w) {
  return w.size() == 4 && w[0] == 'v' && std::all_of(w.begin() + 1, w.end(), ::isdigit);
}
inline bool is_digit_word(const std::string& w) {
  return w.size() == 1 && w[0] >= '0' && w[0] <= '9';
}

// What the sentences of a context say, read word by word.
struct ContextFacts {
  std::map<std::string, std::vector<std::string>> magic;  // key -> numbers ("d d d d"), in context order
  std::map<std::string, std::vector<std::string>> kv;     // key -> values
  std::map<std::string, std::string> var_number;          // var -> number it is assigned
  std::map<std::string, std::string> var_copy;            // var -> var it is assigned from
  int fact_sentences = 0;
  int filler_sentences = 0;
  std::vector<int64_t> fact_word_offsets;  // where each fact sentence starts
  int64_t words = 0;
  std::vector<std::string> errors;  // sentences that follow no template and are not filler

  // The number a variable holds, following copies; empty when the chain does not resolve.
  std::string resolve(std::string var) const {
    for (int hops = 0; hops < 1000; ++hops) {
      if (auto it = var_number.find(var); it != var_number.end()) return it->second;
      auto it = var_copy.find(var);
      if (it == var_copy.end()) return "";
      var = it->second;
    }
    return "";
  }
};

inline std::string join_words(const std::vector<std::string>& words, std::size_t begin, std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end; ++i) out += (i > begin ? " " : "") + words[i];
  return out;
}

// `filler`: the sentences that may stand between facts (default: the short haystack's).
inline ContextFacts read_context(const std::string& context,
                                 const std::set<std::string>& filler = std::set<std::string>(filler_sentences().begin(),
                                                                                              filler_sentences().end())) {
  ContextFacts facts;
  const std::vector<std::string> words = words_of(context);
  facts.words = static_cast<int64_t>(words.size());
  std::size_t start = 0;
  while (start < words.size()) {
    std::size_t end = start;
    while (end < words.size() && words[end] != ".") ++end;
    if (end == words.size()) {
      facts.errors.push_back("unterminated: " + join_words(words, start, end));
      break;
    }
    const std::vector<std::string> s(words.begin() + start, words.begin() + end + 1);  // with the "."
    const std::size_t n = s.size();
    bool fact = true;
    if (n == 11 && s[0] == "the" && s[1] == "magic" && s[2] == "number" && s[3] == "for" && is_key(s[4]) &&
        s[5] == "is" && is_digit_word(s[6]) && is_digit_word(s[7]) && is_digit_word(s[8]) && is_digit_word(s[9])) {
      facts.magic[s[4]].push_back(join_words(s, 6, 10));
    } else if (n == 4 && is_key(s[0]) && s[1] == "is" && is_value(s[2])) {
      facts.kv[s[0]].push_back(s[2]);
    } else if (n == 8 && s[0] == "var" && is_key(s[1]) && s[2] == "=" && is_digit_word(s[3]) && is_digit_word(s[4]) &&
               is_digit_word(s[5]) && is_digit_word(s[6])) {
      if (!facts.var_number.emplace(s[1], join_words(s, 3, 7)).second) facts.errors.push_back("reassigned " + s[1]);
    } else if (n == 5 && s[0] == "var" && is_key(s[1]) && s[2] == "=" && is_key(s[3])) {
      // A copy must read a variable assigned earlier in the context.
      if (!facts.var_number.count(s[3]) && !facts.var_copy.count(s[3]))
        facts.errors.push_back("read before set: " + s[3]);
      if (!facts.var_copy.emplace(s[1], s[3]).second) facts.errors.push_back("reassigned " + s[1]);
    } else {
      fact = false;
      if (!filler.count(join_words(s, 0, n))) facts.errors.push_back("not filler: " + join_words(s, 0, n));
      ++facts.filler_sentences;
    }
    if (fact) {
      ++facts.fact_sentences;
      facts.fact_word_offsets.push_back(static_cast<int64_t>(start));
    }
    start = end + 1;
  }
  return facts;
}

// The answers a question has according to the context, in the order the generator promises (niah: the keys of the
// question in order, each key's numbers in context order; variable_tracking: sorted, the order is free).
// Empty when the question follows no template or asks for something the context does not hold.
inline std::vector<std::string> derive_answers(const ContextFacts& facts, const std::string& question) {
  const std::vector<std::string> q = words_of(question);
  std::vector<std::string> answers;
  if (q.size() >= 8 && join_words(q, 0, 6) == "what is the magic number for" && q.back() == "?") {
    for (std::size_t i = 6; i + 1 < q.size(); i += 2) {
      if (!is_key(q[i]) || (i + 2 < q.size() && q[i + 1] != "and")) return {};
      auto it = facts.magic.find(q[i]);
      if (it == facts.magic.end()) return {};
      answers.insert(answers.end(), it->second.begin(), it->second.end());
    }
  } else if (q.size() == 7 && join_words(q, 0, 5) == "what is the value of" && is_key(q[5]) && q[6] == "?") {
    auto it = facts.kv.find(q[5]);
    if (it == facts.kv.end() || it->second.size() != 1) return {};
    answers = it->second;
  } else if (q.size() == 8 && join_words(q, 0, 3) == "which var equal" && q[7] == "?") {
    const std::string number = join_words(q, 3, 7);
    std::set<std::string> vars;
    for (const auto& [var, unused] : facts.var_number) vars.insert(var);
    for (const auto& [var, unused] : facts.var_copy) vars.insert(var);
    for (const std::string& var : vars) {
      if (facts.resolve(var) == number) answers.push_back(var);
    }
  }
  return answers;
}

}  // namespace proxykv::tasks::test
