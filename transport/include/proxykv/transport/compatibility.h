// Compatibility hash of a (proxy, target) model pair, exchanged in Handshake, ScoreRequest, ProxyFeatures and
// PruneMask: peers whose hashes differ must not exchange features or masks (docs/protocol.md lists the
// fields a service puts in).
#pragma once

#include <map>
#include <string>

namespace proxykv::transport {

// "fnv1a64:<16 lowercase hex digits>" of the canonical form of `fields`: the line "proxykv-compat-v1", then one
// line "key=value" per field in key order, each line ending in '\n' (in keys and values '\' is written "\\" and
// a newline "\n"; in keys '=' is written "\="), hashed with 64-bit FNV-1a.
std::string compatibility_hash(const std::map<std::string, std::string>& fields);

}  // namespace proxykv::transport
