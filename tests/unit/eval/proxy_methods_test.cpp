#include "proxykv/eval/proxy_methods.h"
#include "../../support/tiny_model.h"

#include <filesystem>

#include <gtest/gtest.h>

namespace proxykv::eval {
namespace {

TEST(CalibrateIam, RecoversAPermutationOfHeads) {
  at::manual_seed(4);
  std::vector<at::Tensor> proxy_rows, target_rows;
  const std::vector<int64_t> truth{2, 0, 3, 3, 1, 0};  // target row -> proxy row it copies (noisily)
  for (int s = 0; s < 5; ++s) {
    at::Tensor p = at::rand({4, 50});
    at::Tensor q = p.index_select(0, at::tensor(truth, at::kLong)) + 0.05 * at::rand({6, 50});
    proxy_rows.push_back(p);
    target_rows.push_back(q);
  }
  auto map = calibrate_iam(proxy_rows, target_rows, 2);
  ASSERT_TRUE(map.is_ok()) << map.status().to_string();
  EXPECT_EQ(*map, truth);
  EXPECT_FALSE(calibrate_iam({}, {}, 0).is_ok());
}

TEST(IamMap, RoundTripAndWrongPairRefused) {
  const std::string path = (std::filesystem::temp_directory_path() / ("pkv-iam-" + std::to_string(::getpid()))).string();
  ASSERT_TRUE(save_iam_map(path, {1, 0, 1, 1}, 2).is_ok());
  auto map = load_iam_map(path, 2, 4);
  ASSERT_TRUE(map.is_ok());
  EXPECT_EQ(*map, (std::vector<int64_t>{1, 0, 1, 1}));
  auto wrong = load_iam_map(path, 4, 8);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().message().find("4 -> 8"), std::string::npos) << wrong.status().to_string();
  std::filesystem::remove(path);
}

std::unique_ptr<DecoderLM> tiny(int64_t layers, uint64_t seed) {
  test_support::TinyModel m;
  m.arch = Architecture::kLlama;
  m.vocab = 30;
  m.hidden = 16;
  m.intermediate = 32;
  m.layers = layers;
  m.heads = 2;
  m.max_positions = 512;
  m.tied = false;
  m.family_eos = false;
  return m.init(seed);
}

TEST(ProxyDirect, BroadcastsProxyKvzipRowsByTheFixedRule) {
  auto proxy = tiny(1, 1);
  auto target = tiny(2, 2);
  ProxyMethods methods;
  methods.proxy = proxy.get();
  ASSERT_TRUE(methods.provides("proxy_direct"));
  EXPECT_FALSE(methods.provides("kvzip_iam"));  // no calibration given
  EXPECT_FALSE(methods.provides("proxykv"));    // no mapper given
  scoring::ScorerOptions so;
  so.n_sink = 1;
  so.kvzip_chunk = 10;
  so.repeat_prompt_first = {3};
  so.repeat_prompt_rest = {3};
  auto scorer = methods.make("proxy_direct", so);
  ASSERT_TRUE(scorer.is_ok());
  at::Tensor ids = at::randint(4, 30, {25}, at::kLong);
  KvCache cache = target->new_cache();
  target->prefill(ids, cache);
  auto scores = (*scorer)->finish(*target, cache, ids);
  ASSERT_TRUE(scores.is_ok()) << scores.status().to_string();
  EXPECT_EQ(scores->sizes(), (std::vector<int64_t>{2, 2, 25}));
  // Both target layers map to the proxy's only layer; KV head h to proxy head h.
  EXPECT_TRUE(at::equal(scores->select(0, 0), scores->select(0, 1)));
  proxy::FeatureOptions fo;
  fo.scorer = so;
  auto f = proxy::extract_features(*proxy, ids, fo);
  ASSERT_TRUE(f.is_ok());
  EXPECT_LE((scores->select(0, 1).narrow(1, 1, 24) - f->features[0].narrow(1, 1, 24)).abs().max().item<double>(),
            1e-6);
}

}  // namespace
}  // namespace proxykv::eval
