// Metrics: one per service process, the prometheus-cpp registry holding every family of metric_families.h,
// with typed accessors so that a service names a metric by a function, never by a string:
//
//   telemetry::Metrics metrics({.service = "target", .model_name = "tiny-llama"});
//   metrics.fallback_total(telemetry::FallbackReason::kMaskDeadline).Increment();
//   metrics.time_to_first_token_seconds("proxykv").Observe(0.25);
//   telemetry::InFlight running(metrics.num_requests_running());
//
// The accessors are thread-safe (prometheus-cpp families lock; values are atomics) and return references that
// stay valid as long as the Metrics object; hot paths may keep them. Families with no variable label and
// every value of an enum label exist (at zero) from construction.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "proxykv/telemetry/metric_families.h"

namespace proxykv::telemetry {

// The constant labels of every series of a process.
struct MetricsIdentity {
  std::string service;     // "proxy" | "mapper" | "target"
  std::string model_name;  // the served model: the target's model; the proxy's model on the proxy
};

// Content type of the Prometheus text exposition format 0.0.4.
inline constexpr const char* kPrometheusTextContentType = "text/plain; version=0.0.4; charset=utf-8";

class Metrics {
 public:
  explicit Metrics(MetricsIdentity identity);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  const MetricsIdentity& identity() const { return identity_; }

  // Histograms labelled by compression method ("full", "snapkv", "kvzip", "proxykv").
  prometheus::Histogram& time_to_first_token_seconds(std::string_view method);
  prometheus::Histogram& inter_token_latency_seconds(std::string_view method);
  prometheus::Histogram& e2e_request_latency_seconds(std::string_view method);
  prometheus::Histogram& request_prefill_time_seconds(std::string_view method);
  prometheus::Histogram& time_to_compressed_cache_seconds(std::string_view method);
  prometheus::Histogram& kv_keep_ratio(std::string_view method);
  // Stage histograms.
  prometheus::Histogram& mask_wait_seconds();
  prometheus::Histogram& proxy_feature_seconds();
  prometheus::Histogram& mapper_inference_seconds();
  // Gauges.
  prometheus::Gauge& num_requests_running();
  prometheus::Gauge& num_requests_waiting();
  prometheus::Gauge& kv_cache_usage_ratio();
  // Counters.
  prometheus::Counter& prompt_tokens_total();
  prometheus::Counter& generation_tokens_total();
  prometheus::Counter& request_success_total(FinishedReason reason);
  prometheus::Counter& fallback_total(FallbackReason reason);
  prometheus::Counter& context_cache_hits_total();
  prometheus::Counter& transfer_bytes_total(std::string_view transport);  // DataPlane::transport_name()

  // The exposition text of every family (text format 0.0.4). A family without series yet (a labelled one
  // nobody has used) still appears with its # HELP and # TYPE lines, so a scrape shows the whole catalogue.
  std::string serialize() const;

  // For a pull Exposer or a test; services add no families of their own (declare them in metric_families).
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  prometheus::Counter& counter(FamilyId id, std::string_view label_value);
  prometheus::Gauge& gauge(FamilyId id);
  prometheus::Histogram& histogram(FamilyId id, std::string_view label_value);

  MetricsIdentity identity_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Family<prometheus::Counter>*, kFamilyCount> counters_{};
  std::array<prometheus::Family<prometheus::Gauge>*, kFamilyCount> gauges_{};
  std::array<prometheus::Family<prometheus::Histogram>*, kFamilyCount> histograms_{};
  // Family::Add builds a throw-away histogram (buckets and all) even for known labels; per-token observations
  // (inter_token_latency) look their series up here instead.
  std::mutex histogram_series_mutex_;
  std::array<std::map<std::string, prometheus::Histogram*, std::less<>>, kFamilyCount> histogram_series_;
};

// Observes a duration in seconds.
template <typename Rep, typename Period>
void observe(prometheus::Histogram& histogram, std::chrono::duration<Rep, Period> elapsed) {
  histogram.Observe(std::chrono::duration<double>(elapsed).count());
}

// RAII +1/-1 on a gauge (num_requests_running, num_requests_waiting) for the lifetime of a scope.
class InFlight {
 public:
  explicit InFlight(prometheus::Gauge& gauge) : gauge_(gauge) { gauge_.Increment(); }
  ~InFlight() { gauge_.Decrement(); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  prometheus::Gauge& gauge_;
};

}  // namespace proxykv::telemetry
