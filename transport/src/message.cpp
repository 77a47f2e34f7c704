#include "proxykv/transport/message.h"

namespace proxykv::transport {

int64_t WireTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const WireTensor* Message::find_tensor(std::string_view name) const {
  for (const WireTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

v1::MessageType Message::type() const {
  return message_type_of(envelope);
}

v1::MessageType message_type_of(const v1::Envelope& envelope) {
  switch (envelope.body_case()) {
    case v1::Envelope::kScoreRequest: return v1::MESSAGE_TYPE_SCORE_REQUEST;
    case v1::Envelope::kProxyFeatures: return v1::MESSAGE_TYPE_PROXY_FEATURES;
    case v1::Envelope::kPruneMask: return v1::MESSAGE_TYPE_PRUNE_MASK;
    case v1::Envelope::kAccepted: return v1::MESSAGE_TYPE_ACCEPTED;
    case v1::Envelope::kErrorReply: return v1::MESSAGE_TYPE_ERROR_REPLY;
    case v1::Envelope::kHealthRequest: return v1::MESSAGE_TYPE_HEALTH_REQUEST;
    case v1::Envelope::kHealthReply: return v1::MESSAGE_TYPE_HEALTH_REPLY;
    case v1::Envelope::kHandshake: return v1::MESSAGE_TYPE_HANDSHAKE;
    case v1::Envelope::kTensorBlob: return v1::MESSAGE_TYPE_TENSOR_BLOB;
    case v1::Envelope::BODY_NOT_SET: break;
  }
  return v1::MESSAGE_TYPE_UNSPECIFIED;
}

std::string_view message_type_name(v1::MessageType type) {
  const std::string& full = v1::MessageType_Name(type);  // "MESSAGE_TYPE_SCORE_REQUEST"; empty if unknown
  if (full.empty()) return "UNKNOWN";
  std::string_view name = full;
  constexpr std::string_view kPrefix = "MESSAGE_TYPE_";
  if (name.substr(0, kPrefix.size()) == kPrefix) name.remove_prefix(kPrefix.size());
  return name;
}

}  // namespace proxykv::transport
