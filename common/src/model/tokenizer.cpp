#include "proxykv/model/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "proxykv/model/tokenizer_added_tokens.h"
#include "proxykv/model/tokenizer_json.h"
#include "proxykv/model/tokenizer_models.h"
#include "proxykv/model/tokenizer_pipeline.h"
#include "proxykv/model/tokenizer_unicode.h"

namespace proxykv {

using tok::Json;
using tok::JsonPath;

struct Tokenizer::Impl {
  std::unique_ptr<tok::TokenizerModel> model;
  tok::Normalizer normalizer;
  tok::PreTokenizer pre_tokenizer;
  tok::Decoder decoder;
  std::vector<AddedToken> added_tokens;
  std::unordered_map<std::string, int32_t> added_token_ids;
  tok::AddedTokenMatcher raw_matcher;         // tokens with normalized=false, found in the input text
  tok::AddedTokenMatcher normalized_matcher;  // tokens with normalized=true, found in the normalized text
  std::vector<std::string> id_to_token;       // index = id; "" where no token has the id
  std::vector<bool> has_token;
  std::vector<bool> special;

  void encode_plain(std::string text, std::vector<int32_t>& ids) const;
};

namespace {

Result<std::vector<AddedToken>> read_added_tokens(const Json& root, const JsonPath& at) {
  std::vector<AddedToken> tokens;
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return tokens;
  const JsonPath list_at = at.key("added_tokens");
  if (!it->is_array()) return list_at.invalid(std::string("must be an array, not ") + tok::json_type_phrase(*it));
  for (std::size_t i = 0; i < it->size(); ++i) {
    const Json& entry = (*it)[i];
    const JsonPath entry_at = list_at.index(i);
    if (!entry.is_object()) return entry_at.invalid("must be an object");
    AddedToken token;
    PROXYKV_ASSIGN_OR_RETURN(const int64_t id, tok::require_int(entry, entry_at, "id"));
    if (id < 0 || id > tok::kMaxTokenId) {
      return entry_at.key("id").invalid("is " + std::to_string(id) + ", outside [0, " +
                                        std::to_string(tok::kMaxTokenId) + "]");
    }
    token.id = static_cast<int32_t>(id);
    PROXYKV_ASSIGN_OR_RETURN(token.content, tok::require_string(entry, entry_at, "content"));
    if (token.content.empty()) return entry_at.key("content").invalid("must not be empty");
    if (!tok::is_valid_utf8(token.content)) return entry_at.key("content").invalid("is not valid UTF-8");
    PROXYKV_ASSIGN_OR_RETURN(token.special, tok::read_bool(entry, entry_at, "special", false));
    PROXYKV_ASSIGN_OR_RETURN(token.lstrip, tok::read_bool(entry, entry_at, "lstrip", false));
    PROXYKV_ASSIGN_OR_RETURN(token.rstrip, tok::read_bool(entry, entry_at, "rstrip", false));
    PROXYKV_ASSIGN_OR_RETURN(token.single_word, tok::read_bool(entry, entry_at, "single_word", false));
    // HF's default: special tokens are matched in the raw text, others in the normalized text.
    PROXYKV_ASSIGN_OR_RETURN(token.normalized, tok::read_bool(entry, entry_at, "normalized", !token.special));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

const Json& section(const Json& root, const char* name) {
  static const Json kNull;
  const auto it = root.find(name);
  return it == root.end() ? kNull : *it;
}

}  // namespace

Result<Tokenizer> Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open tokenizer file");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return invalid_argument(path + ": read error");
  return from_json_string(contents.str(), path);
}

Result<Tokenizer> Tokenizer::from_json_string(const std::string& json, const std::string& origin) {
  Json root;
  try {
    root = Json::parse(json);
  } catch (const Json::exception& e) {
    // nlohmann's message carries the byte offset ("parse error at line 3, column 7: ...").
    return invalid_argument(origin + ": not valid JSON: " + e.what());
  }
  const JsonPath at(origin, "");
  if (!root.is_object()) return at.invalid(std::string("must be a JSON object, not ") + tok::json_type_phrase(root));

  auto impl = std::make_shared<Impl>();
  try {
    const Json& model_json = section(root, "model");
    if (model_json.is_null()) return at.key("model").invalid("is missing");
    PROXYKV_ASSIGN_OR_RETURN(impl->model, tok::make_tokenizer_model(model_json, at.key("model")));
    PROXYKV_ASSIGN_OR_RETURN(impl->normalizer,
                             tok::Normalizer::from_json(section(root, "normalizer"), at.key("normalizer")));
    PROXYKV_ASSIGN_OR_RETURN(impl->pre_tokenizer,
                             tok::PreTokenizer::from_json(section(root, "pre_tokenizer"), at.key("pre_tokenizer")));
    PROXYKV_ASSIGN_OR_RETURN(impl->decoder, tok::Decoder::from_json(section(root, "decoder"), at.key("decoder")));
    PROXYKV_ASSIGN_OR_RETURN(impl->added_tokens, read_added_tokens(root, at));
  } catch (const Json::exception& e) {
    // The readers check every type they touch; this is a safety net so that no exception leaves the loader.
    return invalid_argument(origin + ": unexpected JSON content: " + e.what());
  }

  // Id tables over the model's vocabulary, then the added tokens on top (an added token's declared id wins,
  // as in transformers.js; in well-formed files both agree).
  int32_t max_id = -1;
  for (const auto& [token, id] : impl->model->vocab()) max_id = std::max(max_id, id);
  for (const AddedToken& token : impl->added_tokens) max_id = std::max(max_id, token.id);
  const std::size_t table_size = max_id < 0 ? 0 : static_cast<std::size_t>(max_id) + 1;
  // Real vocabularies are dense; a few huge ids would only make us allocate id tables for nothing.
  const std::size_t token_count = impl->model->vocab().size() + impl->added_tokens.size();
  if (table_size > std::max<std::size_t>(2 * token_count, token_count + 65536)) {
    return at.invalid("uses ids up to " + std::to_string(max_id) + " for only " + std::to_string(token_count) +
                      " tokens; ids this sparse are not supported");
  }
  impl->id_to_token.assign(table_size, std::string());
  impl->has_token.assign(table_size, false);
  impl->special.assign(table_size, false);
  const JsonPath vocab_at = at.key("model").key("vocab");
  for (const auto& [token, id] : impl->model->vocab()) {
    if (impl->has_token[id]) {
      return vocab_at.entry(token).invalid("has id " + std::to_string(id) + ", which '" + impl->id_to_token[id] +
                                           "' has too");
    }
    impl->id_to_token[id] = token;
    impl->has_token[id] = true;
  }
  for (const AddedToken& token : impl->added_tokens) {
    impl->id_to_token[token.id] = token.content;
    impl->has_token[token.id] = true;
    impl->special[token.id] = token.special;
    impl->added_token_ids[token.content] = token.id;
    if (token.normalized) {
      impl->normalized_matcher.add(impl->normalizer.normalize(token.content), token.id, token.single_word, token.lstrip,
                                   token.rstrip);
    } else {
      impl->raw_matcher.add(token.content, token.id, token.single_word, token.lstrip, token.rstrip);
    }
  }
  return Tokenizer(std::move(impl));
}

void Tokenizer::Impl::encode_plain(std::string text, std::vector<int32_t>& ids) const {
  for (std::string& word : pre_tokenizer.pre_tokenize(std::move(text))) {
    if (!word.empty()) model->encode_word(word, ids);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  const std::string input = tok::sanitize_utf8(text);
  // 1. Added tokens written in the raw text; 2. normalize what lies between them; 3. added tokens that match
  // in normalized form; 4. pre-tokenize and encode the rest (HF's AddedVocabulary::extract_and_normalize).
  for (const tok::TextSegment& segment : impl_->raw_matcher.split(input)) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    std::string normalized = impl_->normalizer.normalize(input.substr(segment.begin, segment.end - segment.begin));
    if (impl_->normalized_matcher.empty()) {
      impl_->encode_plain(std::move(normalized), ids);
      continue;
    }
    for (const tok::TextSegment& inner : impl_->normalized_matcher.split(normalized)) {
      if (inner.token_id >= 0) {
        ids.push_back(inner.token_id);
      } else {
        impl_->encode_plain(normalized.substr(inner.begin, inner.end - inner.begin), ids);
      }
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= impl_->has_token.size() || !impl_->has_token[id]) continue;
    if (skip_special_tokens && impl_->special[id]) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  return impl_->decoder.decode(std::move(tokens));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = impl_->added_token_ids.find(key); it != impl_->added_token_ids.end()) return it->second;
  const tok::Vocab& vocab = impl_->model->vocab();
  if (const auto it = vocab.find(key); it != vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->id_to_token.size()) return {};
  return impl_->id_to_token[id];
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_to_token.size());
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<std::size_t>(id) < impl_->special.size() && impl_->special[id];
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added_tokens;
}

std::string Tokenizer::model_type() const {
  return impl_->model->type_name();
}

}  // namespace proxykv
