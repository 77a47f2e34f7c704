// CURVE for a service's ZeroMQ sockets from two key files (docs/operations.md, "CURVE").
//
// Assumption: one server keypair per deployment (a Kubernetes Secret mounted into every pod). Every ROUTER a
// service binds (control socket, the target's mask receiver, the zmq data plane's receiver) uses the secret key;
// every DEALER it opens (to the mapper pool, the proxy pool, a request's reply_to) expects the matching public
// key, with a fresh client keypair per socket. The channel is encrypted and the servers authenticated; clients
// are not (no ZAP allow-list at the service level). Either file empty: that side stays plain.
#pragma once

#include <optional>
#include <string>

#include "proxykv/core/status.h"
#include "proxykv/transport/control_server.h"
#include "proxykv/transport/curve.h"
#include "proxykv/transport/data_plane.h"

namespace proxykv::service {

struct CurveFiles {
  std::string secret_key_file;         // this service's servers; empty: no CURVE on its ROUTERs
  std::string server_public_key_file;  // the servers it connects to; empty: no CURVE on its DEALERs
};

struct CurveSettings {
  std::optional<transport::CurveServerConfig> server;
  std::optional<transport::CurveClientConfig> client;
};

// Reads and validates the keys (NOT_FOUND / INVALID_ARGUMENT naming the file).
Result<CurveSettings> load_curve_settings(const CurveFiles& files);

// Puts the settings on a server's sockets: its control ROUTER, both sides of its zmq data plane, and the DEALERs
// it opens to peers (proxy and mapper servers have the same three places).
void apply_curve(const CurveSettings& curve, transport::ServerOptions& control, transport::DataPlaneOptions& plane,
                 std::optional<transport::CurveClientConfig>& peer_curve);

}  // namespace proxykv::service
