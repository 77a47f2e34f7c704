// Control channel over loopback TCP: replies exactly once to good and bad requests, client timeouts with late
// replies discarded, reconnects, round-robin, bounded queues.
#include <gtest/gtest.h>

#include <future>

#include "proxykv/transport/codec.h"
#include "proxykv/transport/control_client.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/error_reply.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

using std::chrono::milliseconds;
using testing::echo_handler;
using testing::health_request;
using testing::make_tensor;
using testing::ServerThread;

constexpr milliseconds kPatience{5000};  // upper bound for things that happen in well under a second

ServerOptions server_options(const std::string& name, const std::string& endpoint = "tcp://127.0.0.1:0") {
  ServerOptions o;
  o.endpoint = endpoint;
  o.service_name = name;
  return o;
}

std::unique_ptr<ControlClient> connect_client(zmq::context_t& context, std::vector<std::string> endpoints,
                                              SocketOptions socket = {}) {
  ClientOptions o;
  o.endpoints = std::move(endpoints);
  o.service_name = "test-client";
  o.socket = socket;
  auto client = ControlClient::connect(context, std::move(o));
  EXPECT_TRUE(client.is_ok()) << client.status().to_string();
  return std::move(client).value();
}

class ControlChannel : public ::testing::Test {
 protected:
  zmq::context_t context_;
};

TEST_F(ControlChannel, RequestAndReplyCarryTensorsAndIds) {
  ServerThread server(context_, server_options("echo"), echo_handler("echo"));
  EXPECT_NE(testing::port_of(server.endpoint()), "0");
  auto client = connect_client(context_, {server.endpoint()});
  Message request = health_request("req-1");
  request.envelope.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
  request.tensors.push_back(make_tensor("features", DType::kBF16, {2, 8, 33}, 5));
  request.tensors.push_back(make_tensor("ids", DType::kI64, {33}, 6));
  Result<Message> reply = client->call(request, kPatience);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->type(), v1::MESSAGE_TYPE_HEALTH_REPLY);
  EXPECT_EQ(reply->envelope.request_id(), "req-1");
  EXPECT_EQ(reply->envelope.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(reply->envelope.sender(), "echo");
  ASSERT_EQ(reply->tensors.size(), 2u);
  EXPECT_EQ(reply->tensors[0].data.view(), request.tensors[0].data.view());
  EXPECT_EQ(reply->tensors[1].shape, (std::vector<int64_t>{33}));
  EXPECT_EQ(client->stats().replies, 1u);
}

// Frames a raw DEALER sends: an encoded message, then tampered with.
zmq::multipart_t frames_of(Message m, uint64_t correlation_id) {
  m.envelope.set_correlation_id(correlation_id);
  return std::move(encode(m)).value();
}

TEST_F(ControlChannel, ServerRepliesExactlyOnceToGoodAndBadRequestsAndKeepsServing) {
  std::atomic<int> handled{0};
  Handler handler = [&](const Message& request) -> Result<Message> {
    ++handled;
    const std::string& id = request.envelope.request_id();
    if (id == "fail") return not_found("no such context");
    if (id == "throw") throw std::runtime_error("boom");
    Message reply;
    reply.envelope.mutable_accepted()->set_service("test");
    if (id == "bad-reply") {
      reply.tensors.push_back(make_tensor("x", DType::kF32, {4}));
      reply.tensors[0].shape = {5};  // bytes do not match the shape: must not reach the wire
    }
    return reply;
  };
  ServerThread server(context_, server_options("test"), handler);

  zmq::socket_t dealer(context_, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(server.endpoint());

  struct Expected {
    uint64_t correlation_id;
    v1::ErrorCode code;  // ERROR_CODE_UNSPECIFIED: a normal reply
    v1::WireError wire_error;
  };
  std::vector<Expected> expected;
  auto send = [&](zmq::multipart_t frames, Expected e) {
    ASSERT_TRUE(frames.send(dealer));
    expected.push_back(e);
  };

  send(frames_of(health_request("ok-1"), 1), {1, v1::ERROR_CODE_UNSPECIFIED, v1::WIRE_ERROR_UNSPECIFIED});
  send(zmq::multipart_t(std::string("hello")), {0, v1::ERROR_CODE_INVALID_ARGUMENT, v1::WIRE_ERROR_BAD_TAG});
  {
    zmq::multipart_t f = frames_of(health_request("v2"), 3);
    f[0].rebuild("PKV2", 4);
    send(std::move(f), {3, v1::ERROR_CODE_UNIMPLEMENTED, v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION});
  }
  {
    Message m = health_request("count");
    m.tensors.push_back(make_tensor("a", DType::kF32, {3}));
    zmq::multipart_t f = frames_of(m, 4);
    f.addstr("extra");
    send(std::move(f), {4, v1::ERROR_CODE_INVALID_ARGUMENT, v1::WIRE_ERROR_FRAME_COUNT_MISMATCH});
  }
  {
    Message m = health_request("crc");
    m.tensors.push_back(make_tensor("a", DType::kF32, {3}));
    zmq::multipart_t f = frames_of(m, 5);
    static_cast<uint8_t*>(f[2].data())[0] ^= 1;
    send(std::move(f), {5, v1::ERROR_CODE_INVALID_ARGUMENT, v1::WIRE_ERROR_CHECKSUM_MISMATCH});
  }
  send(frames_of(health_request("fail"), 6), {6, v1::ERROR_CODE_NOT_FOUND, v1::WIRE_ERROR_UNSPECIFIED});
  send(frames_of(health_request("throw"), 7), {7, v1::ERROR_CODE_INTERNAL, v1::WIRE_ERROR_UNSPECIFIED});
  send(frames_of(health_request("bad-reply"), 8), {8, v1::ERROR_CODE_INTERNAL, v1::WIRE_ERROR_UNSPECIFIED});
  {
    Message m = health_request("expired");
    m.envelope.set_deadline_unix_ms(1000);  // 1970
    send(frames_of(m, 9), {9, v1::ERROR_CODE_DEADLINE_EXCEEDED, v1::WIRE_ERROR_DEADLINE_EXPIRED});
  }
  {
    zmq::multipart_t f;
    for (int i = 0; i < 200; ++i) f.addstr("x");  // more frames than any message may have
    send(std::move(f), {0, v1::ERROR_CODE_OUT_OF_RANGE, v1::WIRE_ERROR_LIMIT_EXCEEDED});
  }
  send(frames_of(health_request("ok-2"), 11), {11, v1::ERROR_CODE_UNSPECIFIED, v1::WIRE_ERROR_UNSPECIFIED});
  // The sentinel: replies on one connection arrive in order, so a duplicate reply to any request above would
  // arrive before the sentinel's.
  send(frames_of(health_request("sentinel"), 12), {12, v1::ERROR_CODE_UNSPECIFIED, v1::WIRE_ERROR_UNSPECIFIED});

  std::vector<Message> replies;
  const Deadline deadline = Clock::now() + kPatience;
  while (Clock::now() < deadline) {
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, milliseconds(100));
    if (!(item.revents & ZMQ_POLLIN)) continue;
    zmq::multipart_t frames(dealer);
    Result<Message> reply = decode(frames);
    ASSERT_TRUE(reply.is_ok()) << "the server sent something undecodable: " << reply.status().to_string();
    replies.push_back(std::move(reply).value());
    if (replies.back().envelope.correlation_id() == 12) break;
  }
  ASSERT_EQ(replies.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const v1::Envelope& e = replies[i].envelope;
    EXPECT_EQ(e.correlation_id(), expected[i].correlation_id) << "reply " << i;
    if (expected[i].code == v1::ERROR_CODE_UNSPECIFIED) {
      EXPECT_FALSE(e.has_error_reply()) << "reply " << i << ": " << e.ShortDebugString();
    } else {
      ASSERT_TRUE(e.has_error_reply()) << "reply " << i;
      EXPECT_EQ(e.error_reply().code(), expected[i].code) << "reply " << i << ": " << e.error_reply().message();
      EXPECT_EQ(e.error_reply().wire_error(), expected[i].wire_error) << "reply " << i;
      EXPECT_EQ(e.error_reply().service(), "test");
    }
  }
  // The unsupported-version reply says which versions the server speaks, and is itself in version 1.
  EXPECT_EQ(std::vector<uint32_t>(replies[2].envelope.error_reply().supported_protocol_versions().begin(),
                                  replies[2].envelope.error_reply().supported_protocol_versions().end()),
            std::vector<uint32_t>{1});
  EXPECT_EQ(replies[5].envelope.request_id(), "fail");
  EXPECT_EQ(handled.load(), 6);  // ok-1, fail, throw, bad-reply, ok-2, sentinel: not the refused or expired
  const ServerStats stats = server.stats();
  EXPECT_EQ(stats.received, expected.size());
  EXPECT_EQ(stats.replied, expected.size());
  EXPECT_EQ(stats.wire_errors, 5u);
  EXPECT_EQ(stats.version_errors, 1u);
  EXPECT_EQ(stats.expired, 1u);
  EXPECT_EQ(stats.handler_exceptions, 1u);
  EXPECT_EQ(stats.replies_dropped, 0u);
}

TEST_F(ControlChannel, ReqClientsAreAnsweredToo) {
  ServerThread server(context_, server_options("echo"), echo_handler("echo"));
  zmq::socket_t req(context_, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(server.endpoint());
  zmq::multipart_t frames = frames_of(health_request("via-req"), 5);
  ASSERT_TRUE(frames.send(req));
  zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, kPatience), 1);
  zmq::multipart_t reply_frames(req);
  Result<Message> reply = decode(reply_frames);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->envelope.correlation_id(), 5u);
}

TEST_F(ControlChannel, ErrorRepliesBecomeTheirStatus) {
  ServerThread server(context_, server_options("mapper"),
                      [](const Message&) -> Result<Message> { return not_found("no mapper for pair a->b"); });
  auto client = connect_client(context_, {server.endpoint()});
  Result<Message> reply = client->call(health_request(), kPatience);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(reply.status().message(), "mapper: no mapper for pair a->b");
}

TEST_F(ControlChannel, TimedOutRequestReturnsDeadlineExceededAndItsLateReplyIsDiscarded) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  Handler handler = [released](const Message& request) -> Result<Message> {
    if (request.envelope.request_id() == "slow") released.wait_for(std::chrono::seconds(10));
    Message reply;
    reply.envelope.mutable_accepted()->set_service("slow-server");
    return reply;
  };
  ServerThread server(context_, server_options("slow-server"), handler);
  auto client = connect_client(context_, {server.endpoint()});

  Message slow = health_request("slow");
  Result<Message> timed_out = client->call(slow, milliseconds(100));
  ASSERT_FALSE(timed_out.is_ok());
  EXPECT_EQ(timed_out.status().code(), StatusCode::kDeadlineExceeded) << timed_out.status().to_string();
  release.set_value();  // the server now answers "slow", late

  Result<Message> next = client->call(health_request("fast"), kPatience);
  ASSERT_TRUE(next.is_ok()) << next.status().to_string();
  EXPECT_EQ(next->envelope.request_id(), "fast");  // not the late answer to "slow"
  EXPECT_EQ(client->stats().late_replies_discarded, 1u);
  EXPECT_EQ(client->stats().timeouts, 1u);
}

TEST_F(ControlChannel, UnavailableWhenNoServerListens) {
  std::string endpoint;
  {
    // A context of its own: zmq_close() is asynchronous, but terminating the context waits until the
    // listening socket is really closed.
    zmq::context_t elsewhere;
    auto server = ControlServer::bind(elsewhere, server_options("gone"));
    ASSERT_TRUE(server.is_ok());
    endpoint = (*server)->endpoint();
  }  // nothing listens on that port now
  auto client = connect_client(context_, {endpoint});
  Result<Message> reply = client->call(health_request(), milliseconds(200));
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().to_string();
  EXPECT_EQ(client->connected_peers(), 0u);
}

TEST_F(ControlChannel, ReconnectsAfterServerRestartOnTheSamePort) {
  SocketOptions fast_reconnect;
  fast_reconnect.reconnect_interval = milliseconds(20);
  fast_reconnect.reconnect_interval_max = milliseconds(100);
  // The first server has a context of its own: terminating it waits until its listening socket is closed
  // (zmq_close() alone is asynchronous), so that the second can bind the same port at once.
  auto first_context = std::make_unique<zmq::context_t>();
  auto first = std::make_unique<ServerThread>(*first_context, server_options("first"), echo_handler("first"));
  const std::string endpoint = first->endpoint();
  auto client = connect_client(context_, {endpoint}, fast_reconnect);
  Result<Message> before = client->call(health_request(), kPatience);
  ASSERT_TRUE(before.is_ok()) << before.status().to_string();
  EXPECT_EQ(before->envelope.health_reply().service(), "first");

  first.reset();  // the server goes away...
  first_context.reset();
  ServerThread second(context_, server_options("second", endpoint), echo_handler("second"));  // ...and comes back
  EXPECT_EQ(second.endpoint(), endpoint);

  // Requests fail fast while the connection is down and succeed once the client has reconnected.
  const Deadline deadline = Clock::now() + kPatience;
  Result<Message> after = Status(StatusCode::kUnavailable, "not tried");
  while (Clock::now() < deadline) {
    after = client->call(health_request(), milliseconds(200));
    if (after.is_ok()) break;
  }
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ(after->envelope.health_reply().service(), "second");
}

TEST_F(ControlChannel, RoundRobinOverTwoServers) {
  std::atomic<int> calls_a{0};
  std::atomic<int> calls_b{0};
  ServerThread a(context_, server_options("a"), echo_handler("a", &calls_a));
  ServerThread b(context_, server_options("b"), echo_handler("b", &calls_b));
  auto client = connect_client(context_, {a.endpoint(), b.endpoint()});
  ASSERT_TRUE(client->wait_connected(2, Clock::now() + kPatience));
  std::map<std::string, int> by_server;
  for (int i = 0; i < 20; ++i) {
    Result<Message> reply = client->call(health_request(), kPatience);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ++by_server[reply->envelope.sender()];
  }
  EXPECT_EQ(by_server["a"], 10);
  EXPECT_EQ(by_server["b"], 10);
  EXPECT_EQ(calls_a.load(), 10);
  EXPECT_EQ(calls_b.load(), 10);
}

TEST_F(ControlChannel, UpdateEndpointsMovesTheClient) {
  ServerThread a(context_, server_options("a"), echo_handler("a"));
  ServerThread b(context_, server_options("b"), echo_handler("b"));
  auto client = connect_client(context_, {a.endpoint()});
  ASSERT_TRUE(client->call(health_request(), kPatience).is_ok());
  // Regression: with zmq_disconnect() on the same socket, the first request after the change went to the
  // dropped server's dying connection and was lost (a 5 s timeout here).
  ASSERT_TRUE(client->update_endpoints({b.endpoint()}).is_ok());
  for (int i = 0; i < 4; ++i) {
    Result<Message> reply = client->call(health_request(), kPatience);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    EXPECT_EQ(reply->envelope.sender(), "b");
  }
}

// Sending to a server that does not read: the queues fill up to their high-water marks and further sends are
// refused with RESOURCE_EXHAUSTED instead of buffering without bound.
TEST_F(ControlChannel, HighWaterMarkBoundsTheSendQueue) {
  ServerOptions options = server_options("stuck");
  options.socket.receive_hwm = 2;
  auto stuck = ControlServer::bind(context_, options);  // bound, never served
  ASSERT_TRUE(stuck.is_ok());
  SocketOptions small;
  small.send_hwm = 2;
  auto client = connect_client(context_, {(*stuck)->endpoint()}, small);
  ASSERT_TRUE(client->wait_connected(1, Clock::now() + kPatience));

  Message big = health_request();
  big.tensors.push_back(make_tensor("payload", DType::kU8, {1 << 20}));  // 1 MiB
  int accepted = 0;
  Status refused;
  // ZeroMQ's queues hold send_hwm + receive_hwm messages; the kernel's loopback buffers hold a few MiB more.
  constexpr int kBound = 64;
  for (int i = 0; i < kBound; ++i) {
    Result<uint64_t> sent = client->try_send(big);
    if (!sent.is_ok()) {
      refused = sent.status();
      break;
    }
    ++accepted;
  }
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << "accepted " << accepted << " MiB without limit";
  EXPECT_LT(accepted, kBound);
  EXPECT_GE(accepted, 2);
  EXPECT_EQ(client->stats().send_refused, 1u);
  // A blocking call meets the same full queue (or, if the kernel took a little more meanwhile, gets no reply
  // from the server that does not read): it fails within its deadline either way.
  Result<Message> call = client->call(big, milliseconds(100));
  EXPECT_TRUE(call.status().code() == StatusCode::kResourceExhausted ||
              call.status().code() == StatusCode::kDeadlineExceeded)
      << call.status().to_string();
}

}  // namespace
}  // namespace proxykv::transport
