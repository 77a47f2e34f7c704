#include "proxykv/service/version.h"

#ifndef PROXYKV_VERSION
#error "PROXYKV_VERSION is set by services/CMakeLists.txt from PROJECT_VERSION"
#endif

namespace proxykv::service {

const char* version() { return PROXYKV_VERSION; }

}  // namespace proxykv::service
