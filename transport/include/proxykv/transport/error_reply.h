// ErrorReply: how a failure crosses the wire. Its code mirrors proxykv::StatusCode value for value.
#pragma once

#include <string_view>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"
#include "proxykv/v1/control.pb.h"

namespace proxykv::transport {

v1::ErrorCode to_error_code(StatusCode code);
// ERROR_CODE_UNSPECIFIED and values this build does not know map to kInternal.
StatusCode to_status_code(v1::ErrorCode code);

// A message whose body is an ErrorReply for `status` (which must not be OK), sent by `service`.
Message make_error_reply(const Status& status, std::string_view service,
                         v1::WireError wire_error = v1::WIRE_ERROR_UNSPECIFIED);

// The status an ErrorReply stands for; the message names the replying service: "mapper: <message>".
Status status_from_error_reply(const v1::ErrorReply& reply);

}  // namespace proxykv::transport
