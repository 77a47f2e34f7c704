#include "proxykv/proxy_server/proxy_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "proxykv/core/logging.h"

#include "proxykv/service/bounded_queue.h"
#include "proxykv/service/deadline.h"
#include "proxykv/service/peer_clients.h"
#include "proxykv/service/replies.h"
#include "proxykv/service/wire_torch.h"
#include "proxykv/transport/codec.h"
#include "proxykv/transport/endpoint_resolver.h"
#include "proxykv/transport/control_client.h"

namespace proxykv::proxy {
namespace {

using transport::Message;

std::shared_ptr<spdlog::logger> logger() { return get_logger("proxy"); }

// One mapper of the pool, owned by one worker thread: its control client and, once handshaken, its data plane.
struct MapperPeer {
  std::string endpoint;
  std::unique_ptr<transport::ControlClient> client;
  std::optional<v1::DataPlaneEndpoint> data_plane;
};

}  // namespace

struct ProxyServer::Impl {
  Impl(zmq::context_t& ctx, ProxyServerOptions opts, const DecoderLM& m, telemetry::Metrics& met)
      : context(ctx),
        options(std::move(opts)),
        identity{options.control.service_name, options.service_version},
        model(m),
        metrics(met) {}

  zmq::context_t& context;
  ProxyServerOptions options;
  service::ServiceIdentity identity;
  const DecoderLM& model;
  telemetry::Metrics& metrics;
  std::unique_ptr<transport::ControlServer> server;
  std::unique_ptr<transport::DataPlane> plane;
  std::atomic<bool> stop_serving{false};
  std::atomic<bool> draining{false};
  std::atomic<size_t> in_flight{0};
  std::atomic<uint64_t> next_mapper{0};
  std::atomic<uint64_t> transfer_seq{0};
  service::BoundedQueue<Message> queue{options.queue_capacity};
  std::thread serve_thread;
  std::vector<std::thread> workers;
  mutable std::mutex mu;
  ProxyServerStats stats;  // guarded by mu

  void count(uint64_t ProxyServerStats::*field) {
    std::lock_guard<std::mutex> lock(mu);
    ++(stats.*field);
  }

  Result<Message> handle(const Message& request) {
    switch (request.envelope.body_case()) {
      case v1::Envelope::kHealthRequest:
        return service::health_reply(identity, draining, in_flight.load(), plane->transport_name());
      case v1::Envelope::kHandshake:
        return service::handshake(identity);
      case v1::Envelope::kScoreRequest:
        break;
      default:
        return unimplemented("the proxy does not serve " + std::string(transport::message_type_name(request.type())) +
                             " requests");
    }
    const v1::ScoreRequest& r = request.envelope.score_request();
    auto refuse = [&](Status s) -> Result<Message> {
      count(&ProxyServerStats::refused);
      logger()->warn("[{}] refused: {}", r.request_id(), s.to_string());
      return s;
    };
    if (draining) return refuse(Status(StatusCode::kUnavailable, "proxy is draining (shutting down)"));
    if (!r.proxy_model_id().empty() && r.proxy_model_id() != options.proxy_model_id) {
      return refuse(not_found("this proxy serves '" + options.proxy_model_id + "', not '" + r.proxy_model_id() + "'"));
    }
    const int64_t T = r.context_token_ids_size();
    if (T < 1 || T > options.max_context_tokens) {
      return refuse(out_of_range("context of " + std::to_string(T) + " tokens (allowed 1.." +
                                 std::to_string(options.max_context_tokens) + ")"));
    }
    const int64_t vocab = model.spec().vocab_size;
    for (int32_t id : r.context_token_ids()) {
      if (id < 0 || id >= vocab) {
        return refuse(invalid_argument("token id " + std::to_string(id) + " outside the proxy's vocabulary of " +
                                       std::to_string(vocab)));
      }
    }
    if (!(r.keep_ratio() > 0.f && r.keep_ratio() <= 1.f)) {
      return refuse(invalid_argument("keep_ratio must be in (0, 1], got " + std::to_string(r.keep_ratio())));
    }
    // The mapper's own check, early (an unknown level is the mapper's to refuse, as before the head floor).
    if (auto level = service::from_wire(r.selection_level()); level.is_ok()) {
      if (Status s = scoring::check_head_floor(r.head_floor(), *level); !s.is_ok()) return refuse(s);
    } else if (!(r.head_floor() >= 0.f && r.head_floor() <= 1.f)) {
      return refuse(invalid_argument("head_floor must be in [0, 1], got " + std::to_string(r.head_floor())));
    }
    if (r.num_sink_tokens() > static_cast<uint32_t>(T)) return refuse(invalid_argument("num_sink_tokens > tokens"));
    if (r.reply_to().rfind("tcp://", 0) != 0) return refuse(invalid_argument("reply_to must be a tcp:// endpoint"));
    if (r.target_model_id().empty()) return refuse(invalid_argument("target_model_id is empty"));
    size_t depth = 0;
    ++in_flight;
    if (!queue.push(request, &depth)) {
      --in_flight;
      return refuse(Status(StatusCode::kResourceExhausted,
                           "proxy queue full (" + std::to_string(queue.capacity()) + " requests)"));
    }
    count(&ProxyServerStats::accepted);
    return service::accepted(identity, depth);
  }

  // One peer per endpoint in `endpoints`: peers still listed keep their connection and handshake, new ones
  // connect lazily, the others are closed.
  static void reconcile_peers(std::vector<MapperPeer>& peers, const std::vector<std::string>& endpoints) {
    std::vector<MapperPeer> next;
    for (const std::string& endpoint : endpoints) {
      auto kept = std::find_if(peers.begin(), peers.end(), [&](const MapperPeer& p) { return p.endpoint == endpoint; });
      next.push_back(kept != peers.end() ? std::move(*kept) : MapperPeer{endpoint, nullptr, std::nullopt});
    }
    peers = std::move(next);
  }

  // Round-robin over the mappers whose connection is up; a pod that is gone (or an address of a name where
  // nothing listens) is skipped rather than failing every n-th request. When none is up yet (just started,
  // or after a reconnect) it waits for one, up to kConnectWait, then takes the round-robin one anyway.
  Result<MapperPeer*> pick_mapper(std::vector<MapperPeer>& peers, transport::Deadline deadline) {
    for (MapperPeer& peer : peers) {
      if (peer.client) continue;
      transport::ClientOptions co;
      co.endpoints = {peer.endpoint};
      co.service_name = options.control.service_name;
      co.socket = options.control.socket;
      co.curve = options.peer_curve;
      PROXYKV_ASSIGN_OR_RETURN(peer.client, transport::ControlClient::connect(context, co));
    }
    constexpr auto kConnectWait = std::chrono::milliseconds(2000);
    constexpr auto kPollStep = std::chrono::milliseconds(20);
    const uint64_t start = next_mapper++;
    const transport::Deadline give_up = std::min(deadline, transport::Clock::now() + kConnectWait);
    while (true) {
      for (size_t i = 0; i < peers.size(); ++i) {
        MapperPeer& peer = peers[(start + i) % peers.size()];
        if (peer.client->connected_peers() > 0) return &peer;
      }
      if (transport::Clock::now() >= give_up) return &peers[start % peers.size()];
      peers[start % peers.size()].client->wait_connected(1, std::min(give_up, transport::Clock::now() + kPollStep));
    }
  }

  Result<MapperPeer*> mapper_for_request(std::vector<MapperPeer>& peers, transport::Deadline deadline) {
    PROXYKV_ASSIGN_OR_RETURN(MapperPeer * chosen, pick_mapper(peers, deadline));
    MapperPeer& peer = *chosen;
    if (!options.inline_features && !peer.data_plane) {
      const v1::DataPlaneEndpoint own = plane->local_endpoint();
      PROXYKV_ASSIGN_OR_RETURN(Message answer,
                               peer.client->call(service::handshake(identity, &own), service::time_left(deadline)));
      if (!answer.envelope.has_handshake()) return failed_precondition("mapper answered the handshake with another message");
      for (const auto& dp : answer.envelope.handshake().data_planes()) {
        if (dp.transport() == plane->transport_name()) peer.data_plane = dp;
      }
      if (!peer.data_plane) {
        return failed_precondition(std::string("mapper ") + peer.endpoint + " has no " + plane->transport_name() +
                                   " data plane");
      }
    }
    return &peer;
  }

  // Features for one accepted request, delivered to a mapper (which acknowledged them).
  Status score_one(const Message& request, std::vector<MapperPeer>& peers, transport::Deadline deadline) {
    const v1::ScoreRequest& r = request.envelope.score_request();
    FeatureOptions fopts = options.features;
    if (r.num_sink_tokens() > 0) fopts.scorer.n_sink = r.num_sink_tokens();
    std::vector<int64_t> ids(r.context_token_ids().begin(), r.context_token_ids().end());
    const auto t0 = std::chrono::steady_clock::now();
    PROXYKV_ASSIGN_OR_RETURN(ProxyFeatures f,
                             extract_features(model, at::tensor(ids, at::TensorOptions().dtype(at::kLong)), fopts));
    metrics.proxy_feature_seconds().Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    PROXYKV_ASSIGN_OR_RETURN(transport::WireTensor wire, service::to_wire("features", f.features.to(at::kFloat)));

    Message out;
    out.envelope.set_request_id(r.request_id());
    v1::ProxyFeatures* pf = out.envelope.mutable_proxy_features();
    pf->set_request_id(r.request_id());
    pf->set_proxy_model_id(options.proxy_model_id);
    pf->set_target_model_id(r.target_model_id());
    pf->set_channels(static_cast<uint32_t>(f.features.size(0)));
    pf->set_proxy_layers(static_cast<uint32_t>(model.spec().num_layers));
    pf->set_proxy_kv_heads(static_cast<uint32_t>(model.spec().num_kv_heads));
    pf->set_tokens(static_cast<uint32_t>(ids.size()));
    for (const auto& c : fopts.channels) pf->add_channel_names(c);
    pf->set_keep_ratio(r.keep_ratio());
    pf->set_selection_level(r.selection_level());
    pf->set_head_floor(r.head_floor());
    pf->set_num_sink_tokens(static_cast<uint32_t>(fopts.scorer.n_sink));
    pf->set_reply_to(r.reply_to());
    pf->set_deadline_unix_ms(r.deadline_unix_ms());
    pf->set_compatibility_hash(r.compatibility_hash());

    PROXYKV_ASSIGN_OR_RETURN(MapperPeer * peer, mapper_for_request(peers, deadline));
    if (options.inline_features) {
      pf->set_features_tensor("features");
      out.tensors.push_back(std::move(wire));
    } else {
      const std::string key = r.request_id() + "/features/" + std::to_string(transfer_seq++);
      v1::DataPlaneRef* ref = pf->mutable_features_ref();
      ref->set_transport(plane->transport_name());
      ref->set_key(key);
      *ref->mutable_tensor() = transport::describe_tensor(wire);
      // The descriptor (and its one CRC-32) goes both into the ref and onto the data plane.
      if (Status sent = plane->send(*peer->data_plane, key, wire, deadline, &ref->tensor()); !sent.is_ok()) {
        peer->data_plane.reset();  // re-handshake next time: the mapper may have restarted on another data port
        return sent;
      }
      metrics.transfer_bytes_total(plane->transport_name()).Increment(static_cast<double>(wire.data.size()));
    }
    auto ack = peer->client->call(std::move(out), service::time_left(deadline));
    if (!ack.is_ok()) {
      peer->data_plane.reset();  // any failure: handshake again before the next transfer (may be a new process)
      return ack.status();
    }
    if (!ack->envelope.has_accepted()) return internal_error("mapper answered ProxyFeatures with another message");
    return Status::ok();
  }

  void worker_loop() {
    std::vector<MapperPeer> peers;
    transport::EndpointResolver resolver(options.mapper_endpoints, options.dns_refresh);
    transport::ClientOptions base;
    base.service_name = options.control.service_name;
    base.socket = options.control.socket;
    base.curve = options.peer_curve;
    service::PeerClients replies(context, base);
    while (std::optional<Message> next = queue.pop()) {
      const v1::ScoreRequest& r = next->envelope.score_request();
      const transport::Deadline deadline =
          service::steady_deadline(r.deadline_unix_ms(), std::chrono::milliseconds(30000));
      if (auto changed = resolver.refresh()) reconcile_peers(peers, *changed);
      Status s = [&]() -> Status {
        try {
          return score_one(*next, peers, deadline);
        } catch (const std::exception& e) {  // LibTorch's c10::Error must not cross the thread boundary
          return internal_error(std::string("feature extraction failed: ") + e.what());
        }
      }();
      if (s.is_ok()) {
        count(&ProxyServerStats::features_sent);
      } else {
        logger()->warn("[{}] {}", r.request_id(), s.to_string());
        auto ack = replies.call(r.reply_to(), service::error_for_request(s, identity, r.request_id()),
                                service::delivery_deadline(deadline));
        count(ack.is_ok() ? &ProxyServerStats::errors_sent : &ProxyServerStats::delivery_failed);
      }
      --in_flight;
    }
  }
};

ProxyServer::ProxyServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<ProxyServer>> ProxyServer::start(zmq::context_t& context, ProxyServerOptions options,
                                                        const DecoderLM& model, telemetry::Metrics& metrics) {
  if (options.mapper_endpoints.empty()) return invalid_argument("the proxy needs at least one mapper endpoint");
  if (options.workers < 1 || options.queue_capacity < 1) return invalid_argument("workers and queue_capacity >= 1");
  PROXYKV_RETURN_IF_ERROR(validate_feature_options(options.features));
  auto impl = std::make_unique<Impl>(context, std::move(options), model, metrics);
  PROXYKV_ASSIGN_OR_RETURN(impl->server, transport::ControlServer::bind(context, impl->options.control));
  PROXYKV_ASSIGN_OR_RETURN(impl->plane, transport::make_data_plane(context, impl->options.data_plane));
  Impl* raw = impl.get();
  for (int i = 0; i < raw->options.workers; ++i) raw->workers.emplace_back([raw] { raw->worker_loop(); });
  raw->serve_thread = std::thread([raw] {
    Status s = raw->server->serve([raw](const Message& m) { return raw->handle(m); }, raw->stop_serving);
    if (!s.is_ok()) logger()->error("control socket failed: {}", s.to_string());
  });
  logger()->info("serving proxy '{}' on {} (data plane {}{}), {} mapper endpoint(s)", raw->options.proxy_model_id,
                 raw->server->endpoint(), raw->plane->transport_name(),
                 raw->options.inline_features ? ", features inline" : "", raw->options.mapper_endpoints.size());
  return std::unique_ptr<ProxyServer>(new ProxyServer(std::move(impl)));
}

ProxyServer::~ProxyServer() {
  if (!impl_) return;
  impl_->stop_serving = true;
  if (impl_->serve_thread.joinable()) impl_->serve_thread.join();
  impl_->queue.close();
  for (auto& w : impl_->workers) w.join();
}

const std::string& ProxyServer::control_endpoint() const { return impl_->server->endpoint(); }
const char* ProxyServer::data_plane_transport() const { return impl_->plane->transport_name(); }
void ProxyServer::begin_drain() { impl_->draining = true; }
bool ProxyServer::draining() const { return impl_->draining; }
size_t ProxyServer::in_flight() const { return impl_->in_flight; }
ProxyServerStats ProxyServer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

}  // namespace proxykv::proxy
