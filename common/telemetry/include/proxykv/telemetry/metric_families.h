// The metric families of DESIGN.md §8, declared once: name, type, help, variable labels and histogram buckets.
// Metrics (metrics.h) registers every family of this table in a service's registry; docs/operations.md lists
// the same table for operators. A new metric is one row here plus one accessor in Metrics.
//
// Every family carries two constant labels, `service` and `model_name`, fixed per process (MetricsIdentity).
// Names use base units (seconds, bytes, ratios in [0, 1]); histogram buckets follow vLLM's choices where vLLM
// has the same measurement, so dashboards and SLOs written for vLLM carry over.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace proxykv::telemetry {

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter" | "gauge" | "histogram", as in the exposition's # TYPE line.
const char* metric_type_name(MetricType type);

// Closed label sets are enums, so a service cannot misspell a label value and every value's series exists (at
// zero) from start-up, which keeps rate() and absent() honest. Open sets (`method`, `transport`) are strings.

// Why a request ended, vLLM's `finished_reason` values.
enum class FinishedReason { kStop, kLength, kAbort };
inline constexpr FinishedReason kAllFinishedReasons[] = {FinishedReason::kStop, FinishedReason::kLength,
                                                         FinishedReason::kAbort};
const char* finished_reason_name(FinishedReason reason);  // "stop" | "length" | "abort"

// Why the target fell back to its local method instead of the proxy's mask (DESIGN.md §2 step 6, §7).
enum class FallbackReason {
  kMaskDeadline,     // "mask_deadline": the mask did not arrive by the request's deadline
  kProxyError,       // "proxy_error": the proxy answered with an error
  kMapperError,      // "mapper_error": the mapper answered with an error
  kPeerUnavailable,  // "proxy_unavailable": no proxy reachable, or it had no room for the request (overload)
  kInvalidMask,      // "invalid_mask": a mask arrived but did not fit the request (shape, ratio, checksum)
  kNoMapper,         // "no_mapper": no mapper checkpoint for this (proxy, target) pair
  kDisabled,         // "disabled": the proxy path is switched off by configuration
};
inline constexpr FallbackReason kAllFallbackReasons[] = {
    FallbackReason::kMaskDeadline,    FallbackReason::kProxyError,  FallbackReason::kMapperError,
    FallbackReason::kPeerUnavailable, FallbackReason::kInvalidMask, FallbackReason::kNoMapper,
    FallbackReason::kDisabled};
const char* fallback_reason_name(FallbackReason reason);

// Label names.
inline constexpr std::string_view kLabelService = "service";
inline constexpr std::string_view kLabelModelName = "model_name";
inline constexpr std::string_view kLabelMethod = "method";  // compression method: full, snapkv, kvzip, proxykv
inline constexpr std::string_view kLabelFinishedReason = "finished_reason";
inline constexpr std::string_view kLabelReason = "reason";
inline constexpr std::string_view kLabelTransport = "transport";  // DataPlane::transport_name()

// Bucket sets (upper bounds, seconds unless said otherwise).
// vLLM's vllm:time_to_first_token_seconds buckets, 1 ms .. 2560 s.
const std::vector<double>& time_to_first_token_buckets();
// vLLM's vllm:inter_token_latency_seconds / time_per_output_token_seconds buckets, 10 ms .. 80 s.
const std::vector<double>& inter_token_latency_buckets();
// vLLM's request latency buckets (e2e, queue, prefill, decode), 0.3 s .. 7680 s.
const std::vector<double>& request_latency_buckets();
// Stages inside a request (mask wait, proxy features, mapper inference, time to compressed cache): no vLLM
// counterpart; the TTFT buckets, whose fine low end resolves millisecond stages.
const std::vector<double>& stage_latency_buckets();
// Ratios in [0, 1] (kv_keep_ratio).
const std::vector<double>& ratio_buckets();

enum class FamilyId : std::size_t {
  kTimeToFirstToken,
  kInterTokenLatency,
  kE2eRequestLatency,
  kRequestPrefillTime,
  kTimeToCompressedCache,
  kMaskWait,
  kNumRequestsRunning,
  kNumRequestsWaiting,
  kKvCacheUsageRatio,
  kKvKeepRatio,
  kPromptTokens,
  kGenerationTokens,
  kRequestSuccess,
  kFallback,
  kContextCacheHits,
  kProxyFeature,
  kMapperInference,
  kTransferBytes,
  kCount,
};
inline constexpr std::size_t kFamilyCount = static_cast<std::size_t>(FamilyId::kCount);

struct MetricFamilySpec {
  FamilyId id;
  std::string_view name;  // full name, `proxykv_` prefix and unit/_total suffix included
  MetricType type;
  std::string_view help;
  std::string_view label;              // the one variable label, or empty ("method", "reason", ...)
  const std::vector<double>* buckets;  // histograms only
};

// Every family, in FamilyId order (metric_families()[i].id == FamilyId(i)).
const std::vector<MetricFamilySpec>& metric_families();
const MetricFamilySpec& metric_family(FamilyId id);

}  // namespace proxykv::telemetry
