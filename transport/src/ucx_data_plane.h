// The UCX data plane: one ucp worker per plane; blobs travel as active messages (header = "PKV1" + a
// serialized v1::DataPlaneRef naming the key and describing the tensor, payload = the tensor bytes; UCX picks
// eager or rendezvous by size). A progress thread drives the worker (sleeping on its event fd when idle) and
// its AM handler fills the same BlobInbox as the ZeroMQ plane. Compiled only when the build has UCX.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <ucp/api/ucp.h>

#include "blob_inbox.h"
#include "proxykv/transport/data_plane.h"

namespace proxykv::transport {

// RAII for UCX handles: unique_ptr with the UCX release function as deleter; none is copied or moved while
// UCX may still call back into what owns it.
namespace ucx {

struct ConfigRelease {
  void operator()(ucp_config_t* config) const { ucp_config_release(config); }
};
struct ContextCleanup {
  void operator()(ucp_context_h context) const { ucp_cleanup(context); }
};
struct WorkerDestroy {
  void operator()(ucp_worker_h worker) const { ucp_worker_destroy(worker); }
};
struct AddressRelease {
  ucp_worker_h worker = nullptr;
  void operator()(ucp_address_t* address) const { ucp_worker_release_address(worker, address); }
};
// A request UCX returned from a non-blocking call: released (ucp_request_free) when the owner is done with
// it. UCX calls no callback for a request after it is released.
struct RequestFree {
  void operator()(void* request) const { ucp_request_free(request); }
};
// Closes the endpoint without waiting for the peer (UCP_EP_CLOSE_FLAG_FORCE: outstanding requests complete
// as canceled), progressing `worker` for a bounded time so the close finishes. Called with the worker lock.
struct EndpointClose {
  ucp_worker_h worker = nullptr;
  void operator()(ucp_ep_h endpoint) const;
};

using Config = std::unique_ptr<ucp_config_t, ConfigRelease>;
using Context = std::unique_ptr<std::remove_pointer_t<ucp_context_h>, ContextCleanup>;
using Worker = std::unique_ptr<std::remove_pointer_t<ucp_worker_h>, WorkerDestroy>;
using WorkerAddress = std::unique_ptr<ucp_address_t, AddressRelease>;
using Request = std::unique_ptr<void, RequestFree>;
using Endpoint = std::unique_ptr<std::remove_pointer_t<ucp_ep_h>, EndpointClose>;

}  // namespace ucx

class UcxDataPlane final : public DataPlane {
 public:
  // UNAVAILABLE when UCX cannot start (no usable transport or device for `ucx_tls`/`ucx_net_devices`).
  static Result<std::unique_ptr<DataPlane>> create(const DataPlaneOptions& options);
  ~UcxDataPlane() override;
  UcxDataPlane(const UcxDataPlane&) = delete;
  UcxDataPlane& operator=(const UcxDataPlane&) = delete;

  const char* transport_name() const override { return "ucx"; }
  v1::DataPlaneEndpoint local_endpoint() const override;
  Status send(const v1::DataPlaneEndpoint& peer, const std::string& key, const WireTensor& tensor, Deadline deadline,
              const v1::TensorDescriptor* described = nullptr) override;
  Result<WireTensor> receive(const std::string& key, Deadline deadline,
                             v1::TensorDescriptor* arrived = nullptr) override;
  DataPlaneStats stats() const override;

 private:
  struct Peer;
  struct SendState;
  struct ReceiveState;

  UcxDataPlane(const DataPlaneOptions& options, ucx::Context context, ucx::Worker worker, std::string address,
               size_t max_header, int event_fd);

  // UCX callbacks (run inside ucp_worker_progress, i.e. with worker_mutex_ held). No exception leaves them.
  static ucs_status_t on_active_message(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                        const ucp_am_recv_param_t* param);
  static void on_send_complete(void* request, ucs_status_t status, void* user_data);
  static void on_receive_complete(void* request, ucs_status_t status, size_t length, void* user_data);
  static void on_endpoint_error(void* arg, ucp_ep_h endpoint, ucs_status_t status);

  ucs_status_t accept_locked(const void* header, size_t header_length, void* data, size_t length, bool rendezvous);
  // Checks the bytes against the descriptor they came with and hands them to the inbox.
  void deliver_locked(const std::string& key, const v1::TensorDescriptor& descriptor, Blob bytes);
  void refuse(const std::string& why);
  void finish_receive_locked(ReceiveState* receive, ucs_status_t status);

  void progress_loop();
  Result<Peer*> peer_locked(const std::string& address);
  void shut_down();

  const DataPlaneOptions options_;
  BlobInbox inbox_;
  // Serialises every call into the worker and its endpoints (the worker runs in UCS_THREAD_MODE_SERIALIZED),
  // and guards peers_, sends_, receives_.
  std::mutex worker_mutex_;
  // Declared in teardown order reversed: endpoints and requests go before the worker, the worker before the
  // context (the destructor also does it explicitly).
  ucx::Context context_;
  ucx::Worker worker_;
  const std::string address_;
  const size_t max_header_;  // the longest AM header the worker sends (ucp_worker_query)
  const int event_fd_;       // ucp_worker_get_efd; -1 when the transports have no wake-up (then: timed polling)
  std::map<std::string, std::unique_ptr<Peer>> peers_;
  std::map<const SendState*, std::shared_ptr<SendState>> sends_;
  std::map<const ReceiveState*, std::unique_ptr<ReceiveState>> receives_;
  // Operations the progress thread must drive (sends and rendezvous receives in flight): while there are any,
  // it keeps progressing instead of sleeping on the event fd.
  std::atomic<int> in_flight_{0};
  // Threads waiting for worker_mutex_ to post a send: the busy progress loop lets them in.
  std::atomic<int> posting_{0};
  std::atomic<bool> stop_{false};
  DataPlaneCounters counters_;
  std::thread progress_thread_;
};

}  // namespace proxykv::transport
