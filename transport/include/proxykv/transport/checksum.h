// Checksums of tensor frames (TensorDescriptor.checksum).
#pragma once

#include <cstddef>
#include <cstdint>

namespace proxykv::transport {

// CRC-32, IEEE 802.3 polynomial (zlib's crc32): crc32("123456789") == 0xCBF43926.
uint32_t crc32(const void* data, size_t size);

}  // namespace proxykv::transport
