// The replies every service server builds the same way: HealthReply, its own Handshake, and the ErrorReply a
// worker sends to a request's reply_to when accepted work fails.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "proxykv/core/status.h"
#include "proxykv/transport/message.h"

namespace proxykv::service {

struct ServiceIdentity {
  std::string name;     // Envelope.sender, ErrorReply.service: "proxy", "mapper", "target"
  std::string version;  // HealthReply/Handshake.service_version
};

transport::Message health_reply(const ServiceIdentity& id, bool draining, size_t in_flight,
                                const std::string& data_plane_transport,
                                const std::vector<std::string>& model_pairs = {});

// A Handshake naming this service, the protocol versions it speaks and, when given, its data plane endpoint.
transport::Message handshake(const ServiceIdentity& id, const v1::DataPlaneEndpoint* data_plane = nullptr);

// Accepted, with the queue depth after this request (a load signal for the sender).
transport::Message accepted(const ServiceIdentity& id, size_t queue_depth);

// An ErrorReply carrying `request_id`, for reply_to.
transport::Message error_for_request(const Status& status, const ServiceIdentity& id, const std::string& request_id);

}  // namespace proxykv::service
