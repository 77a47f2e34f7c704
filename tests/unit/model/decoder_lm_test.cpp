// Parity of DecoderLM with the Hugging Face transformers golden fixtures (../shared/fixtures/hf-golden).
#include "proxykv/model/decoder_lm.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "proxykv/tensor/torch_tensor.h"

namespace proxykv {
namespace {

constexpr double kTol = 1e-4;

std::string golden_dir(const std::string& name) {
  return std::string(PROXYKV_SHARED_DIR) + "/fixtures/hf-golden/" + name;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

class GoldenParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto model = DecoderLM::load(golden_dir(GetParam()));
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto golden = load_all_tensors(golden_dir(GetParam()) + "/golden.safetensors");
    ASSERT_TRUE(golden.is_ok()) << golden.status().to_string();
    golden_ = std::move(golden).value();
  }
  at::Tensor prompt() { return golden_.at("input_ids")[0]; }

  std::unique_ptr<DecoderLM> model_;
  std::map<std::string, at::Tensor> golden_;
};

TEST_P(GoldenParity, RopeInvFreq) {
  EXPECT_LE(max_abs_diff(model_->rope().inv_freq(), golden_.at("rope_inv_freq")), 1e-7);
}

TEST_P(GoldenParity, PromptLogitsAndKv) {
  KvCache cache = model_->new_cache();
  PrefillOptions opts;
  opts.all_logits = true;
  at::Tensor logits = model_->prefill(prompt(), cache, opts);
  EXPECT_LE(max_abs_diff(logits, golden_.at("logits")[0]), kTol);
  for (int layer : {0, 1}) {
    const std::string p = "past_key_values." + std::to_string(layer);
    EXPECT_LE(max_abs_diff(cache.dense_keys(layer), golden_.at(p + ".key")[0]), kTol) << "layer " << layer;
    EXPECT_LE(max_abs_diff(cache.dense_values(layer), golden_.at(p + ".value")[0]), kTol) << "layer " << layer;
  }
  EXPECT_EQ(cache.next_position(), 48);
}

TEST_P(GoldenParity, CachedDecodeSteps) {
  KvCache cache = model_->new_cache();
  at::Tensor last = model_->prefill(prompt(), cache);
  at::Tensor decode_ids = golden_.at("decode_ids");
  EXPECT_EQ(last[0].argmax().item<int64_t>(), decode_ids[0].item<int64_t>());
  for (int64_t i = 0; i < 4; ++i) {
    at::Tensor logits = model_->decode_step(decode_ids[i].item<int64_t>(), cache);
    EXPECT_LE(max_abs_diff(logits, golden_.at("decode_logits")[i]), kTol) << "step " << i;
  }
  EXPECT_EQ(cache.next_position(), 52);
}

TEST_P(GoldenParity, ChunkedPrefillMatchesOneShot) {
  KvCache cache = model_->new_cache();
  PrefillOptions opts;
  opts.all_logits = true;
  opts.chunk_size = 7;  // 48 = 6*7 + 6: uneven last chunk on purpose
  at::Tensor logits = model_->prefill(prompt(), cache, opts);
  EXPECT_LE(max_abs_diff(logits, golden_.at("logits")[0]), kTol);
}

TEST_P(GoldenParity, BatchForwardMatches) {
  at::Tensor logits = model_->forward_batch(golden_.at("input_ids"));
  EXPECT_LE(max_abs_diff(logits.detach(), golden_.at("logits")), kTol);
}

// The training path's key_drop (context dropout) computes what the serving path computes after real eviction:
// the context prefilled, each (layer, KV head) compacted to its kept entries, then the question prefilled.
TEST_P(GoldenParity, KeyDropMatchesAnEvictedCache) {
  const int64_t ctx = 32, T = prompt().size(0);
  const ModelSpec& s = model_->spec();
  at::manual_seed(5);
  at::Tensor dropped = at::rand({s.num_layers, s.num_kv_heads, ctx}) < 0.4;
  dropped.narrow(2, 0, 2).fill_(false);  // sinks stay, as the scorers keep them
  std::vector<std::vector<at::Tensor>> keep(static_cast<size_t>(s.num_layers));
  for (int64_t l = 0; l < s.num_layers; ++l) {
    for (int64_t h = 0; h < s.num_kv_heads; ++h) keep[l].push_back(at::nonzero(~dropped[l][h]).flatten());
  }
  KvCache cache = model_->new_cache();
  model_->prefill(prompt().narrow(0, 0, ctx), cache);
  ASSERT_TRUE(cache.compact(keep).is_ok());
  PrefillOptions opts;
  opts.all_logits = true;
  const at::Tensor want = model_->prefill(prompt().narrow(0, ctx, T - ctx), cache, opts);

  at::Tensor mask = at::zeros({s.num_layers, 1, s.num_kv_heads, T, T}, at::kBool);
  mask.narrow(3, ctx, T - ctx).narrow(4, 0, ctx).copy_(dropped.unsqueeze(1).unsqueeze(3).expand({-1, 1, -1, T - ctx, -1}));
  const at::Tensor got = model_->forward_batch(prompt().unsqueeze(0), mask).detach()[0].narrow(0, ctx, T - ctx);
  EXPECT_LE(max_abs_diff(got, want), kTol);
  // The mask matters, and rows before the drop are untouched.
  const at::Tensor plain = model_->forward_batch(prompt().unsqueeze(0)).detach()[0];
  EXPECT_GT(max_abs_diff(plain.narrow(0, ctx, T - ctx), want), 1e-3);
  EXPECT_LE(max_abs_diff(plain.narrow(0, 0, ctx),
                         model_->forward_batch(prompt().unsqueeze(0), mask).detach()[0].narrow(0, 0, ctx)),
            1e-6);
}

TEST_P(GoldenParity, UncommittedPrefillLeavesCacheAsItWas) {
  KvCache cache = model_->new_cache();
  model_->prefill(prompt().narrow(0, 0, 40), cache);
  PrefillOptions peek;
  peek.commit = false;
  peek.chunk_size = 3;
  model_->prefill(prompt().narrow(0, 40, 8), cache, peek);
  EXPECT_EQ(cache.length(0, 0), 40);
  EXPECT_EQ(cache.next_position(), 40);
  PrefillOptions opts;
  opts.all_logits = true;
  at::Tensor logits = model_->prefill(prompt().narrow(0, 40, 8), cache, opts);
  EXPECT_LE(max_abs_diff(logits, golden_.at("logits")[0].narrow(0, 40, 8)), kTol);
}

TEST_P(GoldenParity, SaveLoadRoundTrip) {
  auto dir = std::filesystem::temp_directory_path() / ("pkv-save-" + GetParam() + "-" + std::to_string(::getpid()));
  ASSERT_TRUE(model_->save(dir.string()).is_ok());
  auto again = DecoderLM::load(dir.string());
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  KvCache cache = (*again)->new_cache();
  PrefillOptions opts;
  opts.all_logits = true;
  EXPECT_LE(max_abs_diff((*again)->prefill(prompt(), cache, opts), golden_.at("logits")[0]), kTol);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(HfGolden, GoldenParity, ::testing::Values("llama", "qwen2", "qwen3", "llama-plain"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(DecoderLmLoad, MissingTensorNamed) {
  auto dir = std::filesystem::temp_directory_path() / ("pkv-missing-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(golden_dir("qwen3") + "/config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  // The golden file holds no weights at all: the loader must name the first tensor it misses.
  std::filesystem::copy_file(golden_dir("qwen3") + "/golden.safetensors", dir / "model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  auto model = DecoderLM::load(dir.string());
  ASSERT_FALSE(model.is_ok());
  EXPECT_NE(model.status().message().find("model.embed_tokens.weight"), std::string::npos)
      << model.status().to_string();
  std::filesystem::remove_all(dir);
}

TEST(DecoderLmLoad, BadDevice) {
  LoadOptions opts;
  opts.device = "tpu:0";
  auto model = DecoderLM::load(golden_dir("llama"), opts);
  ASSERT_FALSE(model.is_ok());
  EXPECT_NE(model.status().message().find("tpu:0"), std::string::npos);
}

}  // namespace
}  // namespace proxykv
