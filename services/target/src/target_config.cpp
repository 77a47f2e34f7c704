#include "proxykv/target/target_config.h"

#include "proxykv/service_config/validators.h"
#include "proxykv/transport/endpoint_resolver.h"

namespace proxykv::target {

namespace sc = service_config;

void declare_target_config(sc::ConfigSchema& schema, TargetConfig& c) {
  schema.add("model", &c.model, "HF model directory (config.json, weights, tokenizer.json)", sc::non_empty())
      .add("model_name", &c.model_name, "model id clients use (default: the directory's name)")
      .add("host", &c.host, "address to bind", sc::non_empty())
      .add("port", &c.port, "port to bind; 0 = any free port", sc::in_range(0, 65535))
      .add("threads", &c.threads, "HTTP worker threads (must exceed max_in_flight)", sc::at_least(2))
      .add("torch_threads", &c.torch_threads, "compute threads, LibTorch's intra-op pool and OpenBLAS's; 0 = their defaults (every core)", sc::at_least(0))
      .add("device", &c.device, "cpu, cuda or cuda:N", sc::device_name())
      .add("dtype", &c.dtype, "compute dtype", sc::one_of({"auto", "float32", "bfloat16", "float16"}))
      .add("max_context_tokens", &c.max_context_tokens, "longest context or prompt accepted, in tokens",
           sc::at_least<int64_t>(1))
      .add("max_new_tokens", &c.max_new_tokens, "largest max_tokens accepted", sc::at_least<int64_t>(1))
      .add("context_cache_bytes", &c.context_cache_bytes, "KV bytes of compressed contexts kept (LRU)",
           sc::at_least<int64_t>(0))
      .add("fallback_method", &c.fallback_method, "local method used when proxykv cannot get a mask",
           sc::one_of({"snapkv", "full", "kvzip", "streaming", "h2o", "laprox", "knorm", "random"}))
      .add("max_in_flight", &c.max_in_flight, "API requests served or queued at once; more get 429",
           sc::at_least<int64_t>(1))
      .add("max_body_bytes", &c.max_body_bytes, "largest request body; larger get 413", sc::at_least<int64_t>(1))
      .add("api_key_file", &c.api_key_file,
           "file of API keys, one per line: /v1/* then needs Authorization: Bearer KEY (empty: open)")
      .add("prefill_chunk", &c.prefill_chunk, "tokens per prefill forward chunk", sc::at_least<int64_t>(1))
      .add("kvzip_chunk", &c.kvzip_chunk, "KVzip reconstruction chunk, in tokens", sc::at_least<int64_t>(1))
      .add("log_level", &c.log_level, "trace, debug, info, warn, error, critical or off",
           sc::one_of({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      .add("proxy_endpoints", &c.proxy_endpoints,
           "control endpoints of the proxy pool (comma-separated tcp://host:port); empty: proxykv falls back")
      .add("proxy_model_id", &c.proxy_model_id, "proxy model id sent with ScoreRequest (empty: any)")
      .add("mask_endpoint", &c.mask_endpoint, "ROUTER endpoint where masks arrive (port 0: free)", sc::non_empty())
      .add("mask_advertise_host", &c.mask_advertise_host,
           "host the proxy and mapper use to reach mask_endpoint (empty: its bound host)")
      .add("mask_deadline_ms", &c.mask_deadline_ms, "how long proxykv waits for a mask from the start of prefill",
           sc::at_least<int64_t>(1))
      .add("mask_submit_timeout_ms", &c.mask_submit_timeout_ms, "how long the proxy may take to accept a request",
           sc::at_least<int64_t>(1))
      .add("dns_refresh_ms", &c.dns_refresh_ms,
           "how often host names in proxy_endpoints are re-resolved to all their addresses (0: once)",
           sc::at_least<int64_t>(0))
      .add("curve_secret_key_file", &c.curve_secret_key_file, "Z85 secret key file: CURVE on this service's ROUTERs (empty: plain)")
      .add("curve_server_public_key_file", &c.curve_server_public_key_file, "Z85 public key file of the servers this service connects to (empty: plain)");
  schema.add_check([&c] {
    for (const std::string& endpoint : c.proxy_endpoints) {
      if (auto parsed = transport::parse_tcp_endpoint(endpoint); !parsed.is_ok()) {
        return "proxy_endpoints: " + parsed.status().message();
      }
    }
    return std::string();
  });
  schema.add_check([&c] {
    if (c.threads <= c.max_in_flight) {
      return "threads (" + std::to_string(c.threads) + ") must exceed max_in_flight (" +
             std::to_string(c.max_in_flight) + "), so that /health is answered under load";
    }
    return std::string();
  });
}

EngineOptions engine_options(const TargetConfig& c) {
  EngineOptions o;
  o.model_dir = c.model;
  o.model_name = c.model_name;
  o.device = c.device;
  o.dtype = c.dtype;
  o.torch_threads = c.torch_threads;
  o.max_context_tokens = c.max_context_tokens;
  o.max_new_tokens = c.max_new_tokens;
  o.prefill_chunk = c.prefill_chunk;
  o.kvzip_chunk = c.kvzip_chunk;
  o.fallback_method = c.fallback_method;
  o.mask_deadline_ms = c.mask_deadline_ms;
  return o;
}

ApiServerOptions api_server_options(const TargetConfig& c) {
  ApiServerOptions o;
  o.host = c.host;
  o.port = c.port;
  o.http_threads = c.threads;
  o.max_in_flight = c.max_in_flight;
  o.max_body_bytes = c.max_body_bytes;
  o.context_cache_bytes = c.context_cache_bytes;
  return o;
}

RemoteMaskOptions remote_mask_options(const TargetConfig& c) {
  RemoteMaskOptions o;
  o.proxy_endpoints = c.proxy_endpoints;
  o.proxy_model_id = c.proxy_model_id;
  o.mask_endpoint = c.mask_endpoint;
  o.advertise_host = c.mask_advertise_host;
  o.submit_timeout = std::chrono::milliseconds(c.mask_submit_timeout_ms);
  o.dns_refresh = std::chrono::milliseconds(c.dns_refresh_ms);
  return o;
}

}  // namespace proxykv::target
