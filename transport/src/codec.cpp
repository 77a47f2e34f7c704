#include "proxykv/transport/codec.h"

#include <climits>
#include <set>
#include <string_view>

#include "proxykv/transport/checksum.h"
#include "utf8.h"

namespace proxykv::transport {
namespace {

// Longest tag decode() looks at: "PKV" + 9 digits. Anything longer is not a tag.
constexpr size_t kMaxTagLength = 12;
// Request ids echoed into diagnostics (and from there into logs and error replies) are cut to this length.
constexpr size_t kMaxDiagnosticIdLength = 128;

bool is_float_dtype(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF64;
}

// product(shape) * element_size, refusing negative dimensions and overflow.
template <typename Dims>
Status checked_byte_size(const Dims& shape, size_t element_size, uint64_t* bytes) {
  uint64_t elements = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return invalid_argument("negative dimension " + std::to_string(dim));
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements)) {
      return out_of_range("element count overflows 64 bits");
    }
  }
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(element_size), bytes)) {
    return out_of_range("byte size overflows 64 bits");
  }
  return Status::ok();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Parses "PKV<digits>"; nullopt when `frame` is not a tag at all.
std::optional<uint32_t> parse_tag(const zmq::message_t& frame) {
  std::string_view tag(static_cast<const char*>(frame.data()), frame.size());
  if (tag.size() <= kProtocolTagPrefix.size() || tag.size() > kMaxTagLength) return std::nullopt;
  if (tag.substr(0, kProtocolTagPrefix.size()) != kProtocolTagPrefix) return std::nullopt;
  uint64_t version = 0;
  for (char c : tag.substr(kProtocolTagPrefix.size())) {
    if (c < '0' || c > '9') return std::nullopt;
    version = version * 10 + static_cast<uint64_t>(c - '0');
  }
  if (version > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(version);
}

Status check_ascending_below(const google::protobuf::RepeatedField<uint32_t>& indices, uint32_t tokens, uint32_t layer,
                             uint32_t head) {
  int64_t previous = -1;
  for (uint32_t index : indices) {
    if (index >= tokens || static_cast<int64_t>(index) <= previous) {
      return invalid_argument("prune mask: kept indices of layer " + std::to_string(layer) + " head " +
                              std::to_string(head) + " must be ascending and below tokens=" + std::to_string(tokens));
    }
    previous = index;
  }
  return Status::ok();
}

Status validate_proxy_features(const Message& message) {
  const v1::ProxyFeatures& f = message.envelope.proxy_features();
  const bool inline_tensor = !f.features_tensor().empty();
  if (inline_tensor == f.has_features_ref()) {
    return invalid_argument("proxy features: exactly one of features_tensor and features_ref must be set");
  }
  if (f.channel_names_size() != 0 && static_cast<uint64_t>(f.channel_names_size()) != f.channels()) {
    return invalid_argument("proxy features: " + std::to_string(f.channel_names_size()) + " channel names for " +
                            std::to_string(f.channels()) + " channels");
  }
  // uint32 x uint32 fits in int64 without overflow.
  const std::vector<int64_t> expected = {static_cast<int64_t>(f.channels()),
                                         static_cast<int64_t>(f.proxy_layers()) * f.proxy_kv_heads(),
                                         static_cast<int64_t>(f.tokens())};
  std::vector<int64_t> shape;
  std::string dtype;
  if (inline_tensor) {
    const WireTensor* t = message.find_tensor(f.features_tensor());
    if (t == nullptr) return invalid_argument("proxy features: no tensor named '" + f.features_tensor() + "'");
    if (!is_float_dtype(t->dtype)) {
      return invalid_argument(std::string("proxy features: tensor dtype ") + dtype_name(t->dtype) +
                              " is not a floating type");
    }
    shape = t->shape;
  } else {
    const v1::DataPlaneRef& ref = f.features_ref();
    if (ref.transport().empty() || ref.key().empty()) {
      return invalid_argument("proxy features: features_ref needs a transport and a key");
    }
    shape.assign(ref.tensor().shape().begin(), ref.tensor().shape().end());
  }
  if (shape != expected) {
    return invalid_argument("proxy features: tensor shape " + shape_string(shape) +
                            " is not [C, L_p*H_p, T] = " + shape_string(expected));
  }
  return Status::ok();
}

Status validate_prune_mask(const Message& message) {
  const v1::PruneMask& m = message.envelope.prune_mask();
  const uint64_t rows = static_cast<uint64_t>(m.target_layers()) * m.target_kv_heads();
  switch (m.encoding()) {
    case v1::MASK_ENCODING_KEPT_INDICES: {
      if (static_cast<uint64_t>(m.heads_size()) != rows) {
        return invalid_argument("prune mask: " + std::to_string(m.heads_size()) + " heads for " +
                                std::to_string(m.target_layers()) + " layers x " + std::to_string(m.target_kv_heads()) +
                                " KV heads");
      }
      // rows == heads_size(), which the envelope size bounds: this allocation is bounded too.
      std::vector<bool> seen(rows, false);
      for (const v1::HeadKeptIndices& head : m.heads()) {
        if (head.layer() >= m.target_layers() || head.kv_head() >= m.target_kv_heads()) {
          return invalid_argument("prune mask: head (" + std::to_string(head.layer()) + ", " +
                                  std::to_string(head.kv_head()) + ") out of range");
        }
        const uint64_t row = static_cast<uint64_t>(head.layer()) * m.target_kv_heads() + head.kv_head();
        if (seen[row]) {
          return invalid_argument("prune mask: head (" + std::to_string(head.layer()) + ", " +
                                  std::to_string(head.kv_head()) + ") listed twice");
        }
        seen[row] = true;
        PROXYKV_RETURN_IF_ERROR(check_ascending_below(head.token_indices(), m.tokens(), head.layer(), head.kv_head()));
      }
      return Status::ok();
    }
    case v1::MASK_ENCODING_PACKED_BITMASK: {
      const WireTensor* t = message.find_tensor(m.bitmask_tensor());
      if (t == nullptr) return invalid_argument("prune mask: no tensor named '" + m.bitmask_tensor() + "'");
      const std::vector<int64_t> expected = {static_cast<int64_t>(rows), (static_cast<int64_t>(m.tokens()) + 7) / 8};
      if (t->dtype != DType::kU8 || t->shape != expected) {
        return invalid_argument(std::string("prune mask: bitmask must be U8 ") + shape_string(expected) + ", got " +
                                dtype_name(t->dtype) + " " + shape_string(t->shape));
      }
      return Status::ok();
    }
    default: return invalid_argument("prune mask: unknown encoding " + std::to_string(static_cast<int>(m.encoding())));
  }
}

}  // namespace

std::string protocol_tag(uint32_t version) {
  return std::string(kProtocolTagPrefix) + std::to_string(version);
}

std::vector<uint32_t> supported_protocol_versions() {
  return {kProtocolVersion};
}

Status validate_body(const Message& message) {
  switch (message.envelope.body_case()) {
    case v1::Envelope::kProxyFeatures: return validate_proxy_features(message);
    case v1::Envelope::kPruneMask: return validate_prune_mask(message);
    case v1::Envelope::kTensorBlob:
      if (message.envelope.tensor_blob().key().empty()) return invalid_argument("tensor blob: empty key");
      if (message.tensors.size() != 1) {
        return invalid_argument("tensor blob: expected exactly 1 tensor, got " +
                                std::to_string(message.tensors.size()));
      }
      return Status::ok();
    case v1::Envelope::BODY_NOT_SET: return invalid_argument("message has no body");
    default: return Status::ok();
  }
}

v1::TensorDescriptor describe_tensor(const WireTensor& tensor, bool checksum) {
  v1::TensorDescriptor d;
  d.set_name(tensor.name);
  d.set_dtype(dtype_name(tensor.dtype));
  for (int64_t dim : tensor.shape) d.add_shape(dim);
  d.set_byte_length(tensor.data.size());
  if (checksum) {
    d.set_checksum_type(v1::CHECKSUM_TYPE_CRC32);
    d.set_checksum(crc32(tensor.data.data(), tensor.data.size()));
  }
  return d;
}

Result<zmq::multipart_t> encode(const Message& message, const EncodeOptions& options) {
  const v1::MessageType type = message_type_of(message.envelope);
  if (type == v1::MESSAGE_TYPE_UNSPECIFIED) return invalid_argument("encode: the message has no body");
  if (Status s = validate_body(message); !s.is_ok()) return invalid_argument("encode: " + s.message());

  v1::Envelope envelope = message.envelope;
  envelope.set_protocol_version(kProtocolVersion);
  envelope.set_type(type);
  envelope.clear_tensors();
  std::set<std::string_view> names;
  if (options.descriptors && options.descriptors->size() != message.tensors.size()) {
    return invalid_argument("encode: " + std::to_string(options.descriptors->size()) + " descriptors for " +
                            std::to_string(message.tensors.size()) + " tensors");
  }
  for (size_t i = 0; i < message.tensors.size(); ++i) {
    const WireTensor& t = message.tensors[i];
    if (t.name.empty()) return invalid_argument("encode: a tensor has no name");
    if (!names.insert(t.name).second) return invalid_argument("encode: tensor name '" + t.name + "' repeats");
    uint64_t bytes = 0;
    if (Status s = checked_byte_size(t.shape, dtype_size(t.dtype), &bytes); !s.is_ok()) {
      return invalid_argument("encode: tensor '" + t.name + "': " + s.message());
    }
    if (bytes != t.data.size()) {
      return invalid_argument("encode: tensor '" + t.name + "' " + dtype_name(t.dtype) + " " + shape_string(t.shape) +
                              " needs " + std::to_string(bytes) + " bytes, has " + std::to_string(t.data.size()));
    }
    if (options.descriptors) {
      const v1::TensorDescriptor& d = (*options.descriptors)[i];
      if (d.name() != t.name || d.dtype() != dtype_name(t.dtype) || d.byte_length() != t.data.size() ||
          std::vector<int64_t>(d.shape().begin(), d.shape().end()) != t.shape) {
        return invalid_argument("encode: the descriptor given for tensor '" + t.name + "' does not describe it");
      }
      *envelope.add_tensors() = d;
    } else {
      *envelope.add_tensors() = describe_tensor(t, options.checksum);
    }
  }
  const size_t envelope_bytes = envelope.ByteSizeLong();
  if (envelope_bytes > static_cast<size_t>(INT_MAX)) {
    return out_of_range("encode: envelope of " + std::to_string(envelope_bytes) + " bytes exceeds protobuf's 2 GiB");
  }

  zmq::multipart_t frames;
  frames.addstr(protocol_tag(kProtocolVersion));
  zmq::message_t envelope_frame(envelope_bytes);
  if (!envelope.SerializeWithCachedSizesToArray(static_cast<uint8_t*>(envelope_frame.data())) && envelope_bytes != 0) {
    return internal_error("encode: envelope serialization failed");
  }
  frames.add(std::move(envelope_frame));
  for (const WireTensor& t : message.tensors) frames.add(t.data.to_frame());
  return frames;
}

Result<Message> decode(zmq::multipart_t& frames, const CodecLimits& limits, DecodeDiagnostics* diagnostics) {
  DecodeDiagnostics local;
  DecodeDiagnostics& diag = diagnostics != nullptr ? *diagnostics : local;
  diag = DecodeDiagnostics{};
  auto fail = [&](v1::WireError wire_error, const Status& status) -> Status {
    diag.wire_error = wire_error;
    frames.clear();
    return status;
  };

  // Frame 0: the tag. Checked before anything else so that a peer of another version gets a version error.
  if (frames.empty()) return fail(v1::WIRE_ERROR_BAD_TAG, invalid_argument("empty message"));
  const std::optional<uint32_t> version = parse_tag(frames[0]);
  if (!version) {
    return fail(v1::WIRE_ERROR_BAD_TAG,
                invalid_argument("frame 0 is not a protocol tag (expected '" + protocol_tag(kProtocolVersion) + "', " +
                                 std::to_string(frames[0].size()) + " bytes)"));
  }
  diag.peer_version = *version;
  if (*version != kProtocolVersion) {
    // Envelope fields 3 (request_id) and 4 (correlation_id) keep their numbers in every version, so the ids
    // can be read from a peer of another version for the error reply to reach the request it answers.
    v1::Envelope other;
    if (frames.size() >= 2 && frames[1].size() <= limits.max_envelope_bytes &&
        frames[1].size() <= static_cast<size_t>(INT_MAX) &&
        other.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size()))) {
      diag.request_id = truncate_utf8(other.request_id(), kMaxDiagnosticIdLength);
      diag.correlation_id = other.correlation_id();
    }
    return fail(v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION,
                unimplemented("unsupported protocol version " + std::to_string(*version) + " (this peer speaks " +
                              std::to_string(kProtocolVersion) + ")"));
  }

  // Frame 1: the envelope.
  if (frames.size() < 2) return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE, invalid_argument("no envelope frame"));
  if (frames.size() - 2 > limits.max_tensors) {
    return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                out_of_range(std::to_string(frames.size() - 2) + " tensor frames exceed the limit of " +
                             std::to_string(limits.max_tensors)));
  }
  const zmq::message_t& envelope_frame = frames[1];
  if (envelope_frame.size() > limits.max_envelope_bytes || envelope_frame.size() > static_cast<size_t>(INT_MAX)) {
    return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                out_of_range("envelope of " + std::to_string(envelope_frame.size()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_envelope_bytes)));
  }
  Message message;
  v1::Envelope& envelope = message.envelope;
  if (!envelope.ParseFromArray(envelope_frame.data(), static_cast<int>(envelope_frame.size()))) {
    return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE, invalid_argument("frame 1 is not a valid Envelope"));
  }
  diag.request_id = truncate_utf8(envelope.request_id(), kMaxDiagnosticIdLength);
  diag.correlation_id = envelope.correlation_id();
  if (envelope.protocol_version() != kProtocolVersion) {
    return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE,
                invalid_argument("envelope protocol_version " + std::to_string(envelope.protocol_version()) +
                                 " contradicts frame 0 (" + protocol_tag(kProtocolVersion) + ")"));
  }
  const v1::MessageType type = message_type_of(envelope);
  if (type == v1::MESSAGE_TYPE_UNSPECIFIED) {
    if (!v1::MessageType_IsValid(envelope.type())) {
      return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE,
                  unimplemented("message type " + std::to_string(envelope.type()) + " is unknown to this peer"));
    }
    return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE, invalid_argument("envelope has no body"));
  }
  if (envelope.type() != type) {
    return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE,
                invalid_argument("envelope type " + std::to_string(envelope.type()) + " does not match its body (" +
                                 std::string(message_type_name(type)) + ")"));
  }

  // Frames 2..: one per descriptor, each checked against it before its bytes are used.
  const size_t tensor_count = static_cast<size_t>(envelope.tensors_size());
  if (tensor_count > limits.max_tensors) {
    return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                out_of_range(std::to_string(tensor_count) + " tensor descriptors exceed the limit of " +
                             std::to_string(limits.max_tensors)));
  }
  if (tensor_count != frames.size() - 2) {
    return fail(v1::WIRE_ERROR_FRAME_COUNT_MISMATCH,
                invalid_argument(std::to_string(tensor_count) + " tensor descriptors but " +
                                 std::to_string(frames.size() - 2) + " tensor frames"));
  }
  std::set<std::string_view> names;
  std::vector<DType> dtypes(tensor_count);
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < tensor_count; ++i) {
    const v1::TensorDescriptor& d = envelope.tensors(static_cast<int>(i));
    const zmq::message_t& frame = frames[i + 2];
    const std::string what = "tensor " + std::to_string(i) + " '" + truncate_utf8(d.name(), 64) + "'";
    if (d.name().empty() || !names.insert(d.name()).second) {
      return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE, invalid_argument(what + ": name empty or repeated"));
    }
    const std::optional<DType> dtype = dtype_from_name(d.dtype());
    if (!dtype) {
      return fail(v1::WIRE_ERROR_UNKNOWN_DTYPE,
                  unimplemented(what + ": unknown dtype '" + truncate_utf8(d.dtype(), 16) + "'"));
    }
    dtypes[i] = *dtype;
    if (static_cast<size_t>(d.shape_size()) > limits.max_rank) {
      return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                  out_of_range(what + ": rank " + std::to_string(d.shape_size()) + " exceeds the limit of " +
                               std::to_string(limits.max_rank)));
    }
    uint64_t bytes = 0;
    if (Status s = checked_byte_size(d.shape(), dtype_size(*dtype), &bytes); !s.is_ok()) {
      return fail(
          s.code() == StatusCode::kOutOfRange ? v1::WIRE_ERROR_LIMIT_EXCEEDED : v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH,
          Status(s.code(), what + ": " + s.message()));
    }
    if (bytes > limits.max_tensor_bytes) {
      return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                  out_of_range(what + ": " + std::to_string(bytes) + " bytes exceed the limit of " +
                               std::to_string(limits.max_tensor_bytes)));
    }
    if (d.byte_length() != bytes || frame.size() != bytes) {
      return fail(v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH,
                  invalid_argument(what + ": shape x dtype = " + std::to_string(bytes) + " bytes, byte_length = " +
                                   std::to_string(d.byte_length()) + ", frame = " + std::to_string(frame.size())));
    }
    total_bytes += bytes;  // each term <= max_tensor_bytes and at most max_tensors terms: no overflow
    if (total_bytes > limits.max_total_tensor_bytes) {
      return fail(v1::WIRE_ERROR_LIMIT_EXCEEDED,
                  out_of_range("tensor frames exceed the limit of " + std::to_string(limits.max_total_tensor_bytes) +
                               " bytes in all"));
    }
    switch (d.checksum_type()) {
      case v1::CHECKSUM_TYPE_UNSPECIFIED:
        if (limits.require_checksum) {
          return fail(v1::WIRE_ERROR_CHECKSUM_MISMATCH, invalid_argument(what + ": no checksum"));
        }
        break;
      case v1::CHECKSUM_TYPE_CRC32:
        if (crc32(frame.data(), frame.size()) != d.checksum()) {
          return fail(v1::WIRE_ERROR_CHECKSUM_MISMATCH, invalid_argument(what + ": CRC-32 mismatch"));
        }
        break;
      default:
        return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE,
                    unimplemented(what + ": unknown checksum type " + std::to_string(d.checksum_type())));
    }
  }

  // Everything checked: take the frames without copying them.
  frames.pop();  // tag
  frames.pop();  // envelope
  message.tensors.reserve(tensor_count);
  for (size_t i = 0; i < tensor_count; ++i) {
    const v1::TensorDescriptor& d = envelope.tensors(static_cast<int>(i));
    WireTensor t;
    t.name = d.name();
    t.dtype = dtypes[i];
    t.shape.assign(d.shape().begin(), d.shape().end());
    t.data = Blob::adopt(frames.pop());
    message.tensors.push_back(std::move(t));
  }
  if (Status s = validate_body(message); !s.is_ok()) return fail(v1::WIRE_ERROR_MALFORMED_ENVELOPE, s);
  return message;
}

}  // namespace proxykv::transport
