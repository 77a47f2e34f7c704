#include "proxykv/transport/checksum.h"

#include <zlib.h>

namespace proxykv::transport {

uint32_t crc32(const void* data, size_t size) {
  uLong crc = ::crc32_z(0L, Z_NULL, 0);
  if (size == 0) return static_cast<uint32_t>(crc);
  return static_cast<uint32_t>(::crc32_z(crc, static_cast<const Bytef*>(data), size));
}

}  // namespace proxykv::transport
