// ConfigSchema: a service declares each configuration key once, bound to a field of its typed config struct;
// load() fills the struct from, lowest to highest precedence,
//   1. the field's initial value (the built-in default),
//   2. a JSON config file: --config FILE, or env PROXYKV_<SERVICE>_CONFIG,
//   3. environment variables,
//   4. command-line flags,
// and validates the result. One key has three spellings, all derived from its name:
//   key (JSON)  mask_deadline_ms
//   flag        --mask-deadline-ms
//   env         PROXYKV_TARGET_MASK_DEADLINE_MS     (PROXYKV_ + service + _ + key, upper case)
//
//   struct TargetConfig { int threads = 4; std::string fallback = "snapkv"; };
//   TargetConfig cfg;
//   service_config::ConfigSchema schema("target", "ProxyKV target service");
//   schema.add("threads", &cfg.threads, "worker threads", service_config::at_least(1))
//         .add("fallback", &cfg.fallback, "local method on mask failure", service_config::one_of({"snapkv", "full"}));
//   if (auto outcome = schema.load(argc, argv); outcome.exit) return outcome.exit_code;  // --help, --print-config
//
// Errors are start-up errors: load() throws ConfigError, whose message names the key and where its value came
// from (file path, variable or flag). Unknown keys in a file are errors; unknown PROXYKV_* variables are not
// (Kubernetes injects <SERVICE>_PORT-style variables of its own, see docs/operations.md).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"

namespace proxykv::service_config {

class ConfigError : public ProxykvError {
 public:
  explicit ConfigError(const std::string& message) : ProxykvError(invalid_argument(message)) {}
};

enum class ConfigSource { kDefault, kFile, kEnvironment, kFlag };
const char* config_source_name(ConfigSource source);  // "default" | "file" | "environment" | "flag"

// The spellings of a key. Keys are lower snake_case: [a-z][a-z0-9_]*.
std::string flag_name(std::string_view key);                           // "--mask-deadline-ms"
std::string env_name(std::string_view service, std::string_view key);  // "PROXYKV_TARGET_MASK_DEADLINE_MS"

// A validator returns an empty string for a good value, else what is wrong ("must be at least 1, got 0").
template <typename T>
using Validator = std::function<std::string(const T&)>;

// Looks an environment variable up; std::nullopt when unset. Tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_environment();

struct LoadOutcome {
  bool exit = false;  // --help or --print-config was handled: the caller should exit with exit_code
  int exit_code = 0;
};

namespace detail {

template <typename T>
struct NonDeduced {
  using type = T;
};

// Text (flag, environment) and JSON (file) codecs per supported field type. parse_* return "" or an error.
std::string parse_bool(std::string_view text, bool* out);
std::string parse_signed(std::string_view text, std::int64_t lo, std::int64_t hi, std::int64_t* out);
std::string parse_unsigned(std::string_view text, std::uint64_t hi, std::uint64_t* out);
std::string parse_double(std::string_view text, double* out);
std::vector<std::string> split_list(std::string_view text);
std::string json_signed(const nlohmann::json& value, std::int64_t lo, std::int64_t hi, std::int64_t* out);
std::string json_unsigned(const nlohmann::json& value, std::uint64_t hi, std::uint64_t* out);
std::string describe_json(const nlohmann::json& value);  // for "expected X, got <this>"

template <typename T, typename = void>
struct Codec;  // unsupported type: no definition

template <>
struct Codec<bool> {
  static constexpr const char* kTypeName = "BOOL";
  static std::string from_text(std::string_view text, bool* out) { return parse_bool(text, out); }
  static std::string from_json(const nlohmann::json& value, bool* out) {
    if (!value.is_boolean()) return "expected true or false, got " + describe_json(value);
    *out = value.get<bool>();
    return {};
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_signed_v<T>>> {
  static constexpr const char* kTypeName = "INT";
  static std::string from_text(std::string_view text, T* out) {
    std::int64_t v = 0;
    std::string error = parse_signed(text, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), &v);
    if (error.empty()) *out = static_cast<T>(v);
    return error;
  }
  static std::string from_json(const nlohmann::json& value, T* out) {
    std::int64_t v = 0;
    std::string error = json_signed(value, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), &v);
    if (error.empty()) *out = static_cast<T>(v);
    return error;
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_unsigned_v<T>>> {
  static constexpr const char* kTypeName = "UINT";
  static std::string from_text(std::string_view text, T* out) {
    std::uint64_t v = 0;
    std::string error = parse_unsigned(text, std::numeric_limits<T>::max(), &v);
    if (error.empty()) *out = static_cast<T>(v);
    return error;
  }
  static std::string from_json(const nlohmann::json& value, T* out) {
    std::uint64_t v = 0;
    std::string error = json_unsigned(value, std::numeric_limits<T>::max(), &v);
    if (error.empty()) *out = static_cast<T>(v);
    return error;
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static constexpr const char* kTypeName = "FLOAT";
  static std::string from_text(std::string_view text, T* out) {
    double v = 0;
    std::string error = parse_double(text, &v);
    if (error.empty()) *out = static_cast<T>(v);
    return error;
  }
  static std::string from_json(const nlohmann::json& value, T* out) {
    if (!value.is_number()) return "expected a number, got " + describe_json(value);
    *out = value.get<T>();
    return {};
  }
};

template <>
struct Codec<std::string> {
  static constexpr const char* kTypeName = "TEXT";
  static std::string from_text(std::string_view text, std::string* out) {
    *out = std::string(text);
    return {};
  }
  static std::string from_json(const nlohmann::json& value, std::string* out) {
    if (!value.is_string()) return "expected a string, got " + describe_json(value);
    *out = value.get<std::string>();
    return {};
  }
};

// Lists: comma-separated in flags and variables ("a,b,c"), a JSON array of strings in files.
template <>
struct Codec<std::vector<std::string>> {
  static constexpr const char* kTypeName = "LIST";
  static std::string from_text(std::string_view text, std::vector<std::string>* out) {
    *out = split_list(text);
    return {};
  }
  static std::string from_json(const nlohmann::json& value, std::vector<std::string>* out) {
    if (!value.is_array()) return "expected an array of strings, got " + describe_json(value);
    std::vector<std::string> items;
    for (const auto& item : value) {
      if (!item.is_string()) return "expected an array of strings, got an element " + describe_json(item);
      items.push_back(item.get<std::string>());
    }
    *out = std::move(items);
    return {};
  }
};

}  // namespace detail

class ConfigSchema {
 public:
  // `service`: "proxy" | "mapper" | "target" (any [a-z][a-z0-9_]*): the env prefix PROXYKV_<SERVICE>_.
  explicit ConfigSchema(std::string service, std::string description = {});
  ~ConfigSchema();
  ConfigSchema(const ConfigSchema&) = delete;
  ConfigSchema& operator=(const ConfigSchema&) = delete;

  // Declares `key`, bound to `*field`, whose current value is the default. `field` must outlive the schema.
  // Supported: bool, signed and unsigned integers, float/double, std::string, std::vector<std::string>.
  // A malformed or duplicate key is a programming error: throws std::logic_error.
  template <typename T>
  ConfigSchema& add(std::string key, T* field, std::string help,
                    typename detail::NonDeduced<Validator<T>>::type validate = {}) {
    using C = detail::Codec<T>;
    Binding binding;
    binding.type_name = C::kTypeName;
    binding.is_bool = std::is_same_v<T, bool>;
    binding.from_text = [field](std::string_view text) { return C::from_text(text, field); };
    binding.from_json = [field](const nlohmann::json& value) { return C::from_json(value, field); };
    binding.to_json = [field] { return nlohmann::json(*field); };
    if (validate) binding.validate = [field, validate = std::move(validate)] { return validate(*field); };
    return add_binding(std::move(key), std::move(help), std::move(binding));
  }

  // A check over several keys, run after every key's own validator; returns "" or what is wrong.
  ConfigSchema& add_check(std::function<std::string()> check);

  // Applies defaults < file < environment < flags, validates, and handles --help and --print-config (printing
  // to `out`). Throws ConfigError. Call once.
  LoadOutcome load(int argc, const char* const* argv, std::ostream& out, const EnvLookup& env = process_environment());
  LoadOutcome load(int argc, const char* const* argv);  // out = std::cout, the process environment

  // The effective configuration, one member per key: what --print-config prints, loadable as a --config file.
  nlohmann::json to_json() const;

  const std::string& service() const { return service_; }
  std::vector<std::string> keys() const;
  std::string env_name(std::string_view key) const { return service_config::env_name(service_, key); }
  std::string config_file_env_name() const;  // PROXYKV_<SERVICE>_CONFIG
  // Where the effective value of `key` came from, e.g. ConfigSource::kFlag and "flag --threads".
  ConfigSource source(std::string_view key) const;
  std::string origin(std::string_view key) const;

 private:
  struct Binding {
    const char* type_name = "";
    bool is_bool = false;
    std::function<std::string(std::string_view)> from_text;
    std::function<std::string(const nlohmann::json&)> from_json;
    std::function<nlohmann::json()> to_json;
    std::function<std::string()> validate;
  };
  struct Entry;

  ConfigSchema& add_binding(std::string key, std::string help, Binding binding);
  Entry& entry(std::string_view key);
  const Entry& entry(std::string_view key) const;
  void apply_file(const std::string& path);
  void apply_text(Entry& entry, ConfigSource source, const std::string& origin, const std::string& text);

  std::string service_;
  std::string description_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::function<std::string()>> checks_;
};

}  // namespace proxykv::service_config
