#include "proxykv/transport/control_server.h"

#include <exception>

#include "proxykv/transport/codec.h"
#include "proxykv/transport/error_reply.h"
#include "transport_log.h"
#include "zmq_util.h"

namespace proxykv::transport {

struct ControlServer::AtomicStats {
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> replied{0};
  std::atomic<uint64_t> wire_errors{0};
  std::atomic<uint64_t> version_errors{0};
  std::atomic<uint64_t> expired{0};
  std::atomic<uint64_t> handler_errors{0};
  std::atomic<uint64_t> handler_exceptions{0};
  std::atomic<uint64_t> replies_dropped{0};
};

Result<std::unique_ptr<ControlServer>> ControlServer::bind(zmq::context_t& context, ServerOptions options) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::router);
    PROXYKV_RETURN_IF_ERROR(apply_socket_options(socket, options.socket));
    // An unroutable reply (peer gone) or a full peer queue becomes an error we count, not a silent drop.
    socket.set(zmq::sockopt::router_mandatory, true);
    if (options.curve) PROXYKV_RETURN_IF_ERROR(apply_curve_server(socket, *options.curve));
    try {
      socket.bind(options.endpoint);
    } catch (const zmq::error_t& e) {
      return unavailable("cannot bind " + options.endpoint + ": " + e.what());
    }
    std::string endpoint = last_endpoint(socket);
    transport_logger()->info("{} control server listening on {}{}", options.service_name, endpoint,
                             options.curve ? " (CURVE)" : "");
    return std::unique_ptr<ControlServer>(new ControlServer(std::move(socket), std::move(options), endpoint));
  } catch (const zmq::error_t& e) {
    return internal_error(std::string("control server: ") + e.what());
  }
}

ControlServer::ControlServer(zmq::socket_t socket, ServerOptions options, std::string endpoint)
    : socket_(std::move(socket)),
      options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      stats_(std::make_unique<AtomicStats>()) {}

ControlServer::~ControlServer() = default;

ServerStats ControlServer::stats() const {
  ServerStats s;
  s.received = stats_->received;
  s.replied = stats_->replied;
  s.wire_errors = stats_->wire_errors;
  s.version_errors = stats_->version_errors;
  s.expired = stats_->expired;
  s.handler_errors = stats_->handler_errors;
  s.handler_exceptions = stats_->handler_exceptions;
  s.replies_dropped = stats_->replies_dropped;
  return s;
}

Status ControlServer::serve(const Handler& handler, const std::atomic<bool>& stop,
                            std::chrono::milliseconds poll_interval) {
  while (!stop) {
    Result<bool> served = serve_one(handler, poll_interval);
    if (!served.is_ok()) return served.status();
  }
  return Status::ok();
}

Result<bool> ControlServer::serve_one(const Handler& handler, std::chrono::milliseconds timeout) {
  zmq::multipart_t frames;
  bool truncated = false;
  try {
    if ((poll_socket(socket_, ZMQ_POLLIN, timeout) & ZMQ_POLLIN) == 0) return false;
  } catch (const zmq::error_t& e) {
    return unavailable(std::string("control server poll: ") + e.what());
  }
  // Routing id and an optional REQ delimiter, tag, envelope, tensors, and one more to notice an over-long message.
  const size_t max_frames = options_.socket.limits.max_tensors + 5;
  PROXYKV_ASSIGN_OR_RETURN(bool got, receive_bounded(socket_, frames, max_frames, &truncated));
  if (!got) return false;
  ++stats_->received;

  // ROUTER prepends the peer's routing id. A REQ peer adds an empty delimiter: keep it in the route so that
  // REQ clients (debugging tools) work too. DEALER peers send none.
  zmq::multipart_t route;
  route.add(frames.pop());
  if (!frames.empty() && frames[0].size() == 0) route.add(frames.pop());

  DecodeDiagnostics diag;
  Result<Message> request = Status(StatusCode::kOutOfRange, "message has more frames than allowed");
  if (truncated) {
    diag.wire_error = v1::WIRE_ERROR_LIMIT_EXCEEDED;
    frames.clear();
  } else {
    request = decode(frames, options_.socket.limits, &diag);
  }
  Message reply = answer(request, diag, handler);
  const std::string request_id = request.is_ok() ? request->envelope.request_id() : diag.request_id;
  const uint64_t correlation_id = request.is_ok() ? request->envelope.correlation_id() : diag.correlation_id;
  const std::string trace_id = request.is_ok() ? request->envelope.trace_id() : std::string();
  send_reply(std::move(route), encode_reply(std::move(reply), correlation_id, request_id, trace_id));
  return true;
}

Message ControlServer::answer(Result<Message>& request, const DecodeDiagnostics& diag, const Handler& handler) {
  auto log = transport_logger();
  const std::string& service = options_.service_name;
  if (!request.is_ok()) {
    ++stats_->wire_errors;
    if (diag.wire_error == v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION) ++stats_->version_errors;
    log->warn("{}: refused a message (request '{}'): {}", service, diag.request_id, request.status().to_string());
    return make_error_reply(request.status(), service, diag.wire_error);
  }
  const Message& message = *request;
  const int64_t deadline = message.envelope.deadline_unix_ms();
  if (options_.refuse_expired_requests && deadline > 0 && deadline < unix_now_ms()) {
    ++stats_->expired;
    return make_error_reply(deadline_exceeded("the request's deadline passed before it was served"), service,
                            v1::WIRE_ERROR_DEADLINE_EXPIRED);
  }
  try {
    Result<Message> result = handler(message);
    if (!result.is_ok()) {
      ++stats_->handler_errors;
      log->debug("{}: request '{}' failed: {}", service, message.envelope.request_id(), result.status().to_string());
      return make_error_reply(result.status(), service);
    }
    if (result->envelope.body_case() == v1::Envelope::BODY_NOT_SET) {
      ++stats_->handler_errors;
      return make_error_reply(internal_error("the handler returned a reply without a body"), service);
    }
    return std::move(result).value();
  } catch (const std::exception& e) {
    ++stats_->handler_exceptions;
    log->error("{}: handler threw on request '{}': {}", service, message.envelope.request_id(), e.what());
    return make_error_reply(internal_error(std::string("handler threw: ") + e.what()), service);
  } catch (...) {
    ++stats_->handler_exceptions;
    log->error("{}: handler threw a non-exception on request '{}'", service, message.envelope.request_id());
    return make_error_reply(internal_error("handler threw"), service);
  }
}

zmq::multipart_t ControlServer::encode_reply(Message reply, uint64_t correlation_id, const std::string& request_id,
                                             const std::string& trace_id) {
  auto address = [&](Message& m) {
    m.envelope.set_correlation_id(correlation_id);
    if (m.envelope.request_id().empty()) m.envelope.set_request_id(request_id);
    if (m.envelope.trace_id().empty()) m.envelope.set_trace_id(trace_id);
    m.envelope.set_sender(options_.service_name);
  };
  address(reply);
  Result<zmq::multipart_t> frames = encode(reply);
  if (frames.is_ok()) return std::move(frames).value();
  // The handler built a reply the peer would refuse (tensor bytes vs shape, a dangling tensor name): say so.
  ++stats_->handler_errors;
  transport_logger()->error("{}: reply to request '{}' does not encode: {}", options_.service_name, request_id,
                            frames.status().to_string());
  Message error = make_error_reply(internal_error("reply could not be encoded: " + frames.status().message()),
                                   options_.service_name);
  address(error);
  return std::move(encode(error)).value();  // an ErrorReply without tensors always encodes
}

void ControlServer::send_reply(zmq::multipart_t route, zmq::multipart_t reply) {
  route.append(std::move(reply));
  // Counted before the send, so that a peer holding the reply sees it counted.
  ++stats_->replied;
  Result<bool> sent = send_frames(socket_, route, /*dont_wait=*/true);
  if (sent.is_ok() && *sent) return;
  --stats_->replied;
  ++stats_->replies_dropped;
  transport_logger()->warn("{}: reply dropped: {}", options_.service_name,
                           sent.is_ok() ? "the peer's queue is full" : sent.status().message());
}

}  // namespace proxykv::transport
