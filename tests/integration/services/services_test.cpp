// The three services as real processes on loopback (ports 0, temp dirs): a proxykv request through
// proxykv-target -> proxykv-proxy -> proxykv-mapper -> target gives the mask and the answer the in-process
// computation gives, over the zmq and the ucx data plane; kill -9 of the proxy or the mapper mid-request still
// answers (fallback, counted in /metrics) and a restart brings proxykv back; malformed frames and a wrong protocol
// version get error replies and the services keep serving; bad HTTP gets 4xx JSON; scripts/run-local.sh starts
// and stops the three.
//
// "Mid-request" is made deterministic with SIGSTOP: the mapper is frozen, so the proxy holds the request (its
// /health shows it in flight) while the proxy or the mapper is killed.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "proxykv/mapper/mapper_checkpoint.h"
#include "proxykv/mapper/mapper_registry.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/proxy/proxy_features.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/target/compressed_context.h"
#include "proxykv/target/mask_provider.h"
#include "proxykv/target/target_engine.h"
#include "proxykv/tasks/task_suite.h"
#include "proxykv/tasks/vocabulary.h"
#include "proxykv/transport/codec.h"
#include "proxykv/transport/curve.h"
#include "../../support/tiny_model.h"

extern char** environ;

namespace proxykv {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::vector<std::string> kChannels = {"kvzip", "key_norm"};
constexpr double kKeepRatio = 0.25;  // exact in float: the wire carries keep_ratio as float

// ---- models on disk ----

void write_model(const fs::path& dir, int64_t layers, uint64_t seed) {
  test_support::TinyModel m;
  m.layers = layers;
  m.max_positions = 8192;
  throw_if_error(m.init(seed)->save(dir.string()));
  throw_if_error(tasks::write_family_tokenizer((dir / "tokenizer.json").string()));
}

void write_mapper(const fs::path& dir) {
  fs::create_directories(dir);
  mapper::MapperConfig c;
  c.shape = {static_cast<int64_t>(kChannels.size()), 2, 2, 3, 2};  // C, proxy 2x2 -> target 3x2
  c.d_model = 16;
  c.conv_kernel = 3;
  c.time_window = 16;
  c.n_attn_heads = 2;
  c.dropout = 0.0;
  c.input_transform = "none";  // kChannels has log-mass channels; load_mapper refuses "log" on them
  torch::manual_seed(5);
  mapper::HybridAxialMapper m(c);
  m->eval();
  throw_if_error(mapper::save_mapper(dir.string(), m, c, json{{"selection_level", "token"}}));
  std::ofstream(dir / "features.json") << json{{"channels", kChannels}}.dump();
}

struct Models {
  fs::path root, target, proxy, mapper;
  Models() {
    std::random_device rd;
    root = fs::temp_directory_path() / ("proxykv-services-" + std::to_string(rd()));
    target = root / "target";
    proxy = root / "proxy";
    mapper = root / "mapper";
    write_model(target, 3, 21);
    write_model(proxy, 2, 22);
    write_mapper(mapper);
  }
  ~Models() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

Models& models() {
  static Models m;
  return m;
}

// ---- processes ----

// A child process: stdout is read by a thread (the first line is the service's announcement), stderr goes to a
// log file. The destructor kills what is still running.
class Process {
 public:
  Process(std::vector<std::string> argv, const fs::path& log, const std::vector<std::string>& extra = {})
      : argv_(std::move(argv)) {
    argv_.insert(argv_.end(), extra.begin(), extra.end());
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);  // the child blocks its own shutdown signals
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    if (rc != 0) {
      close(out[0]);
      throw std::runtime_error("cannot start " + argv_[0]);
    }
    reader_ = std::thread([this, fd = out[0]] {
      std::string buf;
      char chunk[4096];
      bool sent = false;
      for (;;) {
        const ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        buf.append(chunk, static_cast<size_t>(n));
        if (!sent && buf.find('\n') != std::string::npos) {
          first_.set_value(buf.substr(0, buf.find('\n')));
          sent = true;
        }
      }
      if (!sent) first_.set_value("");
      close(fd);
    });
  }
  ~Process() {
    if (running()) {
      kill(pid_, SIGKILL);
      wait();
    }
    if (reader_.joinable()) reader_.join();
  }

  // The first stdout line; empty when the process ended without one.
  std::string first_line() {
    auto f = first_.get_future();
    if (f.wait_for(seconds(120)) != std::future_status::ready) return "";
    return f.get();
  }
  void signal(int sig) { kill(pid_, sig); }
  bool running() const { return !exited_; }
  // Waits for the exit; returns the wait status.
  int wait() {
    int status = 0;
    if (!exited_) {
      waitpid(pid_, &status, 0);
      exited_ = true;
      status_ = status;
    }
    return status_;
  }

 private:
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::promise<std::string> first_;
  std::thread reader_;
};

std::string bin(const std::string& name) {
  return std::string(PROXYKV_BIN_DIR) + "/" + name;
}

struct Announcement {
  std::string control, admin, data_plane;
};

Announcement parse_announcement(const std::string& line) {
  json j = json::parse(line, nullptr, false);
  if (!j.is_object()) return {};
  return {j.value("control", ""), j.value("admin", ""), j.value("data_plane", "")};
}

// host:port of "http://host:port" or "tcp://host:port".
std::pair<std::string, int> host_port(const std::string& url) {
  std::smatch m;
  static const std::regex re(R"(^[a-z]+://([^:/]+):(\d+))");
  if (!std::regex_search(url, m, re)) return {"", 0};
  return {m[1].str(), std::stoi(m[2].str())};
}

json get_json(const std::string& base, const std::string& path) {
  auto [host, port] = host_port(base);
  httplib::Client c(host, port);
  c.set_read_timeout(30, 0);
  auto res = c.Get(path);
  if (!res) return json();
  return json::parse(res->body, nullptr, false);
}

std::string get_text(const std::string& base, const std::string& path) {
  auto [host, port] = host_port(base);
  httplib::Client c(host, port);
  auto res = c.Get(path);
  return res ? res->body : std::string();
}

struct HttpReply {
  int status = 0;
  json body;
};

HttpReply post(const std::string& base, const std::string& path, const std::string& body) {
  auto [host, port] = host_port(base);
  httplib::Client c(host, port);
  c.set_read_timeout(120, 0);
  auto res = c.Post(path, body, "application/json");
  if (!res) return {};
  return {res->status, json::parse(res->body, nullptr, false)};
}

// The value of one series in a /metrics text, or -1.
double metric(const std::string& text, const std::string& series) {
  const size_t at = text.find(series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 1));
}

// The three services, each started by start_*() with the options of this test.
class Services {
 public:
  explicit Services(std::string data_plane, fs::path logs, int64_t mask_deadline_ms = 20000)
      : data_plane_(std::move(data_plane)), logs_(std::move(logs)), mask_deadline_ms_(mask_deadline_ms) {
    // The proxy must accept well within the mask deadline, so "cannot reach the proxy" is told apart from
    // "no mask in time".
    submit_timeout_ms_ = std::min<int64_t>(1000, mask_deadline_ms_ / 3);
    fs::create_directories(logs_);
  }

  // `control`: the endpoint to bind ("tcp://127.0.0.1:0" = a free port; a restart passes the old one).
  void start_mapper(const std::string& control = "tcp://127.0.0.1:0") {
    mapper = std::make_unique<Process>(
        std::vector<std::string>{bin("proxykv-mapper"), "--mappers", "proxy:target=" + models().mapper.string(),
                                 "--data-plane", data_plane_, "--control-endpoint", control, "--threads", "1"},
        logs_ / "mapper.log", common_flags);
    mapper_at = parse_announcement(mapper->first_line());
    ASSERT_FALSE(mapper_at.control.empty()) << "mapper did not start; see " << logs_ / "mapper.log";
  }
  void start_proxy(const std::string& control = "tcp://127.0.0.1:0") {
    std::string channels;
    for (const auto& c : kChannels) channels += (channels.empty() ? "" : ",") + c;
    proxy = std::make_unique<Process>(
        std::vector<std::string>{bin("proxykv-proxy"), "--model", models().proxy.string(), "--model-id", "proxy",
                                 "--mapper-endpoints", mapper_at.control, "--data-plane", data_plane_,
                                 "--channels", channels, "--control-endpoint", control, "--threads", "1",
                                 "--fallback-to-zmq=false"},
        logs_ / "proxy.log", common_flags);
    proxy_at = parse_announcement(proxy->first_line());
    ASSERT_FALSE(proxy_at.control.empty()) << "proxy did not start; see " << logs_ / "proxy.log";
  }
  void start_target() {
    target = std::make_unique<Process>(
        std::vector<std::string>{bin("proxykv-target"), "--model", models().target.string(), "--model-name",
                                 "target", "--port", "0", "--torch-threads", "1", "--proxy-endpoints",
                                 proxy_at.control, "--proxy-model-id", "proxy", "--mask-deadline-ms",
                                 std::to_string(mask_deadline_ms_), "--mask-submit-timeout-ms", std::to_string(submit_timeout_ms_),
                                 "--max-body-bytes", "1000000"},
        logs_ / "target.log", target_flags.empty() ? common_flags : target_flags);
    target_url = target->first_line();
    ASSERT_EQ(target_url.rfind("http://127.0.0.1:", 0), 0u) << "target did not start; see " << logs_ / "target.log";
  }
  void start_all() {
    start_mapper();
    if (::testing::Test::HasFatalFailure()) return;
    start_proxy();
    if (::testing::Test::HasFatalFailure()) return;
    start_target();
  }

  std::vector<std::string> common_flags;  // appended to every service's command line
  std::vector<std::string> target_flags;  // the target's, when not empty, instead of common_flags
  std::unique_ptr<Process> mapper, proxy, target;
  Announcement mapper_at, proxy_at;
  std::string target_url;

 private:
  std::string data_plane_;
  fs::path logs_;
  int64_t mask_deadline_ms_;
  int64_t submit_timeout_ms_;
};

std::string context_request(const std::string& context, const std::string& method = "proxykv",
                            double head_floor = 0.0) {
  return json{{"model", "target"},
              {"context", context},
              {"kv_compression", {{"method", method}, {"keep_ratio", kKeepRatio}, {"head_floor", head_floor}}}}
      .dump();
}

tasks::TaskContext a_task(int64_t length, uint64_t seed = 3) {
  tasks::TaskSpec spec;
  spec.task = "niah_multikey";
  spec.length_tokens = length;
  spec.facts = 4;
  spec.queries = 1;
  spec.n_contexts = 1;
  spec.seed = seed;
  auto t = tasks::generate_tasks(spec);
  throw_if_error(t.status());
  return (*t)[0];
}

// ---- the in-process computation the services must reproduce ----

class InProcessMask : public target::PendingMask {
 public:
  explicit InProcessMask(target::MaskOutcome o) : outcome_(std::move(o)) {}
  target::MaskOutcome wait() override { return outcome_; }

 private:
  target::MaskOutcome outcome_;
};

// The proxy model, the mapper and the selection in this process: what proxykv-proxy and proxykv-mapper compute.
class InProcessProvider : public target::MaskProvider {
 public:
  InProcessProvider() {
    proxy_ = std::move(DecoderLM::load(models().proxy.string(), {}).value());
    throw_if_error(registry_.add("proxy", "target", models().mapper.string()));
    auto tok = Tokenizer::from_file((models().proxy / "tokenizer.json").string());
    throw_if_error(tok.status());
    options_.channels = kChannels;
    options_.scorer.kvzip_chunk = 2048;  // proxykv-proxy's default
    options_.scorer.repeat_prompt_first = {*tok->token_to_id("<repeat>")};
    options_.scorer.repeat_prompt_rest = options_.scorer.repeat_prompt_first;
  }
  std::unique_ptr<target::PendingMask> request(const target::MaskRequest& r) override {
    proxy::FeatureOptions o = options_;
    o.scorer.n_sink = r.n_sink;
    auto features = proxy::extract_features(*proxy_, r.context_ids, o);
    throw_if_error(features.status());
    auto pair = registry_.find("proxy", "target");
    throw_if_error(pair.status());
    auto scores = mapper::map_features(**pair, features->features);
    throw_if_error(scores.status());
    auto keep = scoring::select_entries(*scores, static_cast<float>(r.keep_ratio), r.level, r.n_sink,
                                        static_cast<float>(r.head_floor));
    throw_if_error(keep.status());
    return std::make_unique<InProcessMask>(target::MaskOutcome::success(std::move(keep).value()));
  }

 private:
  std::unique_ptr<DecoderLM> proxy_;
  mapper::MapperRegistry registry_;
  proxy::FeatureOptions options_;
};

fs::path log_dir(const std::string& name) {
  return models().root / ("logs-" + name);
}

class ServicesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ServicesTest, SameMaskAndAnswerAsInProcess) {
#ifndef PROXYKV_WITH_UCX
  if (GetParam() == "ucx") GTEST_SKIP() << "built without UCX (PROXYKV_WITH_UCX=OFF)";
#endif
  at::set_num_threads(1);  // the services run with one LibTorch thread each: the same reductions
  Services s(GetParam(), log_dir("same-" + GetParam()));
  s.start_all();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.proxy_at.data_plane, GetParam());
  EXPECT_EQ(s.mapper_at.data_plane, GetParam());

  target::EngineOptions eo;
  eo.model_dir = models().target.string();
  eo.model_name = "target";
  auto engine = std::move(target::TargetEngine::load(eo).value());
  engine->set_mask_provider(std::make_shared<InProcessProvider>());

  // The last request asks for a head floor: it travels target -> proxy -> mapper and back.
  const std::vector<std::pair<int64_t, double>> requests = {{300, 0.0}, {1000, 0.0}, {1000, 0.5}};
  std::vector<std::string> digests;
  for (const auto& [length, floor] : requests) {
    tasks::TaskContext task = a_task(length);
    HttpReply created = post(s.target_url, "/v1/contexts", context_request(task.context, "proxykv", floor));
    ASSERT_EQ(created.status, 201) << created.body.dump();
    EXPECT_EQ(created.body["method"], "proxykv") << created.body.dump();
    EXPECT_TRUE(created.body["fallback_reason"].is_null()) << created.body.dump();

    EXPECT_EQ(created.body["head_floor"].get<double>(), floor);
    auto local = engine->compress_context(task.context, {"proxykv", kKeepRatio, "global", floor});
    ASSERT_TRUE(local.is_ok()) << local.status().to_string();
    const target::CompressionStats& ls = target::context_stats(**local);
    EXPECT_EQ(ls.method, "proxykv");
    EXPECT_EQ(created.body["context_tokens"], ls.context_tokens);
    EXPECT_EQ(created.body["kv_bytes"], ls.kv_bytes);
    EXPECT_EQ(created.body["mask_digest"], ls.mask_digest) << "the services kept other entries than in-process";
    digests.push_back(ls.mask_digest);

    const std::string question = task.queries[0].question;
    HttpReply answered =
        post(s.target_url, "/v1/contexts/" + created.body["id"].get<std::string>() + "/completions",
             json{{"model", "target"}, {"prompt", question}, {"max_tokens", 8}, {"temperature", 0}}.dump());
    ASSERT_EQ(answered.status, 200) << answered.body.dump();
    auto local_answer = engine->answer(**local, question, {8});
    ASSERT_TRUE(local_answer.is_ok());
    EXPECT_EQ(answered.body["choices"][0]["text"], local_answer->text);
  }
  EXPECT_NE(digests[1], digests[2]) << "the head floor did not change the mask";
  // The target's /health shows the proxy path and what it delivered.
  json th = get_json(s.target_url, "/health");
  EXPECT_EQ(th["details"]["proxy_path"]["masks"], 3) << th.dump();
  EXPECT_EQ(th["details"]["proxy_path"]["errors"], 0) << th.dump();
  // The mapper's /health names the level its checkpoint was trained for.
  json mh = get_json(s.mapper_at.admin, "/health");
  EXPECT_EQ(mh["details"]["trained_levels"]["proxy->target"], "token") << mh.dump();
  const std::string m = get_text(s.proxy_at.admin, "/metrics");
  EXPECT_GT(metric(m, "proxykv_transfer_bytes_total{model_name=\"proxy\",service=\"proxy\",transport=\"" +
                          GetParam() + "\"}"),
            0)
      << "the features went over the " << GetParam() << " data plane";
}

INSTANTIATE_TEST_SUITE_P(DataPlanes, ServicesTest, ::testing::Values("zmq", "ucx"),
                         [](const auto& info) { return info.param; });

// Blocks until the proxy reports a request in flight (it is stuck delivering to the frozen mapper) and the
// target has received the proxy's Accepted for it (`accepted` ScoreRequests in all): the proxy counts the
// request before its Accepted is on the wire, so killing it on the first sign alone races that reply.
bool wait_proxy_busy(const Services& s, int accepted) {
  const auto until = std::chrono::steady_clock::now() + seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    json h = get_json(s.proxy_at.admin, "/health");
    json t = get_json(s.target_url, "/health");
    const bool busy = h.is_object() && h.contains("details") && h["details"].value("in_flight", 0) >= 1;
    const bool acked = t.is_object() && t.contains("details") && t["details"].contains("proxy_path") &&
                       t["details"]["proxy_path"].value("accepted", 0) >= accepted;
    if (busy && acked) return true;
    std::this_thread::yield();
  }
  return false;
}

double fallbacks(const Services& s, const std::string& reason) {
  return metric(get_text(s.target_url, "/metrics"),
                "proxykv_fallback_total{model_name=\"target\",service=\"target\",reason=\"" + reason + "\"}");
}

// A proxykv context request, retried while the path reconnects after a restart (at most `tries`).
json create_until_proxykv(const Services& s, const std::string& context, int tries) {
  json last;
  for (int i = 0; i < tries; ++i) {
    last = post(s.target_url, "/v1/contexts", context_request(context)).body;
    if (last.value("method", "") == "proxykv") break;
  }
  return last;
}

TEST(Services, KillingTheProxyMidRequestFallsBackAndARestartRecovers) {
  Services s("zmq", log_dir("kill-proxy"), /*mask_deadline_ms=*/3000);
  s.start_all();
  ASSERT_FALSE(HasFatalFailure());
  const std::string context = a_task(400).context;
  ASSERT_EQ(create_until_proxykv(s, context, 1).value("method", ""), "proxykv");

  s.mapper->signal(SIGSTOP);
  auto pending = std::async(std::launch::async, [&] { return post(s.target_url, "/v1/contexts", context_request(context)); });
  ASSERT_TRUE(wait_proxy_busy(s, 2));
  s.proxy->signal(SIGKILL);
  s.proxy->wait();
  s.mapper->signal(SIGCONT);
  HttpReply r = pending.get();
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["method"], "snapkv");
  EXPECT_EQ(r.body["fallback_reason"], "mask_deadline");
  EXPECT_EQ(fallbacks(s, "mask_deadline"), 1);

  // With the proxy gone, the next request falls back at once: the proxy cannot be reached.
  HttpReply down = post(s.target_url, "/v1/contexts", context_request(context));
  EXPECT_EQ(down.body["fallback_reason"], "proxy_unavailable") << down.body.dump();
  EXPECT_EQ(fallbacks(s, "proxy_unavailable"), 1);

  s.start_proxy(s.proxy_at.control);  // the same port: the target's DEALER reconnects by itself
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(create_until_proxykv(s, context, 5).value("method", ""), "proxykv");
}

TEST(Services, KillingTheMapperMidRequestFallsBackAndARestartRecovers) {
  Services s("zmq", log_dir("kill-mapper"), /*mask_deadline_ms=*/4000);
  s.start_all();
  ASSERT_FALSE(HasFatalFailure());
  const std::string context = a_task(400).context;
  ASSERT_EQ(create_until_proxykv(s, context, 1).value("method", ""), "proxykv");

  s.mapper->signal(SIGSTOP);
  auto pending = std::async(std::launch::async, [&] { return post(s.target_url, "/v1/contexts", context_request(context)); });
  ASSERT_TRUE(wait_proxy_busy(s, 2));
  s.mapper->signal(SIGKILL);
  s.mapper->wait();
  HttpReply r = pending.get();
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["method"], "snapkv");
  // The proxy gives up on the dead mapper (its delivery deadline) and tells the target, or the target's own
  // deadline comes first: either way a counted fallback, and the request is answered.
  const std::string reason = r.body.value("fallback_reason", "");
  EXPECT_TRUE(reason == "proxy_error" || reason == "mask_deadline") << reason;
  EXPECT_EQ(fallbacks(s, reason), 1);

  s.start_mapper(s.mapper_at.control);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(create_until_proxykv(s, context, 5).value("method", ""), "proxykv");
}

// Raw frames to a control endpoint from a DEALER; the reply (or nothing within 5 s).
std::optional<zmq::multipart_t> raw_call(zmq::context_t& ctx, const std::string& endpoint, zmq::multipart_t frames) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.connect(endpoint);
  frames.send(s);
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, milliseconds(5000)) <= 0) return std::nullopt;
  zmq::multipart_t reply;
  reply.recv(s);
  return reply;
}

std::optional<transport::Message> decoded(std::optional<zmq::multipart_t> frames) {
  if (!frames) return std::nullopt;
  auto m = transport::decode(*frames);
  if (!m.is_ok()) return std::nullopt;
  return std::move(m).value();
}

TEST(Services, MalformedFramesAndWrongVersionsGetErrorRepliesAndServiceGoesOn) {
  Services s("zmq", log_dir("malformed"));
  s.start_all();
  ASSERT_FALSE(HasFatalFailure());
  zmq::context_t ctx(1);
  transport::Message health;
  health.envelope.set_correlation_id(7);
  health.envelope.mutable_health_request();
  // The target's mask receiver is reachable from the network too (its reply_to, shown in /health).
  const std::string mask_receiver =
      get_json(s.target_url, "/health")["details"]["proxy_path"].value("reply_to", std::string());
  ASSERT_EQ(mask_receiver.rfind("tcp://", 0), 0u) << mask_receiver;
  for (const std::string& endpoint : {s.proxy_at.control, s.mapper_at.control, mask_receiver}) {
    SCOPED_TRACE(endpoint);
    zmq::multipart_t garbage;
    garbage.addstr("PKV1");
    garbage.addstr("\xff\x01 not a protobuf envelope");
    auto r = decoded(raw_call(ctx, endpoint, std::move(garbage)));
    ASSERT_TRUE(r.has_value()) << "no decodable reply to a garbage envelope";
    EXPECT_TRUE(r->envelope.has_error_reply());

    auto frames = transport::encode(health);
    ASSERT_TRUE(frames.is_ok());
    zmq::multipart_t wrong_version;
    wrong_version.addstr("PKV9");
    frames->pop();  // drop our "PKV1"
    while (!frames->empty()) wrong_version.add(frames->pop());
    r = decoded(raw_call(ctx, endpoint, std::move(wrong_version)));
    ASSERT_TRUE(r.has_value()) << "no decodable reply to protocol version 9";
    ASSERT_TRUE(r->envelope.has_error_reply());
    EXPECT_EQ(r->envelope.error_reply().code(), v1::ERROR_CODE_UNIMPLEMENTED);
    EXPECT_GE(r->envelope.error_reply().supported_protocol_versions_size(), 1);

    // After the bad frames, a healthy call: still served.
    auto good = transport::encode(health);
    ASSERT_TRUE(good.is_ok());
    r = decoded(raw_call(ctx, endpoint, std::move(good).value()));
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(r->envelope.has_health_reply()) << r->envelope.DebugString();
  }
  // The pipeline itself still serves a proxykv request end to end.
  EXPECT_EQ(create_until_proxykv(s, a_task(300).context, 1).value("method", ""), "proxykv");
}

TEST(Services, BadHttpGetsFourHundredJsonErrors) {
  Services s("zmq", log_dir("http"));
  s.start_all();
  ASSERT_FALSE(HasFatalFailure());
  auto expect_error = [&](const HttpReply& r, int status, const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.body.dump();
    ASSERT_TRUE(r.body.is_object()) << what;
    ASSERT_TRUE(r.body.contains("error")) << what << ": " << r.body.dump();
    EXPECT_FALSE(r.body["error"].value("message", "").empty()) << what;
  };
  expect_error(post(s.target_url, "/v1/completions", "{not json"), 400, "bad JSON");
  expect_error(post(s.target_url, "/v1/completions", json{{"model", "nope"}, {"prompt", "a"}}.dump()), 404,
               "unknown model");
  expect_error(post(s.target_url, "/v1/contexts", std::string(1200000, ' ')), 413, "oversize body");
  expect_error(post(s.target_url, "/v1/contexts",
                    json{{"model", "target"}, {"context", "a b"}, {"kv_compression", {{"method", "zip"}}}}.dump()),
               400, "unknown method");
  // And the target still answers.
  EXPECT_EQ(get_json(s.target_url, "/v1/models")["data"][0]["id"], "target");
}

TEST(Services, CurveEncryptsEveryHopAndAPlainTargetIsRefused) {
  const fs::path keys = models().root / "keys";
  fs::create_directories(keys);
  auto pair = transport::generate_curve_keypair();
  if (!pair.is_ok()) GTEST_SKIP() << "libzmq without CURVE: " << pair.status().to_string();
  ASSERT_TRUE(transport::save_curve_keypair(*pair, keys.string(), "cluster").is_ok());
  const std::vector<std::string> curve = {"--curve-secret-key-file", (keys / "cluster.key_secret").string(),
                                          "--curve-server-public-key-file", (keys / "cluster.key").string()};
  {
    Services s("zmq", log_dir("curve"));
    s.common_flags = curve;
    s.start_all();
    ASSERT_FALSE(HasFatalFailure());
    json r = create_until_proxykv(s, a_task(300).context, 1);
    EXPECT_EQ(r.value("method", ""), "proxykv") << r.dump();
  }
  {
    // A target that does not know the servers' public key: its plain DEALER never completes a handshake with
    // the CURVE proxy, so proxykv falls back as if the proxy were down.
    Services s("zmq", log_dir("curve-plain-target"));
    s.common_flags = curve;
    s.target_flags = {"--curve-secret-key-file", (keys / "cluster.key_secret").string()};
    s.start_all();
    ASSERT_FALSE(HasFatalFailure());
    json r = post(s.target_url, "/v1/contexts", context_request(a_task(300).context)).body;
    EXPECT_EQ(r.value("method", ""), "snapkv") << r.dump();
    EXPECT_EQ(r.value("fallback_reason", ""), "proxy_unavailable") << r.dump();
  }
}

// proxykv-loadgen against a target alone (no proxy path): every request answered and its method reported; an
// overloaded target's 429s are counted and make the exit status say so.
TEST(Loadgen, ReportsLatenciesMethodsAndOverload) {
  const fs::path logs = log_dir("loadgen");
  fs::create_directories(logs);
  const fs::path tasks_file = models().root / "load.jsonl";
  {
    std::ofstream out(tasks_file);
    auto text = tasks::format_task_jsonl({a_task(200, 1), a_task(300, 2)});
    ASSERT_TRUE(text.is_ok());
    out << *text;
  }
  auto start_target = [&](const std::string& max_in_flight) {
    auto t = std::make_unique<Process>(
        std::vector<std::string>{bin("proxykv-target"), "--model", models().target.string(), "--model-name", "target",
                                 "--port", "0", "--torch-threads", "1", "--max-in-flight", max_in_flight,
                                 "--threads", "16"},
        logs / ("target-" + max_in_flight + ".log"));
    return t;
  };
  auto run_loadgen = [&](const std::string& url, const std::string& concurrency, const fs::path& out) {
    Process p({bin("proxykv-loadgen"), "--url", url, "--tasks", tasks_file.string(), "--concurrency", concurrency,
               "--requests", "12", "--method", "snapkv", "--keep-ratio", "0.5", "--level", "layer", "--head-floor",
               "0.5", "--max-tokens", "4", "--out", out.string()},
              logs / "loadgen.log");
    (void)p.first_line();
    const int status = p.wait();
    std::ifstream in(out);
    return std::make_pair(status, json::parse(in, nullptr, false));
  };
  {
    auto target = start_target("4");
    const std::string url = target->first_line();
    ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u);
    auto [status, summary] = run_loadgen(url, "2", models().root / "load-ok.json");
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << summary.dump();
    EXPECT_EQ(summary.value("ok", 0), 12) << summary.dump();
    EXPECT_EQ(summary["methods_used"].value("snapkv", 0), 12) << summary.dump();
    EXPECT_EQ(summary["levels_used"].value("layer", 0), 12) << summary.dump();  // the target's own report
    EXPECT_EQ(summary["head_floor"], 0.5);
    EXPECT_EQ(summary["ttft_s"].value("n", 0), 12);
    EXPECT_GT(summary["e2e_s"].value("p50", 0.0), 0.0);
  }
  {
    auto target = start_target("1");  // one request at a time; the rest get 429
    const std::string url = target->first_line();
    ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u);
    auto [status, summary] = run_loadgen(url, "8", models().root / "load-429.json");
    const int ok = summary.value("ok", 0);
    const int refused = summary["http_status"].value("429", 0);
    EXPECT_EQ(ok + refused, 12) << summary.dump();
    // Eight clients start together against room for one: some are refused (each request holds the slot for
    // its whole prefill and decode, tens of milliseconds, while the others arrive within one).
    EXPECT_GT(refused, 0) << summary.dump();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << summary.dump();
  }
}

TEST(RunLocal, StartsTheThreeServicesAndStopsThemOnSigterm) {
  const fs::path logs = log_dir("run-local");
  Process script({"/bin/bash", std::string(PROXYKV_SOURCE_DIR) + "/scripts/run-local.sh", "--target-model",
                  models().target.string(), "--proxy-model", models().proxy.string(), "--mapper",
                  models().mapper.string(), "--log-dir", logs.string(), "--bin", PROXYKV_BIN_DIR},
                 models().root / "run-local.log");
  const std::string url = script.first_line();
  ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << "got '" << url << "'; see " << models().root / "run-local.log";
  const std::string ctx = a_task(300).context;
  HttpReply r = post(url, "/v1/contexts", context_request(ctx));
  EXPECT_EQ(r.body.value("method", ""), "proxykv") << r.body.dump();
  script.signal(SIGTERM);
  const int status = script.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // Every service is gone: the target's port refuses connections.
  EXPECT_TRUE(get_json(url, "/health").is_null());
}

}  // namespace
}  // namespace proxykv
