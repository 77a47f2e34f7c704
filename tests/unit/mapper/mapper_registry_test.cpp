// MapperRegistry: checkpoints keyed by (proxy, target), the --mappers spec, shape checks in map_features (which
// equals the module's own forward), and the device choice (cuda refused clearly where LibTorch has none).
#include "proxykv/mapper/mapper_registry.h"

#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mapper_test_util.h"

namespace proxykv::mapper {
namespace {

namespace fs = std::filesystem;

struct CheckpointDir {
  fs::path path;
  MapperConfig config = testing::small_config(2, 2, 2, 3, 2);
  CheckpointDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("proxykv-registry-" + std::to_string(rd()));
    fs::create_directories(path);
    config.input_transform = "none";  // kvzip is a log-mass channel; load_mapper refuses "log" on it
    torch::manual_seed(3);
    HybridAxialMapper m(config);
    m->eval();
    EXPECT_TRUE(save_mapper(path.string(), m, config).is_ok());
    std::ofstream(path / "features.json") << nlohmann::json{{"channels", {"kvzip", "key_norm"}}}.dump();
  }
  ~CheckpointDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST(MapperRegistry, FindsByPairAndRefusesDuplicatesAndBadSpecs) {
  CheckpointDir dir;
  MapperRegistry r;
  ASSERT_TRUE(r.add("p", "t", dir.path.string()).is_ok());
  EXPECT_FALSE(r.add("p", "t", dir.path.string()).is_ok()) << "the same pair twice";
  ASSERT_TRUE(r.add_spec("p2:t=" + dir.path.string()).is_ok());
  EXPECT_FALSE(r.add_spec("no-equals-sign").is_ok());
  EXPECT_FALSE(r.add_spec(":t=" + dir.path.string()).is_ok());
  EXPECT_FALSE(r.add("p3", "t", (dir.path / "missing").string()).is_ok());
  auto found = r.find("p", "t");
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ((*found)->channels, (std::vector<std::string>{"kvzip", "key_norm"}));
  EXPECT_FALSE((*found)->compatibility_hash.empty());
  auto missing = r.find("p", "other");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("p->t"), std::string::npos) << "names what is served";
}

TEST(MapperRegistry, MapFeaturesIsTheModulesForwardAndChecksTheShape) {
  CheckpointDir dir;
  MapperRegistry r;
  ASSERT_TRUE(r.set_device("cpu").is_ok());
  ASSERT_TRUE(r.add("p", "t", dir.path.string()).is_ok());
  const MapperPair* pair = r.find("p", "t").value();
  at::Tensor features = at::randn({2, 4, 37}, testing::make_gen(5));
  auto scores = map_features(*pair, features);
  ASSERT_TRUE(scores.is_ok()) << scores.status().to_string();
  EXPECT_EQ(scores->sizes(), (std::vector<int64_t>{3, 2, 37}));
  EXPECT_EQ(scores->device(), at::Device(at::kCPU));
  at::NoGradGuard no_grad;
  HybridAxialMapper m = pair->loaded.mapper;
  at::Tensor want = m->forward(features.unsqueeze(0))[0].reshape({3, 2, 37});
  EXPECT_TRUE(at::allclose(*scores, want, 0, 0)) << "map_features must be the module's forward";
  EXPECT_FALSE(map_features(*pair, at::randn({3, 4, 37})).is_ok()) << "wrong channel count";
  EXPECT_FALSE(map_features(*pair, at::randn({2, 5, 37})).is_ok()) << "wrong proxy heads";
  EXPECT_FALSE(map_features(*pair, at::randn({2, 4})).is_ok()) << "wrong rank";
}

TEST(MapperRegistry, DeviceChoiceIsCheckedUpFront) {
  MapperRegistry r;
  EXPECT_TRUE(r.set_device("cpu").is_ok());
  EXPECT_EQ(r.set_device("gpu").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.set_device("cuda:x").code(), StatusCode::kInvalidArgument);
  if (!at::hasCUDA()) {
    const Status s = r.set_device("cuda:0");
    EXPECT_FALSE(s.is_ok());
    EXPECT_NE(s.message().find("cuda:0"), std::string::npos) << s.to_string();
  }
}

}  // namespace
}  // namespace proxykv::mapper
