// Framing of a Message into ZeroMQ frames and back (DESIGN.md §6, docs/protocol.md):
//   frame 0   "PKV1": protocol tag and version
//   frame 1   serialized proxykv.v1.Envelope
//   frame 2+i raw bytes of Envelope.tensors[i]
// decode() treats its input as hostile: every size is checked before it is used, nothing it is given can make
// it crash or allocate without bound, and each refusal says which check failed (v1::WireError).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zmq_addon.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"
#include "proxykv/v1/control.pb.h"

namespace proxykv::transport {

inline constexpr uint32_t kProtocolVersion = 1;
// Frame 0 is kProtocolTagPrefix followed by the version in decimal: "PKV1".
inline constexpr std::string_view kProtocolTagPrefix = "PKV";

std::string protocol_tag(uint32_t version);
// The versions this build decodes (today: {1}). Sent in ErrorReply and Handshake.
std::vector<uint32_t> supported_protocol_versions();

// What decode() accepts. The defaults fit a 1M-token context on a 64-head proxy in float32.
struct CodecLimits {
  size_t max_tensors = 64;
  size_t max_rank = 8;
  size_t max_envelope_bytes = size_t{64} << 20;         // token ids of a 1M-token context are ~5 MB as varints
  uint64_t max_tensor_bytes = uint64_t{2} << 30;        // one frame
  uint64_t max_total_tensor_bytes = uint64_t{4} << 30;  // all frames of one message
  // A descriptor without a checksum is refused unless this is false.
  bool require_checksum = true;
};

struct EncodeOptions {
  // CRC-32 of every tensor frame (~1 GB/s with zlib); off only where the bytes were already checked.
  bool checksum = true;
  // One descriptor per tensor of the message, in order, written as given: a caller that already described a
  // tensor (and computed its CRC-32 once for a DataPlaneRef) does not pay for a second CRC. Name, dtype, shape
  // and byte length must match the tensor (INVALID_ARGUMENT otherwise); the checksum is trusted.
  const std::vector<v1::TensorDescriptor>* descriptors = nullptr;
};

// The descriptor encode() writes for `tensor`: name, dtype, shape, byte length and, with `checksum`, CRC-32.
// Also what a DataPlaneRef carries for a tensor sent over the data plane.
v1::TensorDescriptor describe_tensor(const WireTensor& tensor, bool checksum = true);

// Serializes `message` into frames. Fails (INVALID_ARGUMENT) when a tensor's bytes do not match its dtype and
// shape, names repeat, or no body is set: the receiver would refuse the message anyway.
Result<zmq::multipart_t> encode(const Message& message, const EncodeOptions& options = {});

// What decode() could learn about a message it refused, so that the error reply reaches the right caller.
struct DecodeDiagnostics {
  v1::WireError wire_error = v1::WIRE_ERROR_UNSPECIFIED;
  uint32_t peer_version = 0;  // the version in frame 0, when it parsed
  std::string request_id;     // from the envelope, when it parsed
  uint64_t correlation_id = 0;
};

// Validates and decodes `frames`, moving the tensor frames into the result (no copy); `frames` is left
// empty. Error codes: UNIMPLEMENTED for an unsupported protocol version, OUT_OF_RANGE for exceeded limits,
// INVALID_ARGUMENT for everything else; `diagnostics`, when given, is filled on success and on failure.
Result<Message> decode(zmq::multipart_t& frames, const CodecLimits& limits = {},
                       DecodeDiagnostics* diagnostics = nullptr);

// Routes protobuf's own log lines (it prints e.g. "String field contains invalid UTF-8" for a hostile envelope)
// to the "transport" spdlog logger at debug level instead of stderr, so that bad input cannot flood the logs.
// Process-wide; call once at start-up.
void route_protobuf_logs_to_spdlog();

// Structural checks of a body against the message's tensors (features tensor present with the declared shape,
// mask indices in range and ascending, ...). decode() runs it; exposed for messages built in-process.
Status validate_body(const Message& message);

}  // namespace proxykv::transport
