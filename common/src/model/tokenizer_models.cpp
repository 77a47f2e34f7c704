#include "proxykv/model/tokenizer_models.h"

#include <cstdio>
#include <queue>
#include <utility>

#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv::tok {
namespace {

Result<Vocab> read_vocab(const Json& model, const JsonPath& at) {
  PROXYKV_ASSIGN_OR_RETURN(const Json* vocab_json,
                           require_member(model, at, "vocab", Json::value_t::object, "an object of token -> id"));
  const JsonPath vocab_at = at.key("vocab");
  Vocab vocab;
  vocab.reserve(vocab_json->size());
  for (const auto& [token, id] : vocab_json->items()) {
    if (!id.is_number_integer() && !id.is_number_unsigned()) {
      return vocab_at.entry(token).invalid(std::string("must be an integer id, not ") + json_type_phrase(id));
    }
    const int64_t value = id.is_number_unsigned() && id.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                              ? INT64_MAX
                              : id.get<int64_t>();
    if (value < 0 || value > kMaxTokenId) {
      return vocab_at.entry(token).invalid("has id " + std::to_string(value) + ", outside [0, " +
                                           std::to_string(kMaxTokenId) + "]");
    }
    if (!is_valid_utf8(token)) return vocab_at.entry(token).invalid("is not valid UTF-8");
    vocab.emplace(token, static_cast<int32_t>(value));
  }
  return vocab;
}

// Reads one entry of model.merges: "left right" (tokenizers < 0.20) or ["left", "right"].
Result<std::pair<std::string, std::string>> read_merge(const Json& merge, const JsonPath& at) {
  if (merge.is_string()) {
    const std::string& text = merge.get_ref<const std::string&>();
    const std::size_t space = text.find(' ');
    if (space == std::string::npos) return at.invalid("must be two tokens separated by a space");
    return std::make_pair(text.substr(0, space), text.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  return at.invalid("must be a \"left right\" string or a [left, right] pair of strings");
}

Result<int32_t> lookup_token(const Vocab& vocab, const std::string& token, const JsonPath& at) {
  const auto it = vocab.find(token);
  if (it == vocab.end()) return at.invalid("names token '" + token + "' which is not in model.vocab");
  return it->second;
}

}  // namespace

Result<std::unique_ptr<TokenizerModel>> make_tokenizer_model(const Json& model, const JsonPath& at) {
  if (!model.is_object()) return at.invalid(std::string("must be an object, not ") + json_type_phrase(model));
  // HF also reads a model without "type" when its keys say which it is; only merges are unambiguous.
  const std::string fallback_type = model.contains("merges") ? "BPE" : "";
  PROXYKV_ASSIGN_OR_RETURN(const std::string type, read_string(model, at, "type", fallback_type));
  if (type.empty()) return at.key("type").invalid("is missing");
  if (type == "BPE") {
    PROXYKV_ASSIGN_OR_RETURN(std::unique_ptr<BpeModel> bpe, BpeModel::from_json(model, at));
    return std::unique_ptr<TokenizerModel>(std::move(bpe));
  }
  if (type == "WordLevel") {
    PROXYKV_ASSIGN_OR_RETURN(std::unique_ptr<WordLevelModel> word_level, WordLevelModel::from_json(model, at));
    return std::unique_ptr<TokenizerModel>(std::move(word_level));
  }
  return at.key("type").unsupported(type);
}

// ---- BPE ----

Result<std::unique_ptr<BpeModel>> BpeModel::from_json(const Json& model, const JsonPath& at) {
  auto bpe = std::make_unique<BpeModel>();
  PROXYKV_ASSIGN_OR_RETURN(bpe->vocab_, read_vocab(model, at));
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    const Json& dropout = model["dropout"];
    if (!dropout.is_number()) return at.key("dropout").invalid("must be a number or null");
    if (dropout.get<double>() != 0.0) return at.key("dropout").unsupported(dropout.dump());
  }
  PROXYKV_ASSIGN_OR_RETURN(bpe->fuse_unk_, read_bool(model, at, "fuse_unk", false));
  PROXYKV_ASSIGN_OR_RETURN(bpe->byte_fallback_, read_bool(model, at, "byte_fallback", false));
  PROXYKV_ASSIGN_OR_RETURN(bpe->ignore_merges_, read_bool(model, at, "ignore_merges", false));
  PROXYKV_ASSIGN_OR_RETURN(bpe->continuing_subword_prefix_, read_string(model, at, "continuing_subword_prefix", ""));
  PROXYKV_ASSIGN_OR_RETURN(bpe->end_of_word_suffix_, read_string(model, at, "end_of_word_suffix", ""));
  PROXYKV_ASSIGN_OR_RETURN(const std::string unk_token, read_string(model, at, "unk_token", ""));
  if (!unk_token.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(const int32_t unk_id, lookup_token(bpe->vocab_, unk_token, at.key("unk_token")));
    bpe->unk_id_ = unk_id;
  }
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    const auto it = bpe->vocab_.find(name);
    bpe->byte_fallback_ids_[byte] = it == bpe->vocab_.end() ? -1 : it->second;
  }

  PROXYKV_ASSIGN_OR_RETURN(const Json* merges, require_member(model, at, "merges", Json::value_t::array, "an array"));
  const JsonPath merges_at = at.key("merges");
  const std::size_t prefix_length = bpe->continuing_subword_prefix_.size();
  bpe->merges_.reserve(merges->size());
  for (std::size_t rank = 0; rank < merges->size(); ++rank) {
    const JsonPath merge_at = merges_at.index(rank);
    PROXYKV_ASSIGN_OR_RETURN(const auto parts, read_merge((*merges)[rank], merge_at));
    PROXYKV_ASSIGN_OR_RETURN(const int32_t left, lookup_token(bpe->vocab_, parts.first, merge_at));
    PROXYKV_ASSIGN_OR_RETURN(const int32_t right, lookup_token(bpe->vocab_, parts.second, merge_at));
    // The right part loses its continuing-subword prefix in the merged token (as HF builds it).
    const std::string merged =
        parts.first + (parts.second.compare(0, prefix_length, bpe->continuing_subword_prefix_) == 0
                           ? parts.second.substr(prefix_length)
                           : parts.second);
    PROXYKV_ASSIGN_OR_RETURN(const int32_t merged_id, lookup_token(bpe->vocab_, merged, merge_at));
    // A repeated pair keeps its last rank, as HF's HashMap collect and transformers.js's Map do.
    bpe->merges_[pair_key(left, right)] = MergeTarget{static_cast<int32_t>(rank), merged_id};
  }
  return bpe;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    const auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word_ids = merge_word(word);
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::move(word_ids));
  }
}

// HF tokenizers' BPE::merge_word + Word::merge_all: start from one symbol per character, then repeatedly apply
// the lowest-ranked merge available (leftmost on ties) until none applies.
std::vector<int32_t> BpeModel::merge_word(std::string_view word) const {
  struct Symbol {
    int32_t id;
    int prev;
    int next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  const auto add_symbol = [&symbols](int32_t id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, -1, true});
    if (index > 0) symbols[index - 1].next = index;
  };

  int32_t pending_unk = -1;  // an unk not yet added, so that fuse_unk can extend it
  const auto flush_unk = [&] {
    if (pending_unk >= 0) add_symbol(pending_unk);
    pending_unk = -1;
  };
  std::size_t pos = 0;
  std::string candidate;
  while (pos < word.size()) {
    const std::size_t begin = pos;
    next_code_point(word, pos);
    candidate.clear();
    if (begin > 0) candidate += continuing_subword_prefix_;
    candidate.append(word.substr(begin, pos - begin));
    if (pos == word.size()) candidate += end_of_word_suffix_;
    const auto it = vocab_.find(candidate);
    if (it != vocab_.end()) {
      flush_unk();
      add_symbol(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes_known = true;
      for (const char c : candidate) all_bytes_known &= byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all_bytes_known) {
        flush_unk();
        for (const char c : candidate) add_symbol(byte_fallback_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      // Without fuse_unk every unknown character becomes its own unk; with it a run of them becomes one.
      if (!fuse_unk_) flush_unk();
      pending_unk = *unk_id_;
    }
    // Without an unk token HF drops the character; so do we.
  }
  flush_unk();

  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : pos > other.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto push_pair = [&](int left) {
    const int right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    // Skip stale entries: either side changed since this pair was queued.
    const auto it = merges_.find(pair_key(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.id != top.new_id || it->second.rank != top.rank) continue;
    Symbol& right = symbols[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }

  std::vector<int32_t> ids;
  for (const Symbol& symbol : symbols) {
    if (symbol.alive) ids.push_back(symbol.id);
  }
  return ids;
}

// ---- WordLevel ----

Result<std::unique_ptr<WordLevelModel>> WordLevelModel::from_json(const Json& model, const JsonPath& at) {
  auto word_level = std::make_unique<WordLevelModel>();
  PROXYKV_ASSIGN_OR_RETURN(word_level->vocab_, read_vocab(model, at));
  // HF fails at encode time on an unknown word when the unk token is missing; we refuse such a file up front.
  PROXYKV_ASSIGN_OR_RETURN(const std::string unk_token, read_string(model, at, "unk_token", "<unk>"));
  PROXYKV_ASSIGN_OR_RETURN(word_level->unk_id_, lookup_token(word_level->vocab_, unk_token, at.key("unk_token")));
  return word_level;
}

void WordLevelModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  const auto it = vocab_.find(std::string(word));
  ids.push_back(it == vocab_.end() ? unk_id_ : it->second);
}

}  // namespace proxykv::tok
