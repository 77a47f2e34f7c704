// Validators for ConfigSchema::add(): each returns "" for a good value, else what is wrong with it; the schema
// adds the key and the value's source to the message.
#pragma once

#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "proxykv/service_config/config_schema.h"

namespace proxykv::service_config {

template <typename T>
Validator<T> at_least(T lo) {
  return [lo](const T& v) {
    if (v >= lo) return std::string();
    std::ostringstream out;
    out << "must be at least " << lo << ", got " << v;
    return out.str();
  };
}

template <typename T>
Validator<T> in_range(T lo, T hi) {
  return [lo, hi](const T& v) {
    if (v >= lo && v <= hi) return std::string();
    std::ostringstream out;
    out << "must be in [" << lo << ", " << hi << "], got " << v;
    return out.str();
  };
}

// A LibTorch device name: "cpu", "cuda" or "cuda:N" (whether it exists is checked where the model loads).
inline Validator<std::string> device_name() {
  return [](const std::string& d) {
    if (d == "cpu" || d == "cuda" || d.rfind("cuda:", 0) == 0) return std::string();
    return "must be cpu, cuda or cuda:N; got \"" + d + "\"";
  };
}

inline Validator<std::string> one_of(std::initializer_list<const char*> choices) {
  std::vector<std::string> allowed(choices.begin(), choices.end());
  return [allowed](const std::string& v) {
    for (const auto& choice : allowed) {
      if (v == choice) return std::string();
    }
    std::string message = "must be one of";
    for (std::size_t i = 0; i < allowed.size(); ++i) message += (i == 0 ? " " : ", ") + allowed[i];
    return message + "; got \"" + v + "\"";
  };
}

inline Validator<std::string> non_empty() {
  return [](const std::string& v) { return v.empty() ? std::string("must not be empty") : std::string(); };
}

}  // namespace proxykv::service_config
