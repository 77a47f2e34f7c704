// The ZeroMQ data plane: a PULL socket bound for incoming blobs (drained by a receiver thread into a
// BlobInbox) and one PUSH socket per peer for outgoing ones. Each blob is a protocol message (TensorBlob body,
// one tensor frame), so it gets the same validation and checksum as the control channel.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "blob_inbox.h"
#include "proxykv/transport/data_plane.h"

namespace proxykv::transport {

class ZmqDataPlane final : public DataPlane {
 public:
  static Result<std::unique_ptr<DataPlane>> create(zmq::context_t& context, const DataPlaneOptions& options);
  ~ZmqDataPlane() override;

  const char* transport_name() const override { return "zmq"; }
  v1::DataPlaneEndpoint local_endpoint() const override;
  Status send(const v1::DataPlaneEndpoint& peer, const std::string& key, const WireTensor& tensor, Deadline deadline,
              const v1::TensorDescriptor* described = nullptr) override;
  Result<WireTensor> receive(const std::string& key, Deadline deadline,
                             v1::TensorDescriptor* arrived = nullptr) override;
  DataPlaneStats stats() const override;

 private:
  struct PeerSocket {
    std::mutex mutex;
    zmq::socket_t socket;
  };

  ZmqDataPlane(zmq::context_t& context, const DataPlaneOptions& options, zmq::socket_t receiver, std::string endpoint);
  void receive_loop();
  Result<std::shared_ptr<PeerSocket>> peer_socket(const std::string& endpoint);

  zmq::context_t& context_;
  DataPlaneOptions options_;
  zmq::socket_t receiver_;
  std::string endpoint_;
  BlobInbox inbox_;
  std::mutex peers_mutex_;
  std::map<std::string, std::shared_ptr<PeerSocket>> peers_;
  std::atomic<bool> stop_{false};
  DataPlaneCounters counters_;
  std::thread receiver_thread_;
};

}  // namespace proxykv::transport
