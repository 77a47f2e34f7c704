// PromptFormat: how a context and a question become token ids, for every component that prefills a context
// (the target engine, the evaluator). One definition, so that served and evaluated prompts are the same.
//
// The tiny family (shared/TASKS.md): a context is `<bos> <ctx> {context} </ctx>`, a question `<q> {question} <a>`,
// the answer ends at `<eos>`, KVzip's repeat prompt is `<repeat>`, and the 2 prefix tokens are the sinks. A
// tokenizer without these tokens (a real checkpoint) gets a plain format: the model's BOS (when it has one) +
// context, "\n" + question + "\n", and KVzip's repeat prompt as an English sentence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxykv/model/model_spec.h"
#include "proxykv/model/tokenizer.h"

namespace proxykv {

struct PromptFormat {
  bool family = false;                  // the tiny family's special tokens are all there
  std::vector<int64_t> context_prefix;  // family: <bos> <ctx>; plain: the model's BOS if any
  std::vector<int64_t> context_suffix;  // family: </ctx>
  std::vector<int64_t> question_prefix;
  std::vector<int64_t> question_suffix;
  std::string question_text_prefix;  // plain format: "\n" around the question
  std::string question_text_suffix;
  std::vector<int64_t> repeat_prompt;
  std::vector<int64_t> stop_ids;  // <eos> and the model's eos_token_id
  int64_t n_sink = 0;             // tokens always kept (the context prefix)

  static PromptFormat for_model(const Tokenizer& tokenizer, const ModelSpec& spec);

  std::vector<int64_t> context_ids(const Tokenizer& tokenizer, const std::string& context) const;
  std::vector<int64_t> question_ids(const Tokenizer& tokenizer, const std::string& question) const;
};

}  // namespace proxykv
