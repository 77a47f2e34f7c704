#include "proxykv/target/remote_mask_provider.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "proxykv/core/logging.h"
#include "proxykv/service/bounded_queue.h"
#include "proxykv/service/deadline.h"
#include "proxykv/service/replies.h"
#include "proxykv/service/version.h"
#include "proxykv/service/wire_torch.h"
#include "proxykv/transport/control_client.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/endpoint_resolver.h"
#include "proxykv/transport/error_reply.h"

namespace proxykv::target {
namespace {

using Clock = std::chrono::steady_clock;
using transport::Message;

std::shared_ptr<spdlog::logger> logger() {
  return get_logger("target.mask");
}

// Why a ScoreRequest the proxy did not accept falls back: it could not be reached or had no room, or it refused.
const char* submit_failure_reason(StatusCode code) {
  switch (code) {
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
    case StatusCode::kDeadlineExceeded: return "proxy_unavailable";
    default: return "proxy_error";
  }
}

// Why an ErrorReply that reached reply_to falls back: the replying service names the stage that failed.
std::string error_reply_reason(const v1::ErrorReply& reply) {
  if (reply.service() == "mapper") {
    return transport::to_status_code(reply.code()) == StatusCode::kNotFound ? "no_mapper" : "mapper_error";
  }
  return "proxy_error";
}

// "tcp://0.0.0.0:41234" with advertise host "10.0.0.7" -> "tcp://10.0.0.7:41234".
Result<std::string> advertised(const std::string& bound, const std::string& host) {
  if (host.empty()) return bound;
  const size_t colon = bound.rfind(':');
  if (bound.rfind("tcp://", 0) != 0 || colon == std::string::npos) {
    return invalid_argument("mask endpoint " + bound + " is not tcp://host:port");
  }
  return "tcp://" + host + bound.substr(colon);
}

// One request's rendezvous: the first outcome wins; wait() returns it or the deadline's failure.
struct PendingState {
  std::string id;
  int64_t layers = 0, kv_heads = 0, tokens = 0;
  float head_floor = 0.f;  // as sent; a mask selected with another floor is refused (a mapper predating the field)
  Clock::time_point deadline;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  MaskOutcome outcome;

  bool resolve(MaskOutcome o) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (done) return false;
      done = true;
      outcome = std::move(o);
    }
    cv.notify_all();
    return true;
  }
};

struct Submit {
  Message message;
  std::shared_ptr<PendingState> state;
};

}  // namespace

Result<scoring::KeepSet> keep_set_from_mask(const Message& message, int64_t L, int64_t H, int64_t T) {
  if (!message.envelope.has_prune_mask()) return invalid_argument("the message is not a PruneMask");
  const v1::PruneMask& m = message.envelope.prune_mask();
  if (m.target_layers() != L || m.target_kv_heads() != H || m.tokens() != T) {
    return invalid_argument("mask is for " + std::to_string(m.target_layers()) + " layers x " +
                            std::to_string(m.target_kv_heads()) + " KV heads x " + std::to_string(m.tokens()) +
                            " tokens, the cache has " + std::to_string(L) + " x " + std::to_string(H) + " x " +
                            std::to_string(T));
  }
  scoring::KeepSet keep;
  keep.keep.assign(static_cast<size_t>(L), std::vector<at::Tensor>(static_cast<size_t>(H)));
  keep.total = L * H * T;
  auto to_tensor = [](const std::vector<int64_t>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kLong));
  };
  if (m.encoding() == v1::MASK_ENCODING_PACKED_BITMASK) {
    const transport::WireTensor* bits = message.find_tensor(m.bitmask_tensor());
    const int64_t row_bytes = (T + 7) / 8;
    if (!bits) return invalid_argument("no bitmask tensor '" + m.bitmask_tensor() + "' in the message");
    if (bits->dtype != DType::kU8 || bits->shape != std::vector<int64_t>{L * H, row_bytes} ||
        static_cast<int64_t>(bits->data.size()) != L * H * row_bytes) {
      return invalid_argument("bitmask must be U8 [" + std::to_string(L * H) + ", " + std::to_string(row_bytes) + "]");
    }
    const uint8_t* data = bits->data.data();
    for (int64_t row = 0; row < L * H; ++row) {
      std::vector<int64_t> idx;
      for (int64_t t = 0; t < row_bytes * 8; ++t) {
        if (!((data[row * row_bytes + t / 8] >> (t % 8)) & 1)) continue;
        if (t >= T) return invalid_argument("bitmask sets a bit beyond the last token");
        idx.push_back(t);
      }
      keep.kept += static_cast<int64_t>(idx.size());
      keep.keep[static_cast<size_t>(row / H)][static_cast<size_t>(row % H)] = to_tensor(idx);
    }
    return keep;
  }
  if (m.encoding() != v1::MASK_ENCODING_KEPT_INDICES) {
    return invalid_argument("unknown mask encoding " + std::to_string(static_cast<int>(m.encoding())));
  }
  if (m.heads_size() != L * H) {
    return invalid_argument("mask lists " + std::to_string(m.heads_size()) + " heads, the cache has " +
                            std::to_string(L * H));
  }
  std::vector<bool> seen(static_cast<size_t>(L * H), false);
  for (const v1::HeadKeptIndices& head : m.heads()) {
    if (head.layer() >= L || head.kv_head() >= H) {
      return invalid_argument("mask names layer " + std::to_string(head.layer()) + " head " +
                              std::to_string(head.kv_head()) + ", outside the cache");
    }
    const size_t slot = static_cast<size_t>(head.layer() * H + head.kv_head());
    if (seen[slot]) return invalid_argument("mask lists layer " + std::to_string(head.layer()) + " head " +
                                            std::to_string(head.kv_head()) + " twice");
    seen[slot] = true;
    std::vector<int64_t> idx;
    idx.reserve(static_cast<size_t>(head.token_indices_size()));
    for (uint32_t t : head.token_indices()) {
      if (t >= T) return invalid_argument("mask index " + std::to_string(t) + " outside the context");
      if (!idx.empty() && static_cast<int64_t>(t) <= idx.back()) {
        return invalid_argument("mask indices are not ascending and unique");
      }
      idx.push_back(t);
    }
    keep.kept += static_cast<int64_t>(idx.size());
    keep.keep[head.layer()][head.kv_head()] = to_tensor(idx);
  }
  return keep;
}

struct RemoteMaskProvider::Impl {
  zmq::context_t& context;
  RemoteMaskOptions options;
  std::unique_ptr<transport::ControlServer> receiver;
  std::string reply_to;
  service::ServiceIdentity identity;
  service::BoundedQueue<Submit> submits;
  std::string id_prefix;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stop{false};
  std::thread receiver_thread;
  std::thread sender_thread;

  mutable std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<PendingState>> pending;  // guarded by mu
  RemoteMaskStats stats;                                                    // guarded by mu

  Impl(zmq::context_t& ctx, RemoteMaskOptions o)
      : context(ctx), options(std::move(o)), submits(options.max_pending_submits) {
    identity.name = options.service_name;
    identity.version = service::version();
    std::random_device rd;
    char buf[32];
    std::snprintf(buf, sizeof buf, "tgt-%08x%08x-", rd(), rd());
    id_prefix = buf;
  }

  std::shared_ptr<PendingState> take(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = pending.find(id);
    if (it == pending.end()) return nullptr;
    auto state = it->second;
    pending.erase(it);
    return state;
  }

  void forget(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    pending.erase(id);
  }

  void count(uint64_t RemoteMaskStats::*field) {
    std::lock_guard<std::mutex> lock(mu);
    ++(stats.*field);
  }

  Result<Message> on_message(const Message& m) {
    switch (m.envelope.body_case()) {
      case v1::Envelope::kHealthRequest: return service::health_reply(identity, stop.load(), pending_count(), "");
      case v1::Envelope::kPruneMask: {
        const std::string& id = m.envelope.prune_mask().request_id();
        if (auto state = take(id)) {
          auto keep = keep_set_from_mask(m, state->layers, state->kv_heads, state->tokens);
          if (keep.is_ok() && m.envelope.prune_mask().head_floor() != state->head_floor) {
            keep = invalid_argument("mask selected with head floor " +
                                    std::to_string(m.envelope.prune_mask().head_floor()) + ", asked for " +
                                    std::to_string(state->head_floor));
          }
          if (keep.is_ok()) {
            count(&RemoteMaskStats::masks);
            state->resolve(MaskOutcome::success(std::move(keep).value()));
          } else {
            count(&RemoteMaskStats::errors);
            logger()->warn("[{}] mask refused: {}", id, keep.status().to_string());
            state->resolve(MaskOutcome::failure(kFallbackInvalidMask, keep.status().to_string()));
          }
        } else {
          count(&RemoteMaskStats::late);
          logger()->info("[{}] late mask dropped (nobody waits for it)", id);
        }
        return service::accepted(identity, 0);
      }
      case v1::Envelope::kErrorReply: {
        const std::string& id = m.envelope.request_id();
        const v1::ErrorReply& e = m.envelope.error_reply();
        if (auto state = take(id)) {
          count(&RemoteMaskStats::errors);
          state->resolve(MaskOutcome::failure(error_reply_reason(e), transport::status_from_error_reply(e).to_string()));
        } else {
          count(&RemoteMaskStats::late);
          logger()->info("[{}] late error dropped: {}", id, e.message());
        }
        return service::accepted(identity, 0);
      }
      default:
        return unimplemented("the target's mask receiver takes PruneMask and ErrorReply, not " +
                             std::string(transport::message_type_name(m.type())));
    }
  }

  size_t pending_count() const {
    std::lock_guard<std::mutex> lock(mu);
    return pending.size();
  }

  void receive_loop() {
    Status s = receiver->serve([this](const Message& m) { return on_message(m); }, stop);
    if (!s.is_ok() && !stop) logger()->error("mask receiver stopped: {}", s.to_string());
  }

  void send_loop() {
    std::unique_ptr<transport::ControlClient> client;
    transport::EndpointResolver resolver(options.proxy_endpoints, options.dns_refresh);
    while (std::optional<Submit> next = submits.pop()) {
      std::shared_ptr<PendingState>& state = next->state;
      {
        std::lock_guard<std::mutex> lock(state->mu);
        if (state->done) continue;  // the engine stopped waiting while this sat in the queue
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(state->deadline - Clock::now());
      if (left.count() <= 0) continue;
      Status s;
      if (auto changed = resolver.refresh(); changed && client) {
        s = client->update_endpoints(*changed);
        if (!s.is_ok()) client.reset();  // reconnect below from the new list
      }
      if (!client) {
        transport::ClientOptions co;
        co.endpoints = resolver.current();
        co.service_name = options.service_name;
        co.socket = options.socket;
        co.curve = options.client_curve;
        auto c = transport::ControlClient::connect(context, co);
        if (c.is_ok()) client = std::move(c).value();
        else s = c.status();
      }
      if (client) {
        auto ack = client->call(std::move(next->message), std::min(left, options.submit_timeout));
        if (ack.is_ok() && ack->envelope.has_accepted()) {
          count(&RemoteMaskStats::accepted);
          continue;
        }
        s = ack.is_ok() ? internal_error("the proxy answered ScoreRequest with another message") : ack.status();
      }
      if (take(state->id)) {
        count(&RemoteMaskStats::errors);
        logger()->warn("[{}] ScoreRequest not accepted: {}", state->id, s.to_string());
        state->resolve(MaskOutcome::failure(submit_failure_reason(s.code()), s.to_string()));
      }
    }
  }
};

namespace {

class RemotePendingMask : public PendingMask {
 public:
  RemotePendingMask(std::shared_ptr<RemoteMaskProvider::Impl> impl, std::shared_ptr<PendingState> state)
      : impl_(std::move(impl)), state_(std::move(state)) {}
  ~RemotePendingMask() override { impl_->forget(state_->id); }

  MaskOutcome wait() override {
    std::unique_lock<std::mutex> lock(state_->mu);
    state_->cv.wait_until(lock, state_->deadline, [&] { return state_->done; });
    if (!state_->done) {
      state_->done = true;  // a mask arriving now is late
      state_->outcome = MaskOutcome::failure("mask_deadline", "no mask by the deadline");
    }
    return state_->outcome;
  }

 private:
  std::shared_ptr<RemoteMaskProvider::Impl> impl_;
  std::shared_ptr<PendingState> state_;
};

}  // namespace

Result<std::shared_ptr<RemoteMaskProvider>> RemoteMaskProvider::start(zmq::context_t& context,
                                                                     RemoteMaskOptions options) {
  if (options.proxy_endpoints.empty()) return invalid_argument("no proxy endpoints");
  for (const auto& e : options.proxy_endpoints) PROXYKV_RETURN_IF_ERROR(transport::parse_tcp_endpoint(e).status());
  if (options.max_pending_submits == 0) return invalid_argument("max_pending_submits must be >= 1");
  auto impl = std::make_shared<Impl>(context, std::move(options));
  transport::ServerOptions so;
  so.endpoint = impl->options.mask_endpoint;
  so.service_name = impl->options.service_name;
  so.socket = impl->options.socket;
  so.curve = impl->options.server_curve;
  so.refuse_expired_requests = false;  // a late mask is acknowledged and dropped here, not refused
  PROXYKV_ASSIGN_OR_RETURN(impl->receiver, transport::ControlServer::bind(context, so));
  PROXYKV_ASSIGN_OR_RETURN(impl->reply_to, advertised(impl->receiver->endpoint(), impl->options.advertise_host));
  impl->receiver_thread = std::thread([raw = impl.get()] { raw->receive_loop(); });
  impl->sender_thread = std::thread([raw = impl.get()] { raw->send_loop(); });
  logger()->info("masks from proxies {} arrive at {}", impl->options.proxy_endpoints.front(), impl->reply_to);
  return std::shared_ptr<RemoteMaskProvider>(new RemoteMaskProvider(std::move(impl)));
}

RemoteMaskProvider::RemoteMaskProvider(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteMaskProvider::~RemoteMaskProvider() {
  impl_->stop = true;
  impl_->submits.close();
  if (impl_->sender_thread.joinable()) impl_->sender_thread.join();
  if (impl_->receiver_thread.joinable()) impl_->receiver_thread.join();
  impl_->receiver.reset();  // the socket goes now, even while a PendingMask still holds impl_
  // Requests still waiting fail now rather than at their deadlines.
  std::unordered_map<std::string, std::shared_ptr<PendingState>> left;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    left.swap(impl_->pending);
  }
  for (auto& [id, state] : left) state->resolve(MaskOutcome::failure(kFallbackProxyUnavailable, "shutting down"));
}

std::unique_ptr<PendingMask> RemoteMaskProvider::request(const MaskRequest& r) {
  if (impl_->stop) return nullptr;
  auto state = std::make_shared<PendingState>();
  state->id = impl_->id_prefix + std::to_string(impl_->next_id++);
  state->layers = r.num_layers;
  state->kv_heads = r.num_kv_heads;
  state->head_floor = static_cast<float>(r.head_floor);
  state->tokens = r.context_ids.numel();
  state->deadline = r.deadline;

  Submit submit;
  submit.state = state;
  v1::ScoreRequest* s = submit.message.envelope.mutable_score_request();
  submit.message.envelope.set_request_id(state->id);
  s->set_request_id(state->id);
  at::Tensor ids = r.context_ids.to(at::kLong).contiguous();
  const int64_t* d = ids.data_ptr<int64_t>();
  s->mutable_context_token_ids()->Reserve(static_cast<int>(ids.numel()));
  for (int64_t i = 0; i < ids.numel(); ++i) s->add_context_token_ids(static_cast<int32_t>(d[i]));
  s->set_target_model_id(r.model_name);
  s->set_proxy_model_id(impl_->options.proxy_model_id);
  s->set_keep_ratio(static_cast<float>(r.keep_ratio));
  s->set_selection_level(service::to_wire(r.level));
  s->set_head_floor(static_cast<float>(r.head_floor));
  s->set_num_sink_tokens(static_cast<uint32_t>(r.n_sink));
  s->set_reply_to(impl_->reply_to);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(r.deadline - Clock::now());
  s->set_deadline_unix_ms(service::unix_ms_now() + std::max<int64_t>(left.count(), 0));
  submit.message.envelope.set_deadline_unix_ms(s->deadline_unix_ms());

  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->pending.emplace(state->id, state);
    ++impl_->stats.requested;
  }
  if (!impl_->submits.push(std::move(submit))) {
    impl_->forget(state->id);
    logger()->warn("[{}] {} ScoreRequests already wait for the sender: proxy path skipped", state->id,
                   impl_->submits.capacity());
    return nullptr;
  }
  return std::make_unique<RemotePendingMask>(impl_, state);
}

const std::string& RemoteMaskProvider::reply_to() const {
  return impl_->reply_to;
}

RemoteMaskStats RemoteMaskProvider::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

}  // namespace proxykv::target
