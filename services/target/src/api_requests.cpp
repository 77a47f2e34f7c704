#include "proxykv/target/api_requests.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace proxykv::target {
namespace {

ApiError bad(std::string code, std::string message, std::string param = {}) {
  ApiError e;
  e.http_status = 400;
  e.code = std::move(code);
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

template <typename T>
Parsed<T> fail(ApiError e) {
  Parsed<T> p;
  p.error = std::move(e);
  return p;
}

const char* json_type(const nlohmann::json& v) {
  return v.type_name();
}

ApiError wrong_type(const std::string& field, const char* expected, const nlohmann::json& v) {
  return bad("invalid_type", "'" + field + "' must be " + expected + ", got " + json_type(v), field);
}

// The body as a JSON object, or why not.
std::optional<ApiError> parse_object(const std::string& body, nlohmann::json* out) {
  try {
    *out = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    return bad("invalid_json", std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!out->is_object()) return bad("invalid_json", "the request body must be a JSON object");
  return std::nullopt;
}

// Present and not null.
bool has(const nlohmann::json& j, const char* key) {
  return j.contains(key) && !j.at(key).is_null();
}

std::optional<ApiError> parse_model(const nlohmann::json& j, const ApiLimits& limits, bool required, std::string* out) {
  if (!has(j, "model")) {
    if (required) return bad("missing_field", "'model' is required", "model");
    *out = limits.model_name;
    return std::nullopt;
  }
  const auto& v = j.at("model");
  if (!v.is_string()) return wrong_type("model", "a string", v);
  *out = v.get<std::string>();
  if (*out != limits.model_name) {
    ApiError e;
    e.http_status = 404;
    e.type = "not_found_error";
    e.code = "model_not_found";
    e.param = "model";
    e.message = "the model '" + *out + "' does not exist (this server serves '" + limits.model_name + "')";
    return e;
  }
  return std::nullopt;
}

std::optional<ApiError> parse_compression(const nlohmann::json& v, const ApiLimits& limits, CompressionRequest* out) {
  if (!v.is_object()) return wrong_type("kv_compression", "an object", v);
  CompressionRequest c;
  if (has(v, "method")) {
    const auto& m = v.at("method");
    if (!m.is_string()) return wrong_type("kv_compression.method", "a string", m);
    c.method = m.get<std::string>();
  } else {
    return bad("missing_field", "'kv_compression.method' is required", "kv_compression.method");
  }
  if (std::find(limits.methods.begin(), limits.methods.end(), c.method) == limits.methods.end()) {
    std::string list;
    for (const auto& m : limits.methods) list += (list.empty() ? "" : ", ") + m;
    return bad("unknown_method", "unknown kv_compression.method '" + c.method + "' (available: " + list + ")",
               "kv_compression.method");
  }
  if (has(v, "keep_ratio")) {
    const auto& r = v.at("keep_ratio");
    if (!r.is_number()) return wrong_type("kv_compression.keep_ratio", "a number", r);
    c.keep_ratio = r.get<double>();
    if (!(std::isfinite(c.keep_ratio) && c.keep_ratio > 0.0 && c.keep_ratio <= 1.0)) {
      return bad("invalid_keep_ratio",
                 "'kv_compression.keep_ratio' (the fraction of KV entries kept) must lie in (0, 1], got " + r.dump(),
                 "kv_compression.keep_ratio");
    }
  } else if (c.method != "full") {
    return bad("missing_field", "'kv_compression.keep_ratio' is required for method '" + c.method + "'",
               "kv_compression.keep_ratio");
  }
  if (has(v, "level")) {
    const auto& l = v.at("level");
    if (!l.is_string()) return wrong_type("kv_compression.level", "a string", l);
    c.level = l.get<std::string>();
    // The names of scoring::parse_selection_level, spelled here to keep LibTorch's headers out of the API layer.
    if (c.level != "global" && c.level != "layer" && c.level != "head" && c.level != "token") {
      return bad("invalid_level",
                 "'kv_compression.level' must be global, layer, head or token, got '" + c.level + "'",
                 "kv_compression.level");
    }
  }
  if (has(v, "head_floor")) {
    const auto& f = v.at("head_floor");
    if (!f.is_number()) return wrong_type("kv_compression.head_floor", "a number", f);
    c.head_floor = f.get<double>();
    if (!(std::isfinite(c.head_floor) && c.head_floor >= 0.0 && c.head_floor <= 1.0)) {
      return bad("invalid_head_floor",
                 "'kv_compression.head_floor' (each KV head's share of the budget) must lie in [0, 1], got " + f.dump(),
                 "kv_compression.head_floor");
    }
    if (c.head_floor > 0.0 && c.level != "global" && c.level != "layer") {
      return bad("invalid_head_floor",
                 "'kv_compression.head_floor' applies to the global and layer levels, not to level '" + c.level + "'",
                 "kv_compression.head_floor");
    }
  }
  *out = std::move(c);
  return std::nullopt;
}

}  // namespace

nlohmann::json ApiError::to_json() const {
  nlohmann::json e = {{"message", message}, {"type", type}, {"code", code}};
  e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  return {{"error", e}};
}

Parsed<CompletionApiRequest> parse_completion_request(const std::string& body, const ApiLimits& limits,
                                                      bool model_required) {
  nlohmann::json j;
  if (auto e = parse_object(body, &j)) return fail<CompletionApiRequest>(*e);
  CompletionApiRequest r;
  if (auto e = parse_model(j, limits, model_required, &r.model)) return fail<CompletionApiRequest>(*e);

  if (!has(j, "prompt")) return fail<CompletionApiRequest>(bad("missing_field", "'prompt' is required", "prompt"));
  const auto& p = j.at("prompt");
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else if (p.is_array()) {
    return fail<CompletionApiRequest>(
        bad("invalid_prompt", "'prompt' must be a string or an array of exactly one string (no batching)", "prompt"));
  } else {
    return fail<CompletionApiRequest>(wrong_type("prompt", "a string", p));
  }

  if (has(j, "max_tokens")) {
    const auto& m = j.at("max_tokens");
    if (!m.is_number_integer()) return fail<CompletionApiRequest>(wrong_type("max_tokens", "an integer", m));
    const int64_t n = m.get<int64_t>();
    if (n < 1 || n > limits.max_new_tokens) {
      return fail<CompletionApiRequest>(
          bad("invalid_max_tokens",
              "'max_tokens' must lie in [1, " + std::to_string(limits.max_new_tokens) + "], got " + m.dump(),
              "max_tokens"));
    }
    r.generation.max_tokens = n;
  }
  if (has(j, "temperature")) {
    const auto& t = j.at("temperature");
    if (!t.is_number()) return fail<CompletionApiRequest>(wrong_type("temperature", "a number", t));
    if (t.get<double>() != 0.0) {
      return fail<CompletionApiRequest>(bad("unsupported_temperature",
                                            "only greedy decoding is supported: 'temperature' must be 0 (or absent), "
                                            "got " +
                                                t.dump(),
                                            "temperature"));
    }
  }
  if (has(j, "top_p")) {
    const auto& t = j.at("top_p");
    if (!t.is_number()) return fail<CompletionApiRequest>(wrong_type("top_p", "a number", t));
    if (t.get<double>() != 1.0) {
      return fail<CompletionApiRequest>(
          bad("unsupported_top_p", "only greedy decoding is supported: 'top_p' must be 1 (or absent)", "top_p"));
    }
  }
  if (has(j, "n")) {
    const auto& n = j.at("n");
    if (!n.is_number_integer() || n.get<int64_t>() != 1) {
      return fail<CompletionApiRequest>(bad("unsupported_n", "'n' must be 1 (or absent)", "n"));
    }
  }
  if (has(j, "stream")) {
    const auto& s = j.at("stream");
    if (!s.is_boolean()) return fail<CompletionApiRequest>(wrong_type("stream", "a boolean", s));
    r.stream = s.get<bool>();
  }
  if (has(j, "stream_options")) {
    const auto& so = j.at("stream_options");
    if (!so.is_object()) return fail<CompletionApiRequest>(wrong_type("stream_options", "an object", so));
    if (has(so, "include_usage")) {
      const auto& u = so.at("include_usage");
      if (!u.is_boolean()) {
        return fail<CompletionApiRequest>(wrong_type("stream_options.include_usage", "a boolean", u));
      }
      r.include_usage = u.get<bool>();
    }
  }
  if (has(j, "kv_compression")) {
    CompressionRequest c;
    if (auto e = parse_compression(j.at("kv_compression"), limits, &c)) return fail<CompletionApiRequest>(*e);
    r.compression = std::move(c);
  }
  Parsed<CompletionApiRequest> out;
  out.value = std::move(r);
  return out;
}

Parsed<ContextApiRequest> parse_context_request(const std::string& body, const ApiLimits& limits) {
  nlohmann::json j;
  if (auto e = parse_object(body, &j)) return fail<ContextApiRequest>(*e);
  ContextApiRequest r;
  if (auto e = parse_model(j, limits, /*required=*/true, &r.model)) return fail<ContextApiRequest>(*e);
  if (!has(j, "context")) return fail<ContextApiRequest>(bad("missing_field", "'context' is required", "context"));
  const auto& c = j.at("context");
  if (!c.is_string()) return fail<ContextApiRequest>(wrong_type("context", "a string", c));
  r.context = c.get<std::string>();
  if (has(j, "kv_compression")) {
    if (auto e = parse_compression(j.at("kv_compression"), limits, &r.compression)) return fail<ContextApiRequest>(*e);
  }
  Parsed<ContextApiRequest> out;
  out.value = std::move(r);
  return out;
}

}  // namespace proxykv::target
