// Reading Prometheus text exposition in tests: the value of one sample, found by name and labels.
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace proxykv::telemetry::testing {

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

// The value of the first sample line `name{...} value` whose labels include every pair of `labels`.
inline std::optional<double> sample_value(const std::string& text, const std::string& name, const LabelPairs& labels) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, space);
    const std::size_t brace = series.find('{');
    if (series.substr(0, brace) != name) continue;
    const std::string label_text = brace == std::string::npos ? "" : series.substr(brace);
    bool all = true;
    for (const auto& [key, value] : labels) {
      const std::string pair = key + "=\"" + value + "\"";
      if (label_text.find("{" + pair) == std::string::npos && label_text.find("," + pair) == std::string::npos) {
        all = false;
      }
    }
    if (all) return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

// The `le` values of a histogram's bucket lines for the series with `labels`, in order (+Inf as "+Inf").
inline std::vector<std::string> bucket_bounds(const std::string& text, const std::string& name,
                                              const LabelPairs& labels) {
  std::vector<std::string> bounds;
  std::istringstream lines(text);
  std::string line;
  const std::string prefix = name + "_bucket{";
  while (std::getline(lines, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    bool all = true;
    for (const auto& [key, value] : labels) {
      if (line.find(key + "=\"" + value + "\"") == std::string::npos) all = false;
    }
    if (!all) continue;
    const std::size_t le = line.find("le=\"");
    if (le == std::string::npos) continue;
    const std::size_t end = line.find('"', le + 4);
    bounds.push_back(line.substr(le + 4, end - le - 4));
  }
  return bounds;
}

}  // namespace proxykv::telemetry::testing
