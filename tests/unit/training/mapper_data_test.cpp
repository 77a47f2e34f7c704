#include "proxykv/training/mapper_data.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "proxykv/tasks/vocabulary.h"
#include "../../support/tiny_model.h"

namespace proxykv::training {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<DecoderLM> tiny(int64_t layers, int64_t hidden, uint64_t seed) {
  test_support::TinyModel m;
  m.hidden = hidden;
  m.intermediate = 2 * hidden;
  m.layers = layers;
  m.heads = 2;
  m.head_dim = hidden / 2;
  m.max_positions = 2048;
  m.family_eos = false;
  return m.init(seed, 0.3);
}

TEST(MapperData, WritesShardsThatReadBackWithTheirShapes) {
  auto proxy = tiny(1, 16, 1);
  auto target = tiny(2, 32, 2);
  Tokenizer tok = std::move(Tokenizer::from_json_string(tasks::family_tokenizer_json().dump(), "family").value());
  auto contexts = tasks::generate_tasks(tasks::TaskSpec{"niah_multikey", 60, 3, 2, 5, 9});
  ASSERT_TRUE(contexts.is_ok());
  MapperDataOptions opts;
  opts.features.channels = {"kvzip", "key_norm"};
  opts.features.scorer.kvzip_chunk = 32;
  opts.features.scorer.repeat_prompt_first = {tasks::kRepeatId};
  opts.features.scorer.repeat_prompt_rest = {tasks::kRepeatId};
  opts.contexts_per_shard = 2;
  const fs::path dir = fs::temp_directory_path() / ("pkv-mapdata-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  int64_t last = 0;
  ASSERT_TRUE(make_mapper_data(*proxy, *target, tok, *contexts, opts, dir.string(),
                               [&](int64_t done, int64_t) { last = done; })
                  .is_ok());
  EXPECT_EQ(last, 5);
  EXPECT_TRUE(fs::exists(dir / "shard-00002.safetensors"));  // 2 + 2 + 1 contexts
  auto ds = read_mapper_data(dir.string());
  ASSERT_TRUE(ds.is_ok()) << ds.status().to_string();
  ASSERT_EQ(ds->samples.size(), 5u);
  for (const auto& s : ds->samples) {
    EXPECT_EQ(s.features.sizes(), (std::vector<int64_t>{2, 2, 63}));  // 60 words + <bos> <ctx> </ctx>
    EXPECT_EQ(s.labels.sizes(), (std::vector<int64_t>{4, 63}));
    EXPECT_TRUE(at::isfinite(s.labels).all().item<bool>());
    EXPECT_EQ(s.task, "niah_multikey");
  }
  EXPECT_EQ(ds->manifest["channels"], nlohmann::json({"kvzip", "key_norm"}));
  fs::remove_all(dir);
}

TEST(MapperData, MissingOrForeignDirectoryIsAnError) {
  EXPECT_EQ(read_mapper_data("/nonexistent").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace proxykv::training
