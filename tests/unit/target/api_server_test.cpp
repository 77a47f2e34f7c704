// The HTTP API in-process: a server on port 0 over a tiny random model, driven by httplib::Client.
#include "proxykv/target/api_server.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "target_test_util.h"

namespace proxykv::target {
namespace {

using nlohmann::json;

const char* const kContext =
    "the grass is green . the magic number for k017 is 4 0 9 1 . the sky is blue . k003 is v120 . the sun is warm .";
const char* const kQuestion = "what is the magic number for k017 ?";

struct SseStream {
  std::vector<json> chunks;  // every data event but [DONE]
  bool done = false;         // the last event was [DONE]
  std::string text;          // choices[0].text concatenated
  json usage;                // the usage chunk, if any
  json last_finish_reason;
};

SseStream parse_sse(const std::string& body) {
  SseStream s;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event in: " << body;
    if (end == std::string::npos) break;
    std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    std::string data = event.substr(6);
    EXPECT_FALSE(s.done) << "event after [DONE]";
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    json j = json::parse(data);  // throws (fails the test) on a bad event
    s.chunks.push_back(j);
    if (j.contains("usage")) s.usage = j["usage"];
    if (j.contains("choices") && !j["choices"].empty()) {
      s.text += j["choices"][0]["text"].get<std::string>();
      if (!j["choices"][0]["finish_reason"].is_null()) s.last_finish_reason = j["choices"][0]["finish_reason"];
    }
  }
  return s;
}

class ApiServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions eo;
    eo.model_name = "tiny";
    eo.max_context_tokens = 256;
    eo.max_new_tokens = 64;
    engine_ = testing::make_test_engine(eo).release();
    metrics_ = new telemetry::Metrics({"target", "tiny"});
    ApiServerOptions so;
    so.port = 0;
    so.max_body_bytes = 16 * 1024;
    so.context_cache_bytes = 1 << 24;
    auto server = ApiServer::start(*engine_, *metrics_, so);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(server).value().release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete metrics_;
    delete engine_;
  }

  static httplib::Client client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    return c;
  }
  static httplib::Result post(const std::string& path, const json& body) {
    return client().Post(path.c_str(), body.dump(), "application/json");
  }

  // The error body is {"error": {"message", "type", "code"}} with the given status and code.
  static void expect_error(const httplib::Result& r, int status, const std::string& code, const std::string& what) {
    ASSERT_TRUE(r) << what << ": no response";
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    json j = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << what << ": body is not JSON: " << r->body;
    ASSERT_TRUE(j.contains("error")) << what;
    EXPECT_TRUE(j["error"]["message"].is_string()) << what;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty()) << what;
    EXPECT_TRUE(j["error"]["type"].is_string()) << what;
    EXPECT_EQ(j["error"]["code"], code) << what << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << what;
  }

  static TargetEngine* engine_;
  static telemetry::Metrics* metrics_;
  static ApiServer* server_;
};
TargetEngine* ApiServerTest::engine_ = nullptr;
telemetry::Metrics* ApiServerTest::metrics_ = nullptr;
ApiServer* ApiServerTest::server_ = nullptr;

TEST_F(ApiServerTest, ListsTheModelAndReportsHealth) {
  auto r = client().Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], "tiny");

  auto h = client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "serving");
  auto m = client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("proxykv_fallback_total"), std::string::npos);
}

TEST_F(ApiServerTest, CompletionStreamsTheSameTextAsTheNonStreamedOne) {
  const std::string prompt = std::string("<bos> <ctx> ") + kContext + " </ctx> <q> " + kQuestion + " <a>";
  json req = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}};
  auto r = post("/v1/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "tiny");
  const std::string text = j["choices"][0]["text"];
  auto direct = engine_->complete(prompt, std::nullopt, {12});
  ASSERT_TRUE(direct.is_ok());
  EXPECT_EQ(text, direct->text);
  EXPECT_EQ(j["usage"]["completion_tokens"], direct->completion_tokens);
  EXPECT_EQ(j["usage"]["prompt_tokens"], direct->prompt_tokens);
  EXPECT_EQ(j["choices"][0]["finish_reason"], finish_reason_name(direct->finish_reason));

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto s = post("/v1/completions", req);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200) << s->body;
  EXPECT_EQ(s->get_header_value("Content-Type"), "text/event-stream");
  SseStream sse = parse_sse(s->body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.text, text);
  EXPECT_EQ(sse.usage, j["usage"]);
  EXPECT_EQ(sse.last_finish_reason, j["choices"][0]["finish_reason"]);
  // One event per token, then the finish chunk and the usage chunk.
  EXPECT_EQ(static_cast<int64_t>(sse.chunks.size()), direct->completion_tokens + 2);
}

TEST_F(ApiServerTest, CompletionWithKvCompression) {
  const std::string prompt = std::string("<bos> <ctx> ") + kContext + " </ctx> <q> " + kQuestion + " <a>";
  auto r = post("/v1/completions", {{"model", "tiny"},
                                    {"prompt", json::array({prompt})},
                                    {"max_tokens", 6},
                                    {"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}}}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["kv_compression"]["method"], "snapkv");
  EXPECT_LT(j["kv_compression"]["kv_bytes"].get<int64_t>(), j["kv_compression"]["kv_bytes_full"].get<int64_t>());
  auto direct = engine_->complete(prompt, CompressionRequest{"snapkv", 0.5, "global"}, {6});
  ASSERT_TRUE(direct.is_ok());
  EXPECT_EQ(j["choices"][0]["text"], direct->text);
}

TEST_F(ApiServerTest, ContextsCreateCompleteAndDelete) {
  auto c =
      post("/v1/contexts",
           {{"model", "tiny"}, {"context", kContext}, {"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}}}});
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 201) << c->body;
  json ctx = json::parse(c->body);
  const std::string id = ctx["id"];
  EXPECT_EQ(id.rfind("ctx_", 0), 0u);
  EXPECT_EQ(ctx["method"], "snapkv");
  EXPECT_TRUE(ctx["fallback_reason"].is_null());
  EXPECT_GT(ctx["context_tokens"].get<int64_t>(), 10);
  EXPECT_LT(ctx["kv_bytes"].get<int64_t>(), ctx["kv_bytes_full"].get<int64_t>());

  // The same answers as the engine gives in-process, question after question (each question's KV is dropped).
  auto direct_ctx = engine_->compress_context(kContext, {"snapkv", 0.5, "global"});
  ASSERT_TRUE(direct_ctx.is_ok());
  for (const char* q : {kQuestion, "what is the value of k003 ?", kQuestion}) {
    auto direct = engine_->answer(**direct_ctx, q, {8});
    ASSERT_TRUE(direct.is_ok());
    auto r = post("/v1/contexts/" + id + "/completions", {{"prompt", q}, {"max_tokens", 8}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    EXPECT_EQ(j["choices"][0]["text"], direct->text) << q;
    EXPECT_EQ(j["context_id"], id);

    auto s = post("/v1/contexts/" + id + "/completions",
                  {{"model", "tiny"}, {"prompt", q}, {"max_tokens", 8}, {"stream", true}});
    ASSERT_TRUE(s);
    ASSERT_EQ(s->status, 200);
    SseStream sse = parse_sse(s->body);
    EXPECT_TRUE(sse.done);
    EXPECT_EQ(sse.text, direct->text);
    EXPECT_TRUE(sse.usage.is_null());  // not asked for
  }

  auto d = client().Delete(("/v1/contexts/" + id).c_str());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  EXPECT_EQ(json::parse(d->body)["deleted"], true);
  expect_error(post("/v1/contexts/" + id + "/completions", {{"prompt", kQuestion}}), 404, "context_not_found",
               "after delete");
  expect_error(client().Delete(("/v1/contexts/" + id).c_str()), 404, "context_not_found", "second delete");
}

// kv_compression.head_floor reaches the selection: each context keeps exactly the entries the engine keeps
// in-process with the same floor, and the floor changes what a global selection keeps.
TEST_F(ApiServerTest, HeadFloorReachesTheSelection) {
  std::vector<std::string> digests;
  for (double floor : {0.0, 1.0}) {
    auto c =
        post("/v1/contexts", {{"model", "tiny"},
                              {"context", kContext},
                              {"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.3}, {"head_floor", floor}}}});
    ASSERT_TRUE(c);
    ASSERT_EQ(c->status, 201) << c->body;
    json ctx = json::parse(c->body);
    EXPECT_EQ(ctx["head_floor"].get<double>(), floor);
    auto direct = engine_->compress_context(kContext, {"snapkv", 0.3, "global", floor});
    ASSERT_TRUE(direct.is_ok());
    const CompressionStats& ds = context_stats(**direct);
    ASSERT_FALSE(ds.mask_digest.empty());
    EXPECT_EQ(ctx["mask_digest"], ds.mask_digest) << "head_floor " << floor;
    EXPECT_EQ(ctx["kv_bytes"].get<int64_t>(), ds.kv_bytes);
    digests.push_back(ctx["mask_digest"]);
  }
  EXPECT_NE(digests[0], digests[1]) << "a floor of 1 should move a global selection on this model";
  // Level head takes no floor.
  expect_error(
      post("/v1/contexts",
           {{"model", "tiny"},
            {"context", kContext},
            {"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.3}, {"level", "head"}, {"head_floor", 0.5}}}}),
      400, "invalid_head_floor", "floor at head level");
  EXPECT_FALSE(engine_->compress_context(kContext, {"snapkv", 0.3, "token", 0.5}).is_ok());
}

TEST_F(ApiServerTest, ProxyKvContextFallsBackWithItsReason) {
  auto c = post(
      "/v1/contexts",
      {{"model", "tiny"}, {"context", kContext}, {"kv_compression", {{"method", "proxykv"}, {"keep_ratio", 0.3}}}});
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 201) << c->body;
  json ctx = json::parse(c->body);
  EXPECT_EQ(ctx["requested_method"], "proxykv");
  EXPECT_EQ(ctx["method"], "snapkv");
  EXPECT_EQ(ctx["fallback_reason"], "proxy_unavailable");
  auto m = client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("proxykv_fallback_total{"), std::string::npos);
}

TEST_F(ApiServerTest, EveryBadRequestGetsAJsonErrorAndTheServerKeepsServing) {
  struct Case {
    std::string what, path, body;
    int status;
    std::string code;
  };
  const std::string ok_prompt = "<bos> <ctx> the sky is blue . </ctx> <q> what is the value of k003 ? <a>";
  auto completion = [&](json patch) {
    json j = {{"model", "tiny"}, {"prompt", ok_prompt}, {"max_tokens", 4}};
    j.merge_patch(patch);
    return j.dump();
  };
  std::string long_context;
  for (int i = 0; i < 300; ++i) long_context += "the ";
  const std::vector<Case> cases = {
      {"bad json", "/v1/completions", "{\"model\": ", 400, "invalid_json"},
      {"not an object", "/v1/completions", "[1, 2]", 400, "invalid_json"},
      {"missing prompt", "/v1/completions", json{{"model", "tiny"}}.dump(), 400, "missing_field"},
      {"missing model", "/v1/completions", json{{"prompt", "the"}}.dump(), 400, "missing_field"},
      {"prompt ill-typed", "/v1/completions", completion({{"prompt", 5}}), 400, "invalid_type"},
      {"prompt batch", "/v1/completions", completion({{"prompt", {"a", "b"}}}), 400, "invalid_prompt"},
      {"model ill-typed", "/v1/completions", completion({{"model", 3}}), 400, "invalid_type"},
      {"unknown model", "/v1/completions", completion({{"model", "gpt-9"}}), 404, "model_not_found"},
      {"temperature", "/v1/completions", completion({{"temperature", 0.7}}), 400, "unsupported_temperature"},
      {"max_tokens 0", "/v1/completions", completion({{"max_tokens", 0}}), 400, "invalid_max_tokens"},
      {"max_tokens too big", "/v1/completions", completion({{"max_tokens", 100000}}), 400, "invalid_max_tokens"},
      {"max_tokens string", "/v1/completions", completion({{"max_tokens", "4"}}), 400, "invalid_type"},
      {"stream ill-typed", "/v1/completions", completion({{"stream", "yes"}}), 400, "invalid_type"},
      {"keep_ratio 0", "/v1/completions", completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0}}}}),
       400, "invalid_keep_ratio"},
      {"keep_ratio 1.5", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 1.5}}}}), 400, "invalid_keep_ratio"},
      {"keep_ratio ill-typed", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", "half"}}}}), 400, "invalid_type"},
      {"unknown level", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}, {"level", "row"}}}}), 400,
       "invalid_level"},
      {"head_floor 1.5", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}, {"head_floor", 1.5}}}}), 400,
       "invalid_head_floor"},
      {"head_floor negative", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}, {"head_floor", -0.1}}}}), 400,
       "invalid_head_floor"},
      {"head_floor ill-typed", "/v1/completions",
       completion({{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}, {"head_floor", "half"}}}}), 400,
       "invalid_type"},
      {"head_floor at token level", "/v1/completions",
       completion(
           {{"kv_compression", {{"method", "snapkv"}, {"keep_ratio", 0.5}, {"level", "token"}, {"head_floor", 0.2}}}}),
       400, "invalid_head_floor"},
      {"unknown method", "/v1/completions",
       completion({{"kv_compression", {{"method", "bogus"}, {"keep_ratio", 0.5}}}}), 400, "unknown_method"},
      {"kv_compression ill-typed", "/v1/completions", completion({{"kv_compression", "snapkv"}}), 400, "invalid_type"},
      {"prompt too long", "/v1/completions", completion({{"prompt", long_context}}), 400, "context_length_exceeded"},
      {"context missing", "/v1/contexts", json{{"model", "tiny"}}.dump(), 400, "missing_field"},
      {"context ill-typed", "/v1/contexts", json{{"model", "tiny"}, {"context", 1}}.dump(), 400, "invalid_type"},
      {"context unknown model", "/v1/contexts", json{{"model", "x"}, {"context", "the"}}.dump(), 404,
       "model_not_found"},
      {"context too long", "/v1/contexts", json{{"model", "tiny"}, {"context", long_context}}.dump(), 400,
       "context_length_exceeded"},
      {"context bad method", "/v1/contexts",
       json{{"model", "tiny"}, {"context", "the"}, {"kv_compression", {{"method", "nope"}, {"keep_ratio", 0.5}}}}
           .dump(),
       400, "unknown_method"},
      {"context bad ratio", "/v1/contexts",
       json{{"model", "tiny"}, {"context", "the"}, {"kv_compression", {{"method", "kvzip"}, {"keep_ratio", -1}}}}
           .dump(),
       400, "invalid_keep_ratio"},
      {"context bad json", "/v1/contexts", "nope", 400, "invalid_json"},
      {"unknown context", "/v1/contexts/ctx_00000000000000000000000000000000/completions",
       json{{"prompt", "the"}}.dump(), 404, "context_not_found"},
      {"unknown context, odd id", "/v1/contexts/..%20x/completions", json{{"prompt", "the"}}.dump(), 404,
       "context_not_found"},
      {"oversize body", "/v1/completions", completion({{"prompt", std::string(20000, 'a')}}), 413, "body_too_large"},
      {"unknown route", "/v2/nothing", "{}", 404, "not_found"},
  };
  for (const Case& c : cases) {
    expect_error(client().Post(c.path.c_str(), c.body, "application/json"), c.status, c.code, c.what);
  }
  expect_error(client().Delete("/v1/contexts/ctx_nope"), 404, "context_not_found", "delete unknown");

  // Still serving.
  auto r = post("/v1/completions", json::parse(completion(json::object())));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(server_->in_flight(), 0);
}

// A second server with max_in_flight 1 whose only request is held inside the engine by a gated mask provider.
TEST(ApiServerLimits, OverloadGets429WithRetryAfterAndShutdownDrainsInFlightRequests) {
  EngineOptions eo;
  eo.model_name = "tiny";
  auto engine = testing::make_test_engine(eo);
  auto requested = std::make_shared<std::promise<void>>();
  std::future<void> requested_f = requested->get_future();
  std::promise<void> release;
  engine->set_mask_provider(testing::make_gated_provider(requested, release.get_future().share()));
  telemetry::Metrics metrics({"target", "tiny"});
  ApiServerOptions so;
  so.max_in_flight = 1;
  so.http_threads = 3;
  so.retry_after_s = 2;
  auto server = ApiServer::start(*engine, metrics, so);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  const int port = (*server)->port();

  const json body = {
      {"model", "tiny"}, {"context", kContext}, {"kv_compression", {{"method", "proxykv"}, {"keep_ratio", 0.5}}}};
  auto held = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto r = c.Post("/v1/contexts", body.dump(), "application/json");
    return r ? std::make_pair(r->status, r->body) : std::make_pair(-1, std::string());
  });
  // Whatever fails below, the held request is let go, so the test ends instead of hanging.
  bool released = false;
  auto let_go = [&] {
    if (!released) release.set_value();
    released = true;
  };
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{let_go};
  requested_f.wait();  // the first request is inside the engine, waiting for its mask

  httplib::Client c("127.0.0.1", port);
  auto over = c.Post("/v1/contexts", body.dump(), "application/json");
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 429) << over->body;
  EXPECT_EQ(over->get_header_value("Retry-After"), "2");
  EXPECT_EQ(json::parse(over->body)["error"]["code"], "too_many_requests");
  auto health = c.Get("/health");  // a thread is always left for probes
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  // SIGTERM's path: shutdown() while the request is in flight; it still gets its answer.
  auto stopping = std::async(std::launch::async, [&] { (*server)->shutdown(); });
  let_go();
  auto [status, text] = held.get();
  EXPECT_EQ(status, 201) << text;
  EXPECT_EQ(json::parse(text)["fallback_reason"], "mask_deadline");
  stopping.get();
  httplib::Client after("127.0.0.1", port);
  EXPECT_FALSE(after.Get("/health"));  // no longer accepting
}

TEST(ApiServerLimits, RefusesInconsistentOptions) {
  auto engine = testing::make_test_engine();
  telemetry::Metrics metrics({"target", "tiny"});
  ApiServerOptions so;
  so.http_threads = 2;
  so.max_in_flight = 2;
  EXPECT_EQ(ApiServer::start(*engine, metrics, so).status().code(), StatusCode::kInvalidArgument);
  so.http_threads = 4;
  so.port = 70000;
  EXPECT_EQ(ApiServer::start(*engine, metrics, so).status().code(), StatusCode::kInvalidArgument);
}

// With api_keys set, /v1/* needs one of them as a bearer token; probes and metrics stay open.
TEST(ApiServerAuth, ApiRoutesNeedAKeyAndProbesDoNot) {
  auto engine = testing::make_test_engine();
  telemetry::Metrics metrics({"target", "tiny"});
  ApiServerOptions so;
  so.api_keys = {"first-key-0123456789", "second-key-0123456789"};
  auto server = ApiServer::start(*engine, metrics, so);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  httplib::Client c("127.0.0.1", (*server)->port());
  c.set_read_timeout(120, 0);
  auto none = c.Get("/v1/models");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(json::parse(none->body)["error"]["code"], "invalid_api_key") << none->body;
  const std::vector<std::pair<std::string, int>> cases = {
      {"Bearer second-key-0123456789", 200}, {"Bearer first-key-0123456789", 200},
      {"Bearer first-key-012345678", 401},   {"Bearer first-key-01234567890", 401},
      {"bearer first-key-0123456789", 401},  {"Basic Zmlyc3Q6a2V5", 401},
      {"Bearer ", 401}};
  for (const auto& [header, status] : cases) {
    auto r = c.Get("/v1/models", {{"Authorization", header}});
    ASSERT_TRUE(r) << header;
    EXPECT_EQ(r->status, status) << header << ": " << r->body;
  }
  auto post = c.Post("/v1/completions", json{{"model", "tiny"}, {"prompt", "a"}}.dump(), "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 401) << "refused before the body is looked at";
  for (const char* open : {"/health", "/health/live", "/metrics"}) {
    auto r = c.Get(open);
    ASSERT_TRUE(r) << open;
    EXPECT_EQ(r->status, 200) << open;
  }
}

TEST(ApiServerAuth, LoadApiKeysSkipsCommentsAndRefusesBadFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("proxykv-keys-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream((dir / name).string()) << text;
    return (dir / name).string();
  };
  auto keys = load_api_keys(write("good", "# team A\n  alpha-key-0123456789  \n\nbeta-key-0123456789\r\n"));
  ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
  EXPECT_EQ(*keys, (std::vector<std::string>{"alpha-key-0123456789", "beta-key-0123456789"}));
  for (const auto& [name, text, what] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"empty", "# nothing\n\n", "no key"},
           {"short", "short\n", "line 1"},
           {"spaces", "a key with spaces inside\n", "line 1"}}) {
    auto bad = load_api_keys(write(name, text));
    ASSERT_FALSE(bad.is_ok()) << name;
    EXPECT_NE(bad.status().message().find(what), std::string::npos) << bad.status().message();
    EXPECT_NE(bad.status().message().find(name), std::string::npos) << "names the file";
  }
  EXPECT_EQ(load_api_keys((dir / "missing").string()).status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace proxykv::target
