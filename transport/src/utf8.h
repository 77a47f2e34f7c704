// UTF-8 hygiene for strings that go into protobuf `string` fields: proto3 parsers refuse a message whose
// string fields are not valid UTF-8, so an error reply quoting hostile bytes would itself be undecodable.
#pragma once

#include <string>
#include <string_view>

namespace proxykv::transport {

// `text` with every byte that is not part of a valid UTF-8 sequence replaced by '?'.
std::string valid_utf8(std::string_view text);

// The longest prefix of the valid UTF-8 `text` that has at most `max_bytes` bytes and does not split a
// character.
std::string truncate_utf8(const std::string& text, size_t max_bytes);

}  // namespace proxykv::transport
