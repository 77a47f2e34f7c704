#include "proxykv/service/peer_clients.h"

#include <algorithm>

#include "proxykv/service/deadline.h"

namespace proxykv::service {

Result<transport::Message> PeerClients::call(const std::string& endpoint, transport::Message message,
                                             transport::Deadline deadline) {
  if (endpoint.rfind("tcp://", 0) != 0 || endpoint.size() > 256) {
    return invalid_argument("reply address '" + endpoint.substr(0, 64) + "' is not a tcp:// endpoint");
  }
  auto it = std::find_if(peers_.begin(), peers_.end(), [&](const Peer& p) { return p.endpoint == endpoint; });
  if (it == peers_.end()) {
    transport::ClientOptions options = base_;
    options.endpoints = {endpoint};
    PROXYKV_ASSIGN_OR_RETURN(auto client, transport::ControlClient::connect(context_, options));
    peers_.push_front(Peer{endpoint, std::move(client)});
    if (peers_.size() > max_peers_) peers_.pop_back();
    it = peers_.begin();
  } else if (it != peers_.begin()) {
    peers_.splice(peers_.begin(), peers_, it);
    it = peers_.begin();
  }
  return it->client->call(std::move(message), time_left(deadline));
}

}  // namespace proxykv::service
