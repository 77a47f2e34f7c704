// Safetensors writer/reader round trips and the golden fixtures written by the Hugging Face tooling.
#include "proxykv/tensor/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "safetensors_test_util.h"

namespace proxykv {
namespace {

using test::contains;
using test::TempDir;

constexpr DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                                DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};

TensorToWrite random_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::mt19937& rng) {
  TensorToWrite tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  size_t numel = 1;
  for (int64_t dim : shape) numel *= static_cast<size_t>(dim);
  tensor.shape = std::move(shape);
  tensor.bytes = test::random_bytes(numel * dtype_size(dtype), rng);
  return tensor;
}

void expect_view_matches(const TensorView& view, const TensorToWrite& written) {
  EXPECT_EQ(view.name, written.name);
  EXPECT_EQ(view.dtype, written.dtype) << written.name;
  EXPECT_EQ(view.shape, written.shape) << written.name;
  ASSERT_EQ(view.nbytes, written.bytes.size()) << written.name;
  EXPECT_EQ(std::vector<uint8_t>(view.data, view.data + view.nbytes), written.bytes) << written.name;
}

TEST(Safetensors, RoundTripsEveryDType) {
  TempDir dir;
  std::mt19937 rng(7);
  std::vector<TensorToWrite> tensors;
  for (DType dtype : kAllDTypes)
    tensors.push_back(random_tensor(std::string("t_") + dtype_name(dtype), dtype, {2, 3}, rng));
  const std::string path = dir.file("all.safetensors");
  ASSERT_TRUE(write_safetensors(path, tensors).is_ok());

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ((*file)->names().size(), tensors.size());
  EXPECT_TRUE((*file)->metadata().empty());
  for (const TensorToWrite& written : tensors) {
    auto view = (*file)->get(written.name);
    ASSERT_TRUE(view.is_ok()) << view.status().to_string();
    expect_view_matches(*view, written);
    EXPECT_EQ(view->numel(), 6);
  }
}

TEST(Safetensors, RoundTripsMetadataEmptyAndScalarTensors) {
  TempDir dir;
  std::mt19937 rng(11);
  const std::vector<TensorToWrite> tensors = {
      random_tensor("empty", DType::kF32, {0, 4}, rng),
      random_tensor("scalar", DType::kF64, {}, rng),
      random_tensor("zero_rank_one", DType::kI8, {0}, rng),
      random_tensor("vector", DType::kBF16, {5}, rng),
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "quotes \" and \xc3\xa9"}};
  const std::string path = dir.file("edge.safetensors");
  ASSERT_TRUE(write_safetensors(path, tensors, metadata).is_ok());

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ((*file)->metadata(), metadata);
  for (const TensorToWrite& written : tensors) {
    auto view = (*file)->get(written.name);
    ASSERT_TRUE(view.is_ok()) << view.status().to_string();
    expect_view_matches(*view, written);
  }
  EXPECT_EQ((*file)->get("empty")->numel(), 0);
  EXPECT_EQ((*file)->get("scalar")->numel(), 1);
}

TEST(Safetensors, WriterSortsDataByNameAndPadsHeader) {
  TempDir dir;
  std::mt19937 rng(3);
  // Given out of order on purpose: the layout must not depend on the caller's order.
  const std::vector<TensorToWrite> tensors = {
      random_tensor("zeta", DType::kU8, {3}, rng),
      random_tensor("alpha", DType::kI32, {2}, rng),
      random_tensor("mid", DType::kF16, {1, 3}, rng),
  };
  const std::string path = dir.file("sorted.safetensors");
  ASSERT_TRUE(write_safetensors(path, tensors).is_ok());

  const std::string raw = test::read_bytes(path);
  const uint64_t header_size = test::read_le64(raw);
  EXPECT_EQ(header_size % 8, 0u);
  const std::string header = raw.substr(8, header_size);
  EXPECT_FALSE(contains(header, "__metadata__")) << "metadata key written although there is no metadata";
  const size_t json_end = header.find_last_not_of(' ');
  ASSERT_NE(json_end, std::string::npos);
  EXPECT_EQ(header[json_end], '}');
  EXPECT_EQ(raw.size(), 8 + header_size + 3 + 8 + 6);

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"alpha", "mid", "zeta"}));
  const uint8_t* data_section = (*file)->file_data() + 8 + header_size;
  EXPECT_EQ((*file)->get("alpha")->data, data_section);  // offsets start at 0
  EXPECT_EQ((*file)->get("mid")->data, data_section + 8);
  EXPECT_EQ((*file)->get("zeta")->data, data_section + 14);
}

TEST(Safetensors, WriterRefusesInconsistentTensors) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  TensorToWrite short_bytes{"w", DType::kF32, {2, 2}, std::vector<uint8_t>(15)};
  Status status = write_safetensors(path, {short_bytes});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(status.message(), "15 bytes given but shape [2, 2] of F32 needs 16")) << status.message();

  TensorToWrite a{"same", DType::kU8, {1}, {1}};
  status = write_safetensors(path, {a, a});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(status.message(), "twice")) << status.message();

  TensorToWrite unnamed{"", DType::kU8, {1}, {1}};
  status = write_safetensors(path, {unnamed});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(status.message(), "empty name")) << status.message();

  TensorToWrite negative{"neg", DType::kU8, {-1}, {}};
  status = write_safetensors(path, {negative});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);

  TensorToWrite bad_utf8{"\xff\xfe", DType::kU8, {1}, {1}};
  status = write_safetensors(path, {bad_utf8});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(status.message(), "UTF-8")) << status.message();

  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, WriterReportsIoErrorsAsStatus) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/x.safetensors");
  const Status status = write_safetensors(path, {TensorToWrite{"x", DType::kU8, {1}, {1}}});
  EXPECT_FALSE(status.is_ok());
  EXPECT_TRUE(contains(status.message(), "x.safetensors")) << status.message();
}

TEST(Safetensors, WriterReplacesExistingFile) {
  TempDir dir;
  const std::string path = dir.file("replace.safetensors");
  ASSERT_TRUE(write_safetensors(path, {TensorToWrite{"old", DType::kU8, {1}, {1}}}).is_ok());
  ASSERT_TRUE(write_safetensors(path, {TensorToWrite{"new", DType::kU8, {2}, {1, 2}}}).is_ok());
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ((*file)->names(), std::vector<std::string>{"new"});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, GetUnknownNameIsNotFound) {
  TempDir dir;
  const std::string path = dir.file("one.safetensors");
  ASSERT_TRUE(write_safetensors(path, {TensorToWrite{"x", DType::kU8, {1}, {1}}}).is_ok());
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok());
  EXPECT_TRUE((*file)->contains("x"));
  EXPECT_FALSE((*file)->contains("y"));
  auto missing = (*file)->get("y");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(missing.status().message(), "one.safetensors: no tensor 'y'")) << missing.status().message();
}

TEST(Safetensors, MissingFileIsNotFoundAndDirectoryIsInvalid) {
  TempDir dir;
  auto missing = SafetensorsFile::open(dir.file("absent.safetensors"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(missing.status().message(), "absent.safetensors")) << missing.status().message();

  auto directory = SafetensorsFile::open(dir.path());
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(directory.status().message(), "not a regular file")) << directory.status().message();
}

TEST(Safetensors, ViewsOutliveTheirLookupWhileTheFileLives) {
  TempDir dir;
  const std::string path = dir.file("life.safetensors");
  ASSERT_TRUE(write_safetensors(path, {TensorToWrite{"x", DType::kI16, {2}, {1, 0, 2, 0}}}).is_ok());
  std::shared_ptr<SafetensorsFile> file = value_or_throw(SafetensorsFile::open(path));
  const TensorView view = value_or_throw(file->get("x"));
  int16_t values[2];
  std::memcpy(values, view.data, sizeof(values));
  EXPECT_EQ(values[0], 1);
  EXPECT_EQ(values[1], 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures written by the Hugging Face `safetensors` package.

const std::string kLlamaDir = std::string(PROXYKV_SHARED_DIR) + "/fixtures/hf-golden/llama";

TEST(SafetensorsFixture, ReadsHuggingFaceLlamaWeights) {
  auto file = SafetensorsFile::open(kLlamaDir + "/model.safetensors");
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ((*file)->names().size(), 21u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto embed = (*file)->get("model.embed_tokens.weight");
  ASSERT_TRUE(embed.is_ok()) << embed.status().to_string();
  EXPECT_EQ(embed->dtype, DType::kF32);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(embed->nbytes, 256u * 64u * 4u);
  // Random init: the weights are finite and not all zero.
  std::vector<float> weights(embed->nbytes / sizeof(float));
  std::memcpy(weights.data(), embed->data, embed->nbytes);
  double sum_of_squares = 0;
  for (float w : weights) {
    ASSERT_TRUE(std::isfinite(w));
    sum_of_squares += double{w} * w;
  }
  EXPECT_GT(sum_of_squares, 0.0);
}

TEST(SafetensorsFixture, ReadsGoldenInputIds) {
  auto file = SafetensorsFile::open(kLlamaDir + "/golden.safetensors");
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  auto ids = (*file)->get("input_ids");
  ASSERT_TRUE(ids.is_ok()) << ids.status().to_string();
  EXPECT_EQ(ids->dtype, DType::kI64);
  EXPECT_EQ(ids->shape, (std::vector<int64_t>{1, 48}));
  ASSERT_EQ(ids->nbytes, 48u * 8u);
  std::vector<int64_t> values(48);
  std::memcpy(values.data(), ids->data, ids->nbytes);
  for (int64_t id : values) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 256);  // the fixture's vocabulary
  }
}

TEST(SafetensorsFixture, CheckpointOpensFixtureDirectory) {
  auto checkpoint = SafetensorsCheckpoint::open(kLlamaDir);
  ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().to_string();
  EXPECT_EQ(checkpoint->names().size(), 21u);
  EXPECT_TRUE(checkpoint->contains("lm_head.weight"));
  EXPECT_EQ(checkpoint->get("lm_head.weight")->shape, (std::vector<int64_t>{256, 64}));
}

}  // namespace
}  // namespace proxykv
