#include "proxykv/mapper_server/mapper_server.h"

#include <chrono>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "proxykv/core/logging.h"

#include "proxykv/scoring/selection.h"
#include "proxykv/service/bounded_queue.h"
#include "proxykv/service/deadline.h"
#include "proxykv/service/peer_clients.h"
#include "proxykv/service/replies.h"
#include "proxykv/service/wire_torch.h"
#include "proxykv/transport/codec.h"

namespace proxykv::mapper {
namespace {

using transport::Message;

std::shared_ptr<spdlog::logger> logger() { return get_logger("mapper"); }

// An accepted request with the mapper it was checked against (the registry does not change while serving).
struct Job {
  Message request;
  const MapperPair* pair = nullptr;
};

}  // namespace

struct MapperServer::Impl {
  Impl(zmq::context_t& ctx, MapperServerOptions opts, const MapperRegistry& reg, telemetry::Metrics& m)
      : context(ctx),
        options(std::move(opts)),
        identity{options.control.service_name, options.service_version},
        registry(reg),
        metrics(m) {}

  zmq::context_t& context;
  MapperServerOptions options;
  service::ServiceIdentity identity;
  const MapperRegistry& registry;
  telemetry::Metrics& metrics;
  std::unique_ptr<transport::ControlServer> server;
  std::unique_ptr<transport::DataPlane> plane;

  std::atomic<bool> stop_serving{false};
  std::atomic<bool> draining{false};
  std::atomic<size_t> in_flight{0};
  std::thread serve_thread;
  std::vector<std::thread> workers;

  service::BoundedQueue<Job> queue{options.queue_capacity};
  mutable std::mutex mu;
  MapperServerStats stats;  // guarded by mu

  void count(uint64_t MapperServerStats::*field) {
    std::lock_guard<std::mutex> lock(mu);
    ++(stats.*field);
  }

  Result<Message> handle(const Message& request) {
    switch (request.envelope.body_case()) {
      case v1::Envelope::kHealthRequest:
        return service::health_reply(identity, draining, in_flight.load(), plane->transport_name(),
                                     registry.pair_names());
      case v1::Envelope::kHandshake: {
        const v1::DataPlaneEndpoint endpoint = plane->local_endpoint();
        return service::handshake(identity, &endpoint);
      }
      case v1::Envelope::kProxyFeatures:
        break;
      default:
        return unimplemented("the mapper does not serve " +
                             std::string(transport::message_type_name(request.type())) + " requests");
    }
    const v1::ProxyFeatures& f = request.envelope.proxy_features();
    auto refuse = [&](Status s) -> Result<Message> {
      count(&MapperServerStats::refused);
      logger()->warn("[{}] refused: {}", f.request_id(), s.to_string());
      return s;
    };
    if (draining) return refuse(Status(StatusCode::kUnavailable, "mapper is draining (shutting down)"));
    auto pair = registry.find(f.proxy_model_id(), f.target_model_id());
    if (!pair.is_ok()) return refuse(pair.status());
    const MapperPair& p = **pair;
    if (!f.compatibility_hash().empty() && f.compatibility_hash() != p.compatibility_hash) {
      return refuse(failed_precondition("compatibility hash " + f.compatibility_hash() + " is not mapper " +
                                        p.name() + "'s " + p.compatibility_hash));
    }
    const auto& shape = p.loaded.config.shape;
    if (f.channels() != shape.channels || f.proxy_layers() != shape.proxy_layers ||
        f.proxy_kv_heads() != shape.proxy_kv_heads) {
      return refuse(invalid_argument("features [C=" + std::to_string(f.channels()) + ", " +
                                     std::to_string(f.proxy_layers()) + "x" + std::to_string(f.proxy_kv_heads()) +
                                     "] do not fit mapper " + p.name() + " (" + shape.to_string() + ")"));
    }
    std::vector<std::string> names(f.channel_names().begin(), f.channel_names().end());
    if (names != p.channels) return refuse(invalid_argument("feature channels differ from mapper " + p.name() + "'s"));
    if (!(f.keep_ratio() > 0.f && f.keep_ratio() <= 1.f)) {
      return refuse(invalid_argument("keep_ratio must be in (0, 1], got " + std::to_string(f.keep_ratio())));
    }
    {
      auto level = service::from_wire(f.selection_level());
      if (!level.is_ok()) return refuse(level.status());
      if (Status s = scoring::check_head_floor(f.head_floor(), *level); !s.is_ok()) return refuse(s);
    }
    if (f.tokens() == 0 || f.num_sink_tokens() > f.tokens()) {
      return refuse(invalid_argument("tokens must be >= 1 and num_sink_tokens <= tokens"));
    }
    if (f.reply_to().rfind("tcp://", 0) != 0) return refuse(invalid_argument("reply_to must be a tcp:// endpoint"));
    if (f.features_tensor().empty() && !f.has_features_ref()) {
      return refuse(invalid_argument("ProxyFeatures carries neither features_tensor nor features_ref"));
    }
    size_t depth = 0;
    ++in_flight;
    if (!queue.push(Job{request, &p}, &depth)) {
      --in_flight;
      return refuse(Status(StatusCode::kResourceExhausted,
                           "mapper queue full (" + std::to_string(queue.capacity()) + " requests)"));
    }
    count(&MapperServerStats::accepted);
    return service::accepted(identity, depth);
  }

  // Features -> PruneMask for one accepted request.
  Result<Message> map_one(const Message& request, const MapperPair* pair, transport::Deadline deadline) {
    const v1::ProxyFeatures& f = request.envelope.proxy_features();
    transport::WireTensor wire;
    if (!f.features_tensor().empty()) {
      const transport::WireTensor* t = request.find_tensor(f.features_tensor());
      if (!t) return invalid_argument("features tensor '" + f.features_tensor() + "' is not in the message");
      wire = *t;
    } else {
      v1::TensorDescriptor arrived;  // what the plane checked the bytes against: no second CRC-32 here
      PROXYKV_ASSIGN_OR_RETURN(wire, plane->receive(f.features_ref().key(), deadline, &arrived));
      PROXYKV_RETURN_IF_ERROR(transport::matches_descriptor(wire, f.features_ref().tensor(), arrived));
      metrics.transfer_bytes_total(plane->transport_name()).Increment(static_cast<double>(wire.data.size()));
    }
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor features, service::from_wire(wire));
    if (features.dim() != 3 || features.size(2) != static_cast<int64_t>(f.tokens())) {
      return invalid_argument("features tensor does not have the declared [C, P, T] shape");
    }
    const auto t0 = std::chrono::steady_clock::now();
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, map_features(*pair, features));
    PROXYKV_ASSIGN_OR_RETURN(scoring::SelectionLevel level, service::from_wire(f.selection_level()));
    PROXYKV_ASSIGN_OR_RETURN(scoring::KeepSet keep, scoring::select_entries(scores, f.keep_ratio(), level,
                                                                            f.num_sink_tokens(), f.head_floor()));
    metrics.mapper_inference_seconds().Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

    Message mask;
    mask.envelope.set_request_id(f.request_id());
    v1::PruneMask* m = mask.envelope.mutable_prune_mask();
    m->set_request_id(f.request_id());
    m->set_target_model_id(f.target_model_id());
    m->set_target_layers(static_cast<uint32_t>(scores.size(0)));
    m->set_target_kv_heads(static_cast<uint32_t>(scores.size(1)));
    m->set_tokens(f.tokens());
    m->set_keep_ratio(f.keep_ratio());
    m->set_achieved_keep_ratio(static_cast<float>(keep.ratio()));
    m->set_selection_level(f.selection_level() == v1::SELECTION_LEVEL_UNSPECIFIED ? v1::SELECTION_LEVEL_GLOBAL
                                                                                   : f.selection_level());
    m->set_head_floor(f.head_floor());
    m->set_method("proxykv");
    m->set_encoding(v1::MASK_ENCODING_KEPT_INDICES);
    m->set_compatibility_hash(pair->compatibility_hash);
    for (size_t l = 0; l < keep.keep.size(); ++l) {
      for (size_t h = 0; h < keep.keep[l].size(); ++h) {
        v1::HeadKeptIndices* head = m->add_heads();
        head->set_layer(static_cast<uint32_t>(l));
        head->set_kv_head(static_cast<uint32_t>(h));
        at::Tensor idx = keep.keep[l][h].to(at::kLong).contiguous();
        const int64_t* d = idx.data_ptr<int64_t>();
        for (int64_t i = 0; i < idx.numel(); ++i) head->add_token_indices(static_cast<uint32_t>(d[i]));
      }
    }
    return mask;
  }

  void worker_loop() {
    transport::ClientOptions base;
    base.service_name = options.control.service_name;
    base.socket = options.control.socket;
    base.curve = options.peer_curve;
    service::PeerClients replies(context, base);
    while (std::optional<Job> next = queue.pop()) {
      const Message& request = next->request;
      const v1::ProxyFeatures& f = request.envelope.proxy_features();
      const transport::Deadline deadline =
          service::steady_deadline(f.deadline_unix_ms(), std::chrono::milliseconds(30000));
      Result<Message> mask = [&]() -> Result<Message> {
        try {
          return map_one(request, next->pair, deadline);
        } catch (const std::exception& e) {  // LibTorch throws c10::Error: never past a thread boundary
          return internal_error(std::string("mapping failed: ") + e.what());
        }
      }();
      const bool ok = mask.is_ok();
      if (!ok) logger()->warn("[{}] mapping failed: {}", f.request_id(), mask.status().to_string());
      Message out = ok ? std::move(*mask) : service::error_for_request(mask.status(), identity, f.request_id());
      auto ack = replies.call(f.reply_to(), std::move(out), service::delivery_deadline(deadline));
      if (!ack.is_ok()) {
        count(&MapperServerStats::delivery_failed);
        logger()->warn("[{}] cannot deliver the {} to {}: {}", f.request_id(), ok ? "mask" : "error", f.reply_to(),
                       ack.status().to_string());
      } else {
        count(ok ? &MapperServerStats::masks_sent : &MapperServerStats::errors_sent);
      }
      --in_flight;
    }
  }
};

MapperServer::MapperServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<MapperServer>> MapperServer::start(zmq::context_t& context, MapperServerOptions options,
                                                          const MapperRegistry& registry,
                                                          telemetry::Metrics& metrics) {
  if (options.workers < 1) return invalid_argument("mapper workers must be >= 1");
  if (options.queue_capacity < 1) return invalid_argument("mapper queue_capacity must be >= 1");
  if (registry.empty()) return invalid_argument("the mapper serves no checkpoint: give at least one --mappers");
  auto impl = std::make_unique<Impl>(context, std::move(options), registry, metrics);
  PROXYKV_ASSIGN_OR_RETURN(impl->server, transport::ControlServer::bind(context, impl->options.control));
  PROXYKV_ASSIGN_OR_RETURN(impl->plane, transport::make_data_plane(context, impl->options.data_plane));
  Impl* raw = impl.get();
  for (int i = 0; i < raw->options.workers; ++i) raw->workers.emplace_back([raw] { raw->worker_loop(); });
  raw->serve_thread = std::thread([raw] {
    Status s = raw->server->serve([raw](const Message& m) { return raw->handle(m); }, raw->stop_serving);
    if (!s.is_ok()) logger()->error("control socket failed: {}", s.to_string());
  });
  logger()->info("serving {} on {} (data plane {}), mappers: {}", raw->options.control.service_name,
                 raw->server->endpoint(), raw->plane->transport_name(), raw->registry.pair_names().size());
  return std::unique_ptr<MapperServer>(new MapperServer(std::move(impl)));
}

MapperServer::~MapperServer() {
  if (!impl_) return;
  impl_->stop_serving = true;
  if (impl_->serve_thread.joinable()) impl_->serve_thread.join();
  impl_->queue.close();
  for (auto& w : impl_->workers) w.join();
}

const std::string& MapperServer::control_endpoint() const { return impl_->server->endpoint(); }
v1::DataPlaneEndpoint MapperServer::data_plane_endpoint() const { return impl_->plane->local_endpoint(); }
const char* MapperServer::data_plane_transport() const { return impl_->plane->transport_name(); }
void MapperServer::begin_drain() { impl_->draining = true; }
bool MapperServer::draining() const { return impl_->draining; }
size_t MapperServer::in_flight() const { return impl_->in_flight; }
MapperServerStats MapperServer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

}  // namespace proxykv::mapper
