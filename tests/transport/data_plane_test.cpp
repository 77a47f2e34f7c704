// The ZeroMQ data plane: named blobs by key, timeouts, bounded inbox, hostile input, CURVE; a UCX plane that
// cannot start (or is not built) falls back to it visibly.
#include "proxykv/transport/data_plane.h"

#include <gtest/gtest.h>

#include <thread>

#include "proxykv/transport/codec.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

using std::chrono::milliseconds;
using testing::make_tensor;

constexpr milliseconds kPatience{5000};

std::unique_ptr<DataPlane> make_plane(zmq::context_t& context, DataPlaneOptions options = {}) {
  auto plane = make_data_plane(context, options);
  EXPECT_TRUE(plane.is_ok()) << plane.status().to_string();
  return std::move(plane).value();
}

// Polls `condition` until it holds or `patience` passes (no fixed sleeps as synchronisation).
template <typename Condition>
bool eventually(Condition condition, milliseconds patience = kPatience) {
  const Deadline deadline = Clock::now() + patience;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

class ZmqDataPlaneTest : public ::testing::Test {
 protected:
  zmq::context_t context_;
};

TEST_F(ZmqDataPlaneTest, ReportsItsTransport) {
  auto plane = make_plane(context_);
  EXPECT_STREQ(plane->transport_name(), "zmq");
  const v1::DataPlaneEndpoint e = plane->local_endpoint();
  EXPECT_EQ(e.transport(), "zmq");
  EXPECT_EQ(e.address().rfind("tcp://127.0.0.1:", 0), 0u) << e.address();
  EXPECT_NE(testing::port_of(e.address()), "0");

  DataPlaneOptions advertised;
  advertised.bind_endpoint = "tcp://0.0.0.0:0";
  advertised.advertise_host = "10.1.2.3";
  auto pod = make_plane(context_, advertised);
  EXPECT_EQ(pod->local_endpoint().address().rfind("tcp://10.1.2.3:", 0), 0u) << pod->local_endpoint().address();
}

TEST_F(ZmqDataPlaneTest, UnavailableUcxFallsBackVisiblyAndUnknownTransportsAreRefused) {
  DataPlaneOptions ucx;
  ucx.transport = "ucx";
  ucx.fallback_to_zmq = false;
#ifdef PROXYKV_WITH_UCX
  // UCX is built but cannot start with a transport that does not exist (ucx_data_plane_test.cpp tests the
  // working UCX plane).
  ucx.ucx_tls = "no_such_transport";
  EXPECT_EQ(make_data_plane(context_, ucx).status().code(), StatusCode::kUnavailable);
#else
  EXPECT_EQ(make_data_plane(context_, ucx).status().code(), StatusCode::kUnimplemented);
#endif
  // With the fallback (the default) the plane works, and says which transport it really is.
  ucx.fallback_to_zmq = true;
  auto fallback = make_plane(context_, ucx);
  EXPECT_STREQ(fallback->transport_name(), "zmq");
  DataPlaneOptions other;
  other.transport = "rdma";
  EXPECT_EQ(make_data_plane(context_, other).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ZmqDataPlaneTest, BlobsArriveByKeyInAnyOrder) {
  auto sender = make_plane(context_);
  auto receiver = make_plane(context_);
  const std::vector<WireTensor> blobs = {make_tensor("features", DType::kF32, {4, 64, 1024}, 1),
                                         make_tensor("features", DType::kBF16, {1, 6, 17}, 2),
                                         make_tensor("mask", DType::kBool, {3, 9}, 3)};
  const Deadline deadline = Clock::now() + kPatience;
  for (size_t i = 0; i < blobs.size(); ++i) {
    ASSERT_TRUE(sender->send(receiver->local_endpoint(), "req-" + std::to_string(i), blobs[i], deadline).is_ok());
  }
  uint64_t bytes = 0;
  for (size_t i : {2, 0, 1}) {
    Result<WireTensor> got = receiver->receive("req-" + std::to_string(i), deadline);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_EQ(got->name, blobs[i].name);
    EXPECT_EQ(got->dtype, blobs[i].dtype);
    EXPECT_EQ(got->shape, blobs[i].shape);
    EXPECT_EQ(got->data.view(), blobs[i].data.view());
    EXPECT_TRUE(matches_descriptor(*got, describe_tensor(blobs[i])).is_ok());
    bytes += blobs[i].data.size();
  }
  EXPECT_EQ(sender->stats().blobs_sent, 3u);
  EXPECT_EQ(sender->stats().bytes_sent, bytes);
  EXPECT_EQ(receiver->stats().blobs_received, 3u);
  EXPECT_EQ(receiver->stats().bytes_received, bytes);
}

TEST_F(ZmqDataPlaneTest, ConcurrentSendersAndReceivers) {
  auto a = make_plane(context_);
  auto b = make_plane(context_);
  constexpr int kBlobs = 16;
  std::vector<std::thread> threads;
  std::atomic<int> received{0};
  const Deadline deadline = Clock::now() + kPatience;
  for (int i = 0; i < kBlobs; ++i) {
    threads.emplace_back([&, i] {
      Result<WireTensor> got = b->receive("k" + std::to_string(i), deadline);
      if (got.is_ok() && got->data.view() == make_tensor("t", DType::kF32, {128}, i).data.view()) ++received;
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kBlobs; i += 2) {
        EXPECT_TRUE(
            a->send(b->local_endpoint(), "k" + std::to_string(i), make_tensor("t", DType::kF32, {128}, i), deadline)
                .is_ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(received.load(), kBlobs);
}

TEST_F(ZmqDataPlaneTest, MissingKeyTimesOut) {
  auto plane = make_plane(context_);
  Result<WireTensor> got = plane->receive("never-sent", Clock::now() + milliseconds(50));
  EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded);
}

TEST_F(ZmqDataPlaneTest, SendToNobodyTimesOutAndWrongTransportIsRefused) {
  auto plane = make_plane(context_);
  std::string endpoint;
  {
    zmq::context_t elsewhere;  // terminating it waits until the socket is really closed
    endpoint = make_plane(elsewhere)->local_endpoint().address();
  }  // nothing listens there any more
  v1::DataPlaneEndpoint gone;
  gone.set_transport("zmq");
  gone.set_address(endpoint);
  const WireTensor t = make_tensor("t", DType::kU8, {16});
  EXPECT_EQ(plane->send(gone, "k", t, Clock::now() + milliseconds(100)).code(), StatusCode::kDeadlineExceeded);
  v1::DataPlaneEndpoint ucx;
  ucx.set_transport("ucx");
  ucx.set_address("worker-address-bytes");
  EXPECT_EQ(plane->send(ucx, "k", t, Clock::now() + kPatience).code(), StatusCode::kInvalidArgument);
}

TEST_F(ZmqDataPlaneTest, DescriptorMismatchIsReported) {
  const WireTensor t = make_tensor("features", DType::kF32, {2, 3}, 1);
  v1::TensorDescriptor d = describe_tensor(t);
  EXPECT_TRUE(matches_descriptor(t, d).is_ok());
  v1::TensorDescriptor other_shape = d;
  other_shape.set_shape(0, 3);
  other_shape.set_shape(1, 2);
  EXPECT_FALSE(matches_descriptor(t, other_shape).is_ok());
  v1::TensorDescriptor other_bytes = d;
  other_bytes.set_checksum(d.checksum() ^ 1);
  EXPECT_FALSE(matches_descriptor(t, other_bytes).is_ok());
}

TEST_F(ZmqDataPlaneTest, HostileMessagesAreRefusedAndCounted) {
  auto plane = make_plane(context_);
  zmq::socket_t push(context_, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 0);
  push.connect(plane->local_endpoint().address());
  ASSERT_TRUE(zmq::multipart_t(std::string("garbage")).send(push));
  Message not_a_blob = testing::health_request();
  ASSERT_TRUE(std::move(encode(not_a_blob)).value().send(push));
  Message blob;
  blob.envelope.mutable_tensor_blob()->set_key("good");
  blob.tensors.push_back(make_tensor("x", DType::kI32, {8}));
  zmq::multipart_t corrupt = std::move(encode(blob)).value();
  static_cast<uint8_t*>(corrupt[2].data())[0] ^= 1;
  ASSERT_TRUE(corrupt.send(push));
  ASSERT_TRUE(std::move(encode(blob)).value().send(push));
  // One connection delivers in order: once "good" is here, the three before it have been refused.
  Result<WireTensor> got = plane->receive("good", Clock::now() + kPatience);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(plane->stats().blobs_refused, 3u);
  EXPECT_EQ(plane->stats().blobs_received, 1u);
}

TEST_F(ZmqDataPlaneTest, InboxIsBoundedInBytes) {
  DataPlaneOptions small;
  small.max_pending_bytes = 1000;
  auto receiver = make_plane(context_, small);
  auto sender = make_plane(context_);
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "first", make_tensor("t", DType::kU8, {800}), deadline).is_ok());
  ASSERT_TRUE(
      sender->send(receiver->local_endpoint(), "second", make_tensor("t", DType::kU8, {800}), deadline).is_ok());
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_refused == 1; }));
  EXPECT_TRUE(receiver->receive("first", deadline).is_ok());
  EXPECT_EQ(receiver->receive("second", Clock::now() + milliseconds(20)).status().code(),
            StatusCode::kDeadlineExceeded);
}

TEST_F(ZmqDataPlaneTest, UnclaimedBlobsExpire) {
  DataPlaneOptions short_lived;
  short_lived.pending_ttl = milliseconds(0);
  auto receiver = make_plane(context_, short_lived);
  auto sender = make_plane(context_);
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "a", make_tensor("t", DType::kU8, {8}), deadline).is_ok());
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_received == 1; }));
  // The next arrival sweeps entries older than the TTL.
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "b", make_tensor("t", DType::kU8, {8}), deadline).is_ok());
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_expired >= 1; }));
}

TEST_F(ZmqDataPlaneTest, CurveProtectsTheDataPlane) {
  const CurveKeyPair keys = *generate_curve_keypair();
  DataPlaneOptions secure_receiver;
  secure_receiver.curve_server = CurveServerConfig{keys.secret_key};
  auto receiver = make_plane(context_, secure_receiver);
  DataPlaneOptions secure_sender;
  secure_sender.curve_client = CurveClientConfig{keys.public_key, {}};
  auto sender = make_plane(context_, secure_sender);
  auto plain = make_plane(context_);
  const WireTensor t = make_tensor("t", DType::kF32, {32});
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "secret", t, Clock::now() + kPatience).is_ok());
  EXPECT_TRUE(receiver->receive("secret", Clock::now() + kPatience).is_ok());
  // A sender without the key never completes the handshake, so its blob is never handed over.
  EXPECT_EQ(plain->send(receiver->local_endpoint(), "plain", t, Clock::now() + milliseconds(200)).code(),
            StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace proxykv::transport
