// Framing: every message type makes the round trip with its tensors; hostile frames get a specific error and
// never crash the decoder.
#include "proxykv/transport/codec.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <random>

#include "proxykv/transport/checksum.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

using testing::make_tensor;

Message score_request() {
  Message m;
  m.envelope.set_request_id("cmpl-1");
  m.envelope.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
  m.envelope.set_deadline_unix_ms(1'700'000'000'123);
  v1::ScoreRequest* r = m.envelope.mutable_score_request();
  r->set_request_id("cmpl-1");
  for (int i = 0; i < 1000; ++i) r->add_context_token_ids(i * 7 % 5003);
  r->set_target_model_id("tiny-target");
  r->set_proxy_model_id("tiny-proxy");
  r->set_keep_ratio(0.3f);
  r->set_selection_level(v1::SELECTION_LEVEL_GLOBAL);
  r->set_deadline_unix_ms(1'700'000'000'123);
  r->set_reply_to("tcp://10.0.0.7:5557");
  r->set_num_sink_tokens(4);
  r->set_compatibility_hash("fnv1a64:0123456789abcdef");
  return m;
}

Message proxy_features(DType dtype) {
  Message m;
  v1::ProxyFeatures* f = m.envelope.mutable_proxy_features();
  f->set_request_id("cmpl-2");
  f->set_channels(2);
  f->set_proxy_layers(3);
  f->set_proxy_kv_heads(2);
  f->set_tokens(17);
  f->add_channel_names("kvzip");
  f->add_channel_names("key_norm");
  f->set_features_tensor("features");
  f->set_keep_ratio(0.5f);
  f->set_reply_to("tcp://127.0.0.1:1234");
  m.tensors.push_back(make_tensor("features", dtype, {2, 6, 17}, 7));
  return m;
}

Message proxy_features_by_reference() {
  Message m;
  v1::ProxyFeatures* f = m.envelope.mutable_proxy_features();
  f->set_channels(1);
  f->set_proxy_layers(2);
  f->set_proxy_kv_heads(2);
  f->set_tokens(5);
  v1::DataPlaneRef* ref = f->mutable_features_ref();
  ref->set_transport("ucx");
  ref->set_key("cmpl-3/features");
  *ref->mutable_tensor() = describe_tensor(make_tensor("features", DType::kF32, {1, 4, 5}));
  return m;
}

Message prune_mask_indices() {
  Message m;
  v1::PruneMask* p = m.envelope.mutable_prune_mask();
  p->set_target_layers(2);
  p->set_target_kv_heads(2);
  p->set_tokens(10);
  p->set_keep_ratio(0.3f);
  p->set_achieved_keep_ratio(0.3f);
  p->set_method("proxykv");
  p->set_encoding(v1::MASK_ENCODING_KEPT_INDICES);
  for (uint32_t layer = 0; layer < 2; ++layer) {
    for (uint32_t head = 0; head < 2; ++head) {
      v1::HeadKeptIndices* h = p->add_heads();
      h->set_layer(layer);
      h->set_kv_head(head);
      for (uint32_t t : {0u, 3u + layer, 9u - head}) h->add_token_indices(t);
    }
  }
  return m;
}

Message prune_mask_bitmask() {
  Message m;
  v1::PruneMask* p = m.envelope.mutable_prune_mask();
  p->set_target_layers(2);
  p->set_target_kv_heads(3);
  p->set_tokens(20);
  p->set_method("proxykv");
  p->set_encoding(v1::MASK_ENCODING_PACKED_BITMASK);
  p->set_bitmask_tensor("mask");
  m.tensors.push_back(make_tensor("mask", DType::kU8, {6, 3}, 3));
  return m;
}

Message handshake() {
  Message m;
  v1::Handshake* h = m.envelope.mutable_handshake();
  h->set_protocol_version(1);
  h->add_supported_protocol_versions(1);
  h->set_service_name("mapper");
  h->set_service_version("0.1.0");
  h->set_compatibility_hash("fnv1a64:0123456789abcdef");
  v1::DataPlaneEndpoint* ucx = h->add_data_planes();
  ucx->set_transport("ucx");
  ucx->set_address(std::string("\x00\x01\xff worker", 10));
  h->set_ucx_worker_address(ucx->address());
  v1::DataPlaneEndpoint* zmq = h->add_data_planes();
  zmq->set_transport("zmq");
  zmq->set_address("tcp://127.0.0.1:5555");
  return m;
}

// One message per body case, plus messages carrying tensors of every dtype, a scalar and an empty tensor.
std::vector<Message> sample_messages() {
  std::vector<Message> out;
  out.push_back(score_request());
  out.push_back(proxy_features(DType::kF32));
  out.push_back(proxy_features(DType::kBF16));
  out.push_back(proxy_features(DType::kF16));
  out.push_back(proxy_features_by_reference());
  out.push_back(prune_mask_indices());
  out.push_back(prune_mask_bitmask());
  {
    Message m;
    m.envelope.mutable_accepted()->set_service("proxy");
    m.envelope.mutable_accepted()->set_queue_depth(3);
    out.push_back(std::move(m));
  }
  {
    Message m;
    v1::ErrorReply* e = m.envelope.mutable_error_reply();
    e->set_code(v1::ERROR_CODE_NOT_FOUND);
    e->set_message("no mapper for pair a->b");
    e->set_service("mapper");
    out.push_back(std::move(m));
  }
  out.push_back(testing::health_request("health-1"));
  {
    Message m;
    v1::HealthReply* h = m.envelope.mutable_health_reply();
    h->set_status(v1::SERVING_STATUS_DRAINING);
    h->set_service("proxy");
    h->set_in_flight(2);
    h->add_supported_protocol_versions(1);
    h->set_data_plane_transport("zmq");
    h->add_model_pairs("tiny-proxy->tiny-target");
    out.push_back(std::move(m));
  }
  out.push_back(handshake());
  {
    Message m;
    m.envelope.mutable_tensor_blob()->set_key("cmpl-4/features");
    m.tensors.push_back(make_tensor("features", DType::kI64, {3, 5}, 11));
    out.push_back(std::move(m));
  }
  {
    Message m = testing::health_request();
    const DType all[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                         DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};
    uint32_t seed = 100;
    for (DType dtype : all) {
      m.tensors.push_back(make_tensor(std::string("t_") + dtype_name(dtype), dtype, {3, 1, 4}, seed++));
    }
    m.tensors.push_back(make_tensor("scalar", DType::kF32, {}, seed++));
    m.tensors.push_back(make_tensor("empty", DType::kF32, {0, 8}, seed++));
    m.tensors.push_back(make_tensor("big", DType::kF32, {64, 1024}, seed++));  // zero-copy path
    out.push_back(std::move(m));
  }
  return out;
}

zmq::multipart_t encode_ok(const Message& m) {
  Result<zmq::multipart_t> frames = encode(m);
  EXPECT_TRUE(frames.is_ok()) << frames.status().to_string();
  return std::move(frames).value();
}

void expect_same(const Message& sent, const Message& got) {
  v1::Envelope expected = sent.envelope;
  expected.set_protocol_version(kProtocolVersion);
  expected.set_type(message_type_of(sent.envelope));
  expected.clear_tensors();
  v1::Envelope actual = got.envelope;
  actual.clear_tensors();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(expected, actual))
      << "sent: " << expected.ShortDebugString() << "\ngot:  " << actual.ShortDebugString();
  ASSERT_EQ(sent.tensors.size(), got.tensors.size());
  for (size_t i = 0; i < sent.tensors.size(); ++i) {
    EXPECT_EQ(sent.tensors[i].name, got.tensors[i].name);
    EXPECT_EQ(sent.tensors[i].dtype, got.tensors[i].dtype);
    EXPECT_EQ(sent.tensors[i].shape, got.tensors[i].shape);
    EXPECT_EQ(sent.tensors[i].data.view(), got.tensors[i].data.view()) << sent.tensors[i].name;
  }
}

TEST(Checksum, Crc32MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(crc32("", 0), 0u);
}

TEST(Codec, EveryMessageTypeRoundTripsWithItsTensors) {
  std::set<v1::MessageType> types;
  for (const Message& m : sample_messages()) {
    zmq::multipart_t frames = encode_ok(m);
    ASSERT_EQ(frames.size(), 2 + m.tensors.size());
    EXPECT_EQ(frames[0].to_string(), "PKV1");
    DecodeDiagnostics diag;
    Result<Message> got = decode(frames, CodecLimits{}, &diag);
    ASSERT_TRUE(got.is_ok()) << message_type_name(m.type()) << ": " << got.status().to_string();
    EXPECT_TRUE(frames.empty());
    EXPECT_EQ(got->type(), m.type());
    EXPECT_EQ(got->envelope.type(), m.type());
    EXPECT_EQ(diag.wire_error, v1::WIRE_ERROR_UNSPECIFIED);
    expect_same(m, *got);
    types.insert(got->type());
  }
  // Every body case of the envelope is covered.
  EXPECT_EQ(types.size(), static_cast<size_t>(v1::MessageType_MAX));
}

TEST(Codec, DescriptorsCarryDtypeShapeLengthAndCrc) {
  Message m = proxy_features(DType::kBF16);
  zmq::multipart_t frames = encode_ok(m);
  v1::Envelope envelope;
  ASSERT_TRUE(envelope.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size())));
  ASSERT_EQ(envelope.tensors_size(), 1);
  const v1::TensorDescriptor& d = envelope.tensors(0);
  EXPECT_EQ(d.name(), "features");
  EXPECT_EQ(d.dtype(), "BF16");
  EXPECT_EQ(std::vector<int64_t>(d.shape().begin(), d.shape().end()), (std::vector<int64_t>{2, 6, 17}));
  EXPECT_EQ(d.byte_length(), 2u * 6 * 17 * 2);
  EXPECT_EQ(d.checksum_type(), v1::CHECKSUM_TYPE_CRC32);
  EXPECT_EQ(d.checksum(), crc32(m.tensors[0].data.data(), m.tensors[0].data.size()));
  EXPECT_EQ(frames[2].size(), d.byte_length());
}

TEST(Codec, DecodedTensorsShareTheReceivedFrame) {
  Message m = testing::health_request();
  m.tensors.push_back(make_tensor("x", DType::kF32, {256, 256}));
  zmq::multipart_t frames = encode_ok(m);
  const void* frame_bytes = frames[2].data();
  Result<Message> got = decode(frames);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(static_cast<const void*>(got->tensors[0].data.data()), frame_bytes);
}

TEST(Codec, EncodeRefusesWhatTheReceiverWouldRefuse) {
  Message no_body;
  EXPECT_EQ(encode(no_body).status().code(), StatusCode::kInvalidArgument);

  Message short_bytes = testing::health_request();
  short_bytes.tensors.push_back(make_tensor("x", DType::kF32, {4}));
  short_bytes.tensors[0].shape = {5};
  EXPECT_EQ(encode(short_bytes).status().code(), StatusCode::kInvalidArgument);

  Message twice = testing::health_request();
  twice.tensors.push_back(make_tensor("x", DType::kU8, {4}));
  twice.tensors.push_back(make_tensor("x", DType::kU8, {4}));
  EXPECT_EQ(encode(twice).status().code(), StatusCode::kInvalidArgument);

  Message dangling = proxy_features(DType::kF32);
  dangling.envelope.mutable_proxy_features()->set_features_tensor("nope");
  EXPECT_EQ(encode(dangling).status().code(), StatusCode::kInvalidArgument);
}

// ---- hostile frames --------------------------------------------------------------------------------------

// A valid message with two tensors (request id and correlation id set), as frames.
zmq::multipart_t valid_frames() {
  Message m = testing::health_request("req-77");
  m.envelope.set_correlation_id(77);
  m.tensors.push_back(make_tensor("a", DType::kF32, {4, 8}, 1));
  m.tensors.push_back(make_tensor("b", DType::kI32, {16}, 2));
  return encode_ok(m);
}

zmq::multipart_t clone(const zmq::multipart_t& frames) {
  zmq::multipart_t copy;
  for (const zmq::message_t& f : frames) copy.add(zmq::message_t(f.data(), f.size()));
  return copy;
}

v1::Envelope envelope_of(const zmq::multipart_t& frames) {
  v1::Envelope e;
  EXPECT_TRUE(e.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size())));
  return e;
}

void set_envelope(zmq::multipart_t& frames, const v1::Envelope& e) {
  frames[1].rebuild(e.SerializeAsString().data(), e.ByteSizeLong());
}

struct Refusal {
  StatusCode code;
  v1::WireError wire_error;
  DecodeDiagnostics diag;
};

Refusal refuse(zmq::multipart_t frames, const CodecLimits& limits = {}) {
  DecodeDiagnostics diag;
  Result<Message> got = decode(frames, limits, &diag);
  EXPECT_FALSE(got.is_ok()) << "decoded a message that should have been refused";
  EXPECT_TRUE(frames.empty());
  EXPECT_NE(diag.wire_error, v1::WIRE_ERROR_UNSPECIFIED) << got.status().to_string();
  return {got.status().code(), diag.wire_error, diag};
}

TEST(CodecMalformed, TruncatedMessages) {
  EXPECT_EQ(refuse(zmq::multipart_t()).wire_error, v1::WIRE_ERROR_BAD_TAG);
  zmq::multipart_t tag_only;
  tag_only.addstr("PKV1");
  EXPECT_EQ(refuse(std::move(tag_only)).wire_error, v1::WIRE_ERROR_MALFORMED_ENVELOPE);

  zmq::multipart_t missing_tensor = valid_frames();
  missing_tensor.remove();
  Refusal r = refuse(std::move(missing_tensor));
  EXPECT_EQ(r.wire_error, v1::WIRE_ERROR_FRAME_COUNT_MISMATCH);
  // The envelope parsed, so the error reply can be routed to the request it answers.
  EXPECT_EQ(r.diag.correlation_id, 77u);
  EXPECT_EQ(r.diag.request_id, "req-77");

  zmq::multipart_t short_frame = valid_frames();
  const std::string shorter = short_frame[2].to_string().substr(0, short_frame[2].size() - 1);
  short_frame[2].rebuild(shorter.data(), shorter.size());
  EXPECT_EQ(refuse(std::move(short_frame)).wire_error, v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH);
}

TEST(CodecMalformed, WrongTagAndWrongVersion) {
  for (const char* tag : {"XYZ1", "PKV", "PKVx", "pkv1", "PKV1 ", "", "PKV99999999999"}) {
    zmq::multipart_t frames = valid_frames();
    frames[0].rebuild(tag, std::strlen(tag));
    Refusal r = refuse(std::move(frames));
    EXPECT_EQ(r.wire_error, v1::WIRE_ERROR_BAD_TAG) << tag;
    EXPECT_EQ(r.code, StatusCode::kInvalidArgument) << tag;
  }
  for (const char* tag : {"PKV2", "PKV0", "PKV17"}) {
    zmq::multipart_t frames = valid_frames();
    frames[0].rebuild(tag, std::strlen(tag));
    Refusal r = refuse(std::move(frames));
    EXPECT_EQ(r.wire_error, v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION) << tag;
    EXPECT_EQ(r.code, StatusCode::kUnimplemented) << tag;
    EXPECT_EQ(r.diag.peer_version, static_cast<uint32_t>(std::stoul(tag + 3)));
  }
  // A version-2 envelope inside a PKV1 frame contradicts itself.
  zmq::multipart_t frames = valid_frames();
  v1::Envelope e = envelope_of(frames);
  e.set_protocol_version(2);
  set_envelope(frames, e);
  EXPECT_EQ(refuse(std::move(frames)).wire_error, v1::WIRE_ERROR_MALFORMED_ENVELOPE);
}

TEST(CodecMalformed, DescriptorAndFrameCountsMustAgree) {
  zmq::multipart_t extra = valid_frames();
  extra.addstr("surprise");
  EXPECT_EQ(refuse(std::move(extra)).wire_error, v1::WIRE_ERROR_FRAME_COUNT_MISMATCH);

  zmq::multipart_t fewer_descriptors = valid_frames();
  v1::Envelope e = envelope_of(fewer_descriptors);
  e.mutable_tensors()->RemoveLast();
  set_envelope(fewer_descriptors, e);
  EXPECT_EQ(refuse(std::move(fewer_descriptors)).wire_error, v1::WIRE_ERROR_FRAME_COUNT_MISMATCH);
}

TEST(CodecMalformed, ChecksumMismatchAndMissingChecksum) {
  zmq::multipart_t flipped = valid_frames();
  static_cast<uint8_t*>(flipped[3].data())[5] ^= 0x10;
  Refusal r = refuse(std::move(flipped));
  EXPECT_EQ(r.wire_error, v1::WIRE_ERROR_CHECKSUM_MISMATCH);
  EXPECT_EQ(r.diag.correlation_id, 77u);

  zmq::multipart_t unchecked = valid_frames();
  v1::Envelope e = envelope_of(unchecked);
  e.mutable_tensors(0)->clear_checksum_type();
  e.mutable_tensors(0)->clear_checksum();
  set_envelope(unchecked, e);
  EXPECT_EQ(refuse(clone(unchecked)).wire_error, v1::WIRE_ERROR_CHECKSUM_MISMATCH);
  CodecLimits lenient;
  lenient.require_checksum = false;
  EXPECT_TRUE(decode(unchecked, lenient).is_ok());

  zmq::multipart_t unknown_kind = valid_frames();
  e = envelope_of(unknown_kind);
  e.mutable_tensors(0)->set_checksum_type(static_cast<v1::ChecksumType>(9));
  set_envelope(unknown_kind, e);
  EXPECT_EQ(refuse(std::move(unknown_kind)).wire_error, v1::WIRE_ERROR_MALFORMED_ENVELOPE);
}

TEST(CodecMalformed, LyingSizes) {
  auto with = [](auto&& edit) {
    zmq::multipart_t frames = valid_frames();
    v1::Envelope e = envelope_of(frames);
    edit(*e.mutable_tensors(0));
    set_envelope(frames, e);
    return frames;
  };
  // byte_length disagrees with shape x dtype (and the frame)
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.set_byte_length(d.byte_length() * 2); })).wire_error,
            v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH);
  // shape and byte_length agree with each other but not with the frame
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) {
              d.set_shape(0, 8);
              d.set_byte_length(8 * 8 * 4);
            })).wire_error,
            v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH);
  // a different dtype of another size
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.set_dtype("F64"); })).wire_error,
            v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH);
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.set_shape(0, -4); })).wire_error,
            v1::WIRE_ERROR_TENSOR_SIZE_MISMATCH);
  // absurd sizes: overflowing products, beyond the limits
  Refusal overflow = refuse(with([](v1::TensorDescriptor& d) {
    d.clear_shape();
    d.add_shape(int64_t{1} << 40);
    d.add_shape(int64_t{1} << 40);
  }));
  EXPECT_EQ(overflow.wire_error, v1::WIRE_ERROR_LIMIT_EXCEEDED);
  EXPECT_EQ(overflow.code, StatusCode::kOutOfRange);
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) {
              d.clear_shape();
              d.add_shape(int64_t{1} << 40);
              d.set_byte_length(uint64_t{1} << 42);
            })).wire_error,
            v1::WIRE_ERROR_LIMIT_EXCEEDED);
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) {
              d.clear_shape();
              for (int i = 0; i < 9; ++i) d.add_shape(1);
            })).wire_error,
            v1::WIRE_ERROR_LIMIT_EXCEEDED);
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.set_dtype("F8_E4M3"); })).wire_error,
            v1::WIRE_ERROR_UNKNOWN_DTYPE);
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.set_name("b"); })).wire_error,
            v1::WIRE_ERROR_MALFORMED_ENVELOPE);  // duplicate name
  EXPECT_EQ(refuse(with([](v1::TensorDescriptor& d) { d.clear_name(); })).wire_error,
            v1::WIRE_ERROR_MALFORMED_ENVELOPE);
}

TEST(CodecMalformed, Limits) {
  CodecLimits small;
  small.max_tensors = 1;
  EXPECT_EQ(refuse(valid_frames(), small).wire_error, v1::WIRE_ERROR_LIMIT_EXCEEDED);
  small = CodecLimits{};
  small.max_tensor_bytes = 100;  // tensor "a" has 128 bytes
  EXPECT_EQ(refuse(valid_frames(), small).wire_error, v1::WIRE_ERROR_LIMIT_EXCEEDED);
  small = CodecLimits{};
  small.max_total_tensor_bytes = 150;  // 128 + 64
  EXPECT_EQ(refuse(valid_frames(), small).wire_error, v1::WIRE_ERROR_LIMIT_EXCEEDED);
  small = CodecLimits{};
  small.max_envelope_bytes = 8;
  EXPECT_EQ(refuse(valid_frames(), small).wire_error, v1::WIRE_ERROR_LIMIT_EXCEEDED);
}

TEST(CodecMalformed, GarbageEnvelopeAndTypeMismatch) {
  route_protobuf_logs_to_spdlog();
  zmq::multipart_t garbage = valid_frames();
  const std::string junk = "\xff\xff\xff\xff\x0f garbage \x08";
  garbage[1].rebuild(junk.data(), junk.size());
  EXPECT_EQ(refuse(std::move(garbage)).wire_error, v1::WIRE_ERROR_MALFORMED_ENVELOPE);

  zmq::multipart_t mismatch = valid_frames();
  v1::Envelope e = envelope_of(mismatch);
  e.set_type(v1::MESSAGE_TYPE_PRUNE_MASK);
  set_envelope(mismatch, e);
  EXPECT_EQ(refuse(std::move(mismatch)).wire_error, v1::WIRE_ERROR_MALFORMED_ENVELOPE);

  zmq::multipart_t no_body = valid_frames();
  e = envelope_of(no_body);
  e.clear_body();
  set_envelope(no_body, e);
  EXPECT_EQ(refuse(std::move(no_body)).code, StatusCode::kInvalidArgument);

  zmq::multipart_t future_body = valid_frames();
  e = envelope_of(future_body);
  e.clear_body();
  e.set_type(static_cast<v1::MessageType>(42));
  set_envelope(future_body, e);
  EXPECT_EQ(refuse(std::move(future_body)).code, StatusCode::kUnimplemented);
}

TEST(CodecMalformed, BodiesMustMatchTheirTensors) {
  auto refused_after = [](Message m, auto&& edit) {
    zmq::multipart_t frames = encode_ok(m);
    v1::Envelope e = envelope_of(frames);
    edit(e);
    set_envelope(frames, e);
    return refuse(std::move(frames)).wire_error;
  };
  const auto malformed = v1::WIRE_ERROR_MALFORMED_ENVELOPE;
  EXPECT_EQ(
      refused_after(proxy_features(DType::kF32), [](v1::Envelope& e) { e.mutable_proxy_features()->set_tokens(18); }),
      malformed);
  EXPECT_EQ(refused_after(proxy_features(DType::kF32),
                          [](v1::Envelope& e) { e.mutable_proxy_features()->set_features_tensor("other"); }),
            malformed);
  EXPECT_EQ(refused_after(proxy_features(DType::kF32),
                          [](v1::Envelope& e) { e.mutable_proxy_features()->mutable_features_ref(); }),
            malformed);  // both inline and by reference
  EXPECT_EQ(refused_after(prune_mask_indices(),
                          [](v1::Envelope& e) { e.mutable_prune_mask()->mutable_heads(1)->set_token_indices(0, 10); }),
            malformed);  // index >= tokens
  EXPECT_EQ(refused_after(prune_mask_indices(),
                          [](v1::Envelope& e) { e.mutable_prune_mask()->mutable_heads(1)->set_token_indices(2, 1); }),
            malformed);  // not ascending
  EXPECT_EQ(refused_after(prune_mask_indices(), [](v1::Envelope& e) { e.mutable_prune_mask()->set_target_layers(3); }),
            malformed);  // heads missing
  EXPECT_EQ(refused_after(prune_mask_indices(),
                          [](v1::Envelope& e) { e.mutable_prune_mask()->mutable_heads(3)->set_layer(0); }),
            malformed);  // a head listed twice
  EXPECT_EQ(refused_after(prune_mask_bitmask(), [](v1::Envelope& e) { e.mutable_prune_mask()->set_tokens(25); }),
            malformed);  // bitmask too narrow
  EXPECT_EQ(refused_after(prune_mask_bitmask(),
                          [](v1::Envelope& e) { e.mutable_prune_mask()->set_encoding(v1::MASK_ENCODING_UNSPECIFIED); }),
            malformed);
}

// A few thousand random mutations of valid messages (bytes, frames and descriptor fields): decode() must
// return, never crash or hang, and what it accepts must encode again.
TEST(CodecMalformed, RandomMutationsNeverCrash) {
  route_protobuf_logs_to_spdlog();
  const std::vector<Message> seeds = sample_messages();
  std::mt19937 rng(20240521);
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const std::vector<std::string> dtypes = {"F32", "BF16", "U8", "BOOL", "I64", "X", ""};
  int accepted = 0;
  int refused = 0;
  constexpr int kIterations = 5000;
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    zmq::multipart_t frames = encode_ok(seeds[pick(seeds.size())]);
    const int mutations = 1 + static_cast<int>(pick(3));
    for (int k = 0; k < mutations && !frames.empty(); ++k) {
      const size_t f = pick(frames.size());
      switch (pick(8)) {
        case 0: {  // flip bits
          if (frames[f].size() == 0) break;
          std::string bytes = frames[f].to_string();
          for (int i = 0; i < 1 + static_cast<int>(pick(4)); ++i) bytes[pick(bytes.size())] ^= 1 << pick(8);
          frames[f].rebuild(bytes.data(), bytes.size());
          break;
        }
        case 1: {  // truncate
          std::string bytes = frames[f].to_string();
          bytes.resize(pick(bytes.size() + 1));
          frames[f].rebuild(bytes.data(), bytes.size());
          break;
        }
        case 2: {  // append random bytes
          std::string bytes = frames[f].to_string();
          for (size_t i = 0, n = 1 + pick(16); i < n; ++i) bytes.push_back(static_cast<char>(rng()));
          frames[f].rebuild(bytes.data(), bytes.size());
          break;
        }
        case 3: {  // drop a frame
          zmq::multipart_t rest;
          for (size_t i = 0; i < frames.size(); ++i) {
            if (i != f) rest.add(zmq::message_t(frames[i].data(), frames[i].size()));
          }
          frames = std::move(rest);
          break;
        }
        case 4:  // duplicate a frame at the end
          frames.add(zmq::message_t(frames[f].data(), frames[f].size()));
          break;
        case 5:  // add an empty frame
          frames.add(zmq::message_t());
          break;
        default: {  // edit a descriptor or the envelope's header fields, then re-serialize
          if (frames.size() < 2) break;
          v1::Envelope e;
          if (!e.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size()))) break;
          if (e.tensors_size() > 0 && pick(3) != 0) {
            v1::TensorDescriptor* d = e.mutable_tensors(static_cast<int>(pick(e.tensors_size())));
            switch (pick(5)) {
              case 0:
                if (d->shape_size() > 0)
                  d->set_shape(static_cast<int>(pick(d->shape_size())), static_cast<int64_t>(rng()) - (1 << 30));
                break;
              case 1: d->set_byte_length(rng() % 4096); break;
              case 2: d->set_dtype(dtypes[pick(dtypes.size())]); break;
              case 3: d->set_checksum(rng()); break;
              default: d->add_shape(static_cast<int64_t>(pick(3))); break;
            }
          } else {
            switch (pick(3)) {
              case 0: e.set_type(static_cast<v1::MessageType>(pick(12))); break;
              case 1: e.set_protocol_version(static_cast<uint32_t>(pick(3))); break;
              default: e.add_tensors()->set_name("ghost"); break;
            }
          }
          set_envelope(frames, e);
          break;
        }
      }
    }
    DecodeDiagnostics diag;
    Result<Message> got = decode(frames, CodecLimits{}, &diag);
    if (got.is_ok()) {
      ++accepted;
      EXPECT_TRUE(encode(*got).is_ok()) << "accepted but does not re-encode: " << got->envelope.ShortDebugString();
    } else {
      ++refused;
      EXPECT_NE(diag.wire_error, v1::WIRE_ERROR_UNSPECIFIED) << got.status().to_string();
    }
  }
  EXPECT_EQ(accepted + refused, kIterations);
  EXPECT_GT(refused, kIterations / 2);
}

}  // namespace
}  // namespace proxykv::transport
