// Small pieces of the wire protocol: status <-> error code mapping, error replies, compatibility hash, Blob.
#include <gtest/gtest.h>

#include "proxykv/transport/blob.h"
#include "proxykv/transport/codec.h"
#include "proxykv/transport/compatibility.h"
#include "proxykv/transport/error_reply.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

TEST(ErrorReply, CodesMirrorStatusCodes) {
  for (int code = static_cast<int>(StatusCode::kInvalidArgument); code <= static_cast<int>(StatusCode::kInternal);
       ++code) {
    const StatusCode status = static_cast<StatusCode>(code);
    EXPECT_EQ(to_status_code(to_error_code(status)), status) << status_code_name(status);
    // The proto names are the status names with a prefix: the mirror is by name as well as by value.
    EXPECT_EQ(v1::ErrorCode_Name(to_error_code(status)), std::string("ERROR_CODE_") + status_code_name(status));
  }
  EXPECT_EQ(to_status_code(v1::ERROR_CODE_UNSPECIFIED), StatusCode::kInternal);
  EXPECT_EQ(to_status_code(static_cast<v1::ErrorCode>(77)), StatusCode::kInternal);
}

TEST(ErrorReply, CarriesCodeServiceAndSupportedVersions) {
  Message m = make_error_reply(unimplemented("unsupported protocol version 2"), "proxy",
                               v1::WIRE_ERROR_UNSUPPORTED_PROTOCOL_VERSION);
  ASSERT_TRUE(m.envelope.has_error_reply());
  const v1::ErrorReply& e = m.envelope.error_reply();
  EXPECT_EQ(e.code(), v1::ERROR_CODE_UNIMPLEMENTED);
  EXPECT_EQ(e.service(), "proxy");
  ASSERT_EQ(e.supported_protocol_versions_size(), 1);
  EXPECT_EQ(e.supported_protocol_versions(0), kProtocolVersion);
  Status s = status_from_error_reply(e);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "proxy: unsupported protocol version 2");
  EXPECT_TRUE(encode(m).is_ok());
}

// Regression: decode() quoted the first 64 bytes of a hostile tensor name in its error, cutting a multi-byte
// character in two; the ErrorReply carrying that message was then itself undecodable (proto3 strings must be
// UTF-8), so the client saw no answer at all instead of an error.
TEST(ErrorReply, StaysDecodableWhateverItQuotes) {
  Message request = testing::health_request();
  WireTensor t = testing::make_tensor(std::string(63, 'a') + "\xc3\xa9-tail", DType::kU8, {2});
  request.tensors.push_back(t);
  zmq::multipart_t frames = std::move(encode(request)).value();
  v1::Envelope e;
  ASSERT_TRUE(e.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size())));
  e.mutable_tensors(0)->set_dtype("F8_E4M3");
  const std::string bytes = e.SerializeAsString();
  frames[1].rebuild(bytes.data(), bytes.size());
  Result<Message> refused = decode(frames);
  ASSERT_FALSE(refused.is_ok());

  for (const Status& status : {refused.status(), internal_error("raw bytes \xff\xfe from a handler")}) {
    zmq::multipart_t reply = std::move(encode(make_error_reply(status, "svc\x80"))).value();
    Result<Message> decoded = decode(reply);
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    EXPECT_EQ(decoded->envelope.error_reply().code(), to_error_code(status.code()));
  }
}

TEST(CompatibilityHash, IsStableOrderFreeAndUnambiguous) {
  // Golden value, computed independently (Python) from the documented canonical form.
  EXPECT_EQ(compatibility_hash({{"proxy.model_id", "tiny-proxy"}, {"target.model_id", "tiny-target"}}),
            "fnv1a64:8c0817f20fdfea9b");
  EXPECT_EQ(compatibility_hash({}), "fnv1a64:1ea93d6e06a31933");
  std::map<std::string, std::string> fields = {{"a", "1"}, {"b", "2"}};
  const std::string h = compatibility_hash(fields);
  fields["b"] = "3";
  EXPECT_NE(compatibility_hash(fields), h);
  // A value cannot impersonate another field.
  EXPECT_NE(compatibility_hash({{"a", "1\nb=2"}}), compatibility_hash({{"a", "1"}, {"b", "2"}}));
  EXPECT_NE(compatibility_hash({{"a=1", ""}}), compatibility_hash({{"a", "1="}}));
}

TEST(Blob, SharesInsteadOfCopying) {
  std::vector<uint8_t> bytes(4096, 7);
  const uint8_t* original = bytes.data();
  Blob blob = Blob::adopt(std::move(bytes));
  EXPECT_EQ(blob.data(), original);
  Blob copy = blob;
  EXPECT_EQ(copy.data(), original);
  zmq::message_t frame = blob.to_frame();
  EXPECT_EQ(static_cast<const uint8_t*>(frame.data()), original);
  blob = Blob();
  copy = Blob();
  EXPECT_EQ(static_cast<const uint8_t*>(frame.data())[4095], 7);  // the frame keeps the bytes alive

  Blob small = Blob::copy_of("abc");
  EXPECT_EQ(small.view(), "abc");
  EXPECT_EQ(small.to_frame().to_string(), "abc");
  EXPECT_TRUE(Blob().empty());
  EXPECT_EQ(Blob().to_frame().size(), 0u);
}

}  // namespace
}  // namespace proxykv::transport
