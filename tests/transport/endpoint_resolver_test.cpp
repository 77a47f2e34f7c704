// EndpointResolver: names expand to one endpoint per address, follow a pool that changes, survive DNS
// failures, and leave numeric endpoints alone. The lookup is injected (no DNS in tests), except one check
// of the system lookup on "localhost" (/etc/hosts).
#include "proxykv/transport/endpoint_resolver.h"

#include <gtest/gtest.h>

#include <zmq.hpp>

#include "proxykv/transport/control_client.h"
#include "proxykv/transport/control_server.h"

namespace proxykv::transport {
namespace {

using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

struct FakeDns {
  std::map<std::string, Strings> records;
  int lookups = 0;
  HostLookup lookup() {
    return [this](const std::string& host) -> Result<Strings> {
      ++lookups;
      auto it = records.find(host);
      if (it == records.end() || it->second.empty()) return Status(StatusCode::kUnavailable, "NXDOMAIN " + host);
      return it->second;
    };
  }
};

TEST(ParseTcpEndpoint, AcceptsNamesIpv4Ipv6AndWildcardPort) {
  auto a = parse_tcp_endpoint("tcp://proxykv-proxy.ns.svc:5555");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->host, "proxykv-proxy.ns.svc");
  EXPECT_EQ(a->port, "5555");
  auto b = parse_tcp_endpoint("tcp://[fd00::7]:0");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->host, "fd00::7");
  EXPECT_EQ(b->port, "0");
  EXPECT_TRUE(parse_tcp_endpoint("tcp://10.0.0.1:*").is_ok());
}

TEST(ParseTcpEndpoint, RefusesMalformedEndpointsByName) {
  for (const std::string bad : {"ipc:///tmp/x", "tcp://host", "tcp://:5555", "tcp://host:65536", "tcp://host:-1",
                                "tcp://host:55a", "tcp://fd00::7:5555", "tcp://[fd00::7]5555", "tcp://[fd00::7"}) {
    auto parsed = parse_tcp_endpoint(bad);
    ASSERT_FALSE(parsed.is_ok()) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find(bad), std::string::npos) << parsed.status().message();
  }
}

TEST(FormatTcpEndpoint, BracketsIpv6) {
  EXPECT_EQ(format_tcp_endpoint("10.1.2.3", "5555"), "tcp://10.1.2.3:5555");
  EXPECT_EQ(format_tcp_endpoint("fd00::7", "5555"), "tcp://[fd00::7]:5555");
  EXPECT_TRUE(is_numeric_host("10.1.2.3"));
  EXPECT_TRUE(is_numeric_host("::1"));
  EXPECT_FALSE(is_numeric_host("localhost"));
  EXPECT_FALSE(is_numeric_host("10.1.2"));  // inet_pton is strict: not an address, so it is resolved
}

TEST(EndpointResolver, ExpandsANameToEveryAddressAndPassesNumericOnesThrough) {
  FakeDns dns;
  dns.records["pool"] = {"10.0.0.2", "10.0.0.1", "fd00::9", "10.0.0.1"};
  EndpointResolver resolver({"tcp://pool:5555", "tcp://127.0.0.1:7000"}, 1000ms, dns.lookup());
  auto first = resolver.refresh();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, (Strings{"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://127.0.0.1:7000",
                             "tcp://[fd00::9]:5555"}));
  EXPECT_EQ(dns.lookups, 1);  // the numeric endpoint is never looked up
}

TEST(EndpointResolver, FollowsAPoolThatScalesAndReportsOnlyChanges) {
  FakeDns dns;
  dns.records["pool"] = {"10.0.0.1"};
  const auto t0 = EndpointResolver::Clock::now();
  EndpointResolver resolver({"tcp://pool:5555"}, 1000ms, dns.lookup());
  ASSERT_EQ(resolver.refresh(t0), (std::optional<Strings>{{"tcp://10.0.0.1:5555"}}));
  dns.records["pool"] = {"10.0.0.1", "10.0.0.2"};
  EXPECT_FALSE(resolver.refresh(t0 + 500ms).has_value());  // not due yet: no lookup
  EXPECT_EQ(dns.lookups, 1);
  EXPECT_EQ(resolver.refresh(t0 + 1000ms), (std::optional<Strings>{{"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"}}));
  EXPECT_FALSE(resolver.refresh(t0 + 2000ms).has_value());  // looked up again, same set: no change reported
  EXPECT_EQ(dns.lookups, 3);
  dns.records["pool"] = {"10.0.0.2"};  // a pod went away
  EXPECT_EQ(resolver.refresh(t0 + 3000ms), (std::optional<Strings>{{"tcp://10.0.0.2:5555"}}));
  EXPECT_EQ(resolver.current(), (Strings{"tcp://10.0.0.2:5555"}));
}

TEST(EndpointResolver, ADnsFailureKeepsThePreviousAddressesAndAnUnresolvedNameStaysAsWritten) {
  FakeDns dns;
  dns.records["pool"] = {"10.0.0.1", "10.0.0.2"};
  const auto t0 = EndpointResolver::Clock::now();
  EndpointResolver resolver({"tcp://pool:5555", "tcp://later:6000"}, 1000ms, dns.lookup());
  ASSERT_EQ(resolver.refresh(t0),
            (std::optional<Strings>{{"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://later:6000"}}));
  dns.records.erase("pool");  // DNS down, or the Service briefly without endpoints
  EXPECT_FALSE(resolver.refresh(t0 + 1000ms).has_value());
  EXPECT_EQ(resolver.failures(), 3u);  // per failed lookup: "later" at both refreshes, "pool" at the second
  dns.records["later"] = {"10.0.1.5"};
  EXPECT_EQ(resolver.refresh(t0 + 2000ms),
            (std::optional<Strings>{{"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://10.0.1.5:6000"}}));
}

TEST(EndpointResolver, IntervalZeroResolvesOnce) {
  FakeDns dns;
  dns.records["pool"] = {"10.0.0.1"};
  const auto t0 = EndpointResolver::Clock::now();
  EndpointResolver resolver({"tcp://pool:5555"}, 0ms, dns.lookup());
  ASSERT_TRUE(resolver.refresh(t0).has_value());
  dns.records["pool"] = {"10.0.0.3"};
  EXPECT_FALSE(resolver.refresh(t0 + 3600s).has_value());
  EXPECT_EQ(dns.lookups, 1);
}

TEST(EndpointResolver, SystemLookupResolvesLocalhostAndAClientReachesTheServerThroughIt) {
  zmq::context_t context(1);
  ServerOptions so;
  so.endpoint = "tcp://127.0.0.1:0";
  auto server = ControlServer::bind(context, so);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  const std::string port = (*server)->endpoint().substr((*server)->endpoint().rfind(':') + 1);
  EndpointResolver resolver({"tcp://localhost:" + port}, 1000ms);
  auto endpoints = resolver.refresh();
  ASSERT_TRUE(endpoints.has_value());
  EXPECT_NE(std::find(endpoints->begin(), endpoints->end(), "tcp://127.0.0.1:" + port), endpoints->end())
      << "localhost did not resolve to 127.0.0.1 (/etc/hosts)";
  ClientOptions co;
  co.endpoints = *endpoints;  // may include [::1], where nothing listens: ZMQ_IMMEDIATE skips it
  auto client = ControlClient::connect(context, co);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  EXPECT_TRUE((*client)->wait_connected(1, Clock::now() + 10s));
}

}  // namespace
}  // namespace proxykv::transport
