#include "proxykv/transport/compatibility.h"

#include <cstdint>
#include <cstdio>

namespace proxykv::transport {
namespace {

constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

void hash_bytes(uint64_t& h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= kFnvPrime;
  }
}

// Keeps the canonical form unambiguous: '\' -> "\\", newline -> "\n", and in keys '=' -> "\=".
std::string escape(const std::string& text, bool is_key) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (is_key && c == '=') {
      out += "\\=";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string compatibility_hash(const std::map<std::string, std::string>& fields) {
  uint64_t h = kFnvOffsetBasis;
  hash_bytes(h, "proxykv-compat-v1\n");
  for (const auto& [key, value] : fields) {  // std::map iterates in key order
    hash_bytes(h, escape(key, true));
    hash_bytes(h, "=");
    hash_bytes(h, escape(value, false));
    hash_bytes(h, "\n");
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return std::string("fnv1a64:") + hex;
}

}  // namespace proxykv::transport
