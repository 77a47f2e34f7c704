#include "transport_log.h"

#include <google/protobuf/stubs/logging.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "proxykv/transport/codec.h"

namespace proxykv::transport {

// proxykv_transport does not link proxykv_common (and its LibTorch), so it cannot call proxykv::get_logger();
// it registers the same logger name with the same format in spdlog's registry, which get_logger() then finds.
std::shared_ptr<spdlog::logger> transport_logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("transport")) return existing;
    try {
      auto created = spdlog::stderr_color_mt("transport");
      created->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
      return created;
    } catch (const spdlog::spdlog_ex&) {  // registered concurrently by get_logger()
      return spdlog::get("transport");
    }
  }();
  return logger;
}

void route_protobuf_logs_to_spdlog() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* filename, int line, const std::string& message) {
        auto logger = transport_logger();
        if (level >= google::protobuf::LOGLEVEL_FATAL) {
          logger->critical("protobuf {}:{}: {}", filename, line, message);
        } else {
          logger->debug("protobuf {}:{}: {}", filename, line, message);
        }
      });
}

}  // namespace proxykv::transport
