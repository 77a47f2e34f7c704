#include "proxykv/service_config/config_schema.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "proxykv/service_config/validators.h"

namespace proxykv::service_config {
namespace {

struct TestConfig {
  int threads = 4;
  std::int64_t mask_deadline_ms = 2000;
  std::uint32_t max_body_bytes = 1 << 20;
  double keep_ratio = 0.3;
  bool use_ucx = true;
  std::string fallback = "snapkv";
  std::vector<std::string> proxy_endpoints = {"tcp://127.0.0.1:7001"};
};

void declare(ConfigSchema& schema, TestConfig& cfg) {
  schema.add("threads", &cfg.threads, "worker threads", at_least(1))
      .add("mask_deadline_ms", &cfg.mask_deadline_ms, "how long the target waits for a mask", at_least<std::int64_t>(0))
      .add("max_body_bytes", &cfg.max_body_bytes, "largest request body")
      .add("keep_ratio", &cfg.keep_ratio, "fraction of KV entries kept", in_range(0.0, 1.0))
      .add("use_ucx", &cfg.use_ucx, "UCX data plane")
      .add("fallback", &cfg.fallback, "local method when no mask arrives", one_of({"snapkv", "full", "kvzip"}))
      .add("proxy_endpoints", &cfg.proxy_endpoints, "proxy pool endpoints");
}

using Env = std::map<std::string, std::string>;

EnvLookup lookup(const Env& env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    const auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

// Runs load() on "proxykv-test" + args.
LoadOutcome load(ConfigSchema& schema, std::vector<std::string> args, const Env& env = {},
                 std::ostream* out = nullptr) {
  std::vector<const char*> argv = {"proxykv-test"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream sink;
  return schema.load(static_cast<int>(argv.size()), argv.data(), out ? *out : sink, lookup(env));
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char pattern[] = "/tmp/proxykv_config_test_XXXXXX.json";
    const int fd = mkstemps(pattern, 5);
    if (fd < 0) throw std::runtime_error("mkstemps failed");
    close(fd);
    path_ = pattern;
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The error message load() throws, or "" when it does not throw.
std::string load_error(ConfigSchema& schema, std::vector<std::string> args, const Env& env = {}) {
  try {
    load(schema, std::move(args), env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return {};
}

TEST(ConfigNamesTest, FlagAndEnvironmentNamesDeriveFromTheKey) {
  EXPECT_EQ(flag_name("mask_deadline_ms"), "--mask-deadline-ms");
  EXPECT_EQ(flag_name("threads"), "--threads");
  EXPECT_EQ(env_name("target", "mask_deadline_ms"), "PROXYKV_TARGET_MASK_DEADLINE_MS");
  EXPECT_EQ(env_name("mapper", "threads"), "PROXYKV_MAPPER_THREADS");
  ConfigSchema schema("proxy");
  EXPECT_EQ(schema.env_name("use_ucx"), "PROXYKV_PROXY_USE_UCX");
  EXPECT_EQ(schema.config_file_env_name(), "PROXYKV_PROXY_CONFIG");
}

TEST(ConfigSchemaTest, DefaultsStayWhenNothingIsGiven) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  const LoadOutcome outcome = load(schema, {});
  EXPECT_FALSE(outcome.exit);
  EXPECT_EQ(cfg.threads, 4);
  EXPECT_EQ(cfg.fallback, "snapkv");
  EXPECT_EQ(schema.source("threads"), ConfigSource::kDefault);
  EXPECT_EQ(schema.origin("threads"), "default");
}

TEST(ConfigSchemaTest, PrecedenceIsFileThenEnvironmentThenFlag) {
  TempFile file(R"({"threads": 8, "mask_deadline_ms": 500, "keep_ratio": 0.5, "fallback": "full"})");
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  load(schema, {"--config", file.path(), "--threads", "32"},
       {{"PROXYKV_TEST_THREADS", "16"}, {"PROXYKV_TEST_MASK_DEADLINE_MS", "750"}});
  EXPECT_EQ(cfg.threads, 32);             // file 8 < env 16 < flag 32
  EXPECT_EQ(cfg.mask_deadline_ms, 750);   // file 500 < env 750
  EXPECT_DOUBLE_EQ(cfg.keep_ratio, 0.5);  // file only
  EXPECT_EQ(cfg.fallback, "full");
  EXPECT_EQ(cfg.max_body_bytes, 1u << 20);  // default
  EXPECT_EQ(schema.source("threads"), ConfigSource::kFlag);
  EXPECT_EQ(schema.origin("threads"), "flag --threads");
  EXPECT_EQ(schema.source("mask_deadline_ms"), ConfigSource::kEnvironment);
  EXPECT_EQ(schema.origin("mask_deadline_ms"), "environment variable PROXYKV_TEST_MASK_DEADLINE_MS");
  EXPECT_EQ(schema.source("keep_ratio"), ConfigSource::kFile);
  EXPECT_NE(schema.origin("keep_ratio").find(file.path()), std::string::npos);
  EXPECT_EQ(schema.source("max_body_bytes"), ConfigSource::kDefault);
}

TEST(ConfigSchemaTest, ConfigFileMayComeFromTheEnvironment) {
  TempFile file(R"({"threads": 8})");
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  load(schema, {}, {{"PROXYKV_TEST_CONFIG", file.path()}});
  EXPECT_EQ(cfg.threads, 8);
}

TEST(ConfigSchemaTest, ReadsTheProcessEnvironment) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  ASSERT_EQ(setenv("PROXYKV_TEST_FALLBACK", "kvzip", 1), 0);
  const char* argv[] = {"proxykv-test"};
  std::ostringstream out;
  schema.load(1, argv, out);  // process_environment() by default
  unsetenv("PROXYKV_TEST_FALLBACK");
  EXPECT_EQ(cfg.fallback, "kvzip");
}

TEST(ConfigSchemaTest, EveryTypeParsesFromTextAndJson) {
  TempFile file(R"({"use_ucx": false, "proxy_endpoints": ["tcp://a:1", "tcp://b:2"], "max_body_bytes": 4096})");
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  load(schema, {"--config", file.path(), "--keep-ratio=0.25"});
  EXPECT_FALSE(cfg.use_ucx);
  EXPECT_EQ(cfg.proxy_endpoints, (std::vector<std::string>{"tcp://a:1", "tcp://b:2"}));
  EXPECT_EQ(cfg.max_body_bytes, 4096u);
  EXPECT_DOUBLE_EQ(cfg.keep_ratio, 0.25);

  TestConfig cfg2;
  ConfigSchema schema2("test");
  declare(schema2, cfg2);
  load(schema2, {"--use-ucx", "false", "--proxy-endpoints", "tcp://c:3,tcp://d:4"},
       {{"PROXYKV_TEST_MAX_BODY_BYTES", "10"}});
  EXPECT_FALSE(cfg2.use_ucx);
  EXPECT_EQ(cfg2.proxy_endpoints, (std::vector<std::string>{"tcp://c:3", "tcp://d:4"}));
  EXPECT_EQ(cfg2.max_body_bytes, 10u);
}

TEST(ConfigSchemaTest, BareBoolFlagMeansTrue) {
  TestConfig cfg;
  cfg.use_ucx = false;
  ConfigSchema schema("test");
  declare(schema, cfg);
  load(schema, {"--use-ucx"}, {{"PROXYKV_TEST_USE_UCX", "off"}});
  EXPECT_TRUE(cfg.use_ucx);
}

TEST(ConfigSchemaTest, UnknownFileKeyNamesKeyAndFile) {
  TempFile file(R"({"threads": 8, "thread_count": 3})");
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  const std::string error = load_error(schema, {"--config", file.path()});
  EXPECT_NE(error.find("unknown key \"thread_count\""), std::string::npos) << error;
  EXPECT_NE(error.find(file.path()), std::string::npos) << error;
}

TEST(ConfigSchemaTest, WrongTypeInFileNamesKeyAndFile) {
  TempFile file(R"({"threads": "eight"})");
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  const std::string error = load_error(schema, {"--config", file.path()});
  EXPECT_NE(error.find("key \"threads\""), std::string::npos) << error;
  EXPECT_NE(error.find(file.path()), std::string::npos) << error;
  EXPECT_NE(error.find("expected an integer"), std::string::npos) << error;
}

TEST(ConfigSchemaTest, WrongTypesNameKeyAndSource) {
  {
    TestConfig cfg;
    ConfigSchema schema("test");
    declare(schema, cfg);
    const std::string error = load_error(schema, {}, {{"PROXYKV_TEST_THREADS", "4x"}});
    EXPECT_NE(error.find("environment variable PROXYKV_TEST_THREADS"), std::string::npos) << error;
    EXPECT_NE(error.find("key \"threads\""), std::string::npos) << error;
    EXPECT_NE(error.find("\"4x\""), std::string::npos) << error;
  }
  {
    TestConfig cfg;
    ConfigSchema schema("test");
    declare(schema, cfg);
    const std::string error = load_error(schema, {"--use-ucx", "maybe"});
    EXPECT_NE(error.find("flag --use-ucx"), std::string::npos) << error;
    EXPECT_NE(error.find("expected true or false"), std::string::npos) << error;
  }
  {
    TestConfig cfg;
    ConfigSchema schema("test");
    declare(schema, cfg);
    const std::string error = load_error(schema, {"--max-body-bytes", "-1"});
    EXPECT_NE(error.find("key \"max_body_bytes\""), std::string::npos) << error;
  }
  {
    TestConfig cfg;
    ConfigSchema schema("test");
    declare(schema, cfg);
    const std::string error = load_error(schema, {"--threads", "99999999999"});
    EXPECT_NE(error.find("out of range"), std::string::npos) << error;
  }
  {
    TempFile file(R"({"keep_ratio": "0.5"})");
    TestConfig cfg;
    ConfigSchema schema("test");
    declare(schema, cfg);
    const std::string error = load_error(schema, {"--config", file.path()});
    EXPECT_NE(error.find("expected a number, got string \"0.5\""), std::string::npos) << error;
  }
}

TEST(ConfigSchemaTest, ValidatorFailureNamesKeySourceAndRule) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  std::string error = load_error(schema, {"--threads", "0"});
  EXPECT_NE(error.find("key \"threads\" (from flag --threads): must be at least 1, got 0"), std::string::npos) << error;

  TempFile file(R"({"fallback": "lru"})");
  TestConfig cfg2;
  ConfigSchema schema2("test");
  declare(schema2, cfg2);
  error = load_error(schema2, {"--config", file.path()});
  EXPECT_NE(error.find("key \"fallback\""), std::string::npos) << error;
  EXPECT_NE(error.find(file.path()), std::string::npos) << error;
  EXPECT_NE(error.find("must be one of snapkv, full, kvzip; got \"lru\""), std::string::npos) << error;
}

TEST(ConfigSchemaTest, OnlyTheEffectiveValueIsValidated) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  load(schema, {"--threads", "2"}, {{"PROXYKV_TEST_THREADS", "0"}});  // env's 0 is overridden by the flag
  EXPECT_EQ(cfg.threads, 2);
}

TEST(ConfigSchemaTest, CrossKeyChecksRunAfterTheKeys) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  schema.add_check([&cfg] {
    return cfg.fallback == "kvzip" && cfg.mask_deadline_ms < 100 ? "fallback kvzip needs mask_deadline_ms >= 100" : "";
  });
  const std::string error = load_error(schema, {"--fallback", "kvzip", "--mask-deadline-ms", "10"});
  EXPECT_NE(error.find("fallback kvzip needs mask_deadline_ms >= 100"), std::string::npos) << error;
}

TEST(ConfigSchemaTest, BadFilesAndUnknownFlagsAreErrors) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  EXPECT_NE(load_error(schema, {"--config", "/nonexistent/proxykv.json"}).find("cannot be opened"), std::string::npos);
  TempFile broken("{\"threads\": ");
  EXPECT_NE(load_error(schema, {"--config", broken.path()}).find("not valid JSON"), std::string::npos);
  TempFile array("[1, 2]");
  EXPECT_NE(load_error(schema, {"--config", array.path()}).find("expected a JSON object"), std::string::npos);
  const std::string error = load_error(schema, {"--thread", "3"});
  EXPECT_NE(error.find("--thread"), std::string::npos) << error;
}

// --print-config is how a config file is started, so it prints even when the service could not start yet (here
// a value out of range); without --print-config the same values are refused.
TEST(ConfigSchemaTest, PrintConfigPrintsEvenWhenTheConfigWouldBeRefused) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  std::ostringstream out;
  const LoadOutcome outcome = load(schema, {"--threads", "0", "--print-config"}, {}, &out);
  EXPECT_TRUE(outcome.exit);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(out.str())["threads"], 0);
  TestConfig cfg2;
  ConfigSchema schema2("test");
  declare(schema2, cfg2);
  EXPECT_NE(load_error(schema2, {"--threads", "0"}).find("threads"), std::string::npos);
}

TEST(ConfigSchemaTest, PrintConfigDumpsTheEffectiveConfigAsALoadableFile) {
  TestConfig cfg;
  ConfigSchema schema("test");
  declare(schema, cfg);
  std::ostringstream out;
  const LoadOutcome outcome = load(schema, {"--threads", "12", "--print-config"}, {}, &out);
  EXPECT_TRUE(outcome.exit);
  EXPECT_EQ(outcome.exit_code, 0);
  const nlohmann::json printed = nlohmann::json::parse(out.str());
  EXPECT_EQ(printed["threads"], 12);
  EXPECT_EQ(printed["fallback"], "snapkv");
  EXPECT_EQ(printed, schema.to_json());

  TempFile file(out.str());
  TestConfig cfg2;
  ConfigSchema schema2("test");
  declare(schema2, cfg2);
  load(schema2, {"--config", file.path()});
  EXPECT_EQ(cfg2.threads, 12);
  EXPECT_EQ(schema2.to_json(), printed);
}

TEST(ConfigSchemaTest, HelpListsFlagsEnvironmentNamesAndDefaults) {
  TestConfig cfg;
  ConfigSchema schema("test", "a test service");
  declare(schema, cfg);
  std::ostringstream out;
  const LoadOutcome outcome = load(schema, {"--help"}, {}, &out);
  EXPECT_TRUE(outcome.exit);
  EXPECT_EQ(outcome.exit_code, 0);
  const std::string help = out.str();
  EXPECT_NE(help.find("--mask-deadline-ms"), std::string::npos) << help;
  EXPECT_NE(help.find("PROXYKV_TEST_MASK_DEADLINE_MS"), std::string::npos) << help;
  EXPECT_NE(help.find("default 2000"), std::string::npos) << help;
  EXPECT_NE(help.find("--config"), std::string::npos) << help;
}

TEST(ConfigSchemaTest, DeclarationMistakesAreLogicErrors) {
  TestConfig cfg;
  ConfigSchema schema("test");
  schema.add("threads", &cfg.threads, "x");
  EXPECT_THROW(schema.add("threads", &cfg.threads, "again"), std::logic_error);
  EXPECT_THROW(schema.add("Threads", &cfg.threads, "upper case"), std::logic_error);
  EXPECT_THROW(schema.add("config", &cfg.fallback, "reserved"), std::logic_error);
  EXPECT_THROW(ConfigSchema("Target"), std::logic_error);
  EXPECT_EQ(schema.keys(), std::vector<std::string>{"threads"});
}

TEST(ConfigSchemaTest, LambdaValidatorsWork) {
  TestConfig cfg;
  ConfigSchema schema("test");
  schema.add("threads", &cfg.threads, "even threads",
             [](const int& v) { return v % 2 == 0 ? std::string() : "must be even, got " + std::to_string(v); });
  const std::string error = load_error(schema, {"--threads", "3"});
  EXPECT_NE(error.find("must be even, got 3"), std::string::npos) << error;
}

}  // namespace
}  // namespace proxykv::service_config
