#include "proxykv/transport/endpoint_resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <set>

#include "transport_log.h"

namespace proxykv::transport {

HostLookup system_host_lookup() {
  return [](const std::string& host) -> Result<std::vector<std::string>> {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
      return Status(StatusCode::kUnavailable, "cannot resolve '" + host + "': " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, &freeaddrinfo);
    std::vector<std::string> addresses;
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = nullptr;
      if (a->ai_family == AF_INET) raw = &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr;
      if (a->ai_family == AF_INET6) raw = &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
      if (raw != nullptr && inet_ntop(a->ai_family, raw, text, sizeof(text)) != nullptr) addresses.emplace_back(text);
    }
    if (addresses.empty()) return Status(StatusCode::kUnavailable, "'" + host + "' has no address");
    return addresses;
  };
}

Result<TcpEndpoint> parse_tcp_endpoint(const std::string& endpoint) {
  const std::string scheme = "tcp://";
  if (endpoint.rfind(scheme, 0) != 0) return invalid_argument("endpoint '" + endpoint + "' is not tcp://host:port");
  const std::string rest = endpoint.substr(scheme.size());
  TcpEndpoint out;
  size_t colon = std::string::npos;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return invalid_argument("endpoint '" + endpoint + "': an IPv6 host is written [address]:port");
    }
    out.host = rest.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string::npos) return invalid_argument("endpoint '" + endpoint + "' has no :port");
    out.host = rest.substr(0, colon);
    if (out.host.find(':') != std::string::npos) {
      return invalid_argument("endpoint '" + endpoint + "': an IPv6 host is written [address]:port");
    }
  }
  out.port = rest.substr(colon + 1);
  if (out.host.empty()) return invalid_argument("endpoint '" + endpoint + "' has no host");
  const bool digits = !out.port.empty() && out.port.size() <= 5 &&
                      std::all_of(out.port.begin(), out.port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (out.port != "*" && (!digits || std::stoi(out.port) > 65535)) {
    return invalid_argument("endpoint '" + endpoint + "': port '" + out.port + "' is not 0..65535");
  }
  return out;
}

bool is_numeric_host(const std::string& host) {
  if (host == "*") return true;
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 || inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

std::string format_tcp_endpoint(const std::string& host, const std::string& port) {
  const bool v6 = host.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + port;
}

EndpointResolver::EndpointResolver(std::vector<std::string> configured, std::chrono::milliseconds interval,
                                   HostLookup lookup)
    : configured_(std::move(configured)), interval_(interval), lookup_(std::move(lookup)) {}

std::vector<std::string> EndpointResolver::resolve_all() {
  std::set<std::string> expanded;
  for (const std::string& endpoint : configured_) {
    auto parsed = parse_tcp_endpoint(endpoint);
    if (!parsed.is_ok() || is_numeric_host(parsed->host)) {
      expanded.insert(endpoint);  // nothing to resolve; a bad endpoint fails where it is connected
      continue;
    }
    auto addresses = lookup_(parsed->host);
    if (addresses.is_ok()) {
      std::vector<std::string> mine;
      for (const std::string& address : *addresses) mine.push_back(format_tcp_endpoint(address, parsed->port));
      last_good_[endpoint] = mine;
      if (failing_.erase(endpoint) != 0) transport_logger()->info("'{}' resolves again", parsed->host);
    } else {
      ++failures_;
      // Warn when a name starts failing, not at every refresh while it stays down.
      if (failing_.insert(endpoint).second) {
        transport_logger()->warn("{}; keeping {}", addresses.status().message(),
                                 last_good_.count(endpoint) != 0 ? "its previous addresses" : "the name for ZeroMQ");
      }
    }
    auto good = last_good_.find(endpoint);
    if (good == last_good_.end()) {
      expanded.insert(endpoint);
    } else {
      expanded.insert(good->second.begin(), good->second.end());
    }
  }
  return {expanded.begin(), expanded.end()};
}

std::optional<std::vector<std::string>> EndpointResolver::refresh(Clock::time_point now) {
  if (last_ && (interval_.count() <= 0 || now - *last_ < interval_)) return std::nullopt;
  const bool first = !last_;
  last_ = now;
  std::vector<std::string> next = resolve_all();
  if (!first && next == current_) return std::nullopt;
  if (!first) transport_logger()->info("endpoints now {} address(es) (was {})", next.size(), current_.size());
  current_ = std::move(next);
  return current_;
}

}  // namespace proxykv::transport
