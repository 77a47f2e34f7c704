#include "proxykv/service/replies.h"

#include "proxykv/transport/codec.h"
#include "proxykv/transport/error_reply.h"

namespace proxykv::service {

transport::Message health_reply(const ServiceIdentity& id, bool draining, size_t in_flight,
                                const std::string& data_plane_transport,
                                const std::vector<std::string>& model_pairs) {
  transport::Message reply;
  v1::HealthReply* h = reply.envelope.mutable_health_reply();
  h->set_status(draining ? v1::SERVING_STATUS_DRAINING : v1::SERVING_STATUS_SERVING);
  h->set_service(id.name);
  h->set_service_version(id.version);
  h->set_in_flight(static_cast<uint32_t>(in_flight));
  for (uint32_t v : transport::supported_protocol_versions()) h->add_supported_protocol_versions(v);
  h->set_data_plane_transport(data_plane_transport);
  for (const auto& n : model_pairs) h->add_model_pairs(n);
  return reply;
}

transport::Message handshake(const ServiceIdentity& id, const v1::DataPlaneEndpoint* data_plane) {
  transport::Message m;
  v1::Handshake* h = m.envelope.mutable_handshake();
  h->set_protocol_version(transport::kProtocolVersion);
  for (uint32_t v : transport::supported_protocol_versions()) h->add_supported_protocol_versions(v);
  h->set_service_name(id.name);
  h->set_service_version(id.version);
  if (data_plane) *h->add_data_planes() = *data_plane;
  return m;
}

transport::Message accepted(const ServiceIdentity& id, size_t queue_depth) {
  transport::Message reply;
  reply.envelope.mutable_accepted()->set_service(id.name);
  reply.envelope.mutable_accepted()->set_queue_depth(static_cast<uint32_t>(queue_depth));
  return reply;
}

transport::Message error_for_request(const Status& status, const ServiceIdentity& id, const std::string& request_id) {
  transport::Message error = transport::make_error_reply(status, id.name);
  error.envelope.set_request_id(request_id);
  return error;
}

}  // namespace proxykv::service
