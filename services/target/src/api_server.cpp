#include "proxykv/target/api_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "proxykv/core/logging.h"
#include "proxykv/target/api_requests.h"
#include "proxykv/telemetry/admin_server.h"
#include "proxykv/telemetry/health.h"

namespace proxykv::target {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kJson = "application/json";

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string request_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  uint64_t bits = rng();
  for (int i = 0; i < 16; ++i, bits >>= 4) id.push_back(kHex[bits & 0xf]);
  return id;
}

ApiError api_error(int status, std::string type, std::string code, std::string message) {
  ApiError e;
  e.http_status = status;
  e.type = std::move(type);
  e.code = std::move(code);
  e.message = std::move(message);
  return e;
}

// Equal without an early exit, so the time taken does not say how much of a key was right.
bool same_secret(const std::string& given, const std::string& key) {
  if (key.empty()) return false;  // (key.size() is a divisor below; load_api_keys never yields an empty key)
  unsigned char diff = given.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i % key.size()]);
  return diff == 0;
}

// Engine statuses -> HTTP.
ApiError from_status(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument: return api_error(400, "invalid_request_error", "invalid_request", s.message());
    case StatusCode::kOutOfRange:
      return api_error(400, "invalid_request_error", "context_length_exceeded", s.message());
    case StatusCode::kNotFound: return api_error(404, "not_found_error", "not_found", s.message());
    case StatusCode::kResourceExhausted: return api_error(507, "server_error", "context_cache_full", s.message());
    case StatusCode::kUnavailable: return api_error(503, "server_error", "unavailable", s.message());
    default: return api_error(500, "server_error", "internal_error", s.message());
  }
}

void write_error(httplib::Response& res, const ApiError& e, int retry_after_s = 0) {
  res.status = e.http_status;
  if (retry_after_s > 0) res.set_header("Retry-After", std::to_string(retry_after_s));
  res.set_content(e.to_json().dump(), kJson);
}

std::optional<telemetry::FallbackReason> fallback_reason_enum(const std::string& reason) {
  using R = telemetry::FallbackReason;
  if (reason == "proxy_unavailable") return R::kPeerUnavailable;
  if (reason == "mask_deadline") return R::kMaskDeadline;
  if (reason == "proxy_error") return R::kProxyError;
  if (reason == "mapper_error") return R::kMapperError;
  if (reason == "invalid_mask") return R::kInvalidMask;
  if (reason == "no_mapper") return R::kNoMapper;
  if (reason == "disabled") return R::kDisabled;
  return std::nullopt;
}

telemetry::FinishedReason finished_enum(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return telemetry::FinishedReason::kStop;
    case FinishReason::kLength: return telemetry::FinishedReason::kLength;
    case FinishReason::kAbort: return telemetry::FinishedReason::kAbort;
  }
  return telemetry::FinishedReason::kAbort;
}

json compression_json(const CompressionStats& s) {
  return {{"method", s.method},
          {"requested_method", s.requested_method},
          {"keep_ratio", s.keep_ratio},
          {"level", s.level},
          {"head_floor", s.head_floor},
          {"context_tokens", s.context_tokens},
          {"kv_bytes", s.kv_bytes},
          {"kv_bytes_full", s.kv_bytes_full},
          {"kept_entries", s.kept_entries},
          {"total_entries", s.total_entries},
          {"mask_digest", s.mask_digest.empty() ? json(nullptr) : json(s.mask_digest)},
          {"time_to_compressed_cache_s", s.total_s},
          {"prefill_s", s.prefill_s},
          {"mask_wait_s", s.mask_wait_s},
          {"fallback_reason", s.fallback_reason.empty() ? json(nullptr) : json(s.fallback_reason)}};
}

json usage_json(const GenerationResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

// What a generation job hands back to its HTTP thread.
struct JobOutcome {
  std::optional<GenerationResult> result;
  std::optional<CompressionStats> stats;  // plain completions with kv_compression
  ApiError error;
};

}  // namespace

struct ApiServer::Impl {
  TargetEngine& engine;
  telemetry::Metrics& metrics;
  ApiServerOptions options;
  ApiLimits limits;
  httplib::Server server;
  ContextCache<CompressedContext> contexts;
  RequestScheduler scheduler;
  std::thread thread;
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> draining{false};
  std::once_flag shutdown_once;
  std::shared_ptr<spdlog::logger> log = get_logger("target.api");

  Impl(TargetEngine& e, telemetry::Metrics& m, const ApiServerOptions& o)
      : engine(e), metrics(m), options(o), contexts(o.context_cache_bytes), scheduler(1, o.max_in_flight) {
    limits.model_name = engine.model_name();
    limits.methods = engine.methods();
    limits.max_new_tokens = engine.options().max_new_tokens;
  }

  // An API request's place among max_in_flight; released when the last copy goes (a stream holds it until its
  // last byte is written).
  struct Slot {
    explicit Slot(Impl* owner) : impl(owner) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { impl->in_flight.fetch_sub(1); }
    Impl* impl;
  };
  std::shared_ptr<Slot> acquire_slot() {
    if (in_flight.fetch_add(1) >= options.max_in_flight) {
      in_flight.fetch_sub(1);
      return nullptr;
    }
    return std::make_shared<Slot>(this);
  }

  // Common admission: draining (503), overload (429). Returns the slot, or writes the error.
  std::shared_ptr<Slot> admit(httplib::Response& res) {
    if (draining.load()) {
      write_error(res, api_error(503, "server_error", "draining", "the server is shutting down"),
                  options.retry_after_s);
      return nullptr;
    }
    auto slot = acquire_slot();
    if (!slot) {
      write_error(
          res,
          api_error(429, "overloaded_error", "too_many_requests",
                    "too many requests in flight (max " + std::to_string(options.max_in_flight) + "); retry later"),
          options.retry_after_s);
    }
    return slot;
  }

  bool body_too_large(const httplib::Request& req, httplib::Response& res) {
    if (static_cast<int64_t>(req.body.size()) <= options.max_body_bytes) return false;
    write_error(res, api_error(413, "invalid_request_error", "body_too_large",
                               "the request body exceeds " + std::to_string(options.max_body_bytes) + " bytes"));
    return true;
  }

  void write_overloaded(httplib::Response& res) {
    write_error(res, api_error(429, "overloaded_error", "too_many_requests", "the request queue is full; retry later"),
                options.retry_after_s);
  }

  // Runs `work` on the scheduler and waits; false when the queue refused it.
  bool run_sync(const std::function<void()>& work) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> f = done->get_future();
    auto& waiting = metrics.num_requests_waiting();
    waiting.Increment();
    const bool queued = scheduler.submit([this, work, done, &waiting] {
      waiting.Decrement();
      telemetry::InFlight running(metrics.num_requests_running());
      try {
        work();
      } catch (...) {
      }
      done->set_value();
    });
    if (!queued) {
      waiting.Decrement();
      return false;
    }
    f.wait();
    return true;
  }

  void record_compression(const CompressionStats& s) {
    metrics.request_prefill_time_seconds(s.method).Observe(s.prefill_s);
    metrics.time_to_compressed_cache_seconds(s.method).Observe(s.total_s);
    if (s.total_entries > 0) {
      metrics.kv_keep_ratio(s.method).Observe(static_cast<double>(s.kept_entries) / s.total_entries);
    }
    if (s.requested_method == "proxykv") metrics.mask_wait_seconds().Observe(s.mask_wait_s);
    if (!s.fallback_reason.empty()) {
      if (auto r = fallback_reason_enum(s.fallback_reason)) metrics.fallback_total(*r).Increment();
    }
  }

  void record_generation(const GenerationResult& r, const std::string& method) {
    metrics.prompt_tokens_total().Increment(static_cast<double>(r.prompt_tokens));
    metrics.generation_tokens_total().Increment(static_cast<double>(r.completion_tokens));
    metrics.request_success_total(finished_enum(r.finish_reason)).Increment();
    metrics.e2e_request_latency_seconds(method).Observe(r.total_s);
    if (r.completion_tokens > 0) metrics.time_to_first_token_seconds(method).Observe(r.time_to_first_token_s);
  }

  void update_cache_usage() {
    const ContextCacheStats s = contexts.stats();
    metrics.kv_cache_usage_ratio().Set(s.capacity_bytes ? static_cast<double>(s.bytes) / s.capacity_bytes : 0.0);
  }

  // A token callback that also observes inter-token latency and forwards to `next` (may be empty).
  TokenCallback timed(const std::string& method, TokenCallback next) {
    auto last = std::make_shared<std::optional<Clock::time_point>>();
    auto& itl = metrics.inter_token_latency_seconds(method);
    return [last, &itl, next = std::move(next)](const TokenEvent& ev) {
      const auto now = Clock::now();
      if (ev.id >= 0) {
        if (*last) itl.Observe(std::chrono::duration<double>(now - **last).count());
        *last = now;
      }
      return next ? next(ev) : true;
    };
  }

  json completion_body(const std::string& id, const GenerationResult& r, const std::optional<CompressionStats>& stats,
                       const std::string& context_id) {
    json choice = {
        {"index", 0}, {"text", r.text}, {"finish_reason", finish_reason_name(r.finish_reason)}, {"logprobs", nullptr}};
    json body = {{"id", id},
                 {"object", "text_completion"},
                 {"created", unix_now()},
                 {"model", engine.model_name()},
                 {"choices", json::array({choice})},
                 {"usage", usage_json(r)}};
    if (stats) body["kv_compression"] = compression_json(*stats);
    if (!context_id.empty()) body["context_id"] = context_id;
    return body;
  }

  // Shared by both completion routes: `generate` runs the model on the worker with a token callback.
  using Generate = std::function<Result<GenerationResult>(const TokenCallback&, std::optional<CompressionStats>*)>;

  void serve_completion(const CompletionApiRequest& req, const std::string& method, const std::string& context_id,
                        Generate generate, std::shared_ptr<Slot> slot, httplib::Response& res) {
    const std::string id = request_id("cmpl-");
    if (!req.stream) {
      JobOutcome out;
      const bool ran = run_sync([&] {
        std::optional<CompressionStats> stats;
        auto r = generate(timed(method, {}), &stats);
        out.stats = stats;
        if (r.is_ok()) {
          out.result = std::move(r).value();
        } else {
          out.error = from_status(r.status());
        }
      });
      if (!ran) return write_overloaded(res);
      if (out.stats) record_compression(*out.stats);
      if (!out.result) {
        log->warn("{}: {}", id, out.error.message);
        return write_error(res, out.error);
      }
      record_generation(*out.result, method);
      res.set_content(completion_body(id, *out.result, out.stats, context_id).dump(), kJson);
      return;
    }

    // Streaming: the worker fills the channel; this HTTP thread writes it out, without the model lock.
    auto channel = std::make_shared<TokenChannel>();
    auto outcome = std::make_shared<JobOutcome>();
    auto& waiting = metrics.num_requests_waiting();
    waiting.Increment();
    const bool queued = scheduler.submit([this, channel, outcome, generate, method, &waiting] {
      waiting.Decrement();
      telemetry::InFlight running(metrics.num_requests_running());
      try {
        std::optional<CompressionStats> stats;
        auto r = generate(timed(method,
                                [channel](const TokenEvent& ev) {
                                  channel->push_token(ev.text);
                                  return !channel->cancelled();
                                }),
                          &stats);
        outcome->stats = stats;
        if (r.is_ok()) {
          outcome->result = std::move(r).value();
        } else {
          outcome->error = from_status(r.status());
        }
      } catch (const std::exception& e) {
        outcome->error = api_error(500, "server_error", "internal_error", e.what());
      } catch (...) {
        outcome->error = api_error(500, "server_error", "internal_error", "generation failed");
      }
      channel->close();
    });
    if (!queued) {
      waiting.Decrement();
      return write_overloaded(res);
    }
    const bool include_usage = req.include_usage;
    const std::string model = engine.model_name();
    const int64_t created = unix_now();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, channel, outcome, slot, include_usage, id, model, created, method, context_id](size_t,
                                                                                              httplib::DataSink& sink) {
          auto chunk = [&](json choices) {
            json c = {{"id", id},
                      {"object", "text_completion"},
                      {"created", created},
                      {"model", model},
                      {"choices", std::move(choices)}};
            if (!context_id.empty()) c["context_id"] = context_id;
            return c;
          };
          auto send = [&](const std::string& data) {
            const std::string event = "data: " + data + "\n\n";
            if (!sink.write(event.data(), event.size())) {
              channel->cancel();  // the client went away: stop generating
              return false;
            }
            return true;
          };
          for (;;) {
            TokenChannel::Event ev = channel->pop();
            if (ev.kind == TokenChannel::Event::Kind::kToken) {
              json choice = {{"index", 0}, {"text", ev.text}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
              if (!send(chunk(json::array({choice})).dump())) return false;
              continue;
            }
            break;
          }
          if (outcome->stats) record_compression(*outcome->stats);
          if (!outcome->result) {
            log->warn("{}: {}", id, outcome->error.message);
            if (!send(outcome->error.to_json().dump())) return false;
          } else {
            const GenerationResult& r = *outcome->result;
            record_generation(r, method);
            json choice = {{"index", 0},
                           {"text", ""},
                           {"finish_reason", finish_reason_name(r.finish_reason)},
                           {"logprobs", nullptr}};
            json last = chunk(json::array({choice}));
            if (outcome->stats) last["kv_compression"] = compression_json(*outcome->stats);
            if (!send(last.dump())) return false;
            if (include_usage) {
              json usage = chunk(json::array());
              usage["usage"] = usage_json(r);
              if (!send(usage.dump())) return false;
            }
          }
          if (!send("[DONE]")) return false;
          sink.done();
          return true;
        },
        [channel](bool) { channel->cancel(); });
  }

  // --- routes -------------------------------------------------------------------------------------------------

  void post_completions(const httplib::Request& http, httplib::Response& res) {
    if (body_too_large(http, res)) return;
    auto parsed = parse_completion_request(http.body, limits, /*model_required=*/true);
    if (!parsed.ok()) return write_error(res, parsed.error);
    CompletionApiRequest req = std::move(*parsed.value);
    if (auto n = engine.prompt_tokens(req.prompt); !n.is_ok()) return write_error(res, from_status(n.status()));
    auto slot = admit(res);
    if (!slot) return;
    const std::string method = req.compression ? req.compression->method : "full";
    TargetEngine* e = &engine;
    auto prompt = req.prompt;
    auto compression = req.compression;
    auto gen = req.generation;
    serve_completion(
        req, method, "",
        [e, prompt, compression, gen](const TokenCallback& cb, std::optional<CompressionStats>* stats) {
          CompressionStats s;
          auto r = e->complete(prompt, compression, gen, cb, &s);
          if (compression) *stats = s;
          return r;
        },
        slot, res);
  }

  void post_context_completions(const httplib::Request& http, httplib::Response& res) {
    if (body_too_large(http, res)) return;
    const std::string context_id = http.matches[1];
    auto parsed = parse_completion_request(http.body, limits, /*model_required=*/false);
    if (!parsed.ok()) return write_error(res, parsed.error);
    CompletionApiRequest req = std::move(*parsed.value);
    if (req.compression) {
      ApiError e = api_error(400, "invalid_request_error", "invalid_request",
                             "'kv_compression' is fixed when the context is created; it cannot be given here");
      e.param = "kv_compression";
      return write_error(res, e);
    }
    std::shared_ptr<CompressedContext> ctx = contexts.find(context_id);
    if (!ctx) {
      return write_error(res, api_error(404, "not_found_error", "context_not_found",
                                        "no context '" + context_id + "' (deleted, evicted or never created)"));
    }
    metrics.context_cache_hits_total().Increment();
    auto slot = admit(res);
    if (!slot) return;
    const std::string method = context_stats(*ctx).method;
    TargetEngine* e = &engine;
    auto question = req.prompt;
    auto gen = req.generation;
    serve_completion(
        req, method, context_id,
        [e, ctx, question, gen](const TokenCallback& cb, std::optional<CompressionStats>*) {
          return e->answer(*ctx, question, gen, cb);
        },
        slot, res);
  }

  void post_contexts(const httplib::Request& http, httplib::Response& res) {
    if (body_too_large(http, res)) return;
    auto parsed = parse_context_request(http.body, limits);
    if (!parsed.ok()) return write_error(res, parsed.error);
    ContextApiRequest req = std::move(*parsed.value);
    if (auto n = engine.context_tokens(req.context); !n.is_ok()) return write_error(res, from_status(n.status()));
    auto slot = admit(res);
    if (!slot) return;
    std::optional<Result<std::shared_ptr<CompressedContext>>> result;
    const bool ran = run_sync([&] { result.emplace(engine.compress_context(req.context, req.compression)); });
    if (!ran) return write_overloaded(res);
    if (!result->is_ok()) return write_error(res, from_status(result->status()));
    std::shared_ptr<CompressedContext> ctx = std::move(*result).value();
    const CompressionStats& s = context_stats(*ctx);
    record_compression(s);
    auto id = contexts.insert(ctx, s.kv_bytes);
    update_cache_usage();
    if (!id.is_ok()) return write_error(res, from_status(id.status()));
    json body = compression_json(s);
    body["id"] = *id;
    body["object"] = "context";
    body["model"] = engine.model_name();
    body["timings"] = {{"prefill_s", s.prefill_s},
                       {"mask_wait_s", s.mask_wait_s},
                       {"score_s", s.score_s},
                       {"compact_s", s.compact_s},
                       {"total_s", s.total_s}};
    log->info("context {}: {} tokens, {} -> {} bytes, method {}{}", *id, s.context_tokens, s.kv_bytes_full, s.kv_bytes,
              s.method, s.fallback_reason.empty() ? "" : " (fallback: " + s.fallback_reason + ")");
    res.status = 201;
    res.set_content(body.dump(), kJson);
  }

  void delete_context(const httplib::Request& http, httplib::Response& res) {
    const std::string id = http.matches[1];
    if (!contexts.erase(id)) {
      return write_error(res, api_error(404, "not_found_error", "context_not_found", "no context '" + id + "'"));
    }
    update_cache_usage();
    res.set_content(json{{"id", id}, {"object", "context.deleted"}, {"deleted", true}}.dump(), kJson);
  }

  void get_models(httplib::Response& res) {
    json model = {{"id", engine.model_name()},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "proxykv"},
                  {"max_context_tokens", engine.options().max_context_tokens}};
    res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), kJson);
  }

  // True when no keys are configured or the request carries one of them as a bearer token.
  bool authorized(const httplib::Request& req) const {
    if (options.api_keys.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string scheme = "Bearer ";
    if (header.size() <= scheme.size() || header.compare(0, scheme.size(), scheme) != 0) return false;
    const std::string token = header.substr(scheme.size());
    bool match = false;
    for (const std::string& key : options.api_keys) match |= same_secret(token, key);  // no early exit either
    return match;
  }

  // Every API route through here: authorization first, and no exception leaves a handler.
  httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> route) {
    return [this, route = std::move(route)](const httplib::Request& req, httplib::Response& res) {
      try {
        if (!authorized(req)) {
          log->debug("{} {}: refused, no valid API key", req.method, req.path);  // debug: a flood must not fill logs
          res.set_header("WWW-Authenticate", "Bearer");
          write_error(res, api_error(401, "invalid_request_error", "invalid_api_key",
                                     req.has_header("Authorization")
                                         ? "the API key is not valid"
                                         : "this server needs an API key: Authorization: Bearer <key>"));
          return;
        }
        route(req, res);
      } catch (const std::exception& e) {
        log->error("{} {}: {}", req.method, req.path, e.what());
        write_error(res, api_error(500, "server_error", "internal_error", e.what()));
      } catch (...) {
        write_error(res, api_error(500, "server_error", "internal_error", "unexpected error"));
      }
    };
  }

  void install_routes() {
    telemetry::set_exclusive_bind(server);
    server.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    const int threads = options.http_threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    server.Post("/v1/completions", guarded([this](const auto& q, auto& r) { post_completions(q, r); }));
    server.Post(R"(/v1/contexts/([^/]+)/completions)",
                guarded([this](const auto& q, auto& r) { post_context_completions(q, r); }));
    server.Post("/v1/contexts", guarded([this](const auto& q, auto& r) { post_contexts(q, r); }));
    server.Delete(R"(/v1/contexts/([^/]+))", guarded([this](const auto& q, auto& r) { delete_context(q, r); }));
    server.Get("/v1/models", guarded([this](const auto&, auto& r) { get_models(r); }));
    telemetry::attach_admin_routes(server, metrics, [this] {
      telemetry::HealthReport h;
      h.state = draining.load() ? telemetry::ServingState::kDraining : telemetry::ServingState::kServing;
      const ContextCacheStats s = contexts.stats();
      h.details = {{"model", engine.model_name()},
                   {"in_flight", in_flight.load()},
                   {"contexts", s.entries},
                   {"context_cache_bytes", s.bytes}};
      if (options.health_details) h.details.update(options.health_details());
      return h;
    });
    server.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unexpected error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log->error("{} {}: {}", req.method, req.path, what);
      write_error(res, api_error(500, "server_error", "internal_error", what));
    });
    server.set_error_handler(
        httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // a route's own error body
          ApiError e;
          switch (res.status) {
            case 404:
              e = api_error(404, "not_found_error", "not_found", "no such route: " + req.method + " " + req.path);
              break;
            case 413:
              e = api_error(413, "invalid_request_error", "body_too_large",
                            "the request body exceeds " + std::to_string(options.max_body_bytes) + " bytes");
              break;
            case 400: e = api_error(400, "invalid_request_error", "bad_request", "malformed HTTP request"); break;
            default:
              e = api_error(res.status, res.status >= 500 ? "server_error" : "invalid_request_error", "http_error",
                            "request failed with HTTP status " + std::to_string(res.status));
          }
          res.set_content(e.to_json().dump(), kJson);
          return httplib::Server::HandlerResponse::Handled;
        }));
  }
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl, std::string host, int port)
    : impl_(std::move(impl)), host_(std::move(host)), port_(port) {}

ApiServer::~ApiServer() {
  shutdown();
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(TargetEngine& engine, telemetry::Metrics& metrics,
                                                    const ApiServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return invalid_argument("port must lie in [0, 65535], got " + std::to_string(options.port));
  }
  if (options.max_in_flight < 1) return invalid_argument("max_in_flight must be >= 1");
  if (options.http_threads <= options.max_in_flight) {
    return invalid_argument("http_threads (" + std::to_string(options.http_threads) + ") must exceed max_in_flight (" +
                            std::to_string(options.max_in_flight) + "), so that /health is answered under load");
  }
  if (options.max_body_bytes < 1) return invalid_argument("max_body_bytes must be >= 1");
  if (options.context_cache_bytes < 0) return invalid_argument("context_cache_bytes must be >= 0");
  auto impl = std::make_unique<Impl>(engine, metrics, options);
  impl->install_routes();
  int port = options.port;
  if (port == 0) {
    port = impl->server.bind_to_any_port(options.host);
    if (port <= 0) return Status(StatusCode::kUnavailable, "cannot bind " + options.host + " on a free port");
  } else if (!impl->server.bind_to_port(options.host, port)) {
    return Status(StatusCode::kUnavailable, "cannot bind " + options.host + ":" + std::to_string(port));
  }
  Impl* raw = impl.get();
  auto listen_returned = std::make_shared<std::atomic<bool>>(false);
  raw->thread = std::thread([raw, listen_returned] {
    raw->server.listen_after_bind();
    listen_returned->store(true);
  });
  // The socket already accepts connections (they wait in the backlog); this waits for the accept loop, so that
  // an early shutdown() finds it running and stop() ends it.
  while (!raw->server.is_running() && !listen_returned->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl->log->info("serving {} on {}:{}", engine.model_name(), options.host, port);
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl), options.host, port));
}

std::string ApiServer::base_url() const {
  const std::string host = (host_ == "0.0.0.0" || host_ == "::" || host_.empty()) ? "127.0.0.1" : host_;
  return "http://" + host + ":" + std::to_string(port_);
}

void ApiServer::shutdown() {
  if (!impl_) return;
  std::call_once(impl_->shutdown_once, [this] {
    impl_->draining.store(true);
    impl_->server.stop();  // closes the listener; the thread pool finishes the requests it has
    if (impl_->thread.joinable()) impl_->thread.join();
    impl_->scheduler.shutdown();
    impl_->log->info("stopped");
  });
}

ContextCacheStats ApiServer::context_cache_stats() const {
  return impl_->contexts.stats();
}
int64_t ApiServer::in_flight() const {
  return impl_->in_flight.load();
}

Result<std::vector<std::string>> load_api_keys(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("API key file " + path + " cannot be read");
  std::vector<std::string> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const std::string key = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
    const bool printable = std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 127; });
    if (key.size() < 16 || !printable) {
      return invalid_argument("API key file " + path + " line " + std::to_string(number) +
                              ": a key is at least 16 printable ASCII characters without spaces");
    }
    keys.push_back(key);
  }
  if (keys.empty()) return invalid_argument("API key file " + path + " holds no key");
  return keys;
}

}  // namespace proxykv::target
