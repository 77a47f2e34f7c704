#include "proxykv/telemetry/metrics.h"

#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <prometheus/text_serializer.h>

namespace proxykv::telemetry {
namespace {

std::size_t index_of(FamilyId id) {
  return static_cast<std::size_t>(id);
}

prometheus::Labels variable_labels(const MetricFamilySpec& spec, std::string_view value) {
  if (spec.label.empty()) return {};
  return {{std::string(spec.label), std::string(value)}};
}

}  // namespace

Metrics::Metrics(MetricsIdentity identity)
    : identity_(std::move(identity)), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels constant = {{std::string(kLabelService), identity_.service},
                                       {std::string(kLabelModelName), identity_.model_name}};
  for (const MetricFamilySpec& spec : metric_families()) {
    const std::string name(spec.name);
    const std::string help(spec.help);
    const std::size_t i = index_of(spec.id);
    switch (spec.type) {
      case MetricType::kCounter:
        counters_[i] = &prometheus::BuildCounter().Name(name).Help(help).Labels(constant).Register(*registry_);
        break;
      case MetricType::kGauge:
        gauges_[i] = &prometheus::BuildGauge().Name(name).Help(help).Labels(constant).Register(*registry_);
        break;
      case MetricType::kHistogram:
        histograms_[i] = &prometheus::BuildHistogram().Name(name).Help(help).Labels(constant).Register(*registry_);
        break;
    }
  }
  // Series that exist from the start: unlabelled families and every value of the enum labels.
  for (const MetricFamilySpec& spec : metric_families()) {
    if (!spec.label.empty()) continue;
    switch (spec.type) {
      case MetricType::kCounter: counter(spec.id, {}); break;
      case MetricType::kGauge: gauge(spec.id); break;
      case MetricType::kHistogram: histogram(spec.id, {}); break;
    }
  }
  for (const FinishedReason reason : kAllFinishedReasons) request_success_total(reason);
  for (const FallbackReason reason : kAllFallbackReasons) fallback_total(reason);
}

prometheus::Counter& Metrics::counter(FamilyId id, std::string_view label_value) {
  auto* family = counters_[index_of(id)];
  if (family == nullptr) throw std::logic_error("not a counter family");
  return family->Add(variable_labels(metric_family(id), label_value));
}

prometheus::Gauge& Metrics::gauge(FamilyId id) {
  auto* family = gauges_[index_of(id)];
  if (family == nullptr) throw std::logic_error("not a gauge family");
  return family->Add({});
}

prometheus::Histogram& Metrics::histogram(FamilyId id, std::string_view label_value) {
  auto* family = histograms_[index_of(id)];
  if (family == nullptr) throw std::logic_error("not a histogram family");
  std::lock_guard<std::mutex> lock(histogram_series_mutex_);
  auto& series = histogram_series_[index_of(id)];
  if (const auto it = series.find(label_value); it != series.end()) return *it->second;
  const MetricFamilySpec& spec = metric_family(id);
  prometheus::Histogram& created = family->Add(variable_labels(spec, label_value), *spec.buckets);
  series.emplace(std::string(label_value), &created);
  return created;
}

prometheus::Histogram& Metrics::time_to_first_token_seconds(std::string_view method) {
  return histogram(FamilyId::kTimeToFirstToken, method);
}
prometheus::Histogram& Metrics::inter_token_latency_seconds(std::string_view method) {
  return histogram(FamilyId::kInterTokenLatency, method);
}
prometheus::Histogram& Metrics::e2e_request_latency_seconds(std::string_view method) {
  return histogram(FamilyId::kE2eRequestLatency, method);
}
prometheus::Histogram& Metrics::request_prefill_time_seconds(std::string_view method) {
  return histogram(FamilyId::kRequestPrefillTime, method);
}
prometheus::Histogram& Metrics::time_to_compressed_cache_seconds(std::string_view method) {
  return histogram(FamilyId::kTimeToCompressedCache, method);
}
prometheus::Histogram& Metrics::kv_keep_ratio(std::string_view method) {
  return histogram(FamilyId::kKvKeepRatio, method);
}
prometheus::Histogram& Metrics::mask_wait_seconds() {
  return histogram(FamilyId::kMaskWait, {});
}
prometheus::Histogram& Metrics::proxy_feature_seconds() {
  return histogram(FamilyId::kProxyFeature, {});
}
prometheus::Histogram& Metrics::mapper_inference_seconds() {
  return histogram(FamilyId::kMapperInference, {});
}
prometheus::Gauge& Metrics::num_requests_running() {
  return gauge(FamilyId::kNumRequestsRunning);
}
prometheus::Gauge& Metrics::num_requests_waiting() {
  return gauge(FamilyId::kNumRequestsWaiting);
}
prometheus::Gauge& Metrics::kv_cache_usage_ratio() {
  return gauge(FamilyId::kKvCacheUsageRatio);
}
prometheus::Counter& Metrics::prompt_tokens_total() {
  return counter(FamilyId::kPromptTokens, {});
}
prometheus::Counter& Metrics::generation_tokens_total() {
  return counter(FamilyId::kGenerationTokens, {});
}
prometheus::Counter& Metrics::request_success_total(FinishedReason reason) {
  return counter(FamilyId::kRequestSuccess, finished_reason_name(reason));
}
prometheus::Counter& Metrics::fallback_total(FallbackReason reason) {
  return counter(FamilyId::kFallback, fallback_reason_name(reason));
}
prometheus::Counter& Metrics::context_cache_hits_total() {
  return counter(FamilyId::kContextCacheHits, {});
}
prometheus::Counter& Metrics::transfer_bytes_total(std::string_view transport) {
  return counter(FamilyId::kTransferBytes, transport);
}

std::string Metrics::serialize() const {
  const std::vector<prometheus::MetricFamily> collected = registry_->Collect();
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collected);
  // prometheus-cpp leaves out families without series; name them anyway (HELP + TYPE, no samples is valid).
  std::set<std::string> present;
  for (const auto& family : collected) present.insert(family.name);
  for (const MetricFamilySpec& spec : metric_families()) {
    const std::string name(spec.name);
    if (present.count(name) != 0) continue;
    out << "# HELP " << name << ' ' << spec.help << '\n'
        << "# TYPE " << name << ' ' << metric_type_name(spec.type) << '\n';
  }
  return out.str();
}

}  // namespace proxykv::telemetry
