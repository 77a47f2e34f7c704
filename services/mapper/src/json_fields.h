// Private helpers of the mapper library for reading its JSON configs (not installed, not a public header).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"

namespace proxykv::mapper::detail {

// Refuses keys of `j` that `known` (an object with every accepted key) does not have: a typo in a config must
// not silently fall back to a default.
inline Status refuse_unknown_keys(const nlohmann::json& j, const std::string& origin, const nlohmann::json& known) {
  for (const auto& item : j.items()) {
    if (!known.contains(item.key())) return invalid_argument(origin + ": unknown key '" + item.key() + "'");
  }
  return Status::ok();
}

// Reads j[key] into `out` when present (throws nlohmann::json::exception on a type mismatch).
template <typename T>
void read_field(const nlohmann::json& j, const char* key, T& out) {
  if (j.contains(key)) out = j.at(key).get<T>();
}

}  // namespace proxykv::mapper::detail
