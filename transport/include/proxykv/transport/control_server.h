// ControlServer: the ROUTER side of the control channel. One thread owns it and runs serve(); every request
// gets exactly one reply: the handler's, or an ErrorReply when the frames do not decode, the protocol version
// is unknown, the deadline has already passed, the handler fails or throws, or its reply does not encode.
// A reply is dropped (and counted) only when its peer is gone or has send_hwm unread replies queued: the
// server never blocks on one slow client.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"
#include "proxykv/transport/socket_options.h"

namespace proxykv::transport {

struct ServerOptions {
  // tcp://host:port; port 0 picks a free port (read it back with endpoint()).
  std::string endpoint = "tcp://127.0.0.1:0";
  // Named in replies (Envelope.sender, ErrorReply.service) and in logs.
  std::string service_name = "proxykv";
  SocketOptions socket;
  std::optional<CurveServerConfig> curve;
  // Answer requests whose Envelope.deadline_unix_ms has passed with DEADLINE_EXCEEDED instead of running them.
  bool refuse_expired_requests = true;
};

// The handler gets a decoded, validated request and returns the reply (its body, tensors and, optionally,
// request id); the server fills correlation id, trace id, sender and protocol version. An error status becomes
// an ErrorReply with that code. Exceptions are caught (INTERNAL) but should not be used.
using Handler = std::function<Result<Message>(const Message& request)>;

struct ServerStats {
  uint64_t received = 0;        // multipart messages received
  uint64_t replied = 0;         // replies handed to ZeroMQ
  uint64_t wire_errors = 0;     // refused by decode(), version errors included
  uint64_t version_errors = 0;  // unsupported protocol version
  uint64_t expired = 0;         // deadline passed on arrival
  uint64_t handler_errors = 0;  // handler returned an error status
  uint64_t handler_exceptions = 0;
  uint64_t replies_dropped = 0;  // peer gone, or its reply queue full
};

class ControlServer {
 public:
  // Binds a ROUTER socket. `context` must outlive the server.
  static Result<std::unique_ptr<ControlServer>> bind(zmq::context_t& context, ServerOptions options);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // The bound endpoint with the real port: "tcp://127.0.0.1:40123".
  const std::string& endpoint() const { return endpoint_; }
  const ServerOptions& options() const { return options_; }

  // Waits up to `timeout` for one request and answers it. Returns false when none came, an error only when
  // the socket itself failed (context terminated).
  Result<bool> serve_one(const Handler& handler, std::chrono::milliseconds timeout);
  // Serves until `stop` becomes true (checked at least every `poll_interval`) or the socket fails.
  Status serve(const Handler& handler, const std::atomic<bool>& stop,
               std::chrono::milliseconds poll_interval = std::chrono::milliseconds(50));

  // Safe to call from any thread.
  ServerStats stats() const;

 private:
  ControlServer(zmq::socket_t socket, ServerOptions options, std::string endpoint);
  Message answer(Result<Message>& request, const DecodeDiagnostics& diag, const Handler& handler);
  zmq::multipart_t encode_reply(Message reply, uint64_t correlation_id, const std::string& request_id,
                                const std::string& trace_id);
  void send_reply(zmq::multipart_t route, zmq::multipart_t reply);

  zmq::socket_t socket_;
  ServerOptions options_;
  std::string endpoint_;
  struct AtomicStats;
  std::unique_ptr<AtomicStats> stats_;
};

}  // namespace proxykv::transport
