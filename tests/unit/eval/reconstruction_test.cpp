// reconstruction_accuracy against a slow reference: for every chunk, one full causal forward over
// <bos> <ctx> context </ctx> <repeat> tail chunk (no cache), argmax compared at the chunk's positions.
#include "proxykv/eval/reconstruction.h"

#include <gtest/gtest.h>

#include <random>

#include "proxykv/tasks/vocabulary.h"
#include "../../support/tiny_model.h"

namespace proxykv::eval {
namespace {

std::unique_ptr<DecoderLM> tiny_model(uint64_t seed) {
  test_support::TinyModel m;
  m.family_eos = false;
  return m.init(seed);
}

PromptFormat family_format() {
  PromptFormat f;
  f.family = true;
  f.context_prefix = {tasks::kBosId, tasks::kCtxId};
  f.context_suffix = {tasks::kCtxEndId};
  f.repeat_prompt = {tasks::kRepeatId};
  return f;
}

ReconstructionCount reference(const DecoderLM& model, const PromptFormat& f, const std::vector<int64_t>& ctx,
                              const ReconstructionOptions& o) {
  ReconstructionCount count;
  const int64_t n = static_cast<int64_t>(ctx.size());
  for (int64_t start = 0; start < n; start += o.chunk) {
    const int64_t end = std::min(n, start + o.chunk);
    std::vector<int64_t> ids = f.context_prefix;
    ids.insert(ids.end(), ctx.begin(), ctx.end());
    ids.insert(ids.end(), f.context_suffix.begin(), f.context_suffix.end());
    ids.insert(ids.end(), f.repeat_prompt.begin(), f.repeat_prompt.end());
    ids.insert(ids.end(), ctx.begin() + std::max<int64_t>(0, start - o.tail), ctx.begin() + start);
    const int64_t first = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), ctx.begin() + start, ctx.begin() + end);
    at::NoGradGuard no_grad;
    at::Tensor logits = model.forward_batch(at::tensor(ids, at::kLong).unsqueeze(0))[0];
    for (int64_t i = start; i < end; ++i) {
      const int64_t predicted = logits[first - 1 + (i - start)].argmax().item<int64_t>();
      count.correct += predicted == ctx[i] ? 1 : 0;
      count.predicted.push_back(predicted);
      ++count.tokens;
    }
  }
  return count;
}

TEST(Reconstruction, MatchesAFullForwardPerChunk) {
  const PromptFormat f = family_format();
  std::mt19937_64 rng(3);
  for (uint64_t seed : {1u, 2u}) {
    auto model = tiny_model(seed);
    // A context that repeats a short pattern, so a random model gets some positions right and some wrong.
    std::vector<int64_t> ctx;
    for (int i = 0; i < 150; ++i) ctx.push_back(20 + static_cast<int64_t>(rng() % (i < 75 ? 4 : 40)));
    for (const ReconstructionOptions& o : {ReconstructionOptions{256, 8}, ReconstructionOptions{64, 8},
                                           ReconstructionOptions{37, 0}, ReconstructionOptions{10, 3}}) {
      auto got = reconstruction_accuracy(*model, f, ctx, o);
      ASSERT_TRUE(got.is_ok()) << got.status().to_string();
      const ReconstructionCount want = reference(*model, f, ctx, o);
      EXPECT_EQ(got->tokens, 150) << "every context token predicted once";
      EXPECT_EQ(got->correct, want.correct) << "seed " << seed << " chunk " << o.chunk << " tail " << o.tail;
      // A random model is (almost) never right, so compare what it predicted at every position, not only counts.
      EXPECT_EQ(got->predicted, want.predicted) << "seed " << seed << " chunk " << o.chunk << " tail " << o.tail;
    }
  }
}

TEST(Reconstruction, RefusesBadInput) {
  auto model = tiny_model(1);
  PromptFormat f = family_format();
  EXPECT_FALSE(reconstruction_accuracy(*model, f, {}).is_ok());
  EXPECT_FALSE(reconstruction_accuracy(*model, f, {20, 21}, ReconstructionOptions{0, 8}).is_ok());
  f.repeat_prompt.clear();
  EXPECT_FALSE(reconstruction_accuracy(*model, f, {20, 21}).is_ok());
}

}  // namespace
}  // namespace proxykv::eval
