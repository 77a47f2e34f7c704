// The "model" section of a tokenizer.json: turns one pre-tokenized word into ids. BPE (with merge ranks, as
// GPT-2, Llama-3 and Qwen use it) and WordLevel (a plain word -> id map, as the tiny family uses it).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/model/tokenizer_json.h"

namespace proxykv::tok {

using Vocab = std::unordered_map<std::string, int32_t>;

// Ids must lie in [0, kMaxTokenId]; the bound keeps a hostile file from making us allocate id tables of 2^31.
inline constexpr int32_t kMaxTokenId = (1 << 24) - 1;

class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Appends the ids of one word (a piece of pre-tokenized text, valid UTF-8, not empty).
  virtual void encode_word(std::string_view word, std::vector<int32_t>& ids) const = 0;
  virtual const char* type_name() const = 0;
  const Vocab& vocab() const { return vocab_; }

 protected:
  Vocab vocab_;
};

// Reads `model` ("model" section of the file) and builds the model its "type" names.
Result<std::unique_ptr<TokenizerModel>> make_tokenizer_model(const Json& model, const JsonPath& at);

class BpeModel final : public TokenizerModel {
 public:
  static Result<std::unique_ptr<BpeModel>> from_json(const Json& model, const JsonPath& at);

  void encode_word(std::string_view word, std::vector<int32_t>& ids) const override;
  const char* type_name() const override { return "BPE"; }

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::vector<int32_t> merge_word(std::string_view word) const;

  std::unordered_map<uint64_t, MergeTarget> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::array<int32_t, 256> byte_fallback_ids_{};  // ids of <0x00> .. <0xFF>, -1 where absent

  // Words seen before (HF caches them the same way); bounded, cleared when full.
  static constexpr std::size_t kCacheCapacity = 10000;
  static constexpr std::size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

class WordLevelModel final : public TokenizerModel {
 public:
  static Result<std::unique_ptr<WordLevelModel>> from_json(const Json& model, const JsonPath& at);

  void encode_word(std::string_view word, std::vector<int32_t>& ids) const override;
  const char* type_name() const override { return "WordLevel"; }

 private:
  int32_t unk_id_ = 0;
};

}  // namespace proxykv::tok
