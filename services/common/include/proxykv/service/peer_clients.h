// PeerClients: one ControlClient per peer endpoint, made on first use, for services that send to addresses
// they learn from requests (the mapper sends PruneMask to each ScoreRequest's reply_to). One thread owns a
// PeerClients, as ControlClient requires. Bounded: past `max_peers` the least recently used client is closed.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/transport/control_client.h"
#include "proxykv/transport/message.h"

namespace proxykv::service {

class PeerClients {
 public:
  PeerClients(zmq::context_t& context, transport::ClientOptions base, size_t max_peers = 64)
      : context_(context), base_(std::move(base)), max_peers_(max_peers) {}

  // Sends `message` to `endpoint` (tcp://host:port) and waits for its reply until `deadline`. Only tcp://
  // endpoints are accepted: a request must not make a service connect to arbitrary transports.
  Result<transport::Message> call(const std::string& endpoint, transport::Message message,
                                  transport::Deadline deadline);

 private:
  struct Peer {
    std::string endpoint;
    std::unique_ptr<transport::ControlClient> client;
  };
  zmq::context_t& context_;
  transport::ClientOptions base_;
  size_t max_peers_;
  std::list<Peer> peers_;  // most recently used first
};

}  // namespace proxykv::service
