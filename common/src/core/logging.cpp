#include "proxykv/core/logging.h"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace proxykv {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

spdlog::level::level_enum& default_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

}  // namespace

std::shared_ptr<spdlog::logger> get_logger(const std::string& component) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  logger->set_level(default_level());
  return logger;
}

bool set_log_level(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  std::lock_guard<std::mutex> lock(registry_mutex());
  default_level() = parsed;
  spdlog::set_level(parsed);
  return true;
}

}  // namespace proxykv
