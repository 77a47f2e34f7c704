#include "proxykv/proxy/proxy_features.h"
#include "../../support/tiny_model.h"

#include <gtest/gtest.h>

namespace proxykv::proxy {
namespace {

std::unique_ptr<DecoderLM> tiny_proxy() {
  return test_support::TinyModel::services_proxy().init(5);
}

FeatureOptions options(std::vector<std::string> channels) {
  FeatureOptions o;
  o.channels = std::move(channels);
  o.scorer.n_sink = 2;
  o.scorer.kvzip_chunk = 17;
  o.scorer.repeat_prompt_first = {3};
  o.scorer.repeat_prompt_rest = {3};
  o.scorer.window = 8;
  o.scorer.prefill_chunk = 16;
  return o;
}

TEST(ProxyFeatures, ShapeOrderAndFiniteness) {
  auto proxy = tiny_proxy();
  at::manual_seed(3);
  at::Tensor ids = at::randint(5, 40, {60}, at::kLong);
  auto f = extract_features(*proxy, ids, options({"kvzip", "window_attn", "h2o", "key_norm", "value_norm"}));
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->features.sizes(), (std::vector<int64_t>{5, 4, 60}));
  EXPECT_TRUE(at::isfinite(f->features).all().item<bool>());

  // Channel order follows the request; the kvzip channel is log(score + 1e-6) of the proxy's own KVzip score.
  scoring::ScorerOptions so = options({}).scorer;
  auto kvzip = scoring::make_scorer("kvzip", so);
  KvCache cache = proxy->new_cache();
  proxy->prefill(ids, cache);
  auto scores = (*kvzip)->finish(*proxy, cache, ids);
  ASSERT_TRUE(scores.is_ok());
  at::Tensor want = at::log(scores_to_rows(*scores) + 1e-6);
  EXPECT_LE((f->features[0] - want).abs().max().item<double>(), 1e-5);
  // Sinks carry their row's largest value.
  EXPECT_TRUE(at::equal(f->features[0].select(1, 0), std::get<0>(f->features[0].max(1))));
  // Key norms are the norms of the cached keys.
  EXPECT_NEAR(f->features[3][3][10].item<double>(), cache.keys(1, 1)[10].norm().item<double>(), 1e-5);
}

TEST(ProxyFeatures, RefusesUnknownOrRepeatedChannels) {
  auto proxy = tiny_proxy();
  at::Tensor ids = at::randint(5, 40, {20}, at::kLong);
  auto bad = extract_features(*proxy, ids, options({"kvzip", "entropy"}));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("entropy"), std::string::npos);
  EXPECT_FALSE(extract_features(*proxy, ids, options({"kvzip", "kvzip"})).is_ok());
  EXPECT_FALSE(extract_features(*proxy, ids, options({})).is_ok());
}

TEST(ScoresToRows, FlattensLayerMajorAndFillsSinks) {
  at::Tensor s = at::arange(12, at::kFloat).reshape({2, 2, 3});
  s.select(2, 0).fill_(std::numeric_limits<float>::infinity());
  at::Tensor rows = scores_to_rows(s);
  EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(rows[2][1].item<float>(), 7.f);  // layer 1, head 0, token 1
  EXPECT_EQ(rows[2][0].item<float>(), 8.f);  // sink -> row max
}

}  // namespace
}  // namespace proxykv::proxy
