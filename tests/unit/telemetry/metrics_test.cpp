#include "proxykv/telemetry/metrics.h"

#include <chrono>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "exposition_parse.h"
#include "proxykv/telemetry/metric_families.h"

namespace proxykv::telemetry {
namespace {

using testing::bucket_bounds;
using testing::sample_value;

Metrics make_metrics() {
  return Metrics({"target", "tiny-llama"});
}

// The names DESIGN.md §8 requires, spelled out independently of the table under test.
const std::vector<std::string>& design_names() {
  static const std::vector<std::string> names = {"proxykv_time_to_first_token_seconds",
                                                 "proxykv_inter_token_latency_seconds",
                                                 "proxykv_e2e_request_latency_seconds",
                                                 "proxykv_request_prefill_time_seconds",
                                                 "proxykv_time_to_compressed_cache_seconds",
                                                 "proxykv_mask_wait_seconds",
                                                 "proxykv_num_requests_running",
                                                 "proxykv_num_requests_waiting",
                                                 "proxykv_kv_cache_usage_ratio",
                                                 "proxykv_kv_keep_ratio",
                                                 "proxykv_prompt_tokens_total",
                                                 "proxykv_generation_tokens_total",
                                                 "proxykv_request_success_total",
                                                 "proxykv_fallback_total",
                                                 "proxykv_context_cache_hits_total",
                                                 "proxykv_proxy_feature_seconds",
                                                 "proxykv_mapper_inference_seconds",
                                                 "proxykv_transfer_bytes_total"};
  return names;
}

std::string format_bound(double bound) {
  std::ostringstream out;
  out << bound;
  return out.str();
}

std::vector<std::string> expected_bounds(const std::vector<double>& buckets) {
  std::vector<std::string> out;
  for (const double b : buckets) out.push_back(format_bound(b));
  out.push_back("+Inf");
  return out;
}

TEST(MetricFamiliesTest, TableHasExactlyTheDesignNamesInIdOrder) {
  const auto& families = metric_families();
  ASSERT_EQ(families.size(), kFamilyCount);
  std::set<std::string> names;
  for (std::size_t i = 0; i < families.size(); ++i) {
    EXPECT_EQ(static_cast<std::size_t>(families[i].id), i) << families[i].name;
    names.insert(std::string(families[i].name));
    EXPECT_EQ(families[i].name.substr(0, 8), "proxykv_");
    EXPECT_EQ(families[i].type == MetricType::kHistogram, families[i].buckets != nullptr) << families[i].name;
    if (families[i].type == MetricType::kCounter) {
      EXPECT_EQ(families[i].name.substr(families[i].name.size() - 6), "_total") << families[i].name;
    }
  }
  EXPECT_EQ(names, std::set<std::string>(design_names().begin(), design_names().end()));
}

TEST(MetricFamiliesTest, BucketsAreStrictlyIncreasing) {
  for (const auto& family : metric_families()) {
    if (family.buckets == nullptr) continue;
    ASSERT_FALSE(family.buckets->empty()) << family.name;
    for (std::size_t i = 1; i < family.buckets->size(); ++i) {
      EXPECT_LT((*family.buckets)[i - 1], (*family.buckets)[i]) << family.name;
    }
  }
  EXPECT_EQ(time_to_first_token_buckets().front(), 0.001);  // vLLM's TTFT buckets: 1 ms .. 2560 s
  EXPECT_EQ(time_to_first_token_buckets().back(), 2560.0);
  EXPECT_EQ(request_latency_buckets().front(), 0.3);  // vLLM's e2e buckets: 0.3 s .. 7680 s
  EXPECT_EQ(request_latency_buckets().back(), 7680.0);
  EXPECT_EQ(ratio_buckets().back(), 1.0);
}

TEST(MetricsTest, EveryFamilyHasHelpAndTypeLinesBeforeAnyUse) {
  Metrics metrics = make_metrics();
  const std::string text = metrics.serialize();
  for (const auto& family : metric_families()) {
    const std::string name(family.name);
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find("# TYPE " + name + " " + metric_type_name(family.type) + "\n"), std::string::npos) << name;
  }
}

TEST(MetricsTest, EverySeriesCarriesServiceAndModelName) {
  Metrics metrics = make_metrics();
  metrics.time_to_first_token_seconds("proxykv").Observe(0.2);
  std::istringstream lines(metrics.serialize());
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++samples;
    EXPECT_NE(line.find("service=\"target\""), std::string::npos) << line;
    EXPECT_NE(line.find("model_name=\"tiny-llama\""), std::string::npos) << line;
  }
  EXPECT_GT(samples, 0);
}

TEST(MetricsTest, UnlabelledAndEnumLabelledSeriesStartAtZero) {
  Metrics metrics = make_metrics();
  const std::string text = metrics.serialize();
  EXPECT_EQ(sample_value(text, "proxykv_prompt_tokens_total", {}), 0.0);
  EXPECT_EQ(sample_value(text, "proxykv_num_requests_running", {}), 0.0);
  EXPECT_EQ(sample_value(text, "proxykv_mask_wait_seconds_count", {}), 0.0);
  for (const FallbackReason reason : kAllFallbackReasons) {
    EXPECT_EQ(sample_value(text, "proxykv_fallback_total", {{"reason", fallback_reason_name(reason)}}), 0.0)
        << fallback_reason_name(reason);
  }
  for (const FinishedReason reason : kAllFinishedReasons) {
    EXPECT_EQ(sample_value(text, "proxykv_request_success_total", {{"finished_reason", finished_reason_name(reason)}}),
              0.0);
  }
}

TEST(MetricsTest, CountersIncrementPerLabelValue) {
  Metrics metrics = make_metrics();
  metrics.fallback_total(FallbackReason::kMaskDeadline).Increment();
  metrics.fallback_total(FallbackReason::kMaskDeadline).Increment();
  metrics.fallback_total(FallbackReason::kProxyError).Increment();
  metrics.prompt_tokens_total().Increment(128);
  metrics.generation_tokens_total().Increment(7);
  metrics.request_success_total(FinishedReason::kLength).Increment();
  metrics.context_cache_hits_total().Increment();
  metrics.transfer_bytes_total("ucx").Increment(4096);
  metrics.transfer_bytes_total("zmq").Increment(10);
  const std::string text = metrics.serialize();
  EXPECT_EQ(sample_value(text, "proxykv_fallback_total", {{"reason", "mask_deadline"}}), 2.0);
  EXPECT_EQ(sample_value(text, "proxykv_fallback_total", {{"reason", "proxy_error"}}), 1.0);
  EXPECT_EQ(sample_value(text, "proxykv_fallback_total", {{"reason", "mapper_error"}}), 0.0);
  EXPECT_EQ(sample_value(text, "proxykv_prompt_tokens_total", {}), 128.0);
  EXPECT_EQ(sample_value(text, "proxykv_generation_tokens_total", {}), 7.0);
  EXPECT_EQ(sample_value(text, "proxykv_request_success_total", {{"finished_reason", "length"}}), 1.0);
  EXPECT_EQ(sample_value(text, "proxykv_request_success_total", {{"finished_reason", "stop"}}), 0.0);
  EXPECT_EQ(sample_value(text, "proxykv_context_cache_hits_total", {}), 1.0);
  EXPECT_EQ(sample_value(text, "proxykv_transfer_bytes_total", {{"transport", "ucx"}}), 4096.0);
  EXPECT_EQ(sample_value(text, "proxykv_transfer_bytes_total", {{"transport", "zmq"}}), 10.0);
}

TEST(MetricsTest, AccessorsReturnTheSameSeries) {
  Metrics metrics = make_metrics();
  EXPECT_EQ(&metrics.fallback_total(FallbackReason::kNoMapper), &metrics.fallback_total(FallbackReason::kNoMapper));
  EXPECT_EQ(&metrics.inter_token_latency_seconds("snapkv"), &metrics.inter_token_latency_seconds("snapkv"));
  EXPECT_NE(&metrics.inter_token_latency_seconds("snapkv"), &metrics.inter_token_latency_seconds("kvzip"));
  EXPECT_EQ(&metrics.mapper_inference_seconds(), &metrics.mapper_inference_seconds());
}

TEST(MetricsTest, HistogramsHaveTheDeclaredBuckets) {
  Metrics metrics = make_metrics();
  metrics.time_to_first_token_seconds("proxykv").Observe(0.03);
  metrics.inter_token_latency_seconds("proxykv").Observe(0.02);
  metrics.e2e_request_latency_seconds("proxykv").Observe(1.2);
  metrics.request_prefill_time_seconds("proxykv").Observe(0.7);
  metrics.time_to_compressed_cache_seconds("proxykv").Observe(0.7);
  metrics.kv_keep_ratio("proxykv").Observe(0.3);
  const std::string text = metrics.serialize();
  for (const auto& family : metric_families()) {
    if (family.type != MetricType::kHistogram) continue;
    const std::string name(family.name);
    const testing::LabelPairs labels =
        family.label.empty() ? testing::LabelPairs{} : testing::LabelPairs{{std::string(family.label), "proxykv"}};
    EXPECT_EQ(bucket_bounds(text, name, labels), expected_bounds(*family.buckets)) << name;
  }
  // 0.03 s falls in (0.02, 0.04]: cumulative counts 0 up to le=0.02, 1 from le=0.04.
  EXPECT_EQ(sample_value(text, "proxykv_time_to_first_token_seconds_bucket", {{"method", "proxykv"}, {"le", "0.02"}}),
            0.0);
  EXPECT_EQ(sample_value(text, "proxykv_time_to_first_token_seconds_bucket", {{"method", "proxykv"}, {"le", "0.04"}}),
            1.0);
  EXPECT_EQ(sample_value(text, "proxykv_time_to_first_token_seconds_count", {{"method", "proxykv"}}), 1.0);
  EXPECT_DOUBLE_EQ(*sample_value(text, "proxykv_time_to_first_token_seconds_sum", {{"method", "proxykv"}}), 0.03);
}

TEST(MetricsTest, ObserveTakesDurationsInSeconds) {
  Metrics metrics = make_metrics();
  observe(metrics.proxy_feature_seconds(), std::chrono::milliseconds(250));
  const std::string text = metrics.serialize();
  EXPECT_DOUBLE_EQ(*sample_value(text, "proxykv_proxy_feature_seconds_sum", {}), 0.25);
  EXPECT_EQ(sample_value(text, "proxykv_proxy_feature_seconds_count", {}), 1.0);
}

TEST(MetricsTest, InFlightCountsTheScope) {
  Metrics metrics = make_metrics();
  {
    InFlight a(metrics.num_requests_running());
    InFlight b(metrics.num_requests_running());
    EXPECT_EQ(sample_value(metrics.serialize(), "proxykv_num_requests_running", {}), 2.0);
  }
  EXPECT_EQ(sample_value(metrics.serialize(), "proxykv_num_requests_running", {}), 0.0);
  metrics.kv_cache_usage_ratio().Set(0.5);
  EXPECT_EQ(sample_value(metrics.serialize(), "proxykv_kv_cache_usage_ratio", {}), 0.5);
}

TEST(MetricsTest, LabelledFamilyIsNamedOnceEvenAfterUse) {
  Metrics metrics = make_metrics();
  metrics.kv_keep_ratio("snapkv").Observe(0.5);
  const std::string text = metrics.serialize();
  const std::string help = "# HELP proxykv_kv_keep_ratio ";
  const std::size_t first = text.find(help);
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(text.find(help, first + 1), std::string::npos);
}

}  // namespace
}  // namespace proxykv::telemetry
