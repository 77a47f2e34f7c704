// Helpers shared by the transport tests: tensors with deterministic contents, a server running on its own
// thread, temporary directories.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "proxykv/transport/control_server.h"
#include "proxykv/transport/message.h"

namespace proxykv::transport::testing {

// A tensor of `shape` whose bytes are a deterministic function of `seed`.
inline WireTensor make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, uint32_t seed = 1) {
  WireTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  std::vector<uint8_t> bytes(static_cast<size_t>(t.num_elements()) * dtype_size(dtype));
  std::mt19937 rng(seed);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  if (dtype == DType::kBool) {
    for (uint8_t& b : bytes) b &= 1;
  }
  t.data = Blob::adopt(std::move(bytes));
  return t;
}

inline Message health_request(const std::string& request_id = "") {
  Message m;
  m.envelope.mutable_health_request();
  m.envelope.set_request_id(request_id);
  return m;
}

// A ControlServer serving on its own thread until destroyed.
class ServerThread {
 public:
  ServerThread(zmq::context_t& context, ServerOptions options, Handler handler) {
    auto server = ControlServer::bind(context, std::move(options));
    if (!server.is_ok()) throw std::runtime_error(server.status().to_string());
    server_ = std::move(server).value();
    endpoint_ = server_->endpoint();
    thread_ = std::thread([this, handler = std::move(handler)] {
      Status s = server_->serve(handler, stop_, std::chrono::milliseconds(10));
      if (!s.is_ok()) ADD_FAILURE() << "serve: " << s.to_string();
    });
  }
  ~ServerThread() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }
  const std::string& endpoint() const { return endpoint_; }
  ServerStats stats() const { return server_->stats(); }

 private:
  std::unique_ptr<ControlServer> server_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A handler that answers HealthRequest with a HealthReply naming `service`, and echoes the tensors of any
// other request back in a HealthReply (enough to see tensors make the round trip through a server).
inline Handler echo_handler(const std::string& service, std::atomic<int>* calls = nullptr) {
  return [service, calls](const Message& request) -> Result<Message> {
    if (calls != nullptr) ++*calls;
    Message reply;
    reply.envelope.mutable_health_reply()->set_service(service);
    reply.envelope.mutable_health_reply()->set_status(v1::SERVING_STATUS_SERVING);
    reply.tensors = request.tensors;
    return reply;
  };
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "proxykv-transport-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// tcp://127.0.0.1:PORT -> PORT
inline std::string port_of(const std::string& endpoint) {
  return endpoint.substr(endpoint.rfind(':') + 1);
}

}  // namespace proxykv::transport::testing
