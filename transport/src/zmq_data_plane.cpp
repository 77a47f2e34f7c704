#include "zmq_data_plane.h"

#include "proxykv/transport/codec.h"
#include "transport_log.h"
#include "zmq_util.h"

namespace proxykv::transport {
namespace {

// How often the receiver thread looks at the stop flag.
constexpr std::chrono::milliseconds kReceiverPollInterval{50};

// "tcp://0.0.0.0:40123" with host "10.1.2.3" -> "tcp://10.1.2.3:40123".
std::string with_host(const std::string& endpoint, const std::string& host) {
  const size_t scheme = endpoint.find("://");
  const size_t colon = endpoint.rfind(':');
  if (host.empty() || scheme == std::string::npos || colon == std::string::npos || colon < scheme + 3) {
    return endpoint;
  }
  return endpoint.substr(0, scheme + 3) + host + endpoint.substr(colon);
}

}  // namespace

Result<std::unique_ptr<DataPlane>> ZmqDataPlane::create(zmq::context_t& context, const DataPlaneOptions& options) {
  try {
    zmq::socket_t receiver(context, zmq::socket_type::pull);
    PROXYKV_RETURN_IF_ERROR(apply_socket_options(receiver, options.socket));
    if (options.curve_server) PROXYKV_RETURN_IF_ERROR(apply_curve_server(receiver, *options.curve_server));
    try {
      receiver.bind(options.bind_endpoint);
    } catch (const zmq::error_t& e) {
      return unavailable("data plane: cannot bind " + options.bind_endpoint + ": " + e.what());
    }
    std::string endpoint = with_host(last_endpoint(receiver), options.advertise_host);
    transport_logger()->info("zmq data plane receiving on {}", endpoint);
    return std::unique_ptr<DataPlane>(new ZmqDataPlane(context, options, std::move(receiver), std::move(endpoint)));
  } catch (const zmq::error_t& e) {
    return internal_error(std::string("data plane: ") + e.what());
  }
}

ZmqDataPlane::ZmqDataPlane(zmq::context_t& context, const DataPlaneOptions& options, zmq::socket_t receiver,
                           std::string endpoint)
    : context_(context),
      options_(options),
      receiver_(std::move(receiver)),
      endpoint_(std::move(endpoint)),
      inbox_(options.max_pending_bytes, options.pending_ttl) {
  receiver_thread_ = std::thread([this] { receive_loop(); });
}

ZmqDataPlane::~ZmqDataPlane() {
  inbox_.close();
  stop_ = true;
  if (receiver_thread_.joinable()) receiver_thread_.join();
}

v1::DataPlaneEndpoint ZmqDataPlane::local_endpoint() const {
  v1::DataPlaneEndpoint e;
  e.set_transport("zmq");
  e.set_address(endpoint_);
  return e;
}

DataPlaneStats ZmqDataPlane::stats() const { return counters_.snapshot(inbox_.expired()); }

void ZmqDataPlane::receive_loop() {
  auto log = transport_logger();
  // A blob message is: tag, envelope, one tensor frame; one more frame tells an over-long message apart.
  constexpr size_t kMaxFrames = 4;
  while (!stop_) {
    try {
      if ((poll_socket(receiver_, ZMQ_POLLIN, kReceiverPollInterval) & ZMQ_POLLIN) == 0) continue;
    } catch (const zmq::error_t& e) {
      if (e.num() != ETERM) log->error("zmq data plane: receiver stopped: {}", e.what());
      return;
    }
    zmq::multipart_t frames;
    bool truncated = false;
    Result<bool> got = receive_bounded(receiver_, frames, kMaxFrames, &truncated);
    if (!got.is_ok()) {
      log->error("zmq data plane: receiver stopped: {}", got.status().to_string());
      return;
    }
    if (!*got) continue;
    if (truncated) {
      ++counters_.blobs_refused;
      log->warn("zmq data plane: refused a message with too many frames");
      continue;
    }
    Result<Message> message = decode(frames, options_.socket.limits);
    if (!message.is_ok() || !message->envelope.has_tensor_blob()) {
      ++counters_.blobs_refused;
      log->warn("zmq data plane: refused a message: {}",
                message.is_ok() ? "not a TensorBlob" : message.status().to_string());
      continue;
    }
    const std::string key = message->envelope.tensor_blob().key();
    WireTensor tensor = std::move(message->tensors.front());
    v1::TensorDescriptor descriptor = message->envelope.tensors(0);  // decode() checked the bytes against it
    const uint64_t bytes = tensor.data.size();
    // Counted before put() wakes the receiver, so that a caller who got the blob sees it counted.
    ++counters_.blobs_received;
    counters_.bytes_received += bytes;
    if (!inbox_.put(key, std::move(tensor), std::move(descriptor))) {
      --counters_.blobs_received;
      counters_.bytes_received -= bytes;
      ++counters_.blobs_refused;
      log->warn("zmq data plane: inbox full, refused blob '{}' ({} bytes)", key, bytes);
    }
  }
}

Result<std::shared_ptr<ZmqDataPlane::PeerSocket>> ZmqDataPlane::peer_socket(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(peers_mutex_);
  auto it = peers_.find(endpoint);
  if (it != peers_.end()) return it->second;
  try {
    auto peer = std::make_shared<PeerSocket>();
    peer->socket = zmq::socket_t(context_, zmq::socket_type::push);
    PROXYKV_RETURN_IF_ERROR(apply_socket_options(peer->socket, options_.socket));
    // Wait for the connection instead of queueing blobs for a peer that may never come.
    peer->socket.set(zmq::sockopt::immediate, true);
    if (options_.curve_client) PROXYKV_RETURN_IF_ERROR(apply_curve_client(peer->socket, *options_.curve_client));
    try {
      peer->socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      return invalid_argument("data plane: cannot connect to '" + endpoint + "': " + e.what());
    }
    peers_[endpoint] = peer;
    return peer;
  } catch (const zmq::error_t& e) {
    return internal_error(std::string("data plane: ") + e.what());
  }
}

Status ZmqDataPlane::send(const v1::DataPlaneEndpoint& peer, const std::string& key, const WireTensor& tensor,
                          Deadline deadline, const v1::TensorDescriptor* described) {
  if (peer.transport() != "zmq") {
    return invalid_argument("zmq data plane cannot send to a '" + peer.transport() + "' endpoint");
  }
  if (key.empty()) return invalid_argument("data plane: empty key");
  Message message;
  message.envelope.mutable_tensor_blob()->set_key(key);
  message.tensors.push_back(tensor);  // shares the bytes
  std::vector<v1::TensorDescriptor> descriptors;
  EncodeOptions encode_options;
  if (described) {
    descriptors.push_back(*described);
    encode_options.descriptors = &descriptors;
  }
  PROXYKV_ASSIGN_OR_RETURN(zmq::multipart_t frames, encode(message, encode_options));
  PROXYKV_ASSIGN_OR_RETURN(std::shared_ptr<PeerSocket> target, peer_socket(peer.address()));

  std::lock_guard<std::mutex> lock(target->mutex);
  while (true) {
    PROXYKV_ASSIGN_OR_RETURN(bool sent, send_frames(target->socket, frames, /*dont_wait=*/true));
    if (sent) break;
    if (Clock::now() >= deadline) {
      return deadline_exceeded("data plane: " + peer.address() + " did not take blob '" + key +
                               "' before the deadline (not connected, or its queue is full)");
    }
    try {
      poll_socket(target->socket, ZMQ_POLLOUT, remaining(deadline));
    } catch (const zmq::error_t& e) {
      return unavailable(std::string("data plane: ") + e.what());
    }
  }
  ++counters_.blobs_sent;
  counters_.bytes_sent += tensor.data.size();
  return Status::ok();
}

Result<WireTensor> ZmqDataPlane::receive(const std::string& key, Deadline deadline, v1::TensorDescriptor* arrived) {
  return inbox_.take(key, deadline, arrived);
}

}  // namespace proxykv::transport
