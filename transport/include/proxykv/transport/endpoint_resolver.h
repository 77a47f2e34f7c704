// EndpointResolver: turns configured control endpoints such as tcp://proxykv-proxy.ns.svc:5555 (a Kubernetes
// headless Service) into one tcp://ADDRESS:PORT per address the name resolves to, and re-resolves at most
// every `interval`, so a pool that scales (HPA) or whose pods are rescheduled is followed without a restart.
// ZeroMQ alone resolves a name to a single address per connection attempt, so it would reach one pod only.
//
// Endpoints whose host is numeric (127.0.0.1, [::1]) or that are not tcp:// pass through unchanged. A name that
// does not resolve (yet) keeps its previous addresses, or stays as written when it never resolved (ZeroMQ then
// keeps retrying it itself): a DNS hiccup never empties a pool. The lookup blocks (getaddrinfo) and runs on the
// thread that calls refresh(), the one owning the client.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "proxykv/core/status.h"

namespace proxykv::transport {

// host -> its addresses (IPv6 without brackets). The default uses getaddrinfo(AF_UNSPEC, SOCK_STREAM).
using HostLookup = std::function<Result<std::vector<std::string>>(const std::string& host)>;
HostLookup system_host_lookup();

struct TcpEndpoint {
  std::string host;  // without brackets
  std::string port;
};
// Parses tcp://HOST:PORT (HOST may be [IPv6]); PORT must be 0..65535 or "*". Other schemes: INVALID_ARGUMENT.
Result<TcpEndpoint> parse_tcp_endpoint(const std::string& endpoint);
// True for an IPv4/IPv6 literal or "*" (nothing to resolve).
bool is_numeric_host(const std::string& host);
// tcp://host:port, with brackets around an IPv6 host.
std::string format_tcp_endpoint(const std::string& host, const std::string& port);

class EndpointResolver {
 public:
  using Clock = std::chrono::steady_clock;
  // interval 0: resolve once, at the first refresh(), and never again.
  EndpointResolver(std::vector<std::string> configured, std::chrono::milliseconds interval,
                   HostLookup lookup = system_host_lookup());

  // The expanded endpoint list (sorted, unique) when it differs from the last one returned, else nullopt. The
  // first call always returns the list. Calls before the interval has passed cost a clock read.
  std::optional<std::vector<std::string>> refresh(Clock::time_point now = Clock::now());
  // The last list returned by refresh() (empty before the first call).
  const std::vector<std::string>& current() const { return current_; }
  // Lookups that failed (the name kept its previous addresses).
  uint64_t failures() const { return failures_; }

 private:
  std::vector<std::string> resolve_all();

  std::vector<std::string> configured_;
  std::chrono::milliseconds interval_;
  HostLookup lookup_;
  std::optional<Clock::time_point> last_;
  std::vector<std::string> current_;
  std::map<std::string, std::vector<std::string>> last_good_;  // configured endpoint -> its expansion
  std::set<std::string> failing_;                              // configured endpoints whose lookup fails now
  uint64_t failures_ = 0;
};

}  // namespace proxykv::transport
