#include "proxykv/telemetry/metric_families.h"

#include <stdexcept>

namespace proxykv::telemetry {

const char* metric_type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

const char* finished_reason_name(FinishedReason reason) {
  switch (reason) {
    case FinishedReason::kStop: return "stop";
    case FinishedReason::kLength: return "length";
    case FinishedReason::kAbort: return "abort";
  }
  return "unknown";
}

const char* fallback_reason_name(FallbackReason reason) {
  switch (reason) {
    case FallbackReason::kMaskDeadline: return "mask_deadline";
    case FallbackReason::kProxyError: return "proxy_error";
    case FallbackReason::kMapperError: return "mapper_error";
    case FallbackReason::kPeerUnavailable: return "proxy_unavailable";
    case FallbackReason::kInvalidMask: return "invalid_mask";
    case FallbackReason::kNoMapper: return "no_mapper";
    case FallbackReason::kDisabled: return "disabled";
  }
  return "unknown";
}

const std::vector<double>& time_to_first_token_buckets() {
  static const std::vector<double> buckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                              1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return buckets;
}

const std::vector<double>& inter_token_latency_buckets() {
  static const std::vector<double> buckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                              0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  return buckets;
}

const std::vector<double>& request_latency_buckets() {
  static const std::vector<double> buckets = {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                              30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return buckets;
}

const std::vector<double>& stage_latency_buckets() {
  return time_to_first_token_buckets();
}

const std::vector<double>& ratio_buckets() {
  static const std::vector<double> buckets = {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  return buckets;
}

const std::vector<MetricFamilySpec>& metric_families() {
  using M = MetricType;
  using F = FamilyId;
  static const std::vector<MetricFamilySpec> families = {
      {F::kTimeToFirstToken, "proxykv_time_to_first_token_seconds", M::kHistogram,
       "Time from request arrival to the first generated token.", kLabelMethod, &time_to_first_token_buckets()},
      {F::kInterTokenLatency, "proxykv_inter_token_latency_seconds", M::kHistogram,
       "Time between two consecutive generated tokens of a request.", kLabelMethod, &inter_token_latency_buckets()},
      {F::kE2eRequestLatency, "proxykv_e2e_request_latency_seconds", M::kHistogram,
       "Time from request arrival to its last byte.", kLabelMethod, &request_latency_buckets()},
      {F::kRequestPrefillTime, "proxykv_request_prefill_time_seconds", M::kHistogram,
       "Time the target spent prefilling a request's context and question.", kLabelMethod, &request_latency_buckets()},
      {F::kTimeToCompressedCache, "proxykv_time_to_compressed_cache_seconds", M::kHistogram,
       "Time from request arrival until the compressed KV cache of its context is ready.", kLabelMethod,
       &stage_latency_buckets()},
      {F::kMaskWait,
       "proxykv_mask_wait_seconds",
       M::kHistogram,
       "Time the target waited for the prune mask after its own prefill had finished (0 when the mask was first).",
       {},
       &stage_latency_buckets()},
      {F::kNumRequestsRunning, "proxykv_num_requests_running", M::kGauge, "Requests being processed now.", {}, nullptr},
      {F::kNumRequestsWaiting,
       "proxykv_num_requests_waiting",
       M::kGauge,
       "Requests accepted and queued, not yet being processed.",
       {},
       nullptr},
      {F::kKvCacheUsageRatio,
       "proxykv_kv_cache_usage_ratio",
       M::kGauge,
       "Fraction of the KV cache memory budget in use (1 means full).",
       {},
       nullptr},
      {F::kKvKeepRatio, "proxykv_kv_keep_ratio", M::kHistogram,
       "Fraction of a context's KV entries kept after compression, per compressed context.", kLabelMethod,
       &ratio_buckets()},
      {F::kPromptTokens,
       "proxykv_prompt_tokens_total",
       M::kCounter,
       "Prompt (context and question) tokens processed.",
       {},
       nullptr},
      {F::kGenerationTokens, "proxykv_generation_tokens_total", M::kCounter, "Tokens generated.", {}, nullptr},
      {F::kRequestSuccess, "proxykv_request_success_total", M::kCounter, "Requests answered, by why they finished.",
       kLabelFinishedReason, nullptr},
      {F::kFallback, "proxykv_fallback_total", M::kCounter,
       "Requests compressed with the local fallback method instead of the proxy's mask, by reason.", kLabelReason,
       nullptr},
      {F::kContextCacheHits,
       "proxykv_context_cache_hits_total",
       M::kCounter,
       "Requests answered from an already compressed context in the context cache.",
       {},
       nullptr},
      {F::kProxyFeature,
       "proxykv_proxy_feature_seconds",
       M::kHistogram,
       "Time the proxy spent computing the importance features of one request.",
       {},
       &stage_latency_buckets()},
      {F::kMapperInference,
       "proxykv_mapper_inference_seconds",
       M::kHistogram,
       "Time the mapper spent turning one request's features into a prune mask.",
       {},
       &stage_latency_buckets()},
      {F::kTransferBytes, "proxykv_transfer_bytes_total", M::kCounter,
       "Tensor bytes sent over the data plane, by the transport actually used.", kLabelTransport, nullptr},
  };
  return families;
}

const MetricFamilySpec& metric_family(FamilyId id) {
  const auto index = static_cast<std::size_t>(id);
  const auto& families = metric_families();
  if (index >= families.size() || families[index].id != id) throw std::logic_error("metric family table out of order");
  return families[index];
}

}  // namespace proxykv::telemetry
