// CURVE (CurveZMQ) keys and client authentication for the ZeroMQ sockets (docs/protocol.md, "CURVE").
//
// Keys are 40-character Z85 strings, stored one per file (Kubernetes Secrets mount them as files);
// surrounding whitespace is ignored. A server needs its secret key; a client needs the server's public key
// and a keypair of its own (generated per client when none is given). Without a CurveAuthenticator, a CURVE
// server accepts any client that knows its public key: the channel is encrypted and the server is
// authenticated. With one, only the listed client public keys get through.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "proxykv/core/status.h"

namespace proxykv::transport {

inline constexpr size_t kCurveKeyZ85Length = 40;

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// A fresh keypair (zmq_curve_keypair). Fails when libzmq was built without CURVE (libsodium).
Result<CurveKeyPair> generate_curve_keypair();
// The public key that belongs to a secret key (zmq_curve_public).
Result<std::string> curve_public_key(const std::string& secret_key);
// INVALID_ARGUMENT unless `key` is a 40-character Z85 string that decodes.
Status validate_curve_key(const std::string& key);

// Reads a Z85 key from a file (NOT_FOUND when missing, INVALID_ARGUMENT when it is not a key).
Result<std::string> load_curve_key(const std::string& path);
// Writes `<directory>/<name>.key` (public, mode 0644) and `<directory>/<name>.key_secret` (mode 0600).
Status save_curve_keypair(const CurveKeyPair& keys, const std::string& directory, const std::string& name);

// Server side of CURVE.
struct CurveServerConfig {
  std::string secret_key;  // Z85
};
// Client side of CURVE.
struct CurveClientConfig {
  std::string server_public_key;  // Z85
  CurveKeyPair client_keys;       // empty: a fresh keypair per socket
};

// The ZAP handler of one zmq::context_t: admits CURVE clients whose public key is listed and refuses the rest.
// Create it before the servers it guards start accepting; it must be destroyed before the context. There can
// be one per context (ZeroMQ's ZAP endpoint is per context).
class CurveAuthenticator {
 public:
  static Result<std::unique_ptr<CurveAuthenticator>> start(zmq::context_t& context,
                                                           const std::vector<std::string>& allowed_public_keys);
  ~CurveAuthenticator();
  CurveAuthenticator(const CurveAuthenticator&) = delete;
  CurveAuthenticator& operator=(const CurveAuthenticator&) = delete;

  uint64_t accepted() const { return accepted_.load(); }
  uint64_t refused() const { return refused_.load(); }

 private:
  CurveAuthenticator(zmq::socket_t socket, std::set<std::string> allowed);
  void run();

  zmq::socket_t socket_;
  std::set<std::string> allowed_;  // Z85 public keys
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace proxykv::transport
