// The UCX data plane: eager and rendezvous blobs byte-exact, many senders, timeouts, dead and garbage peer
// addresses, a hostile peer speaking raw ucp, the bounded inbox, the fallback to zmq; and one contract test
// run against both the zmq and the ucx plane. Hermetic: UCX over TCP on the loopback device only.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#ifdef PROXYKV_WITH_UCX
#include <ucp/api/ucp.h>
#endif

#include "proxykv/transport/codec.h"
#include "proxykv/transport/data_plane.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

using std::chrono::milliseconds;
using testing::make_tensor;

constexpr milliseconds kPatience{10000};

// Loopback TCP: works in any sandbox, and UCX 1.13's shared-memory transports are not used anyway (the plane
// asks for peer failure detection, which they lack).
DataPlaneOptions plane_options(const std::string& transport) {
  DataPlaneOptions options;
  options.transport = transport;
  options.fallback_to_zmq = false;
  options.ucx_tls = "tcp";
  options.ucx_net_devices = "lo";
  return options;
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

void expect_same(const WireTensor& got, const WireTensor& sent) {
  EXPECT_EQ(got.name, sent.name);
  EXPECT_EQ(got.dtype, sent.dtype);
  EXPECT_EQ(got.shape, sent.shape);
  EXPECT_EQ(got.data.size(), sent.data.size());
  EXPECT_TRUE(got.data.view() == sent.data.view()) << "bytes of '" << sent.name << "' differ";
  EXPECT_TRUE(matches_descriptor(got, describe_tensor(sent)).is_ok());
}

// Skips the calling test when `transport` is "ucx" and this build or sandbox has no working UCX.
#define PROXYKV_SKIP_WITHOUT(transport)                                                                               \
  do {                                                                                                                \
    if (std::string(transport) == "ucx") {                                                                            \
      if (!ucx_built()) GTEST_SKIP() << "built without UCX (PROXYKV_WITH_UCX=OFF)";                                   \
      if (Status s = ucx_usable(); !s.is_ok()) GTEST_SKIP() << "UCX has no usable transport here: " << s.to_string(); \
    }                                                                                                                 \
  } while (false)

bool ucx_built() {
#ifdef PROXYKV_WITH_UCX
  return true;
#else
  return false;
#endif
}

Status ucx_usable() {
  static const Status usable = [] {
    zmq::context_t context;
    Result<std::unique_ptr<DataPlane>> plane = make_data_plane(context, plane_options("ucx"));
    return plane.is_ok() ? Status::ok() : plane.status();
  }();
  return usable;
}

class DataPlaneContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { PROXYKV_SKIP_WITHOUT(GetParam()); }

  std::unique_ptr<DataPlane> make_plane(DataPlaneOptions options) {
    auto plane = make_data_plane(context_, options);
    EXPECT_TRUE(plane.is_ok()) << plane.status().to_string();
    return plane.is_ok() ? std::move(plane).value() : nullptr;
  }
  std::unique_ptr<DataPlane> make_plane() { return make_plane(plane_options(GetParam())); }

  zmq::context_t context_;
};

TEST_P(DataPlaneContractTest, ReportsItsTransport) {
  auto plane = make_plane();
  ASSERT_NE(plane, nullptr);
  EXPECT_EQ(plane->transport_name(), GetParam());
  EXPECT_EQ(plane->local_endpoint().transport(), GetParam());
  EXPECT_FALSE(plane->local_endpoint().address().empty());
  auto other = make_plane();
  EXPECT_NE(plane->local_endpoint().address(), other->local_endpoint().address());
}

TEST_P(DataPlaneContractTest, BlobsArriveByKeyInAnyOrderByteExact) {
  auto sender = make_plane();
  auto receiver = make_plane();
  ASSERT_TRUE(sender && receiver);
  // Small ones go eagerly; 8 MiB takes UCX's rendezvous path.
  const std::vector<WireTensor> blobs = {
      make_tensor("features", DType::kF32, {2, 1024, 1024}, 1), make_tensor("features", DType::kBF16, {1, 6, 17}, 2),
      make_tensor("mask", DType::kBool, {3, 9}, 3), make_tensor("scalar", DType::kI64, {}, 4),
      make_tensor("empty", DType::kF16, {0, 5}, 5)};
  const Deadline deadline = Clock::now() + kPatience;
  uint64_t bytes = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    Status s = sender->send(receiver->local_endpoint(), "req-" + std::to_string(i), blobs[i], deadline);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    bytes += blobs[i].data.size();
  }
  for (size_t i : {2, 0, 4, 1, 3}) {
    Result<WireTensor> got = receiver->receive("req-" + std::to_string(i), deadline);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    expect_same(*got, blobs[i]);
  }
  const DataPlaneStats sent = sender->stats();
  const DataPlaneStats received = receiver->stats();
  EXPECT_EQ(sent.blobs_sent, blobs.size());
  EXPECT_EQ(sent.bytes_sent, bytes);
  EXPECT_EQ(received.blobs_received, blobs.size());
  EXPECT_EQ(received.bytes_received, bytes);
  EXPECT_EQ(received.blobs_refused, 0u);
  EXPECT_EQ(sent.blobs_received, 0u);
}

TEST_P(DataPlaneContractTest, ManyConcurrentSendersAndReceivers) {
  auto a = make_plane();
  auto b = make_plane();
  auto c = make_plane();
  ASSERT_TRUE(a && b && c);
  constexpr int kSenders = 6;
  constexpr int kBlobsPerSender = 8;
  // Every fourth blob is 1 MiB (rendezvous), the others small; two sending planes share one receiver.
  auto blob = [](int i) {
    return make_tensor("t", DType::kF32, {i % 4 == 0 ? int64_t{256} * 1024 : int64_t{64} + i}, i);
  };
  const Deadline deadline = Clock::now() + kPatience;
  std::atomic<int> received{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kSenders * kBlobsPerSender; ++i) {
    threads.emplace_back([&, i] {
      Result<WireTensor> got = c->receive("k" + std::to_string(i), deadline);
      if (got.is_ok() && got->data.view() == blob(i).data.view()) ++received;
    });
  }
  for (int t = 0; t < kSenders; ++t) {
    threads.emplace_back([&, t] {
      DataPlane& from = t % 2 == 0 ? *a : *b;
      for (int i = t; i < kSenders * kBlobsPerSender; i += kSenders) {
        Status s = from.send(c->local_endpoint(), "k" + std::to_string(i), blob(i), deadline);
        EXPECT_TRUE(s.is_ok()) << s.to_string();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(received.load(), kSenders * kBlobsPerSender);
  EXPECT_EQ(c->stats().blobs_received, uint64_t{kSenders * kBlobsPerSender});
  EXPECT_EQ(a->stats().blobs_sent + b->stats().blobs_sent, uint64_t{kSenders * kBlobsPerSender});
}

TEST_P(DataPlaneContractTest, MissingKeyTimesOut) {
  auto plane = make_plane();
  ASSERT_NE(plane, nullptr);
  const Deadline start = Clock::now();
  Result<WireTensor> got = plane->receive("never-sent", start + milliseconds(50));
  EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_GE(Clock::now() - start, milliseconds(50));
}

TEST_P(DataPlaneContractTest, WrongTransportAndEmptyKeyAreRefused) {
  auto plane = make_plane();
  auto peer = make_plane();
  ASSERT_TRUE(plane && peer);
  const WireTensor t = make_tensor("t", DType::kU8, {16});
  v1::DataPlaneEndpoint other;
  other.set_transport(GetParam() == "ucx" ? "zmq" : "ucx");
  other.set_address("tcp://127.0.0.1:1");
  EXPECT_EQ(plane->send(other, "k", t, Clock::now() + kPatience).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(plane->send(peer->local_endpoint(), "", t, Clock::now() + kPatience).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(plane->stats().blobs_sent, 0u);
}

TEST_P(DataPlaneContractTest, InboxIsBoundedInBytesAndRefusalsAreCounted) {
  DataPlaneOptions small = plane_options(GetParam());
  small.max_pending_bytes = 1000;
  auto receiver = make_plane(small);
  auto sender = make_plane();
  ASSERT_TRUE(sender && receiver);
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "first", make_tensor("t", DType::kU8, {800}), deadline).is_ok());
  // May succeed (the refusal happens at the receiver), but the blob must not be kept.
  (void)sender->send(receiver->local_endpoint(), "second", make_tensor("t", DType::kU8, {800}), deadline);
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_refused == 1; }));
  EXPECT_TRUE(receiver->receive("first", deadline).is_ok());
  EXPECT_EQ(receiver->receive("second", Clock::now() + milliseconds(20)).status().code(),
            StatusCode::kDeadlineExceeded);
  EXPECT_EQ(receiver->stats().blobs_received, 1u);
}

TEST_P(DataPlaneContractTest, UnclaimedBlobsExpire) {
  DataPlaneOptions short_lived = plane_options(GetParam());
  short_lived.pending_ttl = milliseconds(0);
  auto receiver = make_plane(short_lived);
  auto sender = make_plane();
  ASSERT_TRUE(sender && receiver);
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "a", make_tensor("t", DType::kU8, {8}), deadline).is_ok());
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_received == 1; }));
  // The next arrival sweeps entries older than the TTL.
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "b", make_tensor("t", DType::kU8, {8}), deadline).is_ok());
  ASSERT_TRUE(eventually([&] { return receiver->stats().blobs_expired >= 1; }));
}

// A descriptor the sender already made travels as is (its CRC-32 is not computed again): the receiver gets it
// back from receive() and checks the promised one against it without hashing. A lying checksum therefore gets
// the blob refused at the receiver, which shows that it was not recomputed on the way.
TEST_P(DataPlaneContractTest, AGivenDescriptorTravelsAsIsAndIsCheckedOnce) {
  auto sender = make_plane();
  auto receiver = make_plane();
  ASSERT_TRUE(sender && receiver);
  const WireTensor t = make_tensor("features", DType::kF32, {4, 8, 300}, 7);
  const v1::TensorDescriptor d = describe_tensor(t);
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "given", t, Clock::now() + kPatience, &d).is_ok());
  v1::TensorDescriptor arrived;
  auto got = receiver->receive("given", Clock::now() + kPatience, &arrived);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  expect_same(*got, t);
  EXPECT_EQ(arrived.checksum_type(), v1::CHECKSUM_TYPE_CRC32);
  EXPECT_EQ(arrived.checksum(), d.checksum());
  EXPECT_TRUE(matches_descriptor(*got, d, arrived).is_ok());
  v1::TensorDescriptor promised_other = d;
  promised_other.set_checksum(d.checksum() ^ 1);
  EXPECT_FALSE(matches_descriptor(*got, promised_other, arrived).is_ok());
  v1::TensorDescriptor unchecked = arrived;
  unchecked.clear_checksum_type();
  EXPECT_FALSE(matches_descriptor(*got, d, unchecked).is_ok()) << "a promised CRC with none arrived must fail";

  v1::TensorDescriptor lying = d;
  lying.set_checksum(d.checksum() ^ 1);
  const uint64_t refused = receiver->stats().blobs_refused;
  ASSERT_TRUE(sender->send(receiver->local_endpoint(), "lying", t, Clock::now() + kPatience, &lying).is_ok());
  EXPECT_TRUE(eventually([&] { return receiver->stats().blobs_refused > refused; }));
  EXPECT_EQ(receiver->receive("lying", Clock::now() + milliseconds(50)).status().code(),
            StatusCode::kDeadlineExceeded);

  v1::TensorDescriptor wrong_shape = d;
  wrong_shape.set_shape(0, 5);
  EXPECT_EQ(sender->send(receiver->local_endpoint(), "bad", t, Clock::now() + kPatience, &wrong_shape).code(),
            StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(BothTransports, DataPlaneContractTest, ::testing::Values("zmq", "ucx"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

class UcxDataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override { PROXYKV_SKIP_WITHOUT("ucx"); }

  std::unique_ptr<DataPlane> make_plane(DataPlaneOptions options = plane_options("ucx")) {
    auto plane = make_data_plane(context_, options);
    EXPECT_TRUE(plane.is_ok()) << plane.status().to_string();
    return plane.is_ok() ? std::move(plane).value() : nullptr;
  }

  zmq::context_t context_;
};

TEST_F(UcxDataPlaneTest, IsTheUcxPlane) {
  auto plane = make_plane();
  ASSERT_NE(plane, nullptr);
  EXPECT_STREQ(plane->transport_name(), "ucx");
  const v1::DataPlaneEndpoint e = plane->local_endpoint();
  EXPECT_EQ(e.transport(), "ucx");
  EXPECT_GT(e.address().size(), 8u);  // ucp worker address bytes
}

TEST_F(UcxDataPlaneTest, UnusableUcxFallsBackToZmqOnlyWhenAllowed) {
  DataPlaneOptions broken = plane_options("ucx");
  broken.ucx_tls = "no_such_transport";
  EXPECT_EQ(make_data_plane(context_, broken).status().code(), StatusCode::kUnavailable);
  broken.fallback_to_zmq = true;
  auto fallback = make_plane(broken);
  ASSERT_NE(fallback, nullptr);
  EXPECT_STREQ(fallback->transport_name(), "zmq");
  EXPECT_EQ(fallback->local_endpoint().transport(), "zmq");
}

TEST_F(UcxDataPlaneTest, LargeBlobsTakeTheRendezvousPathIntact) {
  auto sender = make_plane();
  auto receiver = make_plane();
  ASSERT_TRUE(sender && receiver);
  const Deadline deadline = Clock::now() + kPatience;
  for (uint32_t seed : {11u, 12u, 13u}) {
    const WireTensor big = make_tensor("features", DType::kBF16, {4, 1024, 1024 + seed}, seed);
    const std::string key = "big-" + std::to_string(seed);
    ASSERT_TRUE(sender->send(receiver->local_endpoint(), key, big, deadline).is_ok());
    Result<WireTensor> got = receiver->receive(key, deadline);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    expect_same(*got, big);
  }
}

TEST_F(UcxDataPlaneTest, SendingToItselfWorks) {
  auto plane = make_plane();
  ASSERT_NE(plane, nullptr);
  const WireTensor t = make_tensor("t", DType::kF32, {33});
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(plane->send(plane->local_endpoint(), "self", t, deadline).is_ok());
  Result<WireTensor> got = plane->receive("self", deadline);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  expect_same(*got, t);
}

TEST_F(UcxDataPlaneTest, DeadPeerGivesAnErrorAndThePlaneKeepsWorking) {
  auto plane = make_plane();
  auto live = make_plane();
  ASSERT_TRUE(plane && live);
  v1::DataPlaneEndpoint gone = make_plane()->local_endpoint();  // destroyed at the end of the statement
  const WireTensor t = make_tensor("t", DType::kU8, {64});
  const WireTensor big = make_tensor("t", DType::kU8, {4 << 20});
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second one goes through a fresh endpoint
    const Status small_send = plane->send(gone, "k", t, Clock::now() + milliseconds(3000));
    const Status big_send = plane->send(gone, "big", big, Clock::now() + milliseconds(3000));
    // An eager send may complete locally before the failure is known; the rendezvous one cannot.
    EXPECT_TRUE(small_send.is_ok() || small_send.code() == StatusCode::kUnavailable ||
                small_send.code() == StatusCode::kDeadlineExceeded)
        << small_send.to_string();
    EXPECT_TRUE(big_send.code() == StatusCode::kUnavailable || big_send.code() == StatusCode::kDeadlineExceeded)
        << big_send.to_string();
  }
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(plane->send(live->local_endpoint(), "after", t, deadline).is_ok());
  EXPECT_TRUE(live->receive("after", deadline).is_ok());
}

TEST_F(UcxDataPlaneTest, GarbageAddressesGiveAnErrorNotACrash) {
  auto plane = make_plane();
  auto live = make_plane();
  ASSERT_TRUE(plane && live);
  const WireTensor t = make_tensor("t", DType::kU8, {64});
  const std::string real = live->local_endpoint().address();
  std::vector<std::string> addresses = {"", std::string(1, '\0'), "not a worker address", real.substr(0, 3),
                                        std::string(100000, 'x')};
  std::mt19937 rng(7);
  for (size_t size : {size_t{8}, size_t{64}, real.size(), size_t{1000}}) {
    std::string random(size, '\0');
    for (char& c : random) c = static_cast<char>(rng());
    addresses.push_back(random);
  }
  for (const std::string& address : addresses) {
    v1::DataPlaneEndpoint garbage;
    garbage.set_transport("ucx");
    garbage.set_address(address);
    const Status s = plane->send(garbage, "k", t, Clock::now() + milliseconds(500));
    EXPECT_FALSE(s.is_ok()) << address.size() << " bytes of garbage were taken for an address";
  }
  EXPECT_EQ(plane->stats().blobs_sent, 0u);
  const Deadline deadline = Clock::now() + kPatience;
  ASSERT_TRUE(plane->send(live->local_endpoint(), "after", t, deadline).is_ok());
  EXPECT_TRUE(live->receive("after", deadline).is_ok());
}

// UCX aborts the process on an AM header longer than the transport carries; the plane refuses to send one.
TEST_F(UcxDataPlaneTest, OverlongKeysAreRefusedBeforeUcxSeesThem) {
  auto sender = make_plane();
  auto receiver = make_plane();
  ASSERT_TRUE(sender && receiver);
  const Status s = sender->send(receiver->local_endpoint(), std::string(100 << 10, 'k'),
                                make_tensor("t", DType::kU8, {8}), Clock::now() + kPatience);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_TRUE(sender
                  ->send(receiver->local_endpoint(), std::string(1000, 'k'), make_tensor("t", DType::kU8, {8}),
                         Clock::now() + kPatience)
                  .is_ok());
}

TEST_F(UcxDataPlaneTest, BlobsLargerThanTheInboxAreRefusedAtTheSender) {
  DataPlaneOptions small = plane_options("ucx");
  small.max_pending_bytes = 1 << 20;
  auto receiver = make_plane(small);
  auto sender = make_plane();
  ASSERT_TRUE(sender && receiver);
  // Rendezvous: the receiver refuses before it allocates, and the refusal fails the send.
  const Status s = sender->send(receiver->local_endpoint(), "huge", make_tensor("t", DType::kU8, {8 << 20}),
                                Clock::now() + kPatience);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_EQ(receiver->stats().blobs_refused, 1u);
  EXPECT_EQ(sender->stats().blobs_sent, 0u);
}

#ifdef PROXYKV_WITH_UCX
// A peer that speaks raw ucp: active messages with whatever header and payload the test likes.
class RawUcxPeer {
 public:
  explicit RawUcxPeer(const std::string& address) {
    ucp_config_t* config = nullptr;
    EXPECT_EQ(ucp_config_read(nullptr, nullptr, &config), UCS_OK);
    ucp_config_modify(config, "TLS", "tcp");
    ucp_config_modify(config, "NET_DEVICES", "lo");
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM;
    EXPECT_EQ(ucp_init(&params, config, &context_), UCS_OK);
    ucp_config_release(config);
    ucp_worker_params_t worker_params{};
    EXPECT_EQ(ucp_worker_create(context_, &worker_params, &worker_), UCS_OK);
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(address.data());
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    EXPECT_EQ(ucp_ep_create(worker_, &ep_params, &ep_), UCS_OK);
  }
  ~RawUcxPeer() {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    wait(ucp_ep_close_nbx(ep_, &param));
    ucp_worker_destroy(worker_);
    ucp_cleanup(context_);
  }
  RawUcxPeer(const RawUcxPeer&) = delete;
  RawUcxPeer& operator=(const RawUcxPeer&) = delete;

  // Sends one AM with the data plane's id and waits for it to complete; its status.
  ucs_status_t send(const std::string& header, const std::string& payload, uint32_t flags = 0) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = flags;
    return wait(ucp_am_send_nbx(ep_, kBlobAmId, header.data(), header.size(), payload.data(), payload.size(), &param));
  }

  static constexpr unsigned kBlobAmId = 0x504B;  // the plane's (ucx_data_plane.cpp)

 private:
  ucs_status_t wait(void* request) {
    if (!UCS_PTR_IS_PTR(request)) return UCS_PTR_STATUS(request);
    const Deadline deadline = Clock::now() + kPatience;
    ucs_status_t status;
    while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS && Clock::now() < deadline) {
      ucp_worker_progress(worker_);
    }
    ucp_request_free(request);
    return status;
  }

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_ep_h ep_ = nullptr;
};

std::string header_for(const std::string& key, const v1::TensorDescriptor& descriptor) {
  v1::DataPlaneRef ref;
  ref.set_transport("ucx");
  ref.set_key(key);
  *ref.mutable_tensor() = descriptor;
  return protocol_tag(kProtocolVersion) + ref.SerializeAsString();
}

TEST_F(UcxDataPlaneTest, HostilePeerIsRefusedAndCountedNeverCrashes) {
  auto plane = make_plane();
  ASSERT_NE(plane, nullptr);
  RawUcxPeer peer(plane->local_endpoint().address());
  const WireTensor good = make_tensor("x", DType::kI32, {8});
  const std::string good_bytes(good.data.view());
  const v1::TensorDescriptor d = describe_tensor(good);

  v1::TensorDescriptor wrong_length = d;
  wrong_length.set_byte_length(d.byte_length() + 4);
  v1::TensorDescriptor bad_crc = d;
  bad_crc.set_checksum(d.checksum() ^ 1);
  v1::TensorDescriptor no_crc = d;
  no_crc.clear_checksum_type();
  v1::TensorDescriptor bad_dtype = d;
  bad_dtype.set_dtype("F128");
  v1::TensorDescriptor negative = d;
  negative.set_shape(0, -8);
  v1::TensorDescriptor huge_rank = d;
  for (int i = 0; i < 20; ++i) huge_rank.add_shape(1);

  const std::vector<std::pair<std::string, std::string>> hostile = {
      {"", good_bytes},                                               // no header
      {"garbage", good_bytes},                                        // no tag
      {protocol_tag(kProtocolVersion) + "\xff\xff\xff", good_bytes},  // tag, then not a protobuf
      {header_for("", d), good_bytes},                                // no key
      {header_for("k", wrong_length), good_bytes},
      {header_for("k", d), good_bytes.substr(1)},  // payload shorter than promised
      {header_for("k", bad_crc), good_bytes},
      {header_for("k", no_crc), good_bytes},
      {header_for("k", bad_dtype), good_bytes},
      {header_for("k", negative), good_bytes},
      {header_for("k", huge_rank), good_bytes},
      {std::string(4000, 'h'), good_bytes},  // long, untagged
  };
  for (const auto& [header, payload] : hostile) peer.send(header, payload);
  // A hostile rendezvous blob is refused before any byte is fetched, and the sender learns it.
  EXPECT_NE(peer.send(header_for("k", bad_dtype), std::string(4 << 20, 'r'), UCP_AM_SEND_FLAG_RNDV), UCS_OK);
  EXPECT_EQ(peer.send(header_for("good", d), good_bytes), UCS_OK);

  Result<WireTensor> got = plane->receive("good", Clock::now() + kPatience);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  expect_same(*got, good);
  const uint64_t refusals = hostile.size() + 1;
  ASSERT_TRUE(eventually([&] { return plane->stats().blobs_refused == refusals; }))
      << plane->stats().blobs_refused << " of " << refusals << " refused";
  EXPECT_EQ(plane->stats().blobs_received, 1u);
  EXPECT_EQ(plane->receive("k", Clock::now() + milliseconds(10)).status().code(), StatusCode::kDeadlineExceeded);
}
#endif  // PROXYKV_WITH_UCX

}  // namespace
}  // namespace proxykv::transport
