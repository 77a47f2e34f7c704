// End-to-end: the proxykv binary reproduces the Hugging Face golden logits, and refuses bad input cleanly.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "../../support/tiny_model.h"
#include "proxykv/mapper/mapper_checkpoint.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/tasks/vocabulary.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

CommandResult run(const std::string& args) {
  const std::string cmd = std::string(PROXYKV_BIN_DIR) + "/proxykv " + args + " 2>&1";
  CommandResult r{-1, ""};
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() /
              ("pkv-cli-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

class CliForwardGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CliForwardGolden, ReproducesGoldenLogits) {
  const std::string dir = std::string(PROXYKV_SHARED_DIR) + "/fixtures/hf-golden/" + GetParam();
  TempDir tmp;
  const fs::path out = tmp / "logits.safetensors";
  CommandResult r = run("forward --model " + dir + " --input-ids " + dir + "/golden.safetensors --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto got = load_all_tensors(out.string());
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  auto golden = load_all_tensors(dir + "/golden.safetensors");
  ASSERT_TRUE(golden.is_ok());
  const at::Tensor& logits = got->at("logits");
  ASSERT_EQ(logits.sizes(), golden->at("logits").sizes());
  EXPECT_EQ(logits.scalar_type(), at::kFloat);
  EXPECT_LE((logits - golden->at("logits")).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(HfGolden, CliForwardGolden, ::testing::Values("llama", "qwen2", "qwen3", "llama-plain"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(CliForward, BadInputsGetClearErrors) {
  const std::string dir = std::string(PROXYKV_SHARED_DIR) + "/fixtures/hf-golden/llama";
  TempDir tmp;
  // Not a safetensors file at all.
  const fs::path junk = tmp / "junk.safetensors";
  FILE* f = std::fopen(junk.c_str(), "wb");
  std::fputs("hello", f);
  std::fclose(f);
  CommandResult r = run("forward --model " + dir + " --input-ids " + junk.string() + " --out " + (tmp / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("junk.safetensors"), std::string::npos) << r.output;

  // A file without input_ids (the model weights).
  r = run("forward --model " + dir + " --input-ids " + dir + "/model.safetensors --out " + (tmp / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("input_ids"), std::string::npos) << r.output;

  // Token ids outside the vocabulary.
  std::vector<TensorToWrite> t(1);
  t[0].name = "input_ids";
  t[0].dtype = DType::kI64;
  t[0].shape = {1, 2};
  int64_t ids[2] = {3, 100000};
  t[0].bytes.assign(reinterpret_cast<uint8_t*>(ids), reinterpret_cast<uint8_t*>(ids) + sizeof ids);
  ASSERT_TRUE(write_safetensors((tmp / "ids.safetensors").string(), t).is_ok());
  r = run("forward --model " + dir + " --input-ids " + (tmp / "ids.safetensors").string() + " --out " +
          (tmp / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("OUT_OF_RANGE"), std::string::npos) << r.output;

  // Missing model directory.
  r = run("forward --model " + (tmp / "nope").string() + " --input-ids " + dir + "/golden.safetensors --out " +
          (tmp / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("config.json"), std::string::npos) << r.output;
}

TEST(CliTokenize, EncodesAndDecodesWithTheFamilyTokenizer) {
  TempDir tmp;
  const std::string tok = (tmp / "tokenizer.json").string();
  CommandResult r = run("write-family-tokenizer --out " + tok);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("tokenize --tokenizer " + tok + " --text '<bos> <ctx> the magic number for k017 is 4 0 9 1 . </ctx>'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<int32_t> want = tasks::family_encode("<bos> <ctx> the magic number for k017 is 4 0 9 1 . </ctx>");
  std::string want_json = "[";
  for (size_t i = 0; i < want.size(); ++i) want_json += (i ? "," : "") + std::to_string(want[i]);
  want_json += "]";
  EXPECT_NE(r.output.find(want_json), std::string::npos) << r.output;
  r = run("tokenize --tokenizer " + tok + " --ids '[2,5,135]' --skip-special");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("k000"), std::string::npos) << r.output;
  r = run("tokenize --tokenizer " + (tmp / "missing.json").string() + " --text x");
  EXPECT_EQ(r.exit_code, 1);
}

TEST(CliGenerate, GreedyTextFromASavedModel) {
  TempDir tmp;
  test_support::TinyModel m;
  m.arch = Architecture::kLlama;
  m.layers = 1;
  m.heads = 2;
  m.head_dim = 16;
  m.max_positions = 512;
  m.tied = false;
  auto model = DecoderLM::random_init(m.spec(), 3, 0.3);
  ASSERT_TRUE(model.is_ok());
  const std::string dir = (tmp / "model").string();
  ASSERT_TRUE((*model)->save(dir).is_ok());
  ASSERT_EQ(run("write-family-tokenizer --out " + dir + "/tokenizer.json").exit_code, 0);
  CommandResult r = run("generate --model " + dir +
                        " --prompt '<bos> <ctx> the grass is green . </ctx> <q>' "
                        "--max-tokens 5 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The same greedy tokens as the library computes, decoded by the same tokenizer.
  KvCache cache = (*model)->new_cache();
  std::vector<int32_t> prompt = tasks::family_encode("<bos> <ctx> the grass is green . </ctx> <q>");
  std::vector<int64_t> p64(prompt.begin(), prompt.end());
  std::vector<int64_t> out = (*model)->generate_greedy(at::tensor(p64, at::kLong), cache, 5, {tasks::kEosId});
  if (!out.empty() && out.back() == tasks::kEosId) out.pop_back();
  std::vector<int32_t> words;
  for (int64_t id : out) {
    if (id >= tasks::kNumSpecials) words.push_back(static_cast<int32_t>(id));
  }
  EXPECT_NE(r.output.find(tasks::family_decode(words)), std::string::npos) << r.output;

  r = run("generate --model " + (tmp / "nope").string() + " --prompt x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("tokenizer.json"), std::string::npos) << r.output;
}

// predict-mapper writes, per context of a make-mapper-data directory, the mapper's forward (what the library
// computes) where the labels were, with the sinks +inf, and the features unchanged; a missing directory is an error.
TEST(CliPredictMapper, WritesTheMapperForwardInPlaceOfTheLabels) {
  TempDir tmp;
  const std::string src = PROXYKV_SOURCE_DIR;
  const std::string tasks = (tmp / "tasks.jsonl").string(), data = (tmp / "data").string(),
                    pred = (tmp / "pred").string();
  CommandResult r = run("make-tasks --task niah_single --length 64 --facts 1 --queries 1 --n 2 --seed 5 --out " + tasks);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("make-mapper-data --proxy " + src + "/models/proxy --target " + src + "/models/target --data " + tasks +
          " --out " + data + " --channels kvzip,window_attn,key_norm,value_norm --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("predict-mapper --mapper " + src + "/models/mapper --data " + data + " --out " + pred);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::ifstream in(pred + "/manifest.json");
  const nlohmann::json manifest = nlohmann::json::parse(in);
  ASSERT_EQ(manifest.at("shards").size(), 1u);
  const std::string shard = manifest["shards"][0]["file"].get<std::string>();
  auto got = load_all_tensors(pred + "/" + shard);
  auto orig = load_all_tensors(data + "/" + shard);
  ASSERT_TRUE(got.is_ok() && orig.is_ok());
  mapper::MapperPairShape shape;
  shape.channels = 4;
  shape.proxy_layers = manifest["proxy"]["layers"].get<int64_t>();
  shape.proxy_kv_heads = manifest["proxy"]["kv_heads"].get<int64_t>();
  shape.target_layers = manifest["target"]["layers"].get<int64_t>();
  shape.target_kv_heads = manifest["target"]["kv_heads"].get<int64_t>();
  auto loaded = mapper::load_mapper(src + "/models/mapper", shape);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  const int64_t sinks = manifest.at("n_sink").get<int64_t>();
  for (int i = 0; i < 2; ++i) {
    const at::Tensor features = orig->at("features." + std::to_string(i));
    EXPECT_TRUE(at::equal(got->at("features." + std::to_string(i)), features));
    const at::Tensor p = got->at("labels." + std::to_string(i));
    at::NoGradGuard no_grad;
    const at::Tensor want = loaded->mapper->forward(features.to(at::kFloat).unsqueeze(0))[0];
    ASSERT_EQ(p.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(p.narrow(1, sinks, p.size(1) - sinks), want.narrow(1, sinks, want.size(1) - sinks)));
    EXPECT_TRUE(p.narrow(1, 0, sinks).isinf().all().item<bool>());
  }

  r = run("predict-mapper --mapper " + src + "/models/mapper --data " + (tmp / "nope").string() + " --out " + pred);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nope"), std::string::npos) << r.output;
}

// train-mapper picks the input transform from the channels' encoding when the config names none ("none" for the
// log-mass channels), and refuses "log" on them by channel name before training: the blind mappers of 2026-12-03
// had read log(s + 1e-6) through a transform that clamps at 0.
TEST(CliTrainMapper, InputTransformFollowsTheChannelsEncoding) {
  TempDir tmp;
  const std::string src = PROXYKV_SOURCE_DIR;
  const std::string tasks = (tmp / "tasks.jsonl").string(), data = (tmp / "data").string();
  CommandResult r = run("make-tasks --task niah_single --length 64 --facts 1 --queries 1 --n 2 --seed 9 --out " + tasks);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("make-mapper-data --proxy " + src + "/models/proxy --target " + src + "/models/target --data " + tasks +
          " --out " + data + " --channels kvzip,key_norm --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto config = [&](const std::string& name, const std::string& mapper, const std::string& train = "") {
    const fs::path path = tmp / (name + ".json");
    std::ofstream(path) << R"({"train_data": )" << (train.empty() ? "\"" + data + "\"" : train) << R"(, "val_data": ")"
                        << data << R"(", "out_dir": ")" << (tmp / name).string() << R"(", "mapper": )" << mapper
                        << R"(, "train": {"epochs": 1, "window": 32, "stride": 32, "batch_size": 2}})";
    return path.string();
  };
  r = run("train-mapper --config " + config("with-log", R"({"input_transform": "log", "d_model": 8, "n_attn_heads": 2})"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("channel 'kvzip'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "with-log" / "mapper.json"));

  // train_data may list several directories (contexts of several lengths): their samples are concatenated.
  r = run("train-mapper --config " +
          config("chosen", R"({"d_model": 8, "n_attn_heads": 2})", "[\"" + data + "\", \"" + data + "\"]"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 train / 2 val contexts, input_transform none"), std::string::npos) << r.output;
  // Directories from other channels are refused, naming the key.
  const std::string other = (tmp / "other").string();
  r = run("make-mapper-data --proxy " + src + "/models/proxy --target " + src + "/models/target --data " + tasks +
          " --out " + other + " --channels kvzip --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("train-mapper --config " + config("mixed", "{}", "[\"" + data + "\", \"" + other + "\"]"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'channels' differs"), std::string::npos) << r.output;

  // "channels" trains on a subset of the data's channels (the channel ablation): the checkpoint reads only those.
  auto subset = [&](const std::string& name, const std::string& channels) {
    const fs::path path = tmp / (name + ".json");
    std::ofstream(path) << R"({"train_data": ")" << data << R"(", "val_data": ")" << data << R"(", "out_dir": ")"
                        << (tmp / name).string() << R"(", "channels": )" << channels
                        << R"(, "mapper": {"d_model": 8, "n_attn_heads": 2}, "train": {"epochs": 1, "window": 32, )"
                        << R"("stride": 32, "batch_size": 2}})";
    return run("train-mapper --config " + path.string());
  };
  r = subset("norm-only", R"(["key_norm"])");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train-mapper: C=1,"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("input_transform log"), std::string::npos) << r.output;  // a linear channel alone
  {
    std::ifstream f(tmp / "norm-only" / "features.json");
    EXPECT_EQ(nlohmann::json::parse(f).at("channels"), nlohmann::json::array({"key_norm"}));
  }
  r = subset("reordered", R"(["key_norm", "kvzip"])");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  {
    std::ifstream f(tmp / "reordered" / "features.json");
    EXPECT_EQ(nlohmann::json::parse(f).at("channels"), nlohmann::json::array({"key_norm", "kvzip"}));
  }
  r = subset("unknown", R"(["kvzip", "window_attn"])");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'window_attn' is not a channel of the data (kvzip, key_norm)"), std::string::npos)
      << r.output;
  r = subset("twice", R"(["kvzip", "kvzip"])");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'kvzip' is named twice"), std::string::npos) << r.output;
  r = subset("empty", "[]");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(fs::exists(tmp / "empty" / "mapper.json"));

  std::ifstream in(tmp / "chosen" / "mapper.json");
  const nlohmann::json meta = nlohmann::json::parse(in);
  EXPECT_EQ(meta.at("config").at("input_transform"), "none");
  EXPECT_TRUE(fs::exists(tmp / "chosen" / "features.json"));
  // The checkpoint records the selection level it was trained for (label_rows each, loss level global: global),
  // and eval warns when it evaluates the mapper at another level.
  EXPECT_EQ(meta.at("training").at("selection_level"), "global") << meta.dump();
  EXPECT_EQ(meta.at("training").at("train").at("epochs"), 1) << meta.dump();
  const std::string eval = "eval --target " + src + "/models/target --proxy " + src + "/models/proxy --mapper " +
                           (tmp / "chosen").string() + " --data " + tasks + " --methods proxykv --ratios 0.5 --threads 1";
  r = run(eval + " --level token --out " + (tmp / "token.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("was trained for selection level global, evaluated here at level token"), std::string::npos)
      << r.output;
  r = run(eval + " --level global --out " + (tmp / "global.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("was trained for selection level"), std::string::npos) << r.output;
  // Mappers of different channels in one evaluation: each method extracts the channels its mapper reads.
  r = run("eval --target " + src + "/models/target --proxy " + src + "/models/proxy --mapper proxykv=" +
          (tmp / "chosen").string() + ",norms=" + (tmp / "norm-only").string() + " --data " + tasks +
          " --methods proxykv,norms --ratios 0.5 --threads 1 --out " + (tmp / "two.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream two(tmp / "two.json");
  std::set<std::string> methods;
  const nlohmann::json report = nlohmann::json::parse(two);  // named: the loop refers into it
  for (const auto& row : report.at("summary")) methods.insert(row.at("method").get<std::string>());
  EXPECT_EQ(methods, (std::set<std::string>{"proxykv", "norms"}));
}

// A key train-mapper does not know is refused before any data is read: a top-level "loss" (it belongs under
// "train") was once silently ignored, so every ablation mapper trained with the default loss.
TEST(CliTrainMapper, UnknownConfigKeyIsRefused) {
  TempDir tmp;
  const fs::path cfg = tmp / "mapper.json";
  std::ofstream(cfg) << R"({"train_data": "a", "val_data": "b", "out_dir": "c", "loss": {"binary_weight": 0}})";
  CommandResult r = run("train-mapper --config " + cfg.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown key 'loss'"), std::string::npos) << r.output;
  // The committed config is accepted as far as its data (absent here).
  r = run("train-mapper --config " + std::string(PROXYKV_SOURCE_DIR) + "/models/configs/mapper.json");
  EXPECT_EQ(r.output.find("unknown key"), std::string::npos) << r.output;
}

// --log FILE: the progress lines go to stdout and, after a "--- DATE" line, are appended to FILE.
// bench-scoring --feature-sets times the proxy's feature extraction per channel set (the channel ablation's cost):
// one column and one JSON entry per set; an unknown channel is refused by name.
TEST(CliBenchScoring, TimesEachFeatureSet) {
  const std::string src = PROXYKV_SOURCE_DIR;
  const std::string base = "bench-scoring --model " + src + "/models/target --proxy " + src +
                           "/models/proxy --lengths 64 --repeats 1 --methods snapkv --threads 1 --feature-sets ";
  CommandResult r = run(base + "\"kvzip,window_attn;key_norm,value_norm\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("features[kvzip,window_attn] (x)"), std::string::npos) << r.output;
  const auto json_at = r.output.find("JSON ");
  ASSERT_NE(json_at, std::string::npos) << r.output;
  const std::string line = r.output.substr(json_at + 5, r.output.find('\n', json_at) - json_at - 5);
  const nlohmann::json row = nlohmann::json::parse(line);
  EXPECT_GT(row.at("features_s").at("kvzip,window_attn").get<double>(), 0) << line;
  EXPECT_GT(row.at("features_s").at("key_norm,value_norm").get<double>(), 0) << line;
  r = run(base + "\"kvzip,bogus\"");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'bogus' is unknown"), std::string::npos) << r.output;
}

TEST(CliTrainLm, LogAppendsTheProgressLines) {
  TempDir tmp;
  const std::string config = (tmp / "tiny.json").string();
  {
    std::ofstream out(config);
    out << R"({"model": {"architectures": ["Qwen3ForCausalLM"], "vocab_size": )" << tasks::kFamilyVocabSize
        << R"(, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 1,
              "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 512},
              "seed": 1, "out_dir": ")"
        << (tmp / "run").string() << R"(", "threads": 1, "log_every": 2,
              "checkpoint_every": 0, "eval_every": 0,
              "phases": [{"name": "tasks", "steps": 4, "batch": 2, "mix": {"tasks": 1.0},
                          "context_min": 32, "context_max": 48, "qa_per_sequence": 1}]})";
  }
  const std::string log = (tmp / "train.log").string();
  { std::ofstream(log) << "earlier line\n"; }
  CommandResult r = run("train-lm --config " + config + " --log " + log + " --stop-after 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 4/4 [tasks]"), std::string::npos) << r.output;
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind("earlier line\n--- ", 0), 0u) << text;  // appended, after the separator line
  EXPECT_NE(text.find("train-lm --config " + config + " --stop-after 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("step 2/4 [tasks]"), std::string::npos) << text;
  EXPECT_NE(text.find("step 4/4 [tasks]"), std::string::npos) << text;

  r = run("train-lm --config " + config + " --log " + (tmp / "no" / "such" / "dir.log").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot open --log"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace proxykv
