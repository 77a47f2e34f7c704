#include "proxykv/proxy/proxy_features.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "proxykv/scoring/feature_channels.h"
#include "proxykv/scoring/scorers.h"

namespace proxykv::proxy {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Replaces non-finite entries (the +inf sinks) of each row of [R, T] by that row's largest finite value.
at::Tensor fill_non_finite_with_row_max(const at::Tensor& rows) {
  at::Tensor finite = at::isfinite(rows);
  at::Tensor masked = rows.masked_fill(finite.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor row_max = std::get<0>(masked.max(/*dim=*/1, /*keepdim=*/true));
  row_max = at::where(at::isfinite(row_max), row_max, at::zeros_like(row_max));
  return at::where(finite, rows, row_max.expand_as(rows));
}

at::Tensor log_mass(const at::Tensor& rows) { return at::log(rows.clamp_min(0) + 1e-6); }

}  // namespace

const std::vector<std::string>& feature_channel_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& c : scoring::feature_channels()) n.push_back(c.name);
    return n;
  }();
  return names;
}

Status validate_feature_options(const FeatureOptions& options) {
  if (options.channels.empty()) return invalid_argument("feature channels: at least one is needed");
  for (const auto& c : options.channels) {
    PROXYKV_RETURN_IF_ERROR(scoring::feature_channel_encoding(c).status());
    if (std::count(options.channels.begin(), options.channels.end(), c) > 1) {
      return invalid_argument("feature channel '" + c + "' is listed twice");
    }
  }
  return scoring::validate_scorer_options(options.scorer);
}

at::Tensor scores_to_rows(const at::Tensor& scores) {
  return fill_non_finite_with_row_max(scores.reshape({scores.size(0) * scores.size(1), scores.size(2)}).to(at::kFloat));
}

Result<ProxyFeatures> extract_features(const DecoderLM& proxy, const at::Tensor& context_ids,
                                       const FeatureOptions& options) {
  PROXYKV_RETURN_IF_ERROR(validate_feature_options(options));
  const int64_t T = context_ids.size(0);
  // Attention channels come from scorers: window_attn is SnapKV without pooling, so the scorers' references
  // (tests/unit/scoring) cover these definitions too.
  scoring::ScorerOptions snap = options.scorer;
  snap.pool_kernel = 1;
  std::vector<std::pair<std::string, std::unique_ptr<scoring::Scorer>>> scorers;
  for (const auto& c : options.channels) {
    if (c == "kvzip") scorers.emplace_back(c, std::move(scoring::make_scorer("kvzip", options.scorer).value()));
    if (c == "window_attn") scorers.emplace_back(c, std::move(scoring::make_scorer("snapkv", snap).value()));
    if (c == "h2o") scorers.emplace_back(c, std::move(scoring::make_scorer("h2o", options.scorer).value()));
  }
  ObserverFanOut fan_out;
  for (auto& [name, scorer] : scorers) {
    if (AttentionObserver* obs = scorer->begin(proxy, T)) fan_out.add(obs);
  }
  ProxyFeatures out;
  KvCache cache = proxy.new_cache();
  PrefillOptions popts;
  popts.chunk_size = options.scorer.prefill_chunk;
  popts.observer = fan_out.empty() ? nullptr : &fan_out;
  auto t0 = Clock::now();
  proxy.prefill(context_ids, cache, popts);
  out.prefill_s = since(t0);

  t0 = Clock::now();
  std::vector<at::Tensor> channels;
  for (const auto& c : options.channels) {
    at::Tensor rows;
    auto it = std::find_if(scorers.begin(), scorers.end(), [&](const auto& s) { return s.first == c; });
    if (it != scorers.end()) {
      PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, it->second->finish(proxy, cache, context_ids));
      rows = log_mass(scores_to_rows(scores));
    } else {
      const bool keys = c == "key_norm";
      std::vector<at::Tensor> heads;
      for (int64_t l = 0; l < cache.num_layers(); ++l) {
        for (int64_t h = 0; h < cache.num_kv_heads(); ++h) {
          heads.push_back((keys ? cache.keys(l, h) : cache.values(l, h)).to(at::kFloat).norm(2, {1}));
        }
      }
      rows = at::stack(heads).to(at::kCPU);
    }
    channels.push_back(rows);
  }
  out.features = at::stack(channels).contiguous();  // [C, P, T]
  out.feature_s = since(t0);
  return out;
}

}  // namespace proxykv::proxy
