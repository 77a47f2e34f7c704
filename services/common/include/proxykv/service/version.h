// The version every service reports (Handshake, HealthReply): CMake's PROJECT_VERSION, set in one place.
#pragma once

namespace proxykv::service {

const char* version();

}  // namespace proxykv::service
