#include "proxykv/mapper/mapper_trainer.h"

#include <chrono>

#include <gtest/gtest.h>

#include "mapper_test_util.h"
#include "proxykv/mapper/mapper_metrics.h"

namespace proxykv::mapper {
namespace {

using testing::make_gen;
using testing::small_config;

TEST(MapperTrainer, WindowsCoverEverySampleAndPadTheTail) {
  std::vector<MapperSample> samples;
  for (int64_t t : {10, 64, 100, 130}) {
    at::Tensor f = at::arange(2 * 2 * t, at::kFloat).view({2, 2, t}) + 1;
    samples.push_back({f, at::arange(3 * t, at::kFloat).view({3, t}) + 1, ""});
  }
  const std::vector<MapperWindow> w = plan_windows(samples, 64, 48);
  std::vector<std::pair<size_t, int64_t>> got;
  for (const auto& x : w) got.emplace_back(x.sample, x.start);
  const std::vector<std::pair<size_t, int64_t>> want = {{0, 0}, {1, 0}, {2, 0}, {2, 48}, {3, 0}, {3, 48}, {3, 96}};
  EXPECT_EQ(got, want);

  const MapperBatch batch = gather_windows(samples, {w[0], w[3], w[6]}, 64);
  EXPECT_EQ(batch.features.sizes(), (std::vector<int64_t>{3, 2, 2, 64}));
  EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{3, 3, 64}));
  EXPECT_EQ(batch.valid[0].sum().item<int64_t>(), 10);  // sample of 10 tokens
  EXPECT_EQ(batch.valid[1].sum().item<int64_t>(), 52);  // 100 - 48
  EXPECT_EQ(batch.valid[2].sum().item<int64_t>(), 34);  // 130 - 96
  EXPECT_TRUE(at::equal(batch.features[1].slice(-1, 0, 52), samples[2].features.slice(-1, 48, 100)));
  EXPECT_EQ(batch.features[1].slice(-1, 52).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::equal(batch.labels[2].slice(-1, 0, 34), samples[3].labels.slice(-1, 96, 130)));
}

TEST(MapperTrainer, LabelRowsMaxGivesEveryRowTheBestScoreOfItsToken) {
  at::manual_seed(4);
  std::vector<MapperSample> samples{{at::rand({2, 2, 7}), at::rand({3, 7}), "a"}};
  const std::vector<MapperSample> same = with_label_rows(samples, "each");
  EXPECT_TRUE(at::equal(same[0].labels, samples[0].labels));
  const std::vector<MapperSample> best = with_label_rows(samples, "max");
  for (int64_t t = 0; t < 7; ++t) {
    const float want = std::max({samples[0].labels[0][t].item<float>(), samples[0].labels[1][t].item<float>(),
                                 samples[0].labels[2][t].item<float>()});
    for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(best[0].labels[r][t].item<float>(), want) << r << " " << t;
  }
  EXPECT_TRUE(at::equal(best[0].features, samples[0].features));
  MapperTrainConfig c;
  c.label_rows = "min";
  EXPECT_FALSE(c.validate().is_ok());
  c.label_rows = "max";
  Result<MapperTrainConfig> back = MapperTrainConfig::from_json(c.to_json(), "test");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->label_rows, "max");
}

TEST(MapperTrainer, RefusesSamplesOfAnotherShape) {
  HybridAxialMapper mapper(small_config(2, 2, 2, 2, 2));
  std::vector<MapperSample> bad = {{at::zeros({2, 4, 20}), at::zeros({3, 20}), "ctx-7"}};
  Result<std::vector<MapperEpochMetrics>> r = train_mapper_epochs(mapper, bad, {}, MapperTrainConfig{});
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("ctx-7"), std::string::npos) << r.status().message();
  EXPECT_FALSE(train_mapper_epochs(mapper, {}, {}, MapperTrainConfig{}).is_ok());  // nothing to train on
}

// The "log" input transform clamps at 0: features that are already logs (the proxy's attention channels) would
// all map to one constant, so training refuses them by name; "none" takes them.
TEST(MapperTrainer, RefusesTheLogTransformOnFeaturesThatAreLogsAlready) {
  MapperConfig config = small_config(2, 2, 2, 2, 2);
  std::vector<MapperSample> logs = {{at::log(at::rand({2, 4, 20}) + 1e-6), at::rand({4, 20}), "ctx-log"}};
  MapperTrainConfig tc;
  tc.epochs = 0;
  HybridAxialMapper with_log(config);
  Result<std::vector<MapperEpochMetrics>> r = train_mapper_epochs(with_log, logs, {}, tc);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("already logs"), std::string::npos) << r.status().message();
  config.input_transform = "none";
  HybridAxialMapper with_none(config);
  EXPECT_TRUE(train_mapper_epochs(with_none, logs, {}, tc).is_ok());
}

TEST(MapperTrainer, FitsASyntheticPair) {
  // Proxy 2 layers x 2 KV heads with 2 channels; target 2 layers x 2 KV heads. Each target row is a delayed,
  // scaled copy of one proxy head (testing::synthetic_labels): the mapper must learn which head, which delay and
  // which scale. Training and validation contexts come from different seeds.
  const MapperConfig config = small_config(2, 2, 2, 2, 2);
  const auto train = testing::synthetic_samples(config.shape, 16, 96, 1);
  const auto val = testing::synthetic_samples(config.shape, 4, 150, 2);

  at::manual_seed(0);
  HybridAxialMapper mapper(config);
  MapperTrainConfig tc;
  tc.window = 64;
  tc.stride = 48;
  tc.batch_size = 8;
  tc.epochs = 50;  // 4 steps per epoch: 200 steps
  tc.lr = 3e-3;
  tc.warmup_steps = 20;
  tc.loss.intra_pairs = 256;
  tc.loss.mass_pairs = 256;

  Result<MapperEvalMetrics> before = evaluate_mapper(mapper, val, {0.3}, tc.loss);
  ASSERT_TRUE(before.is_ok()) << before.status().to_string();
  int64_t steps_seen = 0;
  MapperTrainHooks hooks;
  hooks.on_step = [&](const MapperStepInfo& s) {
    steps_seen = s.step;
    EXPECT_EQ(s.total_steps, 200);
    EXPECT_TRUE(std::isfinite(s.loss));
  };
  const auto start = std::chrono::steady_clock::now();
  Result<std::vector<MapperEpochMetrics>> history = train_mapper_epochs(mapper, train, val, tc, hooks);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(history.is_ok()) << history.status().to_string();
  ASSERT_EQ(history->size(), 50u);
  EXPECT_EQ(steps_seen, 200);

  const MapperEpochMetrics& first = history->front();
  const MapperEpochMetrics& last = history->back();
  std::cout << "[ info ] recall@0.3 before " << before->recall.at(0.3) << ", epoch 1 " << first.val.recall.at(0.3)
            << ", epoch 50 " << last.val.recall.at(0.3) << " (mean over ratios " << last.val.mean_recall
            << ", spearman " << last.val.spearman << ", train loss " << first.train_loss << " -> " << last.train_loss
            << ") in " << seconds << " s\n";
  EXPECT_GT(last.val.recall.at(0.3), 0.9);
  EXPECT_GT(last.val.recall.at(0.3), before->recall.at(0.3) + 0.2);
  EXPECT_GT(last.val.spearman, 0.8);
  EXPECT_LT(last.train_loss, first.train_loss);
  EXPECT_EQ(last.train_terms.size(), 5u);
  EXPECT_EQ(last.val.recall.size(), 5u);
  EXPECT_TRUE(mapper->is_training());  // evaluation restores the mode
}

TEST(MapperTrainConfig, SelectionLevelIsTokenForMaxLabelRowsElseTheLossLevel) {
  MapperTrainConfig c;
  EXPECT_EQ(c.selection_level(), "global");
  c.loss.level = scoring::SelectionLevel::kLayer;
  EXPECT_EQ(c.selection_level(), "layer");
  c.loss.level = scoring::SelectionLevel::kGlobal;
  c.label_rows = "max";
  EXPECT_EQ(c.selection_level(), "token");
}

TEST(MapperTrainConfig, JsonRoundTrip) {
  MapperTrainConfig c;
  c.window = 256;
  c.stride = 200;
  c.loss.cosine_weight = 0;
  Result<MapperTrainConfig> back = MapperTrainConfig::from_json(c.to_json(), "test");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), c.to_json());
  nlohmann::json j = c.to_json();
  j["stride"] = 1000;  // larger than the window: tokens would be skipped
  EXPECT_FALSE(MapperTrainConfig::from_json(j, "train.json").is_ok());
  j = c.to_json();
  j["loss"]["unknown"] = 1;
  EXPECT_NE(MapperTrainConfig::from_json(j, "train.json").status().message().find("train.json: loss"),
            std::string::npos);
}

}  // namespace
}  // namespace proxykv::mapper
