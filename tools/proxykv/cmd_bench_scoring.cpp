// proxykv bench-scoring: the cost of each scorer against plain prefill, side by side in one run. With --proxy and
// --mapper, also the proxy path run after the target's prefill on the same cores (the single-device regime): the
// proxy's feature extraction (the mapper's channels, read from its features.json) and the mapper, each timed on
// its own and reported as a fraction of the target's prefill. With --proxy and --feature-sets, also the proxy's
// feature extraction for each listed channel set (the channel ablation's cost side), interleaved the same way.
#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "model_options.h"
#include "proxykv/mapper/mapper_registry.h"
#include "proxykv/model/decoder_lm.h"
#include "proxykv/proxy/proxy_features.h"
#include "proxykv/scoring/scorer.h"

namespace proxykv::cli {
namespace {

struct BenchScoringArgs {
  std::string model;
  std::string config;  // HF config.json for a random model when --model is not given
  std::vector<int64_t> lengths{1024, 2048, 4096};
  std::vector<std::string> methods{"snapkv", "kvzip"};
  int64_t kvzip_chunk = 2048;
  int64_t chunk = 512;
  int repeats = 3;
  std::string proxy;   // proxy model directory (with --mapper)
  std::string mapper;  // mapper checkpoint for (proxy, this target)
  std::vector<std::string> feature_sets;  // each "c1,c2,...": proxy channels timed on their own (with --proxy)
  RuntimeOptions runtime;
};

using Clock = std::chrono::steady_clock;

Status run_bench(const BenchScoringArgs& args) {
  args.runtime.apply();
  std::unique_ptr<DecoderLM> model;
  if (!args.model.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::load(args.model, args.runtime.load_options()));
  } else {
    if (args.config.empty()) return invalid_argument("give --model DIR or --config config.json (random weights)");
    PROXYKV_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::from_file(args.config));
    PROXYKV_ASSIGN_OR_RETURN(model, DecoderLM::random_init(spec, 11, 0.05, args.runtime.load_options()));
  }
  scoring::ScorerOptions sopts;
  sopts.kvzip_chunk = args.kvzip_chunk;
  sopts.prefill_chunk = args.chunk;
  sopts.repeat_prompt_first = {9};  // the family's <repeat>; any id works for timing
  sopts.repeat_prompt_rest = {9};
  const ModelSpec& spec = model->spec();
  // The proxy path: proxy model, its feature options, the mapper.
  std::unique_ptr<DecoderLM> proxy_model;
  mapper::MapperRegistry registry;
  const mapper::MapperPair* pair = nullptr;
  proxy::FeatureOptions fopts;
  if (args.proxy.empty() != (args.mapper.empty() && args.feature_sets.empty())) {
    return invalid_argument("--proxy goes with --mapper or --feature-sets (and they with it)");
  }
  // The proxy's feature options for a channel list: the scorer options above, the family's 2 sinks.
  auto feature_options = [&](std::vector<std::string> channels) {
    proxy::FeatureOptions o;
    o.channels = std::move(channels);
    o.scorer = sopts;
    o.scorer.n_sink = 2;
    return o;
  };
  std::vector<proxy::FeatureOptions> set_opts;
  if (!args.proxy.empty()) {
    PROXYKV_ASSIGN_OR_RETURN(proxy_model, DecoderLM::load(args.proxy, args.runtime.load_options()));
    if (proxy_model->spec().vocab_size != spec.vocab_size) {
      return invalid_argument("the proxy's vocabulary differs from the target's: not the same family");
    }
    for (const auto& set : args.feature_sets) {
      std::vector<std::string> channels;
      std::stringstream in(set);
      for (std::string c; std::getline(in, c, ',');) channels.push_back(c);
      set_opts.push_back(feature_options(std::move(channels)));
      if (Status valid = proxy::validate_feature_options(set_opts.back()); !valid.is_ok()) {
        return Status(valid.code(), "--feature-sets '" + set + "': " + valid.message());
      }
    }
  }
  if (!args.mapper.empty()) {
    PROXYKV_RETURN_IF_ERROR(registry.add("proxy", "target", args.mapper));
    PROXYKV_ASSIGN_OR_RETURN(pair, registry.find("proxy", "target"));
    fopts = feature_options(pair->channels);  // the registry read them from the mapper's features.json
  }
  std::cout << "model: " << (args.model.empty() ? args.config + " (random weights)" : args.model) << ", "
            << spec.num_parameters() << " params, threads " << at::get_num_threads() << ", best of " << args.repeats
            << "\n";
  std::cout << std::left << std::setw(8) << "tokens" << std::setw(14) << "prefill s";
  for (const auto& m : args.methods) std::cout << std::setw(24) << ("prefill+" + m + " (x)");
  if (pair) {
    std::cout << std::setw(20) << "proxy features (x)" << std::setw(18) << "mapper (x)" << std::setw(24)
              << "prefill+proxy path (x)";
  }
  // One column per channel set, as wide as its header.
  auto set_width = [&](size_t i) { return static_cast<int>(std::max<size_t>(20, args.feature_sets[i].size() + 16)); };
  for (size_t i = 0; i < args.feature_sets.size(); ++i) {
    std::cout << std::setw(set_width(i)) << ("features[" + args.feature_sets[i] + "] (x)");
  }
  std::cout << "\n";
  for (int64_t T : args.lengths) {
    at::Tensor ids = at::randint(10, spec.vocab_size, {T}, at::TensorOptions().dtype(at::kLong));
    double best_prefill = 1e30;
    std::vector<double> best(args.methods.size(), 1e30);
    double best_features = 1e30, best_mapper = 1e30, best_path = 1e30;
    std::vector<double> best_set(set_opts.size(), 1e30);
    for (int r = 0; r < args.repeats; ++r) {
      // Interleaved per repeat, so drift on a noisy machine hits every method alike.
      {
        KvCache cache = model->new_cache();
        PrefillOptions opts;
        opts.chunk_size = args.chunk;
        auto t0 = Clock::now();
        model->prefill(ids, cache, opts);
        best_prefill = std::min(best_prefill, std::chrono::duration<double>(Clock::now() - t0).count());
      }
      for (size_t m = 0; m < args.methods.size(); ++m) {
        PROXYKV_ASSIGN_OR_RETURN(auto scorer, scoring::make_scorer(args.methods[m], sopts));
        KvCache cache = model->new_cache();
        PrefillOptions opts;
        opts.chunk_size = args.chunk;
        auto t0 = Clock::now();
        opts.observer = scorer->begin(*model, T);
        model->prefill(ids, cache, opts);
        PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, scorer->finish(*model, cache, ids));
        best[m] = std::min(best[m], std::chrono::duration<double>(Clock::now() - t0).count());
      }
      if (pair) {
        // Target prefill, then the proxy path on the same cores, one after the other.
        KvCache cache = model->new_cache();
        PrefillOptions opts;
        opts.chunk_size = args.chunk;
        auto t0 = Clock::now();
        model->prefill(ids, cache, opts);
        auto t1 = Clock::now();
        PROXYKV_ASSIGN_OR_RETURN(proxy::ProxyFeatures f, proxy::extract_features(*proxy_model, ids, fopts));
        auto t2 = Clock::now();
        PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, mapper::map_features(*pair, f.features));
        auto t3 = Clock::now();
        best_features = std::min(best_features, std::chrono::duration<double>(t2 - t1).count());
        best_mapper = std::min(best_mapper, std::chrono::duration<double>(t3 - t2).count());
        best_path = std::min(best_path, std::chrono::duration<double>(t3 - t0).count());
      }
      for (size_t i = 0; i < set_opts.size(); ++i) {
        auto t0 = Clock::now();
        PROXYKV_ASSIGN_OR_RETURN(proxy::ProxyFeatures f, proxy::extract_features(*proxy_model, ids, set_opts[i]));
        best_set[i] = std::min(best_set[i], std::chrono::duration<double>(Clock::now() - t0).count());
      }
    }
    std::cout << std::left << std::setw(8) << T << std::setw(14) << std::fixed << std::setprecision(4)
              << best_prefill;
    nlohmann::json row = {{"tokens", T}, {"prefill_s", best_prefill}};
    for (size_t m = 0; m < args.methods.size(); ++m) {
      std::ostringstream cell;
      cell << std::fixed << std::setprecision(4) << best[m] << " (" << std::setprecision(2) << best[m] / best_prefill
           << "x)";
      std::cout << std::setw(24) << cell.str();
      row[args.methods[m] + "_s"] = best[m];
      row[args.methods[m] + "_ratio"] = best[m] / best_prefill;
    }
    if (pair) {
      auto cell = [&](double v, int width) {
        std::ostringstream c;
        c << std::fixed << std::setprecision(4) << v << " (" << std::setprecision(3) << v / best_prefill << "x)";
        std::cout << std::setw(width) << c.str();
      };
      cell(best_features, 20);
      cell(best_mapper, 18);
      cell(best_path, 24);
      row["proxy_features_s"] = best_features;
      row["mapper_s"] = best_mapper;
      row["prefill_proxy_path_s"] = best_path;
      row["proxy_path_fraction_of_prefill"] = (best_features + best_mapper) / best_prefill;
      row["mapper_fraction_of_prefill"] = best_mapper / best_prefill;
    }
    for (size_t i = 0; i < set_opts.size(); ++i) {
      std::ostringstream c;
      c << std::fixed << std::setprecision(4) << best_set[i] << " (" << std::setprecision(3)
        << best_set[i] / best_prefill << "x)";
      std::cout << std::setw(set_width(i)) << c.str();
      row["features_s"][args.feature_sets[i]] = best_set[i];
    }
    std::cout << "\n";
    std::cerr << "JSON " << row.dump() << "\n";
  }
  return Status::ok();
}

}  // namespace

void register_bench_scoring(CLI::App& app) {
  auto args = std::make_shared<BenchScoringArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench-scoring", "time to a scored cache (prefill + scorer) per method, as a ratio to plain prefill");
  cmd->add_option("--model", args->model, "HF model directory");
  cmd->add_option("--config", args->config, "config.json of a random model (when no --model)");
  cmd->add_option("--lengths", args->lengths, "context lengths")->delimiter(',');
  cmd->add_option("--methods", args->methods, "scorers")->delimiter(',');
  cmd->add_option("--kvzip-chunk", args->kvzip_chunk);
  cmd->add_option("--chunk", args->chunk, "prefill chunk");
  cmd->add_option("--repeats", args->repeats, "runs per point (best is reported)");
  cmd->add_option("--proxy", args->proxy, "proxy model directory: also time the proxy path (with --mapper)");
  cmd->add_option("--mapper", args->mapper, "mapper checkpoint for the proxy and this target");
  cmd->add_option("--feature-sets", args->feature_sets,
                  "proxy channel sets to time on their own, ';'-separated (kvzip,window_attn;key_norm,value_norm)")
      ->delimiter(';');
  args->runtime.add_to(cmd);
  on_run(cmd, [args] { return run_bench(*args); });
}

}  // namespace proxykv::cli
