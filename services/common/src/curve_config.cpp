#include "proxykv/service/curve_config.h"

namespace proxykv::service {

Result<CurveSettings> load_curve_settings(const CurveFiles& files) {
  CurveSettings s;
  if (!files.secret_key_file.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(std::string secret, transport::load_curve_key(files.secret_key_file));
    s.server = transport::CurveServerConfig{secret};
  }
  if (!files.server_public_key_file.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(std::string pub, transport::load_curve_key(files.server_public_key_file));
    transport::CurveClientConfig c;
    c.server_public_key = pub;
    s.client = c;
  }
  return s;
}

void apply_curve(const CurveSettings& curve, transport::ServerOptions& control, transport::DataPlaneOptions& plane,
                 std::optional<transport::CurveClientConfig>& peer_curve) {
  control.curve = curve.server;
  plane.curve_server = curve.server;
  plane.curve_client = curve.client;
  peer_curve = curve.client;
}

}  // namespace proxykv::service
