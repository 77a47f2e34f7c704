#include "proxykv/model/tokenizer_json.h"

namespace proxykv::tok {
namespace {

// Keys quoted in messages are data from the file: keep them short and printable.
std::string quoted_for_message(std::string_view text) {
  constexpr std::size_t kMaxLength = 48;
  std::string out;
  for (const char c : text.substr(0, kMaxLength)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    } else {
      out += c;
    }
  }
  if (text.size() > kMaxLength) out += "...";
  return out;
}

const Json* find_member(const Json& object, std::string_view name) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(std::string(name));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

bool is_integer(const Json& value) {
  return value.is_number_integer() || value.is_number_unsigned();
}

}  // namespace

JsonPath JsonPath::key(std::string_view name) const {
  return JsonPath(origin_, path_.empty() ? std::string(name) : path_ + "." + std::string(name));
}

JsonPath JsonPath::index(std::size_t i) const {
  return JsonPath(origin_, path_ + "[" + std::to_string(i) + "]");
}

JsonPath JsonPath::entry(std::string_view name) const {
  return JsonPath(origin_, path_ + "['" + quoted_for_message(name) + "']");
}

Status JsonPath::invalid(std::string_view what) const {
  return invalid_argument(origin_ + ": " + (path_.empty() ? "document" : path_) + " " + std::string(what));
}

Status JsonPath::unsupported(std::string_view value) const {
  return unimplemented(origin_ + ": " + path_ + " '" + quoted_for_message(value) + "' is not supported");
}

const char* json_type_phrase(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return "an unknown value";
  }
}

Result<std::string> read_string(const Json& object, const JsonPath& at, std::string_view name, std::string fallback) {
  const Json* member = find_member(object, name);
  if (member == nullptr) return fallback;
  if (!member->is_string()) {
    return at.key(name).invalid(std::string("must be a string, not ") + json_type_phrase(*member));
  }
  return member->get<std::string>();
}

Result<bool> read_bool(const Json& object, const JsonPath& at, std::string_view name, bool fallback) {
  const Json* member = find_member(object, name);
  if (member == nullptr) return fallback;
  if (!member->is_boolean()) {
    return at.key(name).invalid(std::string("must be a boolean, not ") + json_type_phrase(*member));
  }
  return member->get<bool>();
}

Result<int64_t> read_int(const Json& object, const JsonPath& at, std::string_view name, int64_t fallback) {
  const Json* member = find_member(object, name);
  if (member == nullptr) return fallback;
  if (!is_integer(*member)) {
    return at.key(name).invalid(std::string("must be an integer, not ") + json_type_phrase(*member));
  }
  if (member->is_number_unsigned() && member->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return at.key(name).invalid("is out of range");
  }
  return member->get<int64_t>();
}

Result<std::string> require_string(const Json& object, const JsonPath& at, std::string_view name) {
  PROXYKV_ASSIGN_OR_RETURN(const Json* member, require_member(object, at, name, Json::value_t::string, "a string"));
  return member->get<std::string>();
}

Result<int64_t> require_int(const Json& object, const JsonPath& at, std::string_view name) {
  if (find_member(object, name) == nullptr) return at.key(name).invalid("is missing");
  return read_int(object, at, name, 0);
}

Result<const Json*> require_member(const Json& object, const JsonPath& at, std::string_view name, Json::value_t kind,
                                   std::string_view expected) {
  if (!object.is_object()) return at.invalid(std::string("must be an object, not ") + json_type_phrase(object));
  const Json* member = find_member(object, name);
  if (member == nullptr) return at.key(name).invalid("is missing");
  if (member->type() != kind) {
    return at.key(name).invalid("must be " + std::string(expected) + ", not " + json_type_phrase(*member));
  }
  return member;
}

}  // namespace proxykv::tok
