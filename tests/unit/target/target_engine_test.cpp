#include "proxykv/target/target_engine.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>

#include <gtest/gtest.h>

#include "proxykv/model/decoder_lm.h"
#include "proxykv/model/threads.h"
#include "proxykv/scoring/scorer.h"
#include "proxykv/scoring/selection.h"
#include "proxykv/target/compressed_context.h"
#include "proxykv/target/mask_provider.h"
#include "proxykv/tasks/vocabulary.h"
#include "target_test_util.h"
#include "../../support/tiny_model.h"

namespace proxykv::target {
namespace testing {

std::string make_test_model_dir() {
  namespace fs = std::filesystem;
  std::random_device rd;
  const fs::path dir =
      fs::temp_directory_path() / ("proxykv-target-test-" + std::to_string(rd()) + "-" + std::to_string(rd()));
  throw_if_error(test_support::TinyModel{}.init(11)->save(dir.string()));
  throw_if_error(tasks::write_family_tokenizer((dir / "tokenizer.json").string()));
  return dir.string();
}

std::unique_ptr<TargetEngine> make_test_engine(EngineOptions options) {
  // One model directory per process, removed at exit.
  struct Dir {
    std::string path = make_test_model_dir();
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  options.model_dir = dir.path;
  auto engine = TargetEngine::load(options);
  if (!engine.is_ok()) throw ProxykvError(engine.status());
  return std::move(engine).value();
}

namespace {
class GatedMask : public PendingMask {
 public:
  explicit GatedMask(std::shared_future<void> release) : release_(std::move(release)) {}
  MaskOutcome wait() override {
    release_.wait();
    return MaskOutcome::failure("mask_deadline", "gated test provider");
  }

 private:
  std::shared_future<void> release_;
};

class GatedProvider : public MaskProvider {
 public:
  GatedProvider(std::shared_ptr<std::promise<void>> requested, std::shared_future<void> release)
      : requested_(std::move(requested)), release_(std::move(release)) {}
  std::unique_ptr<PendingMask> request(const MaskRequest&) override {
    std::call_once(once_, [this] { requested_->set_value(); });
    return std::make_unique<GatedMask>(release_);
  }

 private:
  std::shared_ptr<std::promise<void>> requested_;
  std::shared_future<void> release_;
  std::once_flag once_;
};
}  // namespace

std::shared_ptr<MaskProvider> make_gated_provider(std::shared_ptr<std::promise<void>> requested,
                                                  std::shared_future<void> release) {
  return std::make_shared<GatedProvider>(std::move(requested), std::move(release));
}

}  // namespace testing

namespace {

const char* const kContext =
    "the grass is green . the sky is blue . the magic number for k017 is 4 0 9 1 . the sun is warm . "
    "k003 is v120 . the grass is green . k044 is v007 . the sky is blue . the magic number for k200 is 1 2 3 4 .";
const char* const kQuestion = "what is the magic number for k017 ?";

at::Tensor ids_of(const std::string& text) {
  std::vector<int32_t> ids = tasks::family_encode(text);
  return at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::TensorOptions().dtype(at::kLong));
}

scoring::ScorerOptions family_scorer_options() {
  scoring::ScorerOptions o;
  o.n_sink = 2;
  o.repeat_prompt_first = {tasks::kRepeatId};
  o.repeat_prompt_rest = {tasks::kRepeatId};
  return o;
}

// The evaluator's path, written out against DecoderLM: prefill with the scorer attached, score, select, compact.
KvCache reference_cache(const DecoderLM& model, const std::string& method, double rho,
                        scoring::SelectionLevel level = scoring::SelectionLevel::kGlobal) {
  const at::Tensor prompt = ids_of(std::string("<bos> <ctx> ") + kContext + " </ctx>");
  KvCache cache = model.new_cache();
  auto scorer = scoring::make_scorer(method, family_scorer_options());
  EXPECT_TRUE(scorer.is_ok());
  PrefillOptions popts;
  popts.observer = (*scorer)->begin(model, prompt.size(0));
  model.prefill(prompt, cache, popts);
  if (method != "full") {
    auto scores = (*scorer)->finish(model, cache, prompt);
    EXPECT_TRUE(scores.is_ok());
    auto keep = scoring::select_entries(*scores, rho, level, 2);
    EXPECT_TRUE(keep.is_ok());
    EXPECT_TRUE(cache.compact(keep->keep).is_ok());
  }
  return cache;
}

std::vector<int32_t> reference_answer(const DecoderLM& model, KvCache& cache, const std::string& question,
                                      int64_t max_tokens) {
  std::vector<int64_t> out = model.answer(ids_of("<q> " + question + " <a>"), cache, max_tokens, {tasks::kEosId});
  return std::vector<int32_t>(out.begin(), out.end());
}

class TargetEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = testing::make_test_engine().release(); }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static TargetEngine* engine_;
};
TargetEngine* TargetEngineTest::engine_ = nullptr;

// torch_threads sets both CPU pools the model computes on: LibTorch's and, with Debian's LibTorch, OpenBLAS's, whose
// default is every core of the node whatever the pod's limit (docs/operations.md, "Compute threads").
TEST(TargetEngineThreads, TorchThreadsSetsLibTorchsAndOpenBlasPools) {
  using GetThreads = int (*)();
  const auto openblas_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const int torch_before = at::get_num_threads();
  const int blas_before = openblas_threads ? openblas_threads() : 0;
  EngineOptions options;
  options.torch_threads = std::max(torch_before, blas_before) + 1;  // differs from both pools' current size
  auto engine = testing::make_test_engine(options);
  const int torch_after = at::get_num_threads();
  const int blas_after = openblas_threads ? openblas_threads() : 0;
  set_compute_threads(torch_before);
  if (openblas_threads) {
    using SetThreads = void (*)(int);
    reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))(blas_before);
  }
  EXPECT_EQ(torch_after, options.torch_threads);
  if (!openblas_threads) GTEST_SKIP() << "LibTorch's BLAS here is not OpenBLAS: only LibTorch's pool to check";
  EXPECT_EQ(blas_after, options.torch_threads);
}

TEST_F(TargetEngineTest, FullCacheAnswersLikeTheDecoder) {
  auto ctx = engine_->compress_context(kContext, {"full", 1.0, "global"});
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  const CompressionStats& s = context_stats(**ctx);
  EXPECT_EQ(s.method, "full");
  EXPECT_EQ(s.fallback_reason, "");
  EXPECT_EQ(s.context_tokens, ids_of(kContext).size(0) + 3);
  EXPECT_EQ(s.kv_bytes, s.kv_bytes_full);

  KvCache ref = reference_cache(engine_->model(), "full", 1.0);
  const std::vector<int32_t> expected = reference_answer(engine_->model(), ref, kQuestion, 8);
  auto out = engine_->answer(**ctx, kQuestion, {8});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->token_ids, expected);
  EXPECT_EQ(out->completion_tokens, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(out->prompt_tokens, ids_of(std::string("<q> ") + kQuestion + " <a>").size(0));
}

TEST_F(TargetEngineTest, SnapKvCompressionEvictsForRealAndAnswersLikeTheDecoder) {
  for (const char* level : {"global", "head", "token"}) {
    auto ctx = engine_->compress_context(kContext, {"snapkv", 0.4, level});
    ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    const CompressionStats& s = context_stats(**ctx);
    EXPECT_EQ(s.method, "snapkv");
    EXPECT_LT(s.kv_bytes, s.kv_bytes_full);
    EXPECT_NEAR(static_cast<double>(s.kept_entries) / s.total_entries, 0.4, 0.05);

    auto lvl = scoring::parse_selection_level(level);
    ASSERT_TRUE(lvl.is_ok());
    KvCache ref = reference_cache(engine_->model(), "snapkv", 0.4, *lvl);
    EXPECT_EQ((*ctx)->cache.used_bytes(), ref.used_bytes());
    for (int64_t l = 0; l < ref.num_layers(); ++l) {
      for (int64_t h = 0; h < ref.num_kv_heads(); ++h) EXPECT_EQ((*ctx)->cache.length(l, h), ref.length(l, h));
    }
    const std::vector<int32_t> expected = reference_answer(engine_->model(), ref, kQuestion, 8);
    // Twice: the first question's KV must be gone before the second.
    for (int round = 0; round < 2; ++round) {
      auto out = engine_->answer(**ctx, kQuestion, {8});
      ASSERT_TRUE(out.is_ok()) << out.status().to_string();
      EXPECT_EQ(out->token_ids, expected) << level << " round " << round;
      EXPECT_EQ((*ctx)->cache.used_bytes(), s.kv_bytes);
    }
  }
}

TEST_F(TargetEngineTest, StreamedPiecesConcatenateToTheText) {
  auto ctx = engine_->compress_context(kContext, {"streaming", 0.5, "global"});
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  std::string streamed;
  int tokens = 0;
  auto out = engine_->answer(**ctx, kQuestion, {10}, [&](const TokenEvent& ev) {
    streamed += ev.text;
    tokens += ev.id >= 0;
    return true;
  });
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(streamed, out->text);
  EXPECT_EQ(tokens, out->completion_tokens);
  std::vector<int32_t> ids = out->token_ids;
  EXPECT_EQ(out->text, engine_->tokenizer().decode(ids, true));
  EXPECT_EQ(out->finish_reason, out->completion_tokens == 10 ? FinishReason::kLength : FinishReason::kStop);

  // A callback that says stop ends the generation at once.
  int calls = 0;
  auto aborted = engine_->answer(**ctx, kQuestion, {10}, [&](const TokenEvent&) { return ++calls < 2; });
  ASSERT_TRUE(aborted.is_ok());
  if (out->completion_tokens >= 2) {
    EXPECT_EQ(aborted->finish_reason, FinishReason::kAbort);
    EXPECT_EQ(aborted->completion_tokens, 2);
  }
}

TEST_F(TargetEngineTest, ProxyKvWithoutProviderFallsBackToSnapKv) {
  auto ctx = engine_->compress_context(kContext, {"proxykv", 0.4, "global"});
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  const CompressionStats& s = context_stats(**ctx);
  EXPECT_EQ(s.requested_method, "proxykv");
  EXPECT_EQ(s.method, "snapkv");
  EXPECT_EQ(s.fallback_reason, "proxy_unavailable");
  KvCache ref = reference_cache(engine_->model(), "snapkv", 0.4);
  EXPECT_EQ((*ctx)->cache.used_bytes(), ref.used_bytes());
  auto out = engine_->answer(**ctx, kQuestion, {8});
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->token_ids, reference_answer(engine_->model(), ref, kQuestion, 8));
}

// A provider answering with a fixed keep set (the streaming scorer's), or a malformed one.
class FixedProvider : public MaskProvider {
 public:
  explicit FixedProvider(bool malformed) : malformed_(malformed) {}
  std::unique_ptr<PendingMask> request(const MaskRequest& r) override {
    struct Pending : PendingMask {
      MaskOutcome outcome;
      MaskOutcome wait() override { return std::move(outcome); }
    };
    auto p = std::make_unique<Pending>();
    requests += 1;
    last_tokens = r.context_ids.size(0);
    at::Tensor scores = at::arange(last_tokens, at::kFloat).expand({r.num_layers, r.num_kv_heads, last_tokens});
    auto keep = scoring::select_entries(scores.contiguous(), r.keep_ratio, r.level, r.n_sink);
    if (malformed_) keep->keep.pop_back();
    p->outcome = MaskOutcome::success(std::move(keep).value());
    return p;
  }
  int requests = 0;
  int64_t last_tokens = 0;

 private:
  bool malformed_;
};

TEST_F(TargetEngineTest, ProxyKvUsesTheProvidersMaskAndRefusesAMalformedOne) {
  auto provider = std::make_shared<FixedProvider>(false);
  engine_->set_mask_provider(provider);
  auto ctx = engine_->compress_context(kContext, {"proxykv", 0.5, "global"});
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  EXPECT_EQ(provider->requests, 1);
  EXPECT_EQ(provider->last_tokens, context_stats(**ctx).context_tokens);
  EXPECT_EQ(context_stats(**ctx).method, "proxykv");
  EXPECT_EQ(context_stats(**ctx).fallback_reason, "");
  EXPECT_LT(context_stats(**ctx).kv_bytes, context_stats(**ctx).kv_bytes_full);
  // The reference: the full cache compacted with the provider's keep set (scores = position).
  KvCache ref = reference_cache(engine_->model(), "full", 1.0);
  const int64_t T = context_stats(**ctx).context_tokens;
  at::Tensor scores = at::arange(T, at::kFloat).expand({ref.num_layers(), ref.num_kv_heads(), T}).contiguous();
  auto keep = scoring::select_entries(scores, 0.5, scoring::SelectionLevel::kGlobal, 2);
  ASSERT_TRUE(keep.is_ok());
  ASSERT_TRUE(ref.compact(keep->keep).is_ok());
  EXPECT_EQ((*ctx)->cache.used_bytes(), ref.used_bytes());
  auto out = engine_->answer(**ctx, kQuestion, {8});
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->token_ids, reference_answer(engine_->model(), ref, kQuestion, 8));

  engine_->set_mask_provider(std::make_shared<FixedProvider>(true));
  auto bad = engine_->compress_context(kContext, {"proxykv", 0.5, "global"});
  ASSERT_TRUE(bad.is_ok());
  EXPECT_EQ(context_stats(**bad).method, "snapkv");
  EXPECT_EQ(context_stats(**bad).fallback_reason, "invalid_mask");
  engine_->set_mask_provider(nullptr);
}

// A proxykv request waiting for its mask (after its prefill) lets go of the model: another request is served
// meanwhile. The engine is shared by the suite, so the provider is put back to none afterwards.
TEST_F(TargetEngineTest, AProxyKvRequestWaitingForItsMaskDoesNotHoldTheModel) {
  auto requested = std::make_shared<std::promise<void>>();
  std::future<void> asked = requested->get_future();
  std::promise<void> release;
  engine_->set_mask_provider(testing::make_gated_provider(requested, release.get_future().share()));
  auto held = std::async(std::launch::async,
                         [&] { return engine_->compress_context(kContext, {"proxykv", 0.5, "global"}); });
  ASSERT_EQ(asked.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto other = std::async(std::launch::async,
                          [&] { return engine_->compress_context(kContext, {"snapkv", 0.5, "global"}); });
  const bool served = other.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  release.set_value();
  EXPECT_TRUE(served) << "a request was blocked behind a proxykv request waiting for its mask";
  auto h = held.get();
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(context_stats(**h).fallback_reason, "mask_deadline");  // what the gated provider answers
  EXPECT_TRUE(other.get().is_ok());
  engine_->set_mask_provider(nullptr);
}

TEST_F(TargetEngineTest, PlainCompletionDecodesAfterThePrompt) {
  const std::string prompt = std::string("<bos> <ctx> ") + kContext + " </ctx> <q> " + kQuestion + " <a>";
  auto out = engine_->complete(prompt, std::nullopt, {8});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  const at::Tensor ids = ids_of(prompt);
  EXPECT_EQ(out->prompt_tokens, ids.size(0));
  KvCache cache = engine_->model().new_cache();
  engine_->model().prefill(ids.slice(0, 0, ids.size(0) - 1), cache);
  std::vector<int64_t> ref = engine_->model().answer(ids.slice(0, ids.size(0) - 1), cache, 8, {tasks::kEosId});
  EXPECT_EQ(out->token_ids, std::vector<int32_t>(ref.begin(), ref.end()));

  CompressionStats stats;
  auto compressed = engine_->complete(prompt, CompressionRequest{"snapkv", 0.5, "global"}, {8}, {}, &stats);
  ASSERT_TRUE(compressed.is_ok()) << compressed.status().to_string();
  EXPECT_EQ(stats.method, "snapkv");
  EXPECT_EQ(stats.context_tokens, ids.size(0) - 1);
  EXPECT_LT(stats.kv_bytes, stats.kv_bytes_full);
}

TEST_F(TargetEngineTest, RefusesBadRequests) {
  EXPECT_EQ(engine_->compress_context(kContext, {"bogus", 0.5, "global"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->compress_context(kContext, {"snapkv", 0.0, "global"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->compress_context(kContext, {"snapkv", 1.5, "global"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->compress_context(kContext, {"snapkv", 0.5, "diagonal"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->complete("", std::nullopt, {8}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->complete("the", std::nullopt, {0}).status().code(), StatusCode::kOutOfRange);

  EngineOptions tiny_limit;
  tiny_limit.max_context_tokens = 10;
  auto small = testing::make_test_engine(tiny_limit);
  EXPECT_EQ(small->compress_context(kContext, {"full", 1.0, "global"}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(small->context_tokens(kContext).status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(small->context_tokens("the sky").is_ok());

  EngineOptions bad_fallback;
  bad_fallback.fallback_method = "proxykv";
  EXPECT_THROW(testing::make_test_engine(bad_fallback), ProxykvError);
}

}  // namespace
}  // namespace proxykv::target
