#include "proxykv/target/context_cache.h"

#include <random>

namespace proxykv::target {

std::string random_context_id() {
  // std::random_device is the OS's entropy source on Linux (/dev/urandom or RDRAND): ids are not predictable
  // from earlier ones, unlike a seeded PRNG's.
  static thread_local std::random_device device;
  static const char kHex[] = "0123456789abcdef";
  std::string id = "ctx_";
  for (int word = 0; word < 4; ++word) {
    uint32_t bits = device();
    for (int i = 0; i < 8; ++i) {
      id.push_back(kHex[bits & 0xf]);
      bits >>= 4;
    }
  }
  return id;
}

}  // namespace proxykv::target
