// proxykv-loadgen: a load-testing client for proxykv-target (DESIGN.md §10: served load from the load client).
//
//   proxykv-loadgen --url http://127.0.0.1:8000 --tasks tasks.jsonl --concurrency 4 --requests 64
//                   --method proxykv --keep-ratio 0.25 [--level token] [--head-floor F] --max-tokens 16
//                   --out load.json
//
// Each request is a streamed OpenAI completion (`stream: true`, one SSE event per token): the prompt is a task
// context followed by its question in the family's format (`<bos> <ctx> ... </ctx> <q> ... <a>`, TASKS.md), or
// the context alone with `--raw-prompts`, compressed with `kv_compression {method, keep_ratio, level?, head_floor?}`
// (level and head_floor only when given: the target's defaults otherwise). `--concurrency`
// clients send back to back (closed loop) until `--requests` have been sent. Measured per request, from the
// client: time to first token (first SSE event with text), inter-token latency (gaps between token events), end
// to end; the method the target really used (the final event's kv_compression) and its fallback reason; HTTP
// errors by status (429 and 503 are the server's overload answers). Printed as a table and written as JSON.
// Client-side inter-token gaps include the network's batching of SSE events (several may arrive in one read, a
// gap of ~0); the target's proxykv_inter_token_latency_seconds is the server's own measure. Exit status: 0 when
// every request succeeded, 3 when some failed (the summary says how), 2 on bad options or no target.
// Only depends on cpp-httplib, nlohmann-json and CLI11: it can run anywhere the target's port is reachable.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string url = "http://127.0.0.1:8000";
  std::string model;  // default: the target's first model
  std::string tasks;
  bool raw_prompts = false;
  int concurrency = 4;
  int requests = 32;
  int max_tokens = 48;  // the evaluator's budget: a restated multiquery answer runs to ~27 tokens
  std::string method = "proxykv";
  double keep_ratio = 0.25;
  std::string level;        // empty: the target's default (global)
  double head_floor = 0.0;  // 0: not sent
  int timeout_s = 600;
  std::string out;
  std::string api_key;  // sent as Authorization: Bearer
};

struct Sample {
  int http_status = 0;  // 0: no response (connection failed)
  std::string error;
  double ttft_s = -1, e2e_s = 0;
  std::vector<double> itl_s;
  int tokens = 0;
  std::string method, fallback_reason, level;
  bool correct = false;
};

struct Prompt {
  std::string text;
  std::vector<std::string> answers;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank)), hi = static_cast<size_t>(std::ceil(rank));
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

bool parse_url(const std::string& url, std::string* host, int* port) {
  static const std::regex re(R"(^http://([^:/]+)(?::(\d+))?/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return false;
  *host = m[1].str();
  *port = m[2].matched ? std::stoi(m[2].str()) : 80;
  return *port > 0 && *port < 65536;
}

std::vector<Prompt> read_prompts(const Options& o) {
  std::ifstream in(o.tasks);
  if (!in) throw std::runtime_error(o.tasks + ": cannot open");
  std::vector<Prompt> prompts;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json t = json::parse(line, nullptr, false);
    if (!t.is_object() || !t.contains("context") || !t["context"].is_string() || !t.contains("queries") ||
        !t["queries"].is_array() || t["queries"].empty()) {
      throw std::runtime_error(o.tasks + ":" + std::to_string(n) + ": not a task line (TASKS.md JSONL)");
    }
    for (const auto& q : t["queries"]) {
      Prompt p;
      const std::string context = t["context"].get<std::string>();
      p.text = o.raw_prompts ? context
                             : "<bos> <ctx> " + context + " </ctx> <q> " + q.value("question", "") + " <a>";
      for (const auto& a : q.value("answers", json::array())) p.answers.push_back(a.get<std::string>());
      prompts.push_back(std::move(p));
    }
  }
  if (prompts.empty()) throw std::runtime_error(o.tasks + ": no tasks");
  return prompts;
}

// One streamed completion; the SSE events are parsed as they arrive.
Sample run_one(const std::string& host, int port, const Options& o, const std::string& model, const Prompt& prompt) {
  Sample s;
  json body = {{"model", model},
               {"prompt", prompt.text},
               {"max_tokens", o.max_tokens},
               {"temperature", 0},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (o.method != "none") {
    body["kv_compression"] = {{"method", o.method}, {"keep_ratio", o.keep_ratio}};
    if (!o.level.empty()) body["kv_compression"]["level"] = o.level;
    if (o.head_floor > 0) body["kv_compression"]["head_floor"] = o.head_floor;
  }
  httplib::Client client(host, port);
  client.set_read_timeout(o.timeout_s, 0);
  client.set_connection_timeout(10, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Accept", "text/event-stream"}};
  if (!o.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + o.api_key);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");

  std::string buffer, text, error_body;
  const auto start = Clock::now();
  Clock::time_point last;
  bool streaming = false;
  req.response_handler = [&](const httplib::Response& r) {
    s.http_status = r.status;
    streaming = r.status == 200;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (!streaming) {
      error_body.append(data, n);
      return true;
    }
    buffer.append(data, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") continue;
      json j = json::parse(payload, nullptr, false);
      if (!j.is_object()) continue;
      if (j.contains("error")) {
        s.error = j["error"].value("message", "stream error");
        continue;
      }
      if (j.contains("kv_compression") && j["kv_compression"].is_object()) {
        s.method = j["kv_compression"].value("method", "");
        s.level = j["kv_compression"].value("level", "");
        const json& fr = j["kv_compression"]["fallback_reason"];
        if (fr.is_string()) s.fallback_reason = fr.get<std::string>();
      }
      if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) continue;
      const std::string piece = j["choices"][0].value("text", "");
      if (piece.empty()) continue;
      const auto now = Clock::now();
      if (s.tokens == 0) {
        s.ttft_s = std::chrono::duration<double>(now - start).count();
      } else {
        s.itl_s.push_back(std::chrono::duration<double>(now - last).count());
      }
      last = now;
      ++s.tokens;
      text += piece;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool ok = client.send(req, res, err);
  s.e2e_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!ok && s.http_status == 0) {
    s.error = "no response: " + httplib::to_string(err);
    return s;
  }
  if (s.http_status != 200) {
    json e = json::parse(error_body, nullptr, false);
    s.error = e.is_object() && e.contains("error") ? e["error"].value("message", error_body) : error_body;
    return s;
  }
  s.correct = !prompt.answers.empty() && std::all_of(prompt.answers.begin(), prompt.answers.end(),
                                                     [&](const std::string& a) { return text.find(a) != std::string::npos; });
  return s;
}

std::string first_model(const std::string& host, int port, const std::string& api_key) {
  httplib::Client client(host, port);
  client.set_connection_timeout(10, 0);
  if (!api_key.empty()) client.set_bearer_token_auth(api_key);
  auto res = client.Get("/v1/models");
  if (res && res->status == 401) throw std::runtime_error("GET /v1/models: 401, the target needs --api-key");
  if (!res || res->status != 200) throw std::runtime_error("GET /v1/models failed: is the target up?");
  json j = json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || j["data"].empty()) throw std::runtime_error("no models served");
  return j["data"][0].value("id", "");
}

json summarize(const Options& o, const std::string& model, const std::vector<Sample>& samples, double wall_s) {
  std::vector<double> ttft, itl, e2e;
  std::map<std::string, int> by_status, methods, fallbacks, levels;
  int ok = 0, correct = 0;
  int64_t tokens = 0;
  for (const Sample& s : samples) {
    ++by_status[std::to_string(s.http_status)];
    if (s.http_status != 200 || !s.error.empty()) continue;
    ++ok;
    correct += s.correct ? 1 : 0;
    tokens += s.tokens;
    if (s.ttft_s >= 0) ttft.push_back(s.ttft_s);
    itl.insert(itl.end(), s.itl_s.begin(), s.itl_s.end());
    e2e.push_back(s.e2e_s);
    ++methods[!s.method.empty() ? s.method : o.method == "none" ? "full" : "?"];
    if (!s.fallback_reason.empty()) ++fallbacks[s.fallback_reason];
    if (!s.level.empty()) ++levels[s.level];
  }
  auto dist = [](const std::vector<double>& v) {
    return json{{"p50", percentile(v, 50)}, {"p90", percentile(v, 90)}, {"p99", percentile(v, 99)},
                {"n", v.size()}};
  };
  std::vector<std::string> errors;
  for (const Sample& s : samples) {
    if (!s.error.empty() && errors.size() < 5) errors.push_back(std::to_string(s.http_status) + ": " + s.error);
  }
  return json{{"url", o.url},
              {"model", model},
              {"method", o.method},
              {"keep_ratio", o.keep_ratio},
              {"level", o.level.empty() ? json(nullptr) : json(o.level)},
              {"head_floor", o.head_floor},
              {"concurrency", o.concurrency},
              {"requests", samples.size()},
              {"ok", ok},
              {"correct", correct},
              {"http_status", by_status},
              {"methods_used", methods},
              {"fallback_reasons", fallbacks},
              {"levels_used", levels},
              {"wall_s", wall_s},
              {"requests_per_s", wall_s > 0 ? ok / wall_s : 0.0},
              {"output_tokens_per_s", wall_s > 0 ? static_cast<double>(tokens) / wall_s : 0.0},
              {"ttft_s", dist(ttft)},
              {"itl_s", dist(itl)},
              {"e2e_s", dist(e2e)},
              {"first_errors", errors}};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"proxykv-loadgen: closed-loop streamed completions against proxykv-target"};
  app.add_option("--url", o.url, "target base URL (http://host:port)")->capture_default_str();
  app.add_option("--model", o.model, "model id (default: the target's first)");
  app.add_option("--tasks", o.tasks, "task JSONL (proxykv make-tasks): each query is one request")->required();
  app.add_flag("--raw-prompts", o.raw_prompts, "send the context alone, without the family's prompt format");
  app.add_option("--concurrency", o.concurrency, "clients sending back to back")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--requests", o.requests, "requests in all")->check(CLI::Range(1, 1 << 24))->capture_default_str();
  app.add_option("--max-tokens", o.max_tokens, "max_tokens per request")->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--method", o.method, "kv_compression method, or none")->capture_default_str();
  app.add_option("--keep-ratio", o.keep_ratio, "kv_compression keep_ratio")->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--level", o.level, "kv_compression level: global, layer, head or token (default: the target's)")
      ->check(CLI::IsMember({"global", "layer", "head", "token"}));
  app.add_option("--head-floor", o.head_floor, "kv_compression head_floor, global and layer levels (0: not sent)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--timeout-s", o.timeout_s, "read timeout per request")->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--out", o.out, "write the summary JSON here");
  app.add_option("--api-key", o.api_key, "API key of a target with api_key_file")->envname("PROXYKV_API_KEY");
  CLI11_PARSE(app, argc, argv);

  try {
    std::string host;
    int port = 0;
    if (!parse_url(o.url, &host, &port)) throw std::runtime_error("--url must be http://host:port, got " + o.url);
    const std::vector<Prompt> prompts = read_prompts(o);
    const std::string model = o.model.empty() ? first_model(host, port, o.api_key) : o.model;

    std::vector<Sample> samples(static_cast<size_t>(o.requests));
    std::atomic<int> next{0};
    const auto start = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < o.concurrency; ++c) {
      clients.emplace_back([&] {
        for (int i = next++; i < o.requests; i = next++) {
          samples[static_cast<size_t>(i)] = run_one(host, port, o, model, prompts[static_cast<size_t>(i) % prompts.size()]);
        }
      });
    }
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - start).count();
    const json summary = summarize(o, model, samples, wall);

    std::printf("%d requests, concurrency %d, method %s (keep %.2f), model %s: %d ok in %.2f s\n", o.requests,
                o.concurrency, o.method.c_str(), o.keep_ratio, model.c_str(), summary["ok"].get<int>(), wall);
    std::printf("  throughput %.2f req/s, %.1f output tok/s; answers containing the expected text: %d\n",
                summary["requests_per_s"].get<double>(), summary["output_tokens_per_s"].get<double>(),
                summary["correct"].get<int>());
    for (const char* k : {"ttft_s", "itl_s", "e2e_s"}) {
      const json& d = summary[k];
      std::printf("  %-6s p50 %.4f  p90 %.4f  p99 %.4f  (n=%zu)\n", k, d["p50"].get<double>(),
                  d["p90"].get<double>(), d["p99"].get<double>(), d["n"].get<size_t>());
    }
    std::printf("  http status %s; methods used %s; levels used %s; fallbacks %s\n",
                summary["http_status"].dump().c_str(), summary["methods_used"].dump().c_str(),
                summary["levels_used"].dump().c_str(), summary["fallback_reasons"].dump().c_str());
    for (const auto& e : summary["first_errors"]) std::printf("  error: %s\n", e.get<std::string>().c_str());
    if (!o.out.empty()) {
      std::ofstream(o.out) << summary.dump(2) << "\n";
    }
    return summary["ok"].get<int>() == o.requests ? 0 : 3;
  } catch (const std::exception& e) {
    std::cerr << "proxykv-loadgen: " << e.what() << "\n";
    return 2;
  }
}
