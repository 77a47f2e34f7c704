#include "proxykv/service_config/config_schema.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <CLI/CLI.hpp>

namespace proxykv::service_config {
namespace {

bool is_key(std::string_view key) {
  if (key.empty() || !(key[0] >= 'a' && key[0] <= 'z')) return false;
  return std::all_of(key.begin(), key.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// Keys that every schema has, not bindable: config (the file itself), print_config, help.
constexpr std::string_view kReservedKeys[] = {"config", "print_config", "help"};

}  // namespace

const char* config_source_name(ConfigSource source) {
  switch (source) {
    case ConfigSource::kDefault: return "default";
    case ConfigSource::kFile: return "file";
    case ConfigSource::kEnvironment: return "environment";
    case ConfigSource::kFlag: return "flag";
  }
  return "default";
}

std::string flag_name(std::string_view key) {
  std::string out = "--";
  for (const char c : key) out += c == '_' ? '-' : c;
  return out;
}

std::string env_name(std::string_view service, std::string_view key) {
  return "PROXYKV_" + upper(service) + "_" + upper(key);
}

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());  // the one place configuration reads the environment
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

namespace detail {

std::string parse_bool(std::string_view text, bool* out) {
  std::string lowered(text);
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lowered == "true" || lowered == "1" || lowered == "yes" || lowered == "on") {
    *out = true;
    return {};
  }
  if (lowered == "false" || lowered == "0" || lowered == "no" || lowered == "off") {
    *out = false;
    return {};
  }
  return "expected true or false, got " + in_quotes(text);
}

std::string parse_signed(std::string_view text, std::int64_t lo, std::int64_t hi, std::int64_t* out) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ptr != end || ec == std::errc::invalid_argument)
    return "expected an integer, got " + in_quotes(text);
  if (ec == std::errc::result_out_of_range || v < lo || v > hi) {
    return "integer " + std::string(text) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  }
  *out = v;
  return {};
}

std::string parse_unsigned(std::string_view text, std::uint64_t hi, std::uint64_t* out) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ptr != end || ec == std::errc::invalid_argument) {
    return "expected a non-negative integer, got " + in_quotes(text);
  }
  if (ec == std::errc::result_out_of_range || v > hi) {
    return "integer " + std::string(text) + " is out of range [0, " + std::to_string(hi) + "]";
  }
  *out = v;
  return {};
}

std::string parse_double(std::string_view text, double* out) {
  const std::string copy(text);  // strtod needs a terminator; from_chars for double is not in GCC 10
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || std::isspace(static_cast<unsigned char>(copy[0]))) {
    return "expected a number, got " + in_quotes(text);
  }
  if (errno == ERANGE) return "number " + copy + " is out of range";
  *out = v;
  return {};
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  if (text.empty()) return items;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    items.emplace_back(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return items;
}

std::string describe_json(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return std::string(value.type_name()) + " " + text;
}

std::string json_signed(const nlohmann::json& value, std::int64_t lo, std::int64_t hi, std::int64_t* out) {
  if (!value.is_number_integer()) return "expected an integer, got " + describe_json(value);
  if (value.is_number_unsigned() && value.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) {
    return "integer " + value.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  }
  const std::int64_t v = value.get<std::int64_t>();
  if (v < lo || v > hi) {
    return "integer " + value.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  }
  *out = v;
  return {};
}

std::string json_unsigned(const nlohmann::json& value, std::uint64_t hi, std::uint64_t* out) {
  if (!value.is_number_integer()) return "expected a non-negative integer, got " + describe_json(value);
  if (!value.is_number_unsigned() && value.get<std::int64_t>() < 0) {
    return "expected a non-negative integer, got " + value.dump();
  }
  const std::uint64_t v = value.get<std::uint64_t>();
  if (v > hi) return "integer " + value.dump() + " is out of range [0, " + std::to_string(hi) + "]";
  *out = v;
  return {};
}

}  // namespace detail

struct ConfigSchema::Entry {
  std::string key;
  std::string help;
  Binding binding;
  std::string default_json;  // the built-in default, for --help
  ConfigSource source = ConfigSource::kDefault;
  std::string origin = "default";
  std::string flag_text;  // CLI11 writes the flag's value here
};

ConfigSchema::ConfigSchema(std::string service, std::string description)
    : service_(std::move(service)), description_(std::move(description)) {
  if (!is_key(service_)) throw std::logic_error("config schema: bad service name " + in_quotes(service_));
}

ConfigSchema::~ConfigSchema() = default;

ConfigSchema& ConfigSchema::add_binding(std::string key, std::string help, Binding binding) {
  if (!is_key(key)) throw std::logic_error("config schema " + service_ + ": bad key " + in_quotes(key));
  for (const std::string_view reserved : kReservedKeys) {
    if (key == reserved)
      throw std::logic_error("config schema " + service_ + ": key " + in_quotes(key) + " is reserved");
  }
  for (const auto& e : entries_) {
    if (e->key == key)
      throw std::logic_error("config schema " + service_ + ": key " + in_quotes(key) + " declared twice");
  }
  auto e = std::make_unique<Entry>();
  e->key = std::move(key);
  e->help = std::move(help);
  e->binding = std::move(binding);
  e->default_json = e->binding.to_json().dump();
  entries_.push_back(std::move(e));
  return *this;
}

ConfigSchema& ConfigSchema::add_check(std::function<std::string()> check) {
  checks_.push_back(std::move(check));
  return *this;
}

ConfigSchema::Entry& ConfigSchema::entry(std::string_view key) {
  for (auto& e : entries_) {
    if (e->key == key) return *e;
  }
  throw std::out_of_range("config schema " + service_ + ": no key " + in_quotes(key));
}

const ConfigSchema::Entry& ConfigSchema::entry(std::string_view key) const {
  return const_cast<ConfigSchema*>(this)->entry(key);
}

std::vector<std::string> ConfigSchema::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->key);
  return out;
}

std::string ConfigSchema::config_file_env_name() const {
  return service_config::env_name(service_, "config");
}

ConfigSource ConfigSchema::source(std::string_view key) const {
  return entry(key).source;
}

std::string ConfigSchema::origin(std::string_view key) const {
  return entry(key).origin;
}

nlohmann::json ConfigSchema::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries_) out[e->key] = e->binding.to_json();
  return out;
}

void ConfigSchema::apply_file(const std::string& path) {
  const std::string where = "config file " + in_quotes(path);
  std::ifstream in(path);
  if (!in) throw ConfigError(where + ": cannot be opened");
  nlohmann::json document;
  try {
    document = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(where + ": not valid JSON: " + e.what());
  }
  if (!document.is_object()) throw ConfigError(where + ": expected a JSON object of keys, got " + document.type_name());
  for (const auto& [key, value] : document.items()) {
    Entry* target = nullptr;
    for (auto& e : entries_) {
      if (e->key == key) target = e.get();
    }
    if (target == nullptr) {
      std::string known;
      for (const auto& e : entries_) known += (known.empty() ? "" : ", ") + e->key;
      throw ConfigError(where + ": unknown key " + in_quotes(key) + " (keys of " + service_ + ": " + known + ")");
    }
    const std::string error = target->binding.from_json(value);
    if (!error.empty()) throw ConfigError(where + ", key " + in_quotes(key) + ": " + error);
    target->source = ConfigSource::kFile;
    target->origin = where;
  }
}

void ConfigSchema::apply_text(Entry& e, ConfigSource source, const std::string& origin, const std::string& text) {
  const std::string error = e.binding.from_text(text);
  if (!error.empty()) throw ConfigError(origin + " (key " + in_quotes(e.key) + "): " + error);
  e.source = source;
  e.origin = origin;
}

LoadOutcome ConfigSchema::load(int argc, const char* const* argv) {
  return load(argc, argv, std::cout);
}

LoadOutcome ConfigSchema::load(int argc, const char* const* argv, std::ostream& out, const EnvLookup& env) {
  CLI::App app(description_, "proxykv-" + service_);
  app.get_formatter()->column_width(36);
  std::string config_path;
  bool print_config = false;
  app.add_option("--config", config_path, "JSON config file (env " + config_file_env_name() + ")")->type_name("FILE");
  app.add_flag("--print-config", print_config, "print the effective configuration as JSON and exit");
  std::vector<CLI::Option*> options;
  for (auto& e : entries_) {
    const std::string help = e->help + " (default " + e->default_json + "; env " + env_name(e->key) + ")";
    CLI::Option* option = app.add_option(flag_name(e->key), e->flag_text, help)->type_name(e->binding.type_name);
    if (e->binding.is_bool) option->expected(0, 1);  // a bare --flag means true
    options.push_back(option);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return {true, 0};
  } catch (const CLI::CallForAllHelp&) {
    out << app.help();
    return {true, 0};
  } catch (const CLI::ParseError& e) {
    throw ConfigError("command line of proxykv-" + service_ + ": " + e.what());
  }

  // 2. file
  if (config_path.empty()) {
    if (auto from_env = env(config_file_env_name())) config_path = *from_env;
  }
  if (!config_path.empty()) apply_file(config_path);
  // 3. environment
  for (auto& e : entries_) {
    const std::string name = env_name(e->key);
    if (auto value = env(name)) apply_text(*e, ConfigSource::kEnvironment, "environment variable " + name, *value);
  }
  // 4. flags
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = *entries_[i];
    if (options[i]->count() == 0) continue;
    const std::string text = e.binding.is_bool && e.flag_text.empty() ? "true" : e.flag_text;
    apply_text(e, ConfigSource::kFlag, "flag " + flag_name(e.key), text);
  }
  // Validation of the effective values, naming where each came from.
  std::vector<std::string> problems;
  for (auto& e : entries_) {
    if (!e->binding.validate) continue;
    const std::string error = e->binding.validate();
    if (!error.empty()) problems.push_back("key " + in_quotes(e->key) + " (from " + e->origin + "): " + error);
  }
  for (const auto& check : checks_) {
    const std::string error = check();
    if (!error.empty()) problems.push_back("configuration of proxykv-" + service_ + ": " + error);
  }

  if (print_config) {
    // Printed even when it would not start (e.g. a required key still empty): the output is the template of a
    // config file; what is missing goes to stderr.
    out << to_json().dump(2) << '\n';
    for (const auto& problem : problems) std::cerr << "proxykv-" << service_ << ": not startable yet: " << problem << "\n";
    return {true, 0};
  }
  if (!problems.empty()) throw ConfigError(problems.front());
  return {};
}

}  // namespace proxykv::service_config
