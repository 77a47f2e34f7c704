// Sharded checkpoints: model.safetensors.index.json and its shards.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proxykv/tensor/safetensors.h"
#include "safetensors_test_util.h"

namespace proxykv {
namespace {

using test::contains;

constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

TensorToWrite u8_tensor(const std::string& name, std::vector<uint8_t> bytes) {
  const auto size = static_cast<int64_t>(bytes.size());
  return TensorToWrite{name, DType::kU8, {size}, std::move(bytes)};
}

class SafetensorsCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // "shared" sits in both shards with different bytes: the index decides which one is served.
    ASSERT_TRUE(write_safetensors(dir_.file(kShard1), {u8_tensor("a", {1, 2}), u8_tensor("shared", {10})}).is_ok());
    ASSERT_TRUE(
        write_safetensors(dir_.file(kShard2), {u8_tensor("b", {3, 4, 5}), u8_tensor("shared", {20, 21})}).is_ok());
  }

  void write_index(const nlohmann::json& weight_map) {
    const nlohmann::json index = {{"metadata", {{"total_size", 8}}}, {"weight_map", weight_map}};
    test::write_bytes(dir_.file(kIndex), index.dump(2));
  }

  void expect_error(const Result<SafetensorsCheckpoint>& result, StatusCode code, const std::string& problem) {
    ASSERT_FALSE(result.is_ok()) << "accepted a broken checkpoint";
    EXPECT_EQ(result.status().code(), code) << result.status().to_string();
    EXPECT_TRUE(contains(result.status().message(), kIndex)) << result.status().message();
    EXPECT_TRUE(contains(result.status().message(), problem))
        << "message '" << result.status().message() << "' does not say '" << problem << "'";
  }

  test::TempDir dir_;
};

TEST_F(SafetensorsCheckpointTest, ReadsShardsThroughIndex) {
  write_index({{"a", kShard1}, {"b", kShard2}, {"shared", kShard2}});
  for (const std::string& path : {dir_.path(), dir_.file(kIndex)}) {
    auto checkpoint = SafetensorsCheckpoint::open(path);
    ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().to_string();
    EXPECT_EQ(checkpoint->names(), (std::vector<std::string>{"a", "b", "shared"}));
    auto b = checkpoint->get("b");
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    EXPECT_EQ(std::vector<uint8_t>(b->data, b->data + b->nbytes), (std::vector<uint8_t>{3, 4, 5}));
    auto shared = checkpoint->get("shared");
    ASSERT_TRUE(shared.is_ok());
    EXPECT_EQ(std::vector<uint8_t>(shared->data, shared->data + shared->nbytes), (std::vector<uint8_t>{20, 21}));
    EXPECT_EQ(checkpoint->get("missing").status().code(), StatusCode::kNotFound);
  }
}

TEST_F(SafetensorsCheckpointTest, TensorsTheIndexDoesNotListAreHidden) {
  write_index({{"a", kShard1}, {"shared", kShard1}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().to_string();
  EXPECT_EQ(checkpoint->names(), (std::vector<std::string>{"a", "shared"}));
  EXPECT_FALSE(checkpoint->contains("b"));
  EXPECT_EQ(checkpoint->get("shared")->nbytes, 1u);
}

TEST_F(SafetensorsCheckpointTest, IndexPointingToMissingShard) {
  write_index({{"a", kShard1}, {"b", "model-00003-of-00003.safetensors"}});
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kNotFound,
               "tensor 'b': shard 'model-00003-of-00003.safetensors' unusable");
}

TEST_F(SafetensorsCheckpointTest, IndexPointingToShardWithoutTheTensor) {
  write_index({{"a", kShard1}, {"b", kShard1}});
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument,
               "tensor 'b': mapped to shard 'model-00001-of-00002.safetensors', which does not contain it");
}

TEST_F(SafetensorsCheckpointTest, ShardNamesMustStayInTheDirectory) {
  for (const char* bad : {"../model-00001-of-00002.safetensors", "/etc/passwd", "..", "sub\\x.safetensors"}) {
    write_index({{"a", bad}});
    expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument,
                 "is not a plain file name in the index's directory");
  }
}

TEST_F(SafetensorsCheckpointTest, MalformedIndex) {
  test::write_bytes(dir_.file(kIndex), "{\"weight_map\": ");
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument, "is not valid JSON");
  test::write_bytes(dir_.file(kIndex), R"({"metadata": {}})");
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument,
               "\"weight_map\" is missing or not a JSON object");
  test::write_bytes(dir_.file(kIndex), R"({"weight_map": {"a": 3}})");
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument, "shard name is not a string");
  test::write_bytes(dir_.file(kIndex), R"({"weight_map": {}})");
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument, "\"weight_map\" is empty");
}

TEST_F(SafetensorsCheckpointTest, BrokenShardIsReportedThroughTheIndex) {
  test::write_bytes(dir_.file(kShard2), "oops");
  write_index({{"a", kShard1}, {"b", kShard2}});
  expect_error(SafetensorsCheckpoint::open(dir_.path()), StatusCode::kInvalidArgument, "too short");
}

TEST_F(SafetensorsCheckpointTest, DirectoryWithSingleFile) {
  ASSERT_TRUE(write_safetensors(dir_.file("model.safetensors"), {u8_tensor("only", {7})}).is_ok());
  for (const std::string& path : {dir_.path(), dir_.file("model.safetensors")}) {
    auto checkpoint = SafetensorsCheckpoint::open(path);
    ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().to_string();
    EXPECT_EQ(checkpoint->names(), std::vector<std::string>{"only"});
    EXPECT_EQ(checkpoint->get("only")->data[0], 7);
  }
}

TEST_F(SafetensorsCheckpointTest, IndexWinsOverSingleFileInDirectory) {
  ASSERT_TRUE(write_safetensors(dir_.file("model.safetensors"), {u8_tensor("only", {7})}).is_ok());
  write_index({{"a", kShard1}});
  auto checkpoint = SafetensorsCheckpoint::open(dir_.path());
  ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().to_string();
  EXPECT_EQ(checkpoint->names(), std::vector<std::string>{"a"});
}

TEST_F(SafetensorsCheckpointTest, MissingPaths) {
  test::TempDir empty;
  auto in_empty = SafetensorsCheckpoint::open(empty.path());
  EXPECT_EQ(in_empty.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(in_empty.status().message(), "neither model.safetensors.index.json nor model.safetensors"))
      << in_empty.status().message();
  EXPECT_EQ(SafetensorsCheckpoint::open(empty.file("nothing")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(SafetensorsCheckpoint::open(empty.file("nothing.json")).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace proxykv
