#include "proxykv/mapper/mapper_checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "mapper_test_util.h"
#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv::mapper {
namespace {

namespace fs = std::filesystem;
using testing::make_gen;
using testing::small_config;

class MapperCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("proxykv_mapper_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A saved mapper whose parameters are not at their initial values.
  HybridAxialMapper save_trained_looking(const MapperConfig& config) {
    HybridAxialMapper mapper(config);
    at::NoGradGuard no_grad;
    at::Generator gen = make_gen(3);
    for (auto& p : mapper->parameters()) p.add_(at::randn(p.sizes(), gen) * 0.05);
    EXPECT_TRUE(save_mapper(dir_.string(), mapper, config).is_ok());
    return mapper;
  }

  void rewrite_tensors(const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
    const std::string path = (dir_ / "mapper.safetensors").string();
    auto tensors = load_all_tensors(path).value();
    edit(tensors);
    std::vector<TensorToWrite> out;
    for (const auto& [name, t] : tensors) out.push_back(from_torch(name, t).value());
    ASSERT_TRUE(write_safetensors(path, out).is_ok());
  }

  fs::path dir_;
};

TEST_F(MapperCheckpointTest, RoundTripGivesIdenticalOutputs) {
  for (const char* variant : {"hybrid", "linear"}) {
    MapperConfig config = small_config(4, 2, 2, 4, 2);
    config.variant = variant;
    HybridAxialMapper original = save_trained_looking(config);
    original->eval();
    ASSERT_TRUE(fs::exists(dir_ / "mapper.json") && fs::exists(dir_ / "mapper.safetensors"));

    Result<LoadedMapper> loaded = load_mapper(dir_.string(), config.shape);
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
    EXPECT_EQ(loaded->config.to_json(), config.to_json());
    EXPECT_FALSE(loaded->mapper->is_training());
    at::NoGradGuard no_grad;
    at::Tensor x = testing::heavy_tailed({2, 4, 4, 45}, make_gen(8));
    at::Tensor mask = at::ones({2, 45}, at::kBool);
    mask[1].slice(0, 30).fill_(false);
    EXPECT_TRUE(at::equal(loaded->mapper->forward(x, mask), original->forward(x, mask))) << variant;
    fs::remove_all(dir_);
  }
}

TEST_F(MapperCheckpointTest, RefusesAnotherPairNamingBothShapes) {
  const MapperConfig config = small_config(4, 2, 2, 4, 2);
  save_trained_looking(config);
  const MapperPairShape other{4, 2, 2, 8, 2};  // another target
  Result<LoadedMapper> loaded = load_mapper(dir_.string(), other);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kFailedPrecondition);
  const std::string& m = loaded.status().message();
  EXPECT_NE(m.find("expected " + other.to_string()), std::string::npos) << m;
  EXPECT_NE(m.find("found " + config.shape.to_string()), std::string::npos) << m;
  EXPECT_NE(m.find("target 8 layers x 2 KV heads"), std::string::npos) << m;

  EXPECT_FALSE(load_mapper(dir_.string(), {1, 2, 2, 4, 2}).is_ok());  // other channel count
  EXPECT_FALSE(load_mapper(dir_.string(), {4, 2, 4, 4, 2}).is_ok());  // other proxy
}

TEST_F(MapperCheckpointTest, RefusesMissingExtraAndMisshapedTensors) {
  const MapperConfig config = small_config(2, 1, 2, 2, 2);
  save_trained_looking(config);
  rewrite_tensors([](auto& t) { t.erase("cross.readout_weight"); });
  Result<LoadedMapper> missing = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("missing tensor 'cross.readout_weight'"), std::string::npos)
      << missing.status().message();

  save_trained_looking(config);
  rewrite_tensors([](auto& t) { t["extra.weight"] = at::zeros({3}); });
  Result<LoadedMapper> extra = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(extra.is_ok());
  EXPECT_NE(extra.status().message().find("unexpected tensor 'extra.weight'"), std::string::npos);

  save_trained_looking(config);
  rewrite_tensors([](auto& t) { t["cross.queries"] = at::zeros({5, 16}); });
  Result<LoadedMapper> shaped = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(shaped.is_ok());
  EXPECT_NE(shaped.status().message().find("'cross.queries' has shape [5, 16], expected [4, 16]"), std::string::npos)
      << shaped.status().message();

  fs::remove(dir_ / "mapper.safetensors");
  EXPECT_FALSE(load_mapper(dir_.string(), config.shape).is_ok());
}

TEST_F(MapperCheckpointTest, RefusesMalformedJson) {
  const MapperConfig config = small_config(2, 1, 2, 2, 2);
  EXPECT_EQ(load_mapper(dir_.string(), config.shape).status().code(), StatusCode::kNotFound);
  save_trained_looking(config);
  auto write_json = [&](const std::string& text) { std::ofstream(dir_ / "mapper.json") << text; };

  write_json("{\"format\": \"proxykv-mapper\", ");
  Result<LoadedMapper> broken = load_mapper(dir_.string(), config.shape);
  EXPECT_EQ(broken.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(broken.status().message().find("mapper.json"), std::string::npos);

  nlohmann::json good{{"format", "proxykv-mapper"}, {"format_version", 1}, {"config", config.to_json()}};
  nlohmann::json j = good;
  j["format_version"] = 2;
  write_json(j.dump());
  EXPECT_EQ(load_mapper(dir_.string(), config.shape).status().code(), StatusCode::kUnimplemented);
  j = good;
  j["format"] = "something-else";
  write_json(j.dump());
  EXPECT_FALSE(load_mapper(dir_.string(), config.shape).is_ok());
  j = good;
  j["config"]["d_model"] = "wide";
  write_json(j.dump());
  EXPECT_FALSE(load_mapper(dir_.string(), config.shape).is_ok());
  j = good;
  j["config"].erase("proxy_kv_heads");
  write_json(j.dump());
  EXPECT_FALSE(load_mapper(dir_.string(), config.shape).is_ok());
  write_json(good.dump());
  EXPECT_TRUE(load_mapper(dir_.string(), config.shape).is_ok());
}

TEST_F(MapperCheckpointTest, SaveRefusesAConfigThatDoesNotDescribeTheMapper) {
  const MapperConfig config = small_config(2, 1, 2, 2, 2);
  HybridAxialMapper mapper(config);
  MapperConfig other = config;
  other.d_model = 32;
  EXPECT_FALSE(save_mapper(dir_.string(), mapper, other).is_ok());
  MapperConfig renamed = config;
  renamed.target_id = "another-name";  // ids are free-form
  ASSERT_TRUE(save_mapper(dir_.string(), mapper, renamed).is_ok());
  EXPECT_EQ(read_mapper_config(dir_.string())->target_id, "another-name");
}

// The "training" record: its selection level comes back from load_mapper, a checkpoint without one loads with an
// empty level, and a record naming no known level is refused at save and at load (naming mapper.json).
TEST_F(MapperCheckpointTest, RecordsTheSelectionLevelItWasTrainedFor) {
  const MapperConfig config = small_config(2, 1, 2, 2, 2);
  HybridAxialMapper mapper(config);
  ASSERT_TRUE(save_mapper(dir_.string(), mapper, config).is_ok());
  Result<LoadedMapper> loaded = load_mapper(dir_.string(), config.shape);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->trained_level, "");

  const nlohmann::json training{{"selection_level", "token"}, {"best_epoch", 3}};
  ASSERT_TRUE(save_mapper(dir_.string(), mapper, config, training).is_ok());
  loaded = load_mapper(dir_.string(), config.shape);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->trained_level, "token");
  std::ifstream in(dir_ / "mapper.json");
  EXPECT_EQ(nlohmann::json::parse(in).at("training"), training);

  EXPECT_EQ(save_mapper(dir_.string(), mapper, config, {{"selection_level", "diagonal"}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(save_mapper(dir_.string(), mapper, config, nlohmann::json::array()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(load_mapper(dir_.string(), config.shape)->trained_level, "token");  // the refused saves wrote nothing

  nlohmann::json j{{"format", "proxykv-mapper"}, {"format_version", 1}, {"config", config.to_json()},
                   {"training", {{"selection_level", "diagonal"}}}};
  std::ofstream(dir_ / "mapper.json") << j.dump();
  loaded = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("mapper.json"), std::string::npos) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("'diagonal'"), std::string::npos) << loaded.status().message();
}

// A checkpoint whose input transform would flatten the channels its features.json names is refused at load, by
// channel name: the mappers of 2026-12-03 and before read log-mass channels through "log" and saw one constant.
TEST_F(MapperCheckpointTest, RefusesAnInputTransformThatFlattensItsChannels) {
  auto write_channels = [&](const std::string& list) {
    std::ofstream(dir_ / "features.json") << "{\"channels\": [" << list << "]}\n";
  };
  MapperConfig config = small_config(2, 1, 2, 2, 2);
  config.input_transform = "log";
  save_trained_looking(config);
  EXPECT_TRUE(load_mapper(dir_.string(), config.shape).is_ok());  // no features.json: nothing to check against

  write_channels("\"key_norm\", \"value_norm\"");  // linear magnitudes: "log" reads them
  EXPECT_TRUE(load_mapper(dir_.string(), config.shape).is_ok());

  write_channels("\"kvzip\", \"value_norm\"");
  Result<LoadedMapper> loaded = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kFailedPrecondition);
  const std::string& m = loaded.status().message();
  EXPECT_NE(m.find(dir_.string()), std::string::npos) << m;
  EXPECT_NE(m.find("'kvzip'"), std::string::npos) << m;
  EXPECT_NE(m.find("input_transform \"none\""), std::string::npos) << m;

  write_channels("\"attention_of_the_future\", \"value_norm\"");
  loaded = load_mapper(dir_.string(), config.shape);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("known: kvzip, window_attn, h2o, key_norm, value_norm"), std::string::npos)
      << loaded.status().message();

  for (const char* transform : {"none", "symlog"}) {  // both keep the log masses' order
    config.input_transform = transform;
    save_trained_looking(config);
    write_channels("\"kvzip\", \"window_attn\"");
    EXPECT_TRUE(load_mapper(dir_.string(), config.shape).is_ok()) << transform;
  }
}

}  // namespace
}  // namespace proxykv::mapper
