#include "ucx_data_plane.h"

#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>

#include "proxykv/transport/checksum.h"
#include "proxykv/transport/codec.h"
#include "transport_log.h"
#include "zmq_util.h"

namespace proxykv::transport {
namespace {

// The active-message id of a data-plane blob ("PK").
constexpr unsigned kBlobAmId = 0x504B;
// A blob header is the protocol tag and a DataPlaneRef: a key and a descriptor of at most max_rank dims.
constexpr size_t kMaxHeaderBytes = size_t{64} << 10;
// ucp worker addresses are a few hundred bytes; anything far larger is not one.
constexpr size_t kMaxWorkerAddressBytes = size_t{64} << 10;
// ucp_ep_create reads the peer's address without knowing its length: bytes after a copy of it keep a
// truncated or hostile address from making UCX read past the buffer. 0xff ends UCX's lists (its "last" flags
// and its null resource index), so parsing stops in the padding instead of running through it.
constexpr size_t kAddressPadding = 4096;
constexpr char kAddressPaddingByte = '\xff';
// The low nibble of a packed ucp address's first byte is its format version (UCX 1.13: 0 = v1, 1 = v2); UCX
// aborts the process (an always-on assertion) on any other, so such bytes never reach ucp_ep_create.
constexpr uint8_t kAddressVersionMask = 0x0f;
constexpr uint8_t kMaxAddressVersion = 1;
// The idle progress thread sleeps on the worker's event fd; this bounds the sleep should a wake-up be missed.
constexpr int kIdleWaitMs = 100;
// Without wake-up support the idle progress thread polls the worker this often.
constexpr std::chrono::milliseconds kPollingInterval{1};
// Bounds on the progress teardown does to let sends finish and endpoints close.
constexpr std::chrono::milliseconds kFlushTimeout{1000};
constexpr std::chrono::milliseconds kCloseTimeout{1000};
// ucp_worker_progress calls per lock hold, so that posting threads get the worker between batches.
constexpr int kProgressBatch = 64;

// product(shape) * element_size, refusing negative dimensions and overflow.
template <typename Dims>
bool checked_byte_size(const Dims& shape, size_t element_size, uint64_t* bytes) {
  uint64_t elements = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements)) return false;
  }
  return !__builtin_mul_overflow(elements, static_cast<uint64_t>(element_size), bytes);
}

// A short name for a peer in logs: the CRC-32 of its worker address.
std::string fingerprint(const std::string& address) {
  char text[16];
  std::snprintf(text, sizeof(text), "%08x", crc32(address.data(), address.size()));
  return text;
}

// The value UCX will use for `name` ("UCX_TLS" -> "tcp"), as ucp_config_print reports it.
std::string effective_setting(const ucp_config_t* config, const std::string& name) {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return "?";
  ucp_config_print(config, out, nullptr, UCS_CONFIG_PRINT_CONFIG);
  std::fclose(out);
  const std::string printed(text, size);
  std::free(text);
  const std::string prefix = name + "=";
  for (size_t start = 0; start < printed.size();) {
    size_t end = printed.find('\n', start);
    if (end == std::string::npos) end = printed.size();
    if (printed.compare(start, prefix.size(), prefix) == 0) {
      return printed.substr(start + prefix.size(), end - start - prefix.size());
    }
    start = end + 1;
  }
  return "?";
}

// `described`: the caller's descriptor of `tensor` (checked to describe it), else one made here (with CRC-32).
Result<std::string> blob_header(const std::string& key, const WireTensor& tensor,
                                const v1::TensorDescriptor* described) {
  v1::DataPlaneRef ref;
  ref.set_transport("ucx");
  ref.set_key(key);
  if (described) {
    const v1::TensorDescriptor& d = *described;
    if (d.name() != tensor.name || d.dtype() != dtype_name(tensor.dtype) || d.byte_length() != tensor.data.size() ||
        std::vector<int64_t>(d.shape().begin(), d.shape().end()) != tensor.shape) {
      return invalid_argument("data plane: the descriptor given for tensor '" + tensor.name + "' does not describe it");
    }
    *ref.mutable_tensor() = d;
  } else {
    *ref.mutable_tensor() = describe_tensor(tensor);
  }
  std::string header = protocol_tag(kProtocolVersion);
  ref.AppendToString(&header);
  return header;
}

// Validates a received header against the payload length it came with; treats its input as hostile.
Result<v1::DataPlaneRef> parse_blob_header(const void* header, size_t header_length, size_t length,
                                           const CodecLimits& limits) {
  const std::string tag = protocol_tag(kProtocolVersion);
  if (header_length < tag.size() || header_length > kMaxHeaderBytes) {
    return invalid_argument("blob header of " + std::to_string(header_length) + " bytes");
  }
  const char* bytes = static_cast<const char*>(header);
  if (std::memcmp(bytes, tag.data(), tag.size()) != 0) return invalid_argument("blob header without the PKV1 tag");
  v1::DataPlaneRef ref;
  if (!ref.ParseFromArray(bytes + tag.size(), static_cast<int>(header_length - tag.size()))) {
    return invalid_argument("malformed blob header");
  }
  if (ref.key().empty()) return invalid_argument("blob header without a key");
  const v1::TensorDescriptor& d = ref.tensor();
  const std::optional<DType> dtype = dtype_from_name(d.dtype());
  if (!dtype) return invalid_argument("blob '" + ref.key() + "': unknown dtype");
  if (static_cast<size_t>(d.shape_size()) > limits.max_rank) {
    return out_of_range("blob '" + ref.key() + "': rank " + std::to_string(d.shape_size()) + " exceeds the limit");
  }
  uint64_t expected = 0;
  if (!checked_byte_size(d.shape(), dtype_size(*dtype), &expected) || expected != d.byte_length() ||
      d.byte_length() != length) {
    return invalid_argument("blob '" + ref.key() + "': " + std::to_string(length) +
                            " payload bytes do not match its descriptor");
  }
  if (length > limits.max_tensor_bytes) {
    return out_of_range("blob '" + ref.key() + "' of " + std::to_string(length) + " bytes exceeds the limit of " +
                        std::to_string(limits.max_tensor_bytes));
  }
  if (limits.require_checksum && d.checksum_type() != v1::CHECKSUM_TYPE_CRC32) {
    return invalid_argument("blob '" + ref.key() + "' has no checksum");
  }
  return ref;
}

}  // namespace

namespace ucx {

void EndpointClose::operator()(ucp_ep_h endpoint) const {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  void* closing = ucp_ep_close_nbx(endpoint, &param);
  if (!UCS_PTR_IS_PTR(closing)) return;  // closed at once, or failed: nothing to wait for
  const Request request(closing);
  const Deadline deadline = Clock::now() + kCloseTimeout;
  while (ucp_request_check_status(closing) == UCS_INPROGRESS && Clock::now() < deadline) {
    ucp_worker_progress(worker);
  }
}

}  // namespace ucx

struct UcxDataPlane::Peer {
  const UcxDataPlane* plane = nullptr;
  std::string fingerprint;
  // Set by the endpoint's error handler (the peer died or cannot be reached); the next send replaces it.
  std::atomic<bool> failed{false};
  ucx::Endpoint endpoint;
};

struct UcxDataPlane::SendState {
  UcxDataPlane* plane = nullptr;
  // UCX reads both until the send completes.
  std::string header;
  Blob payload;
  ucx::Request request;
  std::mutex mutex;
  std::condition_variable completed;
  bool done = false;
  ucs_status_t status = UCS_INPROGRESS;
};

struct UcxDataPlane::ReceiveState {
  UcxDataPlane* plane = nullptr;
  std::string key;
  v1::TensorDescriptor descriptor;
  std::vector<uint8_t> buffer;  // UCX writes the rendezvous payload here
  ucx::Request request;
};

Result<std::unique_ptr<DataPlane>> UcxDataPlane::create(const DataPlaneOptions& options) {
  auto fail = [](const std::string& what, ucs_status_t status) {
    return unavailable("ucx data plane: " + what + ": " + ucs_status_string(status));
  };
  ucp_config_t* raw_config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &raw_config);  // UCX_* from the environment
  if (status != UCS_OK) return fail("ucp_config_read", status);
  const ucx::Config config(raw_config);
  for (const auto& [name, value] : {std::pair{"TLS", &options.ucx_tls}, {"NET_DEVICES", &options.ucx_net_devices}}) {
    if (value->empty()) continue;
    status = ucp_config_modify(config.get(), name, value->c_str());
    if (status != UCS_OK) {
      return invalid_argument(std::string("ucx data plane: UCX_") + name + "='" + *value +
                              "' is not valid: " + ucs_status_string(status));
    }
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = "proxykv";
  ucp_context_h raw_context = nullptr;
  status = ucp_init(&params, config.get(), &raw_context);
  if (status != UCS_OK) return fail("ucp_init", status);
  ucx::Context context(raw_context);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // worker_mutex_ serialises all calls
  ucp_worker_h raw_worker = nullptr;
  status = ucp_worker_create(context.get(), &worker_params, &raw_worker);
  if (status != UCS_OK) return fail("ucp_worker_create", status);
  ucx::Worker worker(raw_worker);

  int event_fd = -1;
  if (ucp_worker_get_efd(worker.get(), &event_fd) != UCS_OK) event_fd = -1;

  ucp_address_t* raw_address = nullptr;
  size_t address_length = 0;
  status = ucp_worker_get_address(worker.get(), &raw_address, &address_length);
  if (status != UCS_OK) return fail("ucp_worker_get_address", status);
  const ucx::WorkerAddress address_handle(raw_address, ucx::AddressRelease{worker.get()});
  std::string address(reinterpret_cast<const char*>(raw_address), address_length);

  // The longest AM header this worker can send: UCX aborts the process on a longer one.
  ucp_worker_attr_t attributes{};
  attributes.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  status = ucp_worker_query(worker.get(), &attributes);
  if (status != UCS_OK) return fail("ucp_worker_query", status);
  const size_t max_header = std::min(attributes.max_am_header, kMaxHeaderBytes);

  transport_logger()->info(
      "ucx data plane ready: worker {} ({} address bytes, AM headers up to {} bytes), "
      "UCX_TLS={}, UCX_NET_DEVICES={}, {}",
      fingerprint(address), address.size(), max_header, effective_setting(config.get(), "UCX_TLS"),
      effective_setting(config.get(), "UCX_NET_DEVICES"),
      event_fd >= 0 ? "event-driven progress" : "polled progress (no wake-up support)");
  std::unique_ptr<UcxDataPlane> plane(
      new UcxDataPlane(options, std::move(context), std::move(worker), std::move(address), max_header, event_fd));

  // Registered once the plane exists (its address is the handler's argument); no peer knows the address yet.
  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                       UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = kBlobAmId;
  handler.flags = UCP_AM_FLAG_WHOLE_MSG;
  handler.cb = &UcxDataPlane::on_active_message;
  handler.arg = plane.get();
  {
    std::lock_guard<std::mutex> lock(plane->worker_mutex_);
    status = ucp_worker_set_am_recv_handler(plane->worker_.get(), &handler);
  }
  if (status != UCS_OK) return fail("ucp_worker_set_am_recv_handler", status);
  plane->progress_thread_ = std::thread([p = plane.get()] { p->progress_loop(); });
  return std::unique_ptr<DataPlane>(std::move(plane));
}

UcxDataPlane::UcxDataPlane(const DataPlaneOptions& options, ucx::Context context, ucx::Worker worker,
                           std::string address, size_t max_header, int event_fd)
    : options_(options),
      inbox_(options.max_pending_bytes, options.pending_ttl),
      context_(std::move(context)),
      worker_(std::move(worker)),
      address_(std::move(address)),
      max_header_(max_header),
      event_fd_(event_fd) {}

UcxDataPlane::~UcxDataPlane() {
  shut_down();
}

void UcxDataPlane::shut_down() {
  inbox_.close();
  stop_ = true;
  ucp_worker_signal(worker_.get());
  if (progress_thread_.joinable()) progress_thread_.join();

  std::lock_guard<std::mutex> lock(worker_mutex_);
  // Let what was sent reach its peers (bounded: a dead peer fails the flush), then close every endpoint.
  ucp_request_param_t param{};
  void* flushing = ucp_worker_flush_nbx(worker_.get(), &param);
  if (UCS_PTR_IS_PTR(flushing)) {
    const ucx::Request flush(flushing);
    const Deadline deadline = Clock::now() + kFlushTimeout;
    while (ucp_request_check_status(flushing) == UCS_INPROGRESS && Clock::now() < deadline) {
      ucp_worker_progress(worker_.get());
    }
  }
  peers_.clear();  // force-closes: sends still in flight complete as canceled
  while (ucp_worker_progress(worker_.get()) != 0) {
  }
  // Whatever is still pending is dropped with the worker; its requests are released first, its buffers after.
  for (auto& [key, send] : sends_) send->request.reset();
  for (auto& [key, receive] : receives_) receive->request.reset();
  worker_.reset();
  context_.reset();
  for (auto& [key, send] : sends_) {
    {
      std::lock_guard<std::mutex> send_lock(send->mutex);
      send->done = true;
      send->status = UCS_ERR_CANCELED;
    }
    send->completed.notify_all();
  }
  sends_.clear();
  receives_.clear();
}

v1::DataPlaneEndpoint UcxDataPlane::local_endpoint() const {
  v1::DataPlaneEndpoint e;
  e.set_transport("ucx");
  e.set_address(address_);
  return e;
}

DataPlaneStats UcxDataPlane::stats() const { return counters_.snapshot(inbox_.expired()); }

void UcxDataPlane::progress_loop() {
  bool arm_failed_logged = false;
  while (!stop_) {
    bool idle = false;
    bool progressed = false;
    {
      std::lock_guard<std::mutex> lock(worker_mutex_);
      for (int i = 0; i < kProgressBatch && ucp_worker_progress(worker_.get()) != 0; ++i) progressed = true;
      if (!progressed && in_flight_ == 0 && posting_ == 0) {
        if (event_fd_ < 0) {
          idle = true;
        } else {
          // Arming fails with BUSY when events are pending: progress again instead of sleeping.
          const ucs_status_t armed = ucp_worker_arm(worker_.get());
          idle = armed == UCS_OK;
          if (armed != UCS_OK && armed != UCS_ERR_BUSY && !arm_failed_logged) {
            transport_logger()->warn("ucx data plane: ucp_worker_arm: {}; polling instead", ucs_status_string(armed));
            arm_failed_logged = true;
          }
          if (arm_failed_logged) idle = true;
        }
      }
    }
    if (stop_) break;
    if (idle) {
      if (event_fd_ >= 0 && !arm_failed_logged) {
        pollfd fd{event_fd_, POLLIN, 0};
        ::poll(&fd, 1, kIdleWaitMs);  // woken by traffic, by send() and by shut_down() (ucp_worker_signal)
      } else {
        std::this_thread::sleep_for(kPollingInterval);
      }
    } else if (!progressed || posting_ > 0) {
      std::this_thread::yield();  // lets a posting thread take the worker
    }
  }
}

Result<UcxDataPlane::Peer*> UcxDataPlane::peer_locked(const std::string& address) {
  auto it = peers_.find(address);
  if (it != peers_.end()) {
    if (!it->second->failed) return it->second.get();
    peers_.erase(it);  // force-closes the failed endpoint; the next one starts afresh
  }
  auto peer = std::make_unique<Peer>();
  peer->plane = this;
  peer->fingerprint = fingerprint(address);
  if ((static_cast<uint8_t>(address[0]) & kAddressVersionMask) > kMaxAddressVersion) {
    return invalid_argument("ucx data plane: peer " + peer->fingerprint + " (" + std::to_string(address.size()) +
                            " bytes) is not a ucp worker address of a version this UCX reads");
  }
  std::string padded = address;
  padded.resize(address.size() + kAddressPadding, kAddressPaddingByte);
  ucp_ep_params_t params{};
  params.field_mask =
      UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(padded.data());
  // Peer failure handling turns a dead peer into failed requests instead of sends that never complete. (UCX
  // 1.13's shared-memory transports cannot detect a dead peer, so they are not used with it.)
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &UcxDataPlane::on_endpoint_error;
  params.err_handler.arg = peer.get();
  ucp_ep_h raw = nullptr;
  const ucs_status_t status = ucp_ep_create(worker_.get(), &params, &raw);
  if (status != UCS_OK) {
    return unavailable("ucx data plane: cannot reach peer " + peer->fingerprint + " (" +
                       std::to_string(address.size()) + " address bytes): " + ucs_status_string(status));
  }
  peer->endpoint = ucx::Endpoint(raw, ucx::EndpointClose{worker_.get()});
  Peer* result = peer.get();
  peers_[address] = std::move(peer);
  return result;
}

Status UcxDataPlane::send(const v1::DataPlaneEndpoint& peer, const std::string& key, const WireTensor& tensor,
                          Deadline deadline, const v1::TensorDescriptor* described) {
  if (peer.transport() != "ucx") {
    return invalid_argument("ucx data plane cannot send to a '" + peer.transport() + "' endpoint");
  }
  if (key.empty()) return invalid_argument("data plane: empty key");
  if (peer.address().empty() || peer.address().size() > kMaxWorkerAddressBytes) {
    return invalid_argument("ucx data plane: an address of " + std::to_string(peer.address().size()) +
                            " bytes is not a ucp worker address");
  }
  uint64_t bytes = 0;
  if (!checked_byte_size(tensor.shape, dtype_size(tensor.dtype), &bytes) || bytes != tensor.data.size()) {
    return invalid_argument("data plane: tensor '" + tensor.name + "' has " + std::to_string(tensor.data.size()) +
                            " bytes, its dtype and shape need " + std::to_string(bytes));
  }
  auto state = std::make_shared<SendState>();
  state->plane = this;
  PROXYKV_ASSIGN_OR_RETURN(state->header, blob_header(key, tensor, described));
  state->payload = tensor.data;  // shares the bytes
  if (state->header.size() > max_header_) {
    return invalid_argument("ucx data plane: the header of blob '" + key.substr(0, 64) + "...' is " +
                            std::to_string(state->header.size()) + " bytes, the transport carries at most " +
                            std::to_string(max_header_) + " (key too long?)");
  }

  std::string peer_name;
  bool pending = false;
  {
    ++posting_;
    std::unique_lock<std::mutex> lock(worker_mutex_);
    --posting_;
    if (stop_) return unavailable("data plane closed");
    PROXYKV_ASSIGN_OR_RETURN(Peer * target, peer_locked(peer.address()));
    peer_name = target->fingerprint;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMORY_TYPE;
    param.cb.send = &UcxDataPlane::on_send_complete;
    param.user_data = state.get();
    param.memory_type = UCS_MEMORY_TYPE_HOST;
    void* request = ucp_am_send_nbx(target->endpoint.get(), kBlobAmId, state->header.data(), state->header.size(),
                                    state->payload.data(), state->payload.size(), &param);
    if (UCS_PTR_IS_ERR(request)) {
      return unavailable("ucx data plane: sending blob '" + key + "' to peer " + peer_name +
                         " failed: " + ucs_status_string(UCS_PTR_STATUS(request)));
    }
    if (request == nullptr) {
      state->done = true;  // completed at once (eager, small): UCX has the bytes
      state->status = UCS_OK;
    } else {
      state->request.reset(request);
      sends_[state.get()] = state;
      ++in_flight_;
      pending = true;
    }
  }
  if (pending) {
    ucp_worker_signal(worker_.get());  // the progress thread drives the send from here
    std::unique_lock<std::mutex> lock(state->mutex);
    if (!state->completed.wait_until(lock, deadline, [&] { return state->done; })) {
      return deadline_exceeded("ucx data plane: peer " + peer_name + " did not take blob '" + key +
                               "' before the deadline");
    }
  }
  if (state->status != UCS_OK) {
    return unavailable("ucx data plane: sending blob '" + key + "' to peer " + peer_name +
                       " failed: " + ucs_status_string(state->status));
  }
  ++counters_.blobs_sent;
  counters_.bytes_sent += tensor.data.size();
  return Status::ok();
}

Result<WireTensor> UcxDataPlane::receive(const std::string& key, Deadline deadline, v1::TensorDescriptor* arrived) {
  return inbox_.take(key, deadline, arrived);
}

void UcxDataPlane::on_send_complete(void* /*request*/, ucs_status_t status, void* user_data) {
  auto* state = static_cast<SendState*>(user_data);
  UcxDataPlane* plane = state->plane;
  auto it = plane->sends_.find(state);
  if (it == plane->sends_.end()) return;  // not ours; cannot happen
  const std::shared_ptr<SendState> keep = std::move(it->second);
  plane->sends_.erase(it);
  keep->request.reset();
  --plane->in_flight_;
  {
    std::lock_guard<std::mutex> lock(keep->mutex);
    keep->done = true;
    keep->status = status;
  }
  keep->completed.notify_all();
}

void UcxDataPlane::on_endpoint_error(void* arg, ucp_ep_h /*endpoint*/, ucs_status_t status) {
  auto* peer = static_cast<Peer*>(arg);
  peer->failed = true;
  // At shutdown, peers that went first are expected to be gone.
  transport_logger()->log(peer->plane->stop_ ? spdlog::level::debug : spdlog::level::warn,
                          "ucx data plane: connection to peer {} failed: {}", peer->fingerprint,
                          ucs_status_string(status));
}

ucs_status_t UcxDataPlane::on_active_message(void* arg, const void* header, size_t header_length, void* data,
                                             size_t length, const ucp_am_recv_param_t* param) {
  auto* plane = static_cast<UcxDataPlane*>(arg);
  const bool rendezvous = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  try {
    return plane->accept_locked(header, header_length, data, length, rendezvous);
  } catch (const std::exception& e) {  // e.g. bad_alloc: refuse the blob, never unwind into UCX
    plane->refuse(std::string("refused a blob: ") + e.what());
    return rendezvous ? UCS_ERR_NO_MEMORY : UCS_OK;
  }
}

ucs_status_t UcxDataPlane::accept_locked(const void* header, size_t header_length, void* data, size_t length,
                                         bool rendezvous) {
  // Refusing a rendezvous blob fails the sender's send with the returned status; an eager one is just dropped.
  Result<v1::DataPlaneRef> ref = parse_blob_header(header, header_length, length, options_.socket.limits);
  if (!ref.is_ok()) {
    refuse("refused a blob: " + ref.status().message());
    return rendezvous ? UCS_ERR_INVALID_PARAM : UCS_OK;
  }
  if (!rendezvous) {
    deliver_locked(ref->key(), ref->tensor(), Blob::copy_of(data, length));
    return UCS_OK;
  }
  // Rendezvous: the bytes are still at the sender. Refuse before allocating what the inbox could not keep.
  if (length > options_.max_pending_bytes || inbox_.pending_bytes() + length > options_.max_pending_bytes) {
    refuse("inbox full, refused blob '" + ref->key() + "' (" + std::to_string(length) + " bytes)");
    return UCS_ERR_NO_MEMORY;
  }
  auto receive = std::make_unique<ReceiveState>();
  receive->plane = this;
  receive->key = ref->key();
  receive->descriptor = ref->tensor();
  receive->buffer.resize(length);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  param.cb.recv_am = &UcxDataPlane::on_receive_complete;
  param.user_data = receive.get();
  param.memory_type = UCS_MEMORY_TYPE_HOST;
  void* request = ucp_am_recv_data_nbx(worker_.get(), data, receive->buffer.data(), length, &param);
  if (UCS_PTR_IS_ERR(request)) {
    refuse("rendezvous receive of blob '" + receive->key + "' failed: " + ucs_status_string(UCS_PTR_STATUS(request)));
  } else if (request == nullptr) {
    deliver_locked(receive->key, receive->descriptor, Blob::adopt(std::move(receive->buffer)));
  } else {
    receive->request.reset(request);
    receives_[receive.get()] = std::move(receive);
    ++in_flight_;
  }
  return UCS_OK;
}

void UcxDataPlane::on_receive_complete(void* /*request*/, ucs_status_t status, size_t length, void* user_data) {
  auto* receive = static_cast<ReceiveState*>(user_data);
  UcxDataPlane* plane = receive->plane;
  auto it = plane->receives_.find(receive);
  if (it == plane->receives_.end()) return;  // not ours; cannot happen
  const std::unique_ptr<ReceiveState> owned = std::move(it->second);
  plane->receives_.erase(it);
  owned->request.reset();
  --plane->in_flight_;
  try {
    if (status != UCS_OK || length != owned->buffer.size()) {
      plane->refuse("rendezvous receive of blob '" + owned->key + "' failed: " + ucs_status_string(status));
      return;
    }
    plane->deliver_locked(owned->key, owned->descriptor, Blob::adopt(std::move(owned->buffer)));
  } catch (const std::exception& e) {
    plane->refuse(std::string("refused a blob: ") + e.what());
  }
}

void UcxDataPlane::deliver_locked(const std::string& key, const v1::TensorDescriptor& descriptor, Blob bytes) {
  WireTensor tensor;
  tensor.name = descriptor.name();
  tensor.dtype = *dtype_from_name(descriptor.dtype());  // checked by parse_blob_header
  tensor.shape.assign(descriptor.shape().begin(), descriptor.shape().end());
  tensor.data = std::move(bytes);
  if (Status s = matches_descriptor(tensor, descriptor); !s.is_ok()) {
    refuse("refused a blob: " + s.message());
    return;
  }
  const uint64_t size = tensor.data.size();
  // Counted before put() wakes the receiver, so that a caller who got the blob sees it counted.
  ++counters_.blobs_received;
  counters_.bytes_received += size;
  if (!inbox_.put(key, std::move(tensor), descriptor)) {
    --counters_.blobs_received;
    counters_.bytes_received -= size;
    refuse("inbox full, refused blob '" + key + "' (" + std::to_string(size) + " bytes)");
  }
}

void UcxDataPlane::refuse(const std::string& why) {
  ++counters_.blobs_refused;
  transport_logger()->warn("ucx data plane: {}", why);
}

}  // namespace proxykv::transport
