// The OpenAI-compatible request bodies of the target API, parsed and validated (no sockets, no LibTorch).
//
// Every error says which field is at fault and maps to one HTTP status and an OpenAI-style error body
// {"error": {"message", "type", "code"}}.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxykv/target/engine_types.h"

namespace proxykv::target {

struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";  // or "server_error", "overloaded_error", "not_found_error"
  std::string code;                            // e.g. "invalid_json", "missing_field", "unknown_method"
  std::string message;
  std::string param;  // the field at fault, when one is

  nlohmann::json to_json() const;  // {"error": {"message", "type", "code", "param"}}
};

template <typename T>
struct Parsed {
  std::optional<T> value;
  ApiError error;
  bool ok() const { return value.has_value(); }
};

// What the parsers check requests against.
struct ApiLimits {
  std::string model_name;            // the one served model
  std::vector<std::string> methods;  // compression methods accepted
  int64_t max_new_tokens = 1024;
};

// POST /v1/completions and POST /v1/contexts/{id}/completions. Fields: model (required for /v1/completions; on a
// context it may be omitted, else it must name the served model), prompt (a string, or an array of exactly one
// string), max_tokens (integer in [1, max_new_tokens], default 16), temperature (absent, null or 0: decoding
// is greedy, other values are refused), top_p (absent or 1), n (absent or 1), stream (bool),
// stream_options.include_usage (bool), kv_compression {method, keep_ratio, level, head_floor} (plain completions only).
// Other OpenAI fields are ignored.
struct CompletionApiRequest {
  std::string model;
  std::string prompt;
  GenerationOptions generation;
  bool stream = false;
  bool include_usage = false;
  std::optional<CompressionRequest> compression;
};
Parsed<CompletionApiRequest> parse_completion_request(const std::string& body, const ApiLimits& limits,
                                                      bool model_required);

// POST /v1/contexts: {"model", "context", "kv_compression": {"method", "keep_ratio", "level"?, "head_floor"?}}; a
// missing kv_compression means full.
struct ContextApiRequest {
  std::string model;
  std::string context;
  CompressionRequest compression;
};
Parsed<ContextApiRequest> parse_context_request(const std::string& body, const ApiLimits& limits);

}  // namespace proxykv::target
