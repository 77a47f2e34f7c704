// CURVE: keys from files, an authenticated pair talks, wrong keys and unlisted clients get no service.
#include "proxykv/transport/curve.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>

#include "proxykv/transport/control_client.h"
#include "proxykv/transport/control_server.h"
#include "transport_test_util.h"

namespace proxykv::transport {
namespace {

using std::chrono::milliseconds;
using testing::echo_handler;
using testing::health_request;
using testing::ServerThread;
using testing::TempDir;

constexpr milliseconds kPatience{5000};
// Long enough for a loopback CURVE handshake many times over; a refused client never gets further.
constexpr milliseconds kNoServiceWait{300};

CurveKeyPair new_keys() {
  Result<CurveKeyPair> keys = generate_curve_keypair();
  EXPECT_TRUE(keys.is_ok()) << keys.status().to_string();
  return std::move(keys).value();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Whether calls through `client` keep failing with UNAVAILABLE and, within the patience, say `diagnosis`
// (it appears once the socket monitor has reported the failed handshake).
bool reports_eventually(ControlClient& client, const std::string& diagnosis) {
  const Deadline deadline = Clock::now() + kPatience;
  while (Clock::now() < deadline) {
    Result<Message> reply = client.call(health_request(), milliseconds(50));
    if (reply.is_ok() || reply.status().code() != StatusCode::kUnavailable) return false;
    if (reply.status().message().find(diagnosis) != std::string::npos) return true;
  }
  return false;
}

class Curve : public ::testing::Test {
 protected:
  std::unique_ptr<ServerThread> curve_server(const CurveKeyPair& keys, std::atomic<int>* calls = nullptr) {
    ServerOptions o;
    o.service_name = "secure";
    o.curve = CurveServerConfig{keys.secret_key};
    return std::make_unique<ServerThread>(context_, o, echo_handler("secure", calls));
  }
  std::unique_ptr<ControlClient> client(const std::string& endpoint, std::optional<CurveClientConfig> curve) {
    ClientOptions o;
    o.endpoints = {endpoint};
    o.curve = std::move(curve);
    auto c = ControlClient::connect(context_, o);
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return std::move(c).value();
  }

  zmq::context_t context_;
};

TEST_F(Curve, KeypairsSaveAndLoadFromFiles) {
  TempDir dir;
  const CurveKeyPair keys = new_keys();
  EXPECT_EQ(keys.public_key.size(), kCurveKeyZ85Length);
  ASSERT_TRUE(save_curve_keypair(keys, dir.path(), "server").is_ok());
  Result<std::string> public_key = load_curve_key(dir.path() + "/server.key");
  Result<std::string> secret_key = load_curve_key(dir.path() + "/server.key_secret");
  ASSERT_TRUE(public_key.is_ok()) << public_key.status().to_string();
  ASSERT_TRUE(secret_key.is_ok()) << secret_key.status().to_string();
  EXPECT_EQ(*public_key, keys.public_key);
  EXPECT_EQ(*secret_key, keys.secret_key);
  EXPECT_EQ(*curve_public_key(*secret_key), keys.public_key);
  struct stat st {};
  ASSERT_EQ(stat((dir.path() + "/server.key_secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Whitespace around a key (an editor's newline, a Secret's trailing newline) is fine.
  write_file(dir.path() + "/padded.key", "  " + keys.public_key + "\n\n");
  EXPECT_EQ(*load_curve_key(dir.path() + "/padded.key"), keys.public_key);
}

TEST_F(Curve, BadKeyFilesAreRefusedByName) {
  TempDir dir;
  Result<std::string> missing = load_curve_key(dir.path() + "/nope.key");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.key"), std::string::npos);
  write_file(dir.path() + "/short.key", "abc");
  EXPECT_EQ(load_curve_key(dir.path() + "/short.key").status().code(), StatusCode::kInvalidArgument);
  write_file(dir.path() + "/bad.key", std::string(40, '~'));  // '~' is not in the Z85 alphabet
  EXPECT_EQ(load_curve_key(dir.path() + "/bad.key").status().code(), StatusCode::kInvalidArgument);
  ServerOptions o;
  o.curve = CurveServerConfig{"not a key"};
  EXPECT_EQ(ControlServer::bind(context_, o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Curve, AuthenticatedPairTalks) {
  TempDir dir;
  ASSERT_TRUE(save_curve_keypair(new_keys(), dir.path(), "server").is_ok());
  // Both sides read their keys from files, as a Kubernetes Secret mounts them.
  const std::string server_secret = *load_curve_key(dir.path() + "/server.key_secret");
  const std::string server_public = *load_curve_key(dir.path() + "/server.key");
  auto server = curve_server(CurveKeyPair{server_public, server_secret});
  auto c = client(server->endpoint(), CurveClientConfig{server_public, {}});
  Result<Message> reply = c->call(health_request("secure-1"), kPatience);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->envelope.request_id(), "secure-1");
}

TEST_F(Curve, WrongServerKeyGetsNoService) {
  const CurveKeyPair server_keys = new_keys();
  std::atomic<int> calls{0};
  auto server = curve_server(server_keys, &calls);
  auto c = client(server->endpoint(), CurveClientConfig{new_keys().public_key, {}});
  Result<Message> reply = c->call(health_request(), kNoServiceWait);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().to_string();
  EXPECT_TRUE(reports_eventually(*c, "handshake failed"));
  EXPECT_EQ(c->connected_peers(), 0u);
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(Curve, PlainClientGetsNoServiceFromACurveServer) {
  std::atomic<int> calls{0};
  auto server = curve_server(new_keys(), &calls);
  auto c = client(server->endpoint(), std::nullopt);
  Result<Message> reply = c->call(health_request(), kNoServiceWait);
  ASSERT_FALSE(reply.is_ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable) << reply.status().to_string();
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(Curve, AuthenticatorAdmitsOnlyListedClients) {
  const CurveKeyPair server_keys = new_keys();
  const CurveKeyPair allowed = new_keys();
  const CurveKeyPair stranger = new_keys();
  auto authenticator = CurveAuthenticator::start(context_, {allowed.public_key});
  ASSERT_TRUE(authenticator.is_ok()) << authenticator.status().to_string();
  EXPECT_EQ(CurveAuthenticator::start(context_, {}).status().code(), StatusCode::kFailedPrecondition);

  std::atomic<int> calls{0};
  auto server = curve_server(server_keys, &calls);
  auto good = client(server->endpoint(), CurveClientConfig{server_keys.public_key, allowed});
  Result<Message> reply = good->call(health_request(), kPatience);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();

  auto bad = client(server->endpoint(), CurveClientConfig{server_keys.public_key, stranger});
  Result<Message> refused = bad->call(health_request(), kNoServiceWait);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().to_string();
  EXPECT_TRUE(reports_eventually(*bad, "refused by the server's authenticator"));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_GE((*authenticator)->accepted(), 1u);
  EXPECT_GE((*authenticator)->refused(), 1u);
  server.reset();
}

}  // namespace
}  // namespace proxykv::transport
