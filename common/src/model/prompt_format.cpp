#include "proxykv/model/prompt_format.h"

#include <algorithm>

namespace proxykv {
namespace {

std::vector<int64_t> encode64(const Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> ids = tokenizer.encode(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

void append(std::vector<int64_t>& out, const std::vector<int64_t>& ids) {
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace

PromptFormat PromptFormat::for_model(const Tokenizer& tokenizer, const ModelSpec& spec) {
  PromptFormat f;
  auto id = [&](const char* token) { return tokenizer.token_to_id(token); };
  if (id("<bos>") && id("<ctx>") && id("</ctx>") && id("<q>") && id("<a>") && id("<repeat>")) {
    f.family = true;
    f.context_prefix = {*id("<bos>"), *id("<ctx>")};
    f.context_suffix = {*id("</ctx>")};
    f.question_prefix = {*id("<q>")};
    f.question_suffix = {*id("<a>")};
    f.repeat_prompt = {*id("<repeat>")};
    f.n_sink = 2;
  } else {
    if (spec.bos_token_id) f.context_prefix = {*spec.bos_token_id};
    f.question_text_prefix = "\n";
    f.question_text_suffix = "\n";
    f.repeat_prompt = encode64(tokenizer, "Repeat the previous context exactly.");
    f.n_sink = static_cast<int64_t>(f.context_prefix.size());
  }
  if (auto eos = id("<eos>")) f.stop_ids.push_back(*eos);
  if (spec.eos_token_id && std::find(f.stop_ids.begin(), f.stop_ids.end(), *spec.eos_token_id) == f.stop_ids.end()) {
    f.stop_ids.push_back(*spec.eos_token_id);
  }
  return f;
}

std::vector<int64_t> PromptFormat::context_ids(const Tokenizer& tokenizer, const std::string& context) const {
  std::vector<int64_t> ids = context_prefix;
  append(ids, encode64(tokenizer, context));
  append(ids, context_suffix);
  return ids;
}

std::vector<int64_t> PromptFormat::question_ids(const Tokenizer& tokenizer, const std::string& question) const {
  std::vector<int64_t> ids = question_prefix;
  append(ids, encode64(tokenizer, family ? question : question_text_prefix + question + question_text_suffix));
  append(ids, question_suffix);
  return ids;
}

}  // namespace proxykv
