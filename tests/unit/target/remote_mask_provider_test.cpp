// RemoteMaskProvider against a scripted proxy on loopback (port 0): a PruneMask at reply_to fulfils the request,
// an ErrorReply fails it with the stage's reason, an unreachable or refusing proxy and a missing mask fall back
// with their reasons, and a late mask is acknowledged and dropped. keep_set_from_mask reads both encodings and
// refuses masks that do not fit.
#include "proxykv/target/remote_mask_provider.h"

#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "proxykv/transport/control_client.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/error_reply.h"

namespace proxykv::target {
namespace {

using std::chrono::milliseconds;
using transport::Message;

// A PruneMask message for `keep` (kept-indices encoding).
Message mask_message(const std::string& id, const std::vector<std::vector<std::vector<uint32_t>>>& keep, int64_t T) {
  Message m;
  m.envelope.set_request_id(id);
  v1::PruneMask* p = m.envelope.mutable_prune_mask();
  p->set_request_id(id);
  p->set_target_layers(static_cast<uint32_t>(keep.size()));
  p->set_target_kv_heads(static_cast<uint32_t>(keep[0].size()));
  p->set_tokens(static_cast<uint32_t>(T));
  p->set_method("proxykv");
  p->set_encoding(v1::MASK_ENCODING_KEPT_INDICES);
  for (size_t l = 0; l < keep.size(); ++l) {
    for (size_t h = 0; h < keep[l].size(); ++h) {
      v1::HeadKeptIndices* head = p->add_heads();
      head->set_layer(static_cast<uint32_t>(l));
      head->set_kv_head(static_cast<uint32_t>(h));
      for (uint32_t t : keep[l][h]) head->add_token_indices(t);
    }
  }
  return m;
}

// The same mask as a packed bitmask (docs/protocol.md).
Message bitmask_message(const std::vector<std::vector<std::vector<uint32_t>>>& keep, int64_t T) {
  Message m = mask_message("b", keep, T);
  v1::PruneMask* p = m.envelope.mutable_prune_mask();
  p->clear_heads();
  p->set_encoding(v1::MASK_ENCODING_PACKED_BITMASK);
  p->set_bitmask_tensor("bitmask");
  const int64_t rows = static_cast<int64_t>(keep.size() * keep[0].size()), row_bytes = (T + 7) / 8;
  std::vector<uint8_t> bits(static_cast<size_t>(rows * row_bytes), 0);
  for (size_t l = 0; l < keep.size(); ++l) {
    for (size_t h = 0; h < keep[l].size(); ++h) {
      const size_t row = l * keep[l].size() + h;
      for (uint32_t t : keep[l][h]) bits[row * row_bytes + t / 8] |= static_cast<uint8_t>(1u << (t % 8));
    }
  }
  transport::WireTensor w;
  w.name = "bitmask";
  w.dtype = DType::kU8;
  w.shape = {rows, row_bytes};
  w.data = transport::Blob::adopt(std::move(bits));
  m.tensors.push_back(std::move(w));
  return m;
}

std::vector<std::vector<std::vector<uint32_t>>> random_keep(int64_t L, int64_t H, int64_t T, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<std::vector<uint32_t>>> keep(L, std::vector<std::vector<uint32_t>>(H));
  for (auto& layer : keep) {
    for (auto& head : layer) {
      for (uint32_t t = 0; t < T; ++t) {
        if (rng() % 3 == 0) head.push_back(t);
      }
    }
  }
  return keep;
}

std::vector<uint32_t> indices(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<uint32_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(KeepSetFromMask, ReadsBothEncodingsTheSame) {
  const int64_t L = 3, H = 2, T = 37;  // T not a multiple of 8: the last byte is padded
  for (uint32_t seed = 0; seed < 20; ++seed) {
    auto keep = random_keep(L, H, T, seed);
    auto a = keep_set_from_mask(mask_message("a", keep, T), L, H, T);
    auto b = keep_set_from_mask(bitmask_message(keep, T), L, H, T);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    int64_t kept = 0;
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t h = 0; h < H; ++h) {
        EXPECT_EQ(indices(a->keep[l][h]), keep[l][h]);
        EXPECT_EQ(indices(b->keep[l][h]), keep[l][h]);
        kept += static_cast<int64_t>(keep[l][h].size());
      }
    }
    EXPECT_EQ(a->kept, kept);
    EXPECT_EQ(b->kept, kept);
    EXPECT_EQ(a->total, L * H * T);
  }
}

TEST(KeepSetFromMask, RefusesMasksThatDoNotFit) {
  const int64_t L = 2, H = 2, T = 10;
  auto keep = random_keep(L, H, T, 1);
  keep[0][0] = {0, 1, 5};
  auto expect_refused = [&](const Message& m, const std::string& words) {
    auto r = keep_set_from_mask(m, L, H, T);
    ASSERT_FALSE(r.is_ok()) << words;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
  };
  expect_refused(mask_message("x", keep, T + 1), "tokens");
  auto descending = keep;
  descending[0][0] = {5, 1};
  expect_refused(mask_message("x", descending, T), "ascending");
  auto duplicate = keep;
  duplicate[0][0] = {1, 1};
  expect_refused(mask_message("x", duplicate, T), "ascending");
  auto outside = keep;
  outside[1][1] = {0, 10};
  expect_refused(mask_message("x", outside, T), "outside the context");
  Message twice = mask_message("x", keep, T);
  twice.envelope.mutable_prune_mask()->mutable_heads(1)->set_kv_head(0);
  expect_refused(twice, "twice");
  Message missing = mask_message("x", keep, T);
  missing.envelope.mutable_prune_mask()->mutable_heads()->RemoveLast();
  expect_refused(missing, "heads");
  Message bits = bitmask_message(keep, T);
  bits.tensors[0].data = transport::Blob::copy_of(std::string(8, '\xff'));  // sets bits 10..15 of each row
  expect_refused(bits, "beyond the last token");
  Message not_a_mask;
  not_a_mask.envelope.mutable_health_request();
  expect_refused(not_a_mask, "not a PruneMask");
}

// A proxy that answers each ScoreRequest with `on_request`'s reply and may then send something to reply_to
// (from its own thread, as the real proxy's workers do).
class ScriptedProxy {
 public:
  struct Action {
    Result<Message> reply = Message{};  // Accepted is filled in when the reply has no body
    std::optional<Message> to_reply_to;  // sent once `gate` is ready (when it is valid)
    std::shared_future<void> gate;
  };
  using Script = std::function<Action(const v1::ScoreRequest&)>;

  ScriptedProxy(zmq::context_t& ctx, Script script) : ctx_(ctx), script_(std::move(script)) {
    transport::ServerOptions o;
    o.service_name = "proxy";
    server_ = std::move(transport::ControlServer::bind(ctx, o).value());
    thread_ = std::thread([this] {
      (void)server_->serve([this](const Message& m) { return handle(m); }, stop_);
    });
  }
  ~ScriptedProxy() {
    stop_ = true;
    thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& t : senders_) t.join();
  }
  const std::string& endpoint() const { return server_->endpoint(); }
  std::vector<v1::ScoreRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // Waits until `n` deliveries to reply_to have finished; returns how many were acknowledged with Accepted.
  int wait_delivered(int n) {
    std::unique_lock<std::mutex> l(ack_mu_);
    ack_cv_.wait_for(l, std::chrono::seconds(30), [&] { return delivered_ >= n; });
    return acknowledged_;
  }

 private:
  Result<Message> handle(const Message& m) {
    if (!m.envelope.has_score_request()) return unimplemented("scripted proxy");
    const v1::ScoreRequest r = m.envelope.score_request();
    Action a = script_(r);
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(r);
    if (a.to_reply_to) {
      senders_.emplace_back([this, r, msg = *a.to_reply_to, gate = a.gate]() mutable {
        if (gate.valid()) gate.wait();
        transport::ClientOptions co;
        co.endpoints = {r.reply_to()};
        co.service_name = "mapper";
        auto client = transport::ControlClient::connect(ctx_, co);
        if (!client.is_ok()) return;
        if (msg.envelope.has_prune_mask()) msg.envelope.mutable_prune_mask()->set_request_id(r.request_id());
        msg.envelope.set_request_id(r.request_id());
        auto ack = (*client)->call(std::move(msg), milliseconds(5000));
        {
          std::lock_guard<std::mutex> l(ack_mu_);
          if (ack.is_ok() && ack->envelope.has_accepted()) ++acknowledged_;
          ++delivered_;
        }
        ack_cv_.notify_all();
      });
    }
    if (!a.reply.is_ok()) return a.reply.status();
    Message reply = std::move(a.reply).value();
    if (reply.envelope.body_case() == v1::Envelope::BODY_NOT_SET) reply.envelope.mutable_accepted()->set_service("proxy");
    return reply;
  }

  zmq::context_t& ctx_;
  Script script_;
  std::unique_ptr<transport::ControlServer> server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<v1::ScoreRequest> requests_;
  std::vector<std::thread> senders_;
  std::mutex ack_mu_;
  std::condition_variable ack_cv_;
  int delivered_ = 0;     // guarded by ack_mu_
  int acknowledged_ = 0;  // guarded by ack_mu_
};

constexpr int64_t kL = 2, kH = 2, kT = 12;

MaskRequest mask_request(milliseconds budget) {
  MaskRequest r;
  r.model_name = "target";
  std::vector<int64_t> ids(kT);
  for (int64_t i = 0; i < kT; ++i) ids[i] = 3 + i;
  r.context_ids = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  r.num_layers = kL;
  r.num_kv_heads = kH;
  r.keep_ratio = 0.5;
  r.n_sink = 2;
  r.deadline = std::chrono::steady_clock::now() + budget;
  return r;
}

std::shared_ptr<RemoteMaskProvider> provider_for(zmq::context_t& ctx, const std::string& proxy,
                                                 milliseconds submit_timeout = milliseconds(3000)) {
  RemoteMaskOptions o;
  o.proxy_endpoints = {proxy};
  o.proxy_model_id = "proxy";
  o.submit_timeout = submit_timeout;
  auto p = RemoteMaskProvider::start(ctx, o);
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  return std::move(p).value();
}

TEST(RemoteMaskProvider, AMaskAtReplyToFulfilsTheRequest) {
  zmq::context_t ctx(1);
  auto keep = random_keep(kL, kH, kT, 7);
  ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest&) {
    ScriptedProxy::Action a;
    a.to_reply_to = mask_message("", keep, kT);
    return a;
  });
  auto provider = provider_for(ctx, proxy.endpoint());
  auto pending = provider->request(mask_request(milliseconds(20000)));
  ASSERT_TRUE(pending);
  MaskOutcome out = pending->wait();
  ASSERT_TRUE(out.ok) << out.fallback_reason << ": " << out.detail;
  for (int64_t l = 0; l < kL; ++l) {
    for (int64_t h = 0; h < kH; ++h) EXPECT_EQ(indices(out.keep.keep[l][h]), keep[l][h]);
  }
  auto requests = proxy.requests();
  ASSERT_EQ(requests.size(), 1u);
  const v1::ScoreRequest& r = requests[0];
  EXPECT_EQ(r.context_token_ids_size(), kT);
  EXPECT_EQ(r.context_token_ids(3), 6);
  EXPECT_EQ(r.target_model_id(), "target");
  EXPECT_EQ(r.proxy_model_id(), "proxy");
  EXPECT_FLOAT_EQ(r.keep_ratio(), 0.5f);
  EXPECT_EQ(r.num_sink_tokens(), 2u);
  EXPECT_EQ(r.reply_to(), provider->reply_to());
  EXPECT_GT(r.deadline_unix_ms(), 0);
  EXPECT_EQ(provider->stats().masks, 1u);
}

// proxy_endpoints may name a host (a headless Service): the sender resolves it to its addresses and reaches the
// proxy through them. "localhost" comes from /etc/hosts, so this stays on loopback.
TEST(RemoteMaskProvider, ReachesAProxyNamedByHostName) {
  zmq::context_t ctx(1);
  auto keep = random_keep(kL, kH, kT, 11);
  ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest&) {
    ScriptedProxy::Action a;
    a.to_reply_to = mask_message("", keep, kT);
    return a;
  });
  const std::string port = proxy.endpoint().substr(proxy.endpoint().rfind(':') + 1);
  auto provider = provider_for(ctx, "tcp://localhost:" + port);
  auto pending = provider->request(mask_request(milliseconds(20000)));
  ASSERT_TRUE(pending);
  MaskOutcome out = pending->wait();
  ASSERT_TRUE(out.ok) << out.fallback_reason << ": " << out.detail;
  EXPECT_EQ(proxy.requests().size(), 1u);
}

TEST(RemoteMaskProvider, ErrorRepliesNameTheStageThatFailed) {
  zmq::context_t ctx(1);
  struct Case {
    std::string service;
    Status status;
    std::string reason;
  };
  const std::vector<Case> cases = {{"mapper", internal_error("boom"), "mapper_error"},
                                   {"mapper", not_found("no mapper for proxy:target"), "no_mapper"},
                                   {"proxy", internal_error("feature extraction failed"), "proxy_error"}};
  for (const Case& c : cases) {
    ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest&) {
      ScriptedProxy::Action a;
      a.to_reply_to = transport::make_error_reply(c.status, c.service);
      return a;
    });
    auto provider = provider_for(ctx, proxy.endpoint());
    auto pending = provider->request(mask_request(milliseconds(20000)));
    ASSERT_TRUE(pending);
    MaskOutcome out = pending->wait();
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.fallback_reason, c.reason) << out.detail;
  }
}

TEST(RemoteMaskProvider, ARefusedRequestIsAProxyError) {
  zmq::context_t ctx(1);
  ScriptedProxy proxy(ctx, [](const v1::ScoreRequest&) {
    ScriptedProxy::Action a;
    a.reply = invalid_argument("token id 4000 outside the proxy's vocabulary");
    return a;
  });
  auto provider = provider_for(ctx, proxy.endpoint());
  auto pending = provider->request(mask_request(milliseconds(20000)));
  ASSERT_TRUE(pending);
  MaskOutcome out = pending->wait();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.fallback_reason, "proxy_error");
  EXPECT_NE(out.detail.find("vocabulary"), std::string::npos) << out.detail;
}

TEST(RemoteMaskProvider, AnUnreachableProxyIsUnavailable) {
  zmq::context_t ctx(1);
  std::string endpoint;
  {
    // Bind and release a port so nothing listens there.
    transport::ServerOptions o;
    auto s = transport::ControlServer::bind(ctx, o);
    ASSERT_TRUE(s.is_ok());
    endpoint = (*s)->endpoint();
  }
  auto provider = provider_for(ctx, endpoint, milliseconds(200));
  auto pending = provider->request(mask_request(milliseconds(20000)));
  ASSERT_TRUE(pending);
  MaskOutcome out = pending->wait();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.fallback_reason, "proxy_unavailable") << out.detail;
}

TEST(RemoteMaskProvider, NoMaskByTheDeadlineThenALateOneIsDropped) {
  zmq::context_t ctx(1);
  auto keep = random_keep(kL, kH, kT, 3);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest&) {
    ScriptedProxy::Action a;
    a.to_reply_to = mask_message("", keep, kT);
    a.gate = gate;  // held back until the request has timed out
    return a;
  });
  auto provider = provider_for(ctx, proxy.endpoint());
  {
    auto pending = provider->request(mask_request(milliseconds(200)));
    ASSERT_TRUE(pending);
    MaskOutcome out = pending->wait();
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.fallback_reason, "mask_deadline");
  }
  // The late mask is still acknowledged (the mapper does not retry it) and counted as late.
  release.set_value();
  EXPECT_EQ(proxy.wait_delivered(1), 1);
  EXPECT_EQ(provider->stats().late, 1u);
}

TEST(RemoteMaskProvider, AnInvalidMaskIsReported) {
  zmq::context_t ctx(1);
  auto keep = random_keep(kL, kH + 1, kT, 3);  // one KV head too many
  ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest&) {
    ScriptedProxy::Action a;
    a.to_reply_to = mask_message("", keep, kT);
    return a;
  });
  auto provider = provider_for(ctx, proxy.endpoint());
  auto pending = provider->request(mask_request(milliseconds(20000)));
  ASSERT_TRUE(pending);
  MaskOutcome out = pending->wait();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.fallback_reason, "invalid_mask");
}

// The head floor travels in the ScoreRequest; a mask the mapper selected with another floor (one that predates
// the field and ignored it) is refused rather than reported as what was asked for.
TEST(RemoteMaskProvider, AMaskSelectedWithAnotherHeadFloorIsRefused) {
  zmq::context_t ctx(1);
  auto keep = random_keep(kL, kH, kT, 5);
  ScriptedProxy proxy(ctx, [&](const v1::ScoreRequest& r) {
    ScriptedProxy::Action a;
    Message m = mask_message("", keep, kT);
    // Echo the floor for the first request only.
    if (r.head_floor() == 0.25f) m.envelope.mutable_prune_mask()->set_head_floor(0.25f);
    a.to_reply_to = m;
    return a;
  });
  auto provider = provider_for(ctx, proxy.endpoint());
  MaskRequest echoed = mask_request(milliseconds(20000));
  echoed.head_floor = 0.25;
  auto first = provider->request(echoed);
  ASSERT_TRUE(first);
  MaskOutcome a = first->wait();
  EXPECT_TRUE(a.ok) << a.fallback_reason << ": " << a.detail;
  MaskRequest ignored = mask_request(milliseconds(20000));
  ignored.head_floor = 0.5;
  auto second = provider->request(ignored);
  ASSERT_TRUE(second);
  MaskOutcome b = second->wait();
  EXPECT_FALSE(b.ok);
  EXPECT_EQ(b.fallback_reason, "invalid_mask");
  EXPECT_NE(b.detail.find("head floor"), std::string::npos) << b.detail;
  auto requests = proxy.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_FLOAT_EQ(requests[0].head_floor(), 0.25f);
  EXPECT_FLOAT_EQ(requests[1].head_floor(), 0.5f);
}

TEST(RemoteMaskProvider, RefusesBadOptions) {
  zmq::context_t ctx(1);
  RemoteMaskOptions o;
  EXPECT_FALSE(RemoteMaskProvider::start(ctx, o).is_ok());
  o.proxy_endpoints = {"proxy:5555"};
  EXPECT_FALSE(RemoteMaskProvider::start(ctx, o).is_ok());
  o.proxy_endpoints = {"tcp://proxy"};  // no port
  auto no_port = RemoteMaskProvider::start(ctx, o);
  ASSERT_FALSE(no_port.is_ok());
  EXPECT_NE(no_port.status().message().find("no :port"), std::string::npos) << no_port.status().message();
  o.proxy_endpoints = {"tcp://127.0.0.1:1"};
  o.mask_endpoint = "not an endpoint";
  EXPECT_FALSE(RemoteMaskProvider::start(ctx, o).is_ok());
}

}  // namespace
}  // namespace proxykv::target
