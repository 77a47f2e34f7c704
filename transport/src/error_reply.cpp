#include "proxykv/transport/error_reply.h"

#include "proxykv/transport/codec.h"
#include "utf8.h"

namespace proxykv::transport {

// The proto enum mirrors StatusCode value for value; these pin it so that neither side drifts.
static_assert(static_cast<int>(StatusCode::kInvalidArgument) == v1::ERROR_CODE_INVALID_ARGUMENT);
static_assert(static_cast<int>(StatusCode::kNotFound) == v1::ERROR_CODE_NOT_FOUND);
static_assert(static_cast<int>(StatusCode::kOutOfRange) == v1::ERROR_CODE_OUT_OF_RANGE);
static_assert(static_cast<int>(StatusCode::kUnimplemented) == v1::ERROR_CODE_UNIMPLEMENTED);
static_assert(static_cast<int>(StatusCode::kFailedPrecondition) == v1::ERROR_CODE_FAILED_PRECONDITION);
static_assert(static_cast<int>(StatusCode::kResourceExhausted) == v1::ERROR_CODE_RESOURCE_EXHAUSTED);
static_assert(static_cast<int>(StatusCode::kUnavailable) == v1::ERROR_CODE_UNAVAILABLE);
static_assert(static_cast<int>(StatusCode::kDeadlineExceeded) == v1::ERROR_CODE_DEADLINE_EXCEEDED);
static_assert(static_cast<int>(StatusCode::kInternal) == v1::ERROR_CODE_INTERNAL);

v1::ErrorCode to_error_code(StatusCode code) {
  if (code == StatusCode::kOk) return v1::ERROR_CODE_INTERNAL;  // an OK status is not an error to report
  return static_cast<v1::ErrorCode>(static_cast<int>(code));
}

StatusCode to_status_code(v1::ErrorCode code) {
  if (code <= v1::ERROR_CODE_UNSPECIFIED || code > v1::ERROR_CODE_INTERNAL) return StatusCode::kInternal;
  return static_cast<StatusCode>(static_cast<int>(code));
}

Message make_error_reply(const Status& status, std::string_view service, v1::WireError wire_error) {
  Message message;
  v1::ErrorReply* reply = message.envelope.mutable_error_reply();
  reply->set_code(to_error_code(status.code()));
  // Messages may quote bytes from the outside (a handler's error about a hostile field): keep them decodable.
  reply->set_message(status.is_ok() ? "error reply made from an OK status" : valid_utf8(status.message()));
  reply->set_wire_error(wire_error);
  reply->set_service(valid_utf8(service));
  if (wire_error == v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION) {
    for (uint32_t v : supported_protocol_versions()) reply->add_supported_protocol_versions(v);
  }
  return message;
}

Status status_from_error_reply(const v1::ErrorReply& reply) {
  std::string service = reply.service().empty() ? "peer" : reply.service();
  return Status(to_status_code(reply.code()), service + ": " + reply.message());
}

}  // namespace proxykv::transport
