#include "proxykv/transport/control_client.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>

#include "proxykv/transport/codec.h"
#include "proxykv/transport/error_reply.h"
#include "transport_log.h"
#include "zmq_util.h"

namespace proxykv::transport {
namespace {

constexpr int kMonitoredEvents = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED |
                                 ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;

std::string next_monitor_endpoint() {
  static std::atomic<uint64_t> counter{0};
  return "inproc://proxykv-client-monitor-" + std::to_string(counter.fetch_add(1));
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

Result<ControlClient::Sockets> ControlClient::open(zmq::context_t& context, const ClientOptions& options,
                                                   const std::vector<std::string>& endpoints) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    PROXYKV_RETURN_IF_ERROR(apply_socket_options(socket, options.socket));
    // Queue requests only on connections that are up: a dead pod must not swallow the requests given to it.
    socket.set(zmq::sockopt::immediate, true);
    // An IPv6 address (a resolved dual-stack Service) needs ZMQ_IPV6; with it IPv4 peers still work.
    const bool v6 = std::any_of(endpoints.begin(), endpoints.end(),
                                [](const std::string& e) { return e.rfind("tcp://[", 0) == 0; });
    if (v6) socket.set(zmq::sockopt::ipv6, true);
    if (options.curve) PROXYKV_RETURN_IF_ERROR(apply_curve_client(socket, *options.curve));
    // The monitor pair is connected before any endpoint, so that no connection event is missed.
    const std::string monitor_endpoint = next_monitor_endpoint();
    if (zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(), kMonitoredEvents) != 0) {
      return internal_error(std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
    }
    zmq::socket_t monitor(context, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(monitor_endpoint);
    for (const std::string& endpoint : endpoints) {
      try {
        socket.connect(endpoint);
      } catch (const zmq::error_t& e) {
        zmq_socket_monitor(socket.handle(), nullptr, 0);
        return invalid_argument("control client: cannot connect to '" + endpoint + "': " + e.what());
      }
    }
    return Sockets{std::move(socket), std::move(monitor)};
  } catch (const zmq::error_t& e) {
    return internal_error(std::string("control client: ") + e.what());
  }
}

Result<std::unique_ptr<ControlClient>> ControlClient::connect(zmq::context_t& context, ClientOptions options) {
  if (options.endpoints.empty()) return invalid_argument("control client: no endpoint to connect to");
  PROXYKV_ASSIGN_OR_RETURN(Sockets sockets, open(context, options, options.endpoints));
  return std::unique_ptr<ControlClient>(new ControlClient(context, std::move(sockets), std::move(options)));
}

ControlClient::ControlClient(zmq::context_t& context, Sockets sockets, ClientOptions options)
    : context_(context),
      socket_(std::move(sockets.socket)),
      monitor_(std::move(sockets.monitor)),
      options_(std::move(options)) {}

ControlClient::~ControlClient() {
  close_monitor();
}

void ControlClient::close_monitor() {
  if (socket_.handle() != nullptr) zmq_socket_monitor(socket_.handle(), nullptr, 0);
}

Status ControlClient::update_endpoints(const std::vector<std::string>& endpoints) {
  if (endpoints.empty()) return invalid_argument("control client: no endpoint to connect to");
  const std::set<std::string> wanted(endpoints.begin(), endpoints.end());
  const std::set<std::string> current(options_.endpoints.begin(), options_.endpoints.end());
  const bool drops = std::any_of(current.begin(), current.end(), [&](const auto& e) { return wanted.count(e) == 0; });
  if (drops) {
    PROXYKV_ASSIGN_OR_RETURN(Sockets sockets, open(context_, options_, {wanted.begin(), wanted.end()}));
    close_monitor();
    socket_ = std::move(sockets.socket);
    monitor_ = std::move(sockets.monitor);
    connected_.clear();
    last_problem_.clear();
  } else {
    for (const std::string& endpoint : wanted) {
      if (current.count(endpoint) != 0) continue;
      try {
        if (endpoint.rfind("tcp://[", 0) == 0) socket_.set(zmq::sockopt::ipv6, true);
        socket_.connect(endpoint);
      } catch (const zmq::error_t& e) {
        return invalid_argument("control client: cannot connect to '" + endpoint + "': " + e.what());
      }
    }
  }
  options_.endpoints.assign(wanted.begin(), wanted.end());
  return Status::ok();
}

void ControlClient::drain_monitor() {
  try {
    while (true) {
      zmq::multipart_t event;
      if (!event.recv(monitor_, ZMQ_DONTWAIT)) return;
      if (event.size() < 2 || event[0].size() < 6) continue;
      uint16_t id = 0;
      uint32_t value = 0;
      std::memcpy(&id, event[0].data(), sizeof(id));
      std::memcpy(&value, static_cast<const char*>(event[0].data()) + 2, sizeof(value));
      const std::string peer = event[1].to_string();
      switch (id) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
          connected_[peer] = true;
          last_problem_.erase(peer);
          break;
        case ZMQ_EVENT_DISCONNECTED:
        case ZMQ_EVENT_CLOSED:
          if (connected_[peer]) last_problem_[peer] = "disconnected";
          connected_[peer] = false;
          break;
        case ZMQ_EVENT_CONNECT_RETRIED:
          if (!connected_[peer] && last_problem_.count(peer) == 0) last_problem_[peer] = "connection refused";
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          connected_[peer] = false;
          last_problem_[peer] = "refused by the server's authenticator (status " + std::to_string(value) + ")";
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
          connected_[peer] = false;
          last_problem_[peer] = "handshake failed (wrong CURVE key or not a ZMTP peer?)";
          break;
        default: break;
      }
    }
  } catch (const zmq::error_t&) {
    // The context is shutting down; the next socket operation reports it.
  }
}

size_t ControlClient::connected_peers() {
  drain_monitor();
  return static_cast<size_t>(
      std::count_if(connected_.begin(), connected_.end(), [](const auto& p) { return p.second; }));
}

bool ControlClient::wait_connected(size_t count, Deadline deadline) {
  while (connected_peers() < count) {
    if (Clock::now() >= deadline) return false;
    try {
      poll_socket(monitor_, ZMQ_POLLIN, remaining(deadline));
    } catch (const zmq::error_t&) {
      return false;
    }
  }
  return true;
}

std::string ControlClient::peer_summary() const {
  std::string summary = join(options_.endpoints);
  std::string problems;
  for (const auto& [peer, problem] : last_problem_) {
    problems += problems.empty() ? " (" : ", ";
    problems += peer;
    problems += ": ";
    problems += problem;
  }
  if (!problems.empty()) summary += problems + ")";
  return summary;
}

void ControlClient::prepare(Message& request, std::optional<std::chrono::milliseconds> timeout) {
  request.envelope.set_correlation_id(next_correlation_id_++);
  if (request.envelope.sender().empty()) request.envelope.set_sender(options_.service_name);
  if (timeout) {
    const int64_t deadline = unix_now_ms() + timeout->count();
    const int64_t given = request.envelope.deadline_unix_ms();
    if (given <= 0 || given > deadline) request.envelope.set_deadline_unix_ms(deadline);
  }
}

Status ControlClient::send_until(zmq::multipart_t& frames, Deadline deadline) {
  while (true) {
    drain_monitor();
    PROXYKV_ASSIGN_OR_RETURN(bool sent, send_frames(socket_, frames, /*dont_wait=*/true));
    if (sent) {
      ++stats_.sent;
      return Status::ok();
    }
    if (Clock::now() >= deadline) {
      ++stats_.send_refused;
      if (connected_peers() == 0) return unavailable("no server connected: " + peer_summary());
      return resource_exhausted("the send queue to " + join(options_.endpoints) + " stayed full");
    }
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLOUT, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, remaining(deadline));
    } catch (const zmq::error_t& e) {
      return unavailable(std::string("poll: ") + e.what());
    }
  }
}

Result<Message> ControlClient::call(Message request, std::chrono::milliseconds timeout) {
  const Deadline deadline = Clock::now() + timeout;
  prepare(request, timeout);
  const uint64_t correlation_id = request.envelope.correlation_id();
  PROXYKV_ASSIGN_OR_RETURN(zmq::multipart_t frames, encode(request));
  PROXYKV_RETURN_IF_ERROR(send_until(frames, deadline));
  return wait_reply(correlation_id, deadline);
}

Result<uint64_t> ControlClient::try_send(Message request) {
  prepare(request, std::nullopt);
  const uint64_t correlation_id = request.envelope.correlation_id();
  PROXYKV_ASSIGN_OR_RETURN(zmq::multipart_t frames, encode(request));
  PROXYKV_ASSIGN_OR_RETURN(bool sent, send_frames(socket_, frames, /*dont_wait=*/true));
  if (!sent) {
    ++stats_.send_refused;
    return resource_exhausted("send queue full or no server connected (" + join(options_.endpoints) + ")");
  }
  ++stats_.sent;
  return correlation_id;
}

Result<Message> ControlClient::wait_reply(uint64_t correlation_id, Deadline deadline) {
  auto log = transport_logger();
  const size_t max_frames = options_.socket.limits.max_tensors + 3;
  while (true) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, remaining(deadline));
    } catch (const zmq::error_t& e) {
      return unavailable(std::string("poll: ") + e.what());
    }
    if (items[1].revents & ZMQ_POLLIN) drain_monitor();
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::multipart_t frames;
      bool truncated = false;
      PROXYKV_ASSIGN_OR_RETURN(bool got, receive_bounded(socket_, frames, max_frames, &truncated));
      if (got) {
        DecodeDiagnostics diag;
        Result<Message> reply = truncated ? Result<Message>(out_of_range("reply has too many frames"))
                                          : decode(frames, options_.socket.limits, &diag);
        if (!reply.is_ok()) {
          ++stats_.malformed_replies;
          log->warn("malformed reply (correlation id {}): {}", diag.correlation_id, reply.status().to_string());
          if (diag.correlation_id == correlation_id) return reply.status();
          continue;
        }
        if (reply->envelope.correlation_id() != correlation_id) {
          ++stats_.late_replies_discarded;
          log->debug("discarded a late reply (correlation id {}, request '{}')", reply->envelope.correlation_id(),
                     reply->envelope.request_id());
          continue;
        }
        ++stats_.replies;
        if (reply->envelope.has_error_reply()) return status_from_error_reply(reply->envelope.error_reply());
        return reply;
      }
    }
    if (Clock::now() >= deadline) {
      ++stats_.timeouts;
      return deadline_exceeded("no reply within the deadline from " + peer_summary());
    }
  }
}

}  // namespace proxykv::transport
