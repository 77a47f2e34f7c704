// kvzip against a slow reference: per chunk, the full sequence [prompt | repeat input] is run at once, and for
// every repeat query the softmax restricted to [sink | chunk | repeat so far] is taken from the full q and k in
// double, one query at a time.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>

#include <gtest/gtest.h>

#include "scoring_test_util.h"

namespace proxykv::scoring {
namespace {

using testing::full_attention;
using testing::FullAttention;
using testing::max_scaled_error;
using testing::random_prompt;
using testing::score_prompt;
using testing::scorer_for;
using testing::tiny_model;

constexpr double kTol = 1e-4;

// The repeat input of chunk [s, e), from the definition.
at::Tensor repeat_input(const at::Tensor& ids, int64_t s, int64_t e, bool first, const ScorerOptions& o) {
  std::vector<int64_t> input = first ? o.repeat_prompt_first : o.repeat_prompt_rest;
  if (!first) {
    for (int64_t p = std::max<int64_t>(0, s - o.repeat_overlap); p < s; ++p) input.push_back(ids[p].item<int64_t>());
  }
  for (int64_t p = s; p < e; ++p) input.push_back(ids[p].item<int64_t>());
  return at::tensor(input, at::kLong);
}

at::Tensor kvzip_reference(const DecoderLM& model, const at::Tensor& ids, const ScorerOptions& o) {
  const ModelSpec& spec = model.spec();
  const int64_t T = ids.size(0), S = std::min(o.n_sink, T), G = spec.group_size();
  const double scale = 1.0 / std::sqrt(static_cast<double>(spec.head_dim));
  at::Tensor out = at::zeros({spec.num_layers, spec.num_kv_heads, T}, at::kDouble);
  for (int64_t s = S; s < T; s += o.kvzip_chunk) {
    const int64_t e = std::min(s + o.kvzip_chunk, T), C = e - s;
    at::Tensor input = repeat_input(ids, s, e, s == S, o);
    const int64_t R = input.size(0);
    const FullAttention full = full_attention(model, at::cat({ids, input}), /*prefill_chunk=*/T + R);
    for (int64_t l = 0; l < spec.num_layers; ++l) {
      for (int64_t j = 0; j < spec.num_heads; ++j) {
        const int64_t h = j / G;
        for (int64_t r = 0; r < R; ++r) {
          at::Tensor visible =
              at::cat({at::arange(S, at::kLong), at::arange(s, e, at::kLong), at::arange(T, T + r + 1, at::kLong)});
          at::Tensor logits = at::mv(full.k[l][h].index_select(0, visible), full.q[l][j][T + r]) * scale;
          at::Tensor chunk_probs = at::softmax(logits, 0).narrow(0, S, C);
          at::Tensor dst = out[l][h].narrow(0, s, C);
          dst.copy_(at::maximum(dst, chunk_probs));
        }
      }
    }
  }
  out.narrow(2, 0, S).fill_(std::numeric_limits<double>::infinity());
  return out;
}

struct KvzipCase {
  const char* name;
  Architecture arch;
  int64_t tokens;
  int64_t n_sink;
  int64_t chunk;
  int64_t overlap;
  int64_t prefill_chunk;
  std::vector<int64_t> first;
  std::vector<int64_t> rest;
};

void PrintTo(const KvzipCase& c, std::ostream* os) {
  *os << c.name;
}

class KvzipScorerTest : public ::testing::TestWithParam<KvzipCase> {};

TEST_P(KvzipScorerTest, MatchesRestrictedSoftmaxReference) {
  const KvzipCase& c = GetParam();
  auto model = tiny_model(c.arch);
  at::Tensor ids = random_prompt(c.tokens, model->spec().vocab_size, 1000 + c.tokens);
  ScorerOptions o;
  o.n_sink = c.n_sink;
  o.kvzip_chunk = c.chunk;
  o.repeat_overlap = c.overlap;
  o.prefill_chunk = c.prefill_chunk;
  o.repeat_prompt_first = c.first;
  o.repeat_prompt_rest = c.rest;
  auto scored = score_prompt(*model, *scorer_for("kvzip", o), ids, /*prefill_chunk=*/16);
  ASSERT_TRUE(scored.scores.is_ok()) << scored.scores.status().to_string();
  const at::Tensor expected = kvzip_reference(*model, ids, o);
  const double err = max_scaled_error(*scored.scores, expected);
  EXPECT_LE(err, kTol);
  // Scores are probabilities, and every context entry was scored by its chunk.
  at::Tensor body = scored.scores->narrow(2, std::min(c.n_sink, c.tokens), c.tokens - std::min(c.n_sink, c.tokens));
  EXPECT_TRUE((body > 0).all().item<bool>());
  EXPECT_TRUE((body <= 1).all().item<bool>());
  std::cout << "[ max err ] kvzip " << c.name << ": " << err << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Chunks, KvzipScorerTest,
    ::testing::Values(
        // 88 context tokens in chunks of 23: four chunks, the last one short; repeat inputs span prefill chunks.
        KvzipCase{"llama_4chunks", Architecture::kLlama, 90, 2, 23, 4, 16, {7, 8, 9}, {7, 8}},
        KvzipCase{"qwen3_4chunks", Architecture::kQwen3, 90, 2, 23, 4, 16, {7, 8, 9}, {7, 8}},
        KvzipCase{"llama_no_sinks_2chunks", Architecture::kLlama, 61, 0, 40, 8, 7, {5}, {5}},
        // The overlap is longer than a chunk and reaches back into the sinks.
        KvzipCase{"llama_overlap_beyond_chunk", Architecture::kLlama, 45, 2, 5, 8, 4, {3, 4}, {6}},
        KvzipCase{"qwen3_one_chunk_no_prompt", Architecture::kQwen3, 50, 4, 100, 8, 16, {}, {}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(KvzipScorer, TokenOutsideTheVocabularyIsAnError) {
  auto model = tiny_model();
  at::Tensor ids = random_prompt(20, model->spec().vocab_size, 9);
  ScorerOptions o;
  o.repeat_prompt_first = {model->spec().vocab_size};
  auto scored = score_prompt(*model, *scorer_for("kvzip", o), ids, 16);
  ASSERT_FALSE(scored.scores.is_ok());
  EXPECT_EQ(scored.scores.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(scored.scores.status().message().find("repeat_prompt_first"), std::string::npos);
  EXPECT_EQ(scored.cache.length(0, 0), 20);
}

}  // namespace
}  // namespace proxykv::scoring
