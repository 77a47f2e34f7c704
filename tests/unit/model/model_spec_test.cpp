#include "proxykv/model/model_spec.h"

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace proxykv {
namespace {

using nlohmann::json;

json golden_config(const std::string& name) {
  std::ifstream in(std::string(PROXYKV_SHARED_DIR) + "/fixtures/hf-golden/" + name + "/config.json");
  return json::parse(in);
}

TEST(ModelSpec, ParsesGoldenConfigs) {
  auto llama = ModelSpec::from_json(golden_config("llama"), "llama");
  ASSERT_TRUE(llama.is_ok()) << llama.status().to_string();
  EXPECT_EQ(llama->arch, Architecture::kLlama);
  EXPECT_EQ(llama->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(llama->rope_scaling.original_max_position_embeddings, 64);
  EXPECT_FALSE(llama->tie_word_embeddings);
  EXPECT_EQ(llama->num_parameters(), 119104);

  auto qwen2 = ModelSpec::from_json(golden_config("qwen2"), "qwen2");
  ASSERT_TRUE(qwen2.is_ok());
  EXPECT_EQ(qwen2->head_dim, 16);  // derived: no head_dim key
  EXPECT_TRUE(qwen2->qkv_bias);
  EXPECT_FALSE(qwen2->o_bias);
  EXPECT_EQ(qwen2->num_parameters(), 102976);

  auto qwen3 = ModelSpec::from_json(golden_config("qwen3"), "qwen3");
  ASSERT_TRUE(qwen3.is_ok());
  EXPECT_TRUE(qwen3->qk_norm);
  EXPECT_EQ(qwen3->num_parameters(), 102784);
  EXPECT_EQ(expected_tensors(*qwen3).size(), 24u);
}

TEST(ModelSpec, UnknownKeysIgnored) {
  json c = golden_config("llama-plain");
  c["some_future_key"] = {{"x", 1}};
  EXPECT_TRUE(ModelSpec::from_json(c, "c").is_ok());
}

struct BadCase {
  std::string name;
  std::function<void(json&)> mutate;
  std::string must_mention;
};

TEST(ModelSpec, RefusesUnsupportedValuesByName) {
  std::vector<BadCase> cases = {
      {"arch", [](json& c) { c["architectures"] = {"MistralForCausalLM"}; }, "MistralForCausalLM"},
      {"act", [](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act"},
      {"rope",
       [](json& c) {
         c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       },
       "yarn"},
      {"gqa", [](json& c) { c["num_key_value_heads"] = 3; }, "num_key_value_heads"},
      {"neg", [](json& c) { c["hidden_size"] = -64; }, "hidden_size"},
      {"type", [](json& c) { c["vocab_size"] = "256"; }, "vocab_size"},
      {"missing", [](json& c) { c.erase("num_hidden_layers"); }, "num_hidden_layers"},
      {"mlp_bias", [](json& c) { c["mlp_bias"] = true; }, "mlp_bias"},
      {"dtype", [](json& c) { c["torch_dtype"] = "float8"; }, "torch_dtype"},
  };
  for (const auto& bc : cases) {
    json c = golden_config("llama");
    bc.mutate(c);
    auto spec = ModelSpec::from_json(c, "cfg.json");
    ASSERT_FALSE(spec.is_ok()) << bc.name;
    EXPECT_NE(spec.status().message().find(bc.must_mention), std::string::npos)
        << bc.name << ": " << spec.status().to_string();
    EXPECT_NE(spec.status().message().find("cfg.json"), std::string::npos) << bc.name;
  }
}

TEST(ModelSpec, SlidingWindowQwenRefused) {
  json c = golden_config("qwen2");
  c["use_sliding_window"] = true;
  auto spec = ModelSpec::from_json(c, "q");
  ASSERT_FALSE(spec.is_ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kUnimplemented);
}

TEST(ModelSpec, ToJsonRoundTrips) {
  for (const char* name : {"llama", "qwen2", "qwen3", "llama-plain"}) {
    auto spec = ModelSpec::from_json(golden_config(name), name);
    ASSERT_TRUE(spec.is_ok());
    auto again = ModelSpec::from_json(spec->to_json(), name);
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    EXPECT_EQ(again->num_parameters(), spec->num_parameters());
    EXPECT_EQ(again->rope_scaling.type, spec->rope_scaling.type);
    EXPECT_EQ(again->qkv_bias, spec->qkv_bias);
    EXPECT_EQ(again->qk_norm, spec->qk_norm);
  }
}

TEST(ModelSpec, MissingOrBrokenFile) {
  EXPECT_EQ(ModelSpec::from_file("/nonexistent/config.json").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace proxykv
