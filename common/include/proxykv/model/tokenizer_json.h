// Typed reading of an untrusted tokenizer.json: every error names the file and the key path at fault
// ("tokenizer.json: model.vocab['foo'] must be an integer"), and nothing throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "proxykv/core/status.h"

namespace proxykv::tok {

using Json = nlohmann::json;

// Where a value sits: the origin (file name) and the key path inside the document.
class JsonPath {
 public:
  JsonPath(std::string origin, std::string path) : origin_(std::move(origin)), path_(std::move(path)) {}

  JsonPath key(std::string_view name) const;    // path.name
  JsonPath index(std::size_t i) const;          // path[i]
  JsonPath entry(std::string_view name) const;  // path['name'], for map entries such as vocab tokens
  const std::string& path() const { return path_; }
  const std::string& origin() const { return origin_; }

  // "<origin>: <path> <what>" as INVALID_ARGUMENT.
  Status invalid(std::string_view what) const;
  // "<origin>: <path> '<value>' is not supported" as UNIMPLEMENTED.
  Status unsupported(std::string_view value) const;

 private:
  std::string origin_;
  std::string path_;
};

// Readers of object members. A member that is absent or null yields the fallback; a member of the wrong type
// is an error naming it.
Result<std::string> read_string(const Json& object, const JsonPath& at, std::string_view name, std::string fallback);
Result<bool> read_bool(const Json& object, const JsonPath& at, std::string_view name, bool fallback);
Result<int64_t> read_int(const Json& object, const JsonPath& at, std::string_view name, int64_t fallback);
// A member that must be present (and not null).
Result<std::string> require_string(const Json& object, const JsonPath& at, std::string_view name);
Result<int64_t> require_int(const Json& object, const JsonPath& at, std::string_view name);
// The member itself, or an error when it is absent, null or not of the kind `expected` ("an object", "an array").
Result<const Json*> require_member(const Json& object, const JsonPath& at, std::string_view name, Json::value_t kind,
                                   std::string_view expected);

// Type name for messages ("a string", "an array", ...).
const char* json_type_phrase(const Json& value);

}  // namespace proxykv::tok
