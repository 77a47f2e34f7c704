// ControlClient: the DEALER side of the control channel. Connects to one or more servers (every pod of a
// headless Service) and spreads requests over the connected ones round-robin; a request is only handed to a
// peer whose connection is up (ZMQ_IMMEDIATE), so a dead pod does not swallow requests. One thread owns a
// client: ZeroMQ sockets are not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"
#include "proxykv/transport/socket_options.h"

namespace proxykv::transport {

struct ClientOptions {
  // tcp://host:port of every server; at least one.
  std::vector<std::string> endpoints;
  // Envelope.sender of the requests.
  std::string service_name = "proxykv";
  SocketOptions socket;
  std::optional<CurveClientConfig> curve;
};

struct ClientStats {
  uint64_t sent = 0;
  uint64_t replies = 0;                 // replies matched to the request waiting for them
  uint64_t late_replies_discarded = 0;  // replies to requests that had already timed out
  uint64_t malformed_replies = 0;       // refused by decode()
  uint64_t timeouts = 0;
  uint64_t send_refused = 0;  // queue full or no peer connected
};

class ControlClient {
 public:
  static Result<std::unique_ptr<ControlClient>> connect(zmq::context_t& context, ClientOptions options);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `request` and waits up to `timeout` for its reply. Sets the correlation id, the sender and, when
  // earlier than the one given, Envelope.deadline_unix_ms = now + timeout. Errors:
  //   UNAVAILABLE        no server was connected for the whole timeout (down, or CURVE handshake refused);
  //   RESOURCE_EXHAUSTED servers connected but their queues stayed full;
  //   DEADLINE_EXCEEDED  sent, but no reply in time (a reply arriving later is discarded);
  //   an ErrorReply's code when the server answered with one (e.g. UNIMPLEMENTED for a protocol version).
  Result<Message> call(Message request, std::chrono::milliseconds timeout);

  // Non-blocking send for pipelined use: returns the correlation id, or RESOURCE_EXHAUSTED at once when the
  // send queue is full (ZMQ_SNDHWM) or no server is connected.
  Result<uint64_t> try_send(Message request);
  // Waits until `deadline` for the reply with `correlation_id`; replies with other ids are discarded.
  Result<Message> wait_reply(uint64_t correlation_id, Deadline deadline);

  // Connects to endpoints not yet connected and drops the ones no longer listed (e.g. after a DNS refresh of a
  // headless Service's pod addresses). Dropping an endpoint replaces the socket, because zmq_disconnect()
  // lets requests sent just after it still go to the dropped peer and be lost; replies to requests sent
  // with try_send() before the change are lost with the old socket.
  Status update_endpoints(const std::vector<std::string>& endpoints);

  // Servers whose connection (and CURVE handshake) is up, as seen by the socket monitor.
  size_t connected_peers();
  // Waits until at least `count` servers are connected or `deadline` passes.
  bool wait_connected(size_t count, Deadline deadline);
  ClientStats stats() const { return stats_; }
  const ClientOptions& options() const { return options_; }

 private:
  struct Sockets {
    zmq::socket_t socket;
    zmq::socket_t monitor;
  };
  // A DEALER with the options applied, its monitor, connected to `endpoints`.
  static Result<Sockets> open(zmq::context_t& context, const ClientOptions& options,
                              const std::vector<std::string>& endpoints);
  void close_monitor();

  ControlClient(zmq::context_t& context, Sockets sockets, ClientOptions options);
  void prepare(Message& request, std::optional<std::chrono::milliseconds> timeout);
  Status send_until(zmq::multipart_t& frames, Deadline deadline);
  void drain_monitor();
  std::string peer_summary() const;

  zmq::context_t& context_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  ClientOptions options_;
  uint64_t next_correlation_id_ = 1;
  // Per peer address as the monitor reports it: connected now, and the last connection problem seen (for error
  // messages).
  std::map<std::string, bool> connected_;
  std::map<std::string, std::string> last_problem_;
  ClientStats stats_;
};

}  // namespace proxykv::transport
