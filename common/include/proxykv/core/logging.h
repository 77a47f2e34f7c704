// One spdlog logger per component ("model", "tokenizer", "proxy", ...), created on first use.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace proxykv {

// Returns the logger named `component`, creating it (stderr, shared format) if needed.
std::shared_ptr<spdlog::logger> get_logger(const std::string& component);

// Sets the level of every logger, present and future ("trace".."off"); unknown names are an error.
bool set_log_level(const std::string& level);

}  // namespace proxykv
