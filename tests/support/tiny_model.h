// The small random decoders the tests build, in one place: a test states only how its model differs from the
// default (Qwen3-style, the family's vocabulary, 2 layers, 4 query / 2 KV heads of 8, hidden 32, tied
// embeddings, <eos> as eos_token_id).
//   TinyModel m;
//   m.layers = 3;
//   auto model = m.init(/*seed=*/5);
#pragma once

#include <cstdint>
#include <memory>

#include "proxykv/core/status.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/model_spec.h"
#include "proxykv/tasks/vocabulary.h"

namespace proxykv::test_support {

struct TinyModel {
  Architecture arch = Architecture::kQwen3;  // Qwen3 gets its q/k norms
  int64_t vocab = tasks::kFamilyVocabSize;
  int64_t hidden = 32;
  int64_t intermediate = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 8;
  int64_t max_positions = 4096;
  bool tied = true;
  bool family_eos = true;  // eos_token_id = <eos>; false: none

  ModelSpec spec() const {
    ModelSpec s;
    s.arch = arch;
    s.qk_norm = arch == Architecture::kQwen3;
    s.vocab_size = vocab;
    s.hidden_size = hidden;
    s.intermediate_size = intermediate;
    s.num_layers = layers;
    s.num_heads = heads;
    s.num_kv_heads = kv_heads;
    s.head_dim = head_dim;
    s.max_position_embeddings = max_positions;
    s.tie_word_embeddings = tied;
    if (family_eos) s.eos_token_id = tasks::kEosId;
    return s;
  }
  // The proxy of the services and feature tests: vocabulary 40, untied, no eos.
  static TinyModel services_proxy() {
    TinyModel m;
    m.vocab = 40;
    m.intermediate = 48;
    m.max_positions = 1024;
    m.tied = false;
    m.family_eos = false;
    return m;
  }
  // Random weights (normal, std `init_std`); throws on a bad shape, which is the test's bug.
  std::unique_ptr<DecoderLM> init(uint64_t seed, double init_std = 0.5) const {
    return value_or_throw(DecoderLM::random_init(spec(), seed, init_std));
  }
};

}  // namespace proxykv::test_support
