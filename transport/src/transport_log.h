// The transport's spdlog logger ("transport"), shared with proxykv::get_logger() when both are linked.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace proxykv::transport {

std::shared_ptr<spdlog::logger> transport_logger();

}  // namespace proxykv::transport
