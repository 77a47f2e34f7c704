// proxykv train-mapper: trains a HybridAxialMapper on make-mapper-data output (config: models/configs/mapper.json).
//
// Config keys: "train_data", "val_data" (directories from make-mapper-data; made from different seeds),
// "out_dir", "threads", "mapper" (MapperConfig without the pair shape, which comes from the data manifest),
// "train" (MapperTrainConfig: window, stride, batch_size, epochs, lr, loss {...}), and optionally "channels": the
// data's feature channels the mapper reads, a subset in any order (default: all of them, as stored; the channel
// ablation trains on subsets of one dataset).
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "proxykv/eval/proxy_methods.h"
#include "proxykv/mapper/mapper_checkpoint.h"
#include "proxykv/mapper/mapper_trainer.h"
#include "proxykv/scoring/feature_channels.h"
#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"
#include "proxykv/training/mapper_data.h"
#include "proxykv/model/threads.h"

namespace proxykv::cli {
namespace {

using nlohmann::json;

Result<std::vector<mapper::MapperSample>> load_samples(const std::string& dir, json* manifest) {
  PROXYKV_ASSIGN_OR_RETURN(training::MapperDataset ds, training::read_mapper_data(dir));
  *manifest = ds.manifest;
  std::vector<mapper::MapperSample> out;
  for (auto& s : ds.samples) out.push_back({s.features, s.labels, s.id});
  return out;
}

// "train_data" / "val_data": one make-mapper-data directory or a list of them (e.g. contexts of several lengths);
// the directories must come from the same channels, model pair and sinks. `manifest` is the first one's.
Result<std::vector<mapper::MapperSample>> load_sample_dirs(const std::vector<std::string>& dirs, json* manifest) {
  std::vector<mapper::MapperSample> out;
  for (size_t i = 0; i < dirs.size(); ++i) {
    json m;
    PROXYKV_ASSIGN_OR_RETURN(auto samples, load_samples(dirs[i], &m));
    if (i == 0) {
      *manifest = m;
    } else {
      for (const char* key : {"channels", "proxy", "target", "n_sink"}) {
        if (m.value(key, json()) != manifest->value(key, json())) {
          return invalid_argument(dirs[i] + ": its '" + key + "' differs from " + dirs[0] + "'s (" +
                                  m.value(key, json()).dump() + " vs " + manifest->value(key, json()).dump() + ")");
        }
      }
    }
    for (auto& s : samples) out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> dir_list(const json& field) {
  if (field.is_string()) return {field.get<std::string>()};
  return field.get<std::vector<std::string>>();  // json::exception (caught by the caller) for anything else
}

mapper::MapperPairShape shape_of(const json& manifest) {
  mapper::MapperPairShape shape;
  shape.channels = static_cast<int64_t>(manifest.at("channels").size());
  shape.proxy_layers = manifest.at("proxy").at("layers").get<int64_t>();
  shape.proxy_kv_heads = manifest.at("proxy").at("kv_heads").get<int64_t>();
  shape.target_layers = manifest.at("target").at("layers").get<int64_t>();
  shape.target_kv_heads = manifest.at("target").at("kv_heads").get<int64_t>();
  return shape;
}

// "channels" of the config: names of the data's channels, each once -> their indices in the data, in that order.
Result<std::vector<int64_t>> pick_channels(const json& field, const std::vector<std::string>& available,
                                           const std::string& origin) {
  std::string known;
  for (const auto& c : available) known += (known.empty() ? "" : ", ") + c;
  if (!field.is_array() || field.empty()) {
    return invalid_argument(origin + ": needs a non-empty list of the data's channels (" + known + ")");
  }
  std::vector<int64_t> out;
  for (const auto& name : field) {
    if (!name.is_string()) return invalid_argument(origin + ": channel names must be strings");
    const auto it = std::find(available.begin(), available.end(), name.get<std::string>());
    if (it == available.end()) {
      return invalid_argument(origin + ": '" + name.get<std::string>() + "' is not a channel of the data (" + known +
                              ")");
    }
    const int64_t i = it - available.begin();
    if (std::find(out.begin(), out.end(), i) != out.end()) {
      return invalid_argument(origin + ": '" + name.get<std::string>() + "' is named twice");
    }
    out.push_back(i);
  }
  return out;
}

std::string fmt_duration(double s) {
  std::ostringstream out;
  out << static_cast<int64_t>(s) / 60 << "m" << std::setw(2) << std::setfill('0') << static_cast<int64_t>(s) % 60
      << "s";
  return out.str();
}

Status run(const std::string& config_path) {
  std::ifstream in(config_path);
  if (!in) return not_found(config_path + ": cannot open mapper training config");
  json cfg = json::parse(in, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return invalid_argument(config_path + ": not a JSON object");
  // A key outside these would be silently ignored (a "loss" at the top level instead of under "train" once trained
  // every ablation mapper with the default loss), so it is refused.
  static const std::vector<std::string> kKeys = {"_comment", "train_data", "val_data", "out_dir", "threads", "mapper",
                                                 "train",    "channels"};
  for (const auto& [key, value] : cfg.items()) {
    if (std::find(kKeys.begin(), kKeys.end(), key) != kKeys.end()) continue;
    std::string allowed;
    for (const auto& k : kKeys) allowed += (allowed.empty() ? "" : ", ") + k;
    return invalid_argument(config_path + ": unknown key '" + key + "' (allowed: " + allowed +
                            "; the loss goes under \"train\": {\"loss\": {...}})");
  }
  std::vector<std::string> train_dirs, val_dirs;
  std::string out_dir;
  int threads = 1;
  try {
    train_dirs = dir_list(cfg.at("train_data"));
    val_dirs = dir_list(cfg.at("val_data"));
    if (train_dirs.empty() || val_dirs.empty()) {
      return invalid_argument(config_path + ": train_data and val_data each need a directory");
    }
    out_dir = cfg.at("out_dir").get<std::string>();
    threads = cfg.value("threads", 1);
  } catch (const json::exception& e) {
    return invalid_argument(config_path + ": " + e.what());
  }
  set_compute_threads(threads);
  json train_manifest, val_manifest;
  PROXYKV_ASSIGN_OR_RETURN(auto train, load_sample_dirs(train_dirs, &train_manifest));
  PROXYKV_ASSIGN_OR_RETURN(auto val, load_sample_dirs(val_dirs, &val_manifest));
  if (train_manifest.at("channels") != val_manifest.at("channels") ||
      train_manifest.at("proxy") != val_manifest.at("proxy") ||
      train_manifest.at("target") != val_manifest.at("target")) {
    return invalid_argument("train and val data come from different channels or model pairs");
  }
  json mcfg = cfg.value("mapper", json::object());
  std::vector<std::string> channels = train_manifest.at("channels").get<std::vector<std::string>>();
  if (cfg.contains("channels")) {
    PROXYKV_ASSIGN_OR_RETURN(std::vector<int64_t> picked,
                             pick_channels(cfg.at("channels"), channels, config_path + ": channels"));
    const at::Tensor index = at::tensor(picked, at::kLong);
    for (auto* set : {&train, &val}) {
      for (auto& s : *set) s.features = s.features.index_select(0, index);
    }
    std::vector<std::string> kept;
    for (int64_t i : picked) kept.push_back(channels[i]);
    channels = kept;
    train_manifest["channels"] = channels;
  }
  // The input transform follows the channels' encoding unless the config names one, which must then fit them:
  // "log" on the log-mass channels made every value one constant (the blind mappers of 2026-12-03).
  if (mcfg.is_object() && !mcfg.contains("input_transform")) {
    bool any_log_mass = false;
    for (const auto& c : channels) {
      PROXYKV_ASSIGN_OR_RETURN(scoring::FeatureEncoding e, scoring::feature_channel_encoding(c));
      any_log_mass = any_log_mass || e == scoring::FeatureEncoding::kLogMass;
    }
    mcfg["input_transform"] = any_log_mass ? "none" : "log";
  }
  const mapper::MapperPairShape shape = shape_of(train_manifest);
  mcfg["channels"] = shape.channels;
  mcfg["proxy_layers"] = shape.proxy_layers;
  mcfg["proxy_kv_heads"] = shape.proxy_kv_heads;
  mcfg["target_layers"] = shape.target_layers;
  mcfg["target_kv_heads"] = shape.target_kv_heads;
  PROXYKV_ASSIGN_OR_RETURN(mapper::MapperConfig mapper_config, mapper::MapperConfig::from_json(mcfg, config_path));
  if (Status readable = scoring::check_input_transform(mapper_config.input_transform, channels); !readable.is_ok()) {
    return Status(readable.code(), config_path + ": " + readable.message());
  }
  PROXYKV_ASSIGN_OR_RETURN(mapper::MapperTrainConfig train_config,
                           mapper::MapperTrainConfig::from_json(cfg.value("train", json::object()), config_path));
  torch::manual_seed(train_config.seed);
  mapper::HybridAxialMapper model(mapper_config);
  std::cout << "train-mapper: " << shape.to_string() << ", " << mapper::count_parameters(*model) << " parameters, "
            << train.size() << " train / " << val.size() << " val contexts, input_transform "
            << mapper_config.input_transform << std::endl;

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return invalid_argument(out_dir + ": cannot create: " + ec.message());
  PROXYKV_RETURN_IF_ERROR(eval::save_mapper_channels(out_dir, channels));  // first: every checkpoint below needs it

  mapper::MapperTrainHooks hooks;
  hooks.on_step = [](const mapper::MapperStepInfo& s) {
    if (s.step % 20 != 0 && s.step != s.total_steps) return;
    const double eta = s.elapsed_seconds / std::max<int64_t>(s.step, 1) * (s.total_steps - s.step);
    std::cout << "step " << s.step << "/" << s.total_steps << " epoch " << s.epoch << " loss " << std::fixed
              << std::setprecision(4) << s.loss << " lr " << std::scientific << std::setprecision(2) << s.lr
              << std::fixed << " elapsed " << fmt_duration(s.elapsed_seconds) << " ETA " << fmt_duration(eta)
              << std::endl;
  };
  double best = -1;
  Status save_status;
  hooks.on_epoch = [&](const mapper::MapperEpochMetrics& m) {
    std::cout << "epoch " << m.epoch << " train_loss " << std::setprecision(4) << m.train_loss << " val";
    for (const auto& [rho, r] : m.val.recall) std::cout << " recall@" << std::setprecision(1) << rho << " "
                                                        << std::setprecision(3) << r;
    std::cout << " mean_recall " << m.val.mean_recall << " spearman " << m.val.spearman << std::endl;
    if (m.val.mean_recall > best) {
      best = m.val.mean_recall;
      const json training{{"selection_level", train_config.selection_level()},
                          {"train", train_config.to_json()},
                          {"best_epoch", m.epoch},
                          {"best_val_mean_recall", m.val.mean_recall}};
      Status s = mapper::save_mapper(out_dir, model, mapper_config, training);
      if (!s.is_ok()) save_status = s;
    }
  };
  PROXYKV_ASSIGN_OR_RETURN(auto history, mapper::train_mapper_epochs(model, train, val, train_config, hooks));
  PROXYKV_RETURN_IF_ERROR(save_status);
  json log = json::array();
  for (const auto& m : history) {
    json recall = json::object();
    for (const auto& [rho, r] : m.val.recall) recall[std::to_string(rho).substr(0, 3)] = r;
    log.push_back({{"epoch", m.epoch}, {"train_loss", m.train_loss}, {"val_recall", recall},
                   {"val_mean_recall", m.val.mean_recall}, {"val_spearman", m.val.spearman}, {"seconds", m.seconds}});
  }
  std::ofstream(std::filesystem::path(out_dir) / "train_history.json") << log.dump(2) << "\n";
  std::cout << "train-mapper: best val mean recall " << best << ", checkpoint in " << out_dir << std::endl;
  return Status::ok();
}

}  // namespace

Status run_calibrate_iam(const std::string& data_dir, const std::string& out) {
  PROXYKV_ASSIGN_OR_RETURN(training::MapperDataset ds, training::read_mapper_data(data_dir));
  const auto channels = ds.manifest.at("channels").get<std::vector<std::string>>();
  const auto it = std::find(channels.begin(), channels.end(), "kvzip");
  if (it == channels.end()) return invalid_argument(data_dir + ": the data has no 'kvzip' proxy channel");
  const int64_t c = it - channels.begin();
  std::vector<at::Tensor> proxy_rows, target_rows;
  for (const auto& s : ds.samples) {
    proxy_rows.push_back(at::exp(s.features[c]) - 1e-6);  // the channel is log(score + 1e-6)
    target_rows.push_back(s.labels);
  }
  PROXYKV_ASSIGN_OR_RETURN(std::vector<int64_t> map,
                           eval::calibrate_iam(proxy_rows, target_rows, ds.manifest.at("n_sink").get<int64_t>()));
  PROXYKV_RETURN_IF_ERROR(eval::save_iam_map(out, map, proxy_rows[0].size(0)));
  std::cout << "calibrate-iam: target row -> proxy row:";
  for (int64_t p : map) std::cout << " " << p;
  std::cout << "\n";
  return Status::ok();
}

// predict-mapper: a mapper's score maps for the contexts of a make-mapper-data directory, written as a directory
// of the same format with the predictions in place of the labels (labels.i = [L_t*H_t, T], sinks +inf as the
// labels have them), so bench/kvzip_fact_keep.py and the other label readers read what a mapper keeps.
Status run_predict_mapper(const std::string& mapper_dir, const std::string& data, const std::string& out) {
  json manifest;
  PROXYKV_ASSIGN_OR_RETURN(std::vector<mapper::MapperSample> samples, load_samples(data, &manifest));
  PROXYKV_ASSIGN_OR_RETURN(mapper::LoadedMapper loaded, mapper::load_mapper(mapper_dir, shape_of(manifest)));
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) return invalid_argument(out + ": cannot create: " + ec.message());
  const int64_t n_sink = manifest.at("n_sink").get<int64_t>();
  at::NoGradGuard no_grad;
  json shards = json::array();
  for (size_t begin = 0, shard = 0; begin < samples.size(); ++shard) {
    const size_t end = std::min(samples.size(), begin + 64);
    std::vector<TensorToWrite> tensors;
    json meta = json::array();
    for (size_t i = begin; i < end; ++i) {
      const mapper::MapperSample& s = samples[i];
      PROXYKV_RETURN_IF_ERROR(loaded.mapper->check_input(s.features.unsqueeze(0)));
      at::Tensor pred = loaded.mapper->forward(s.features.to(at::kFloat).unsqueeze(0))[0].contiguous();  // [Q, T]
      if (n_sink > 0) pred.narrow(1, 0, std::min(n_sink, pred.size(1))).fill_(std::numeric_limits<float>::infinity());
      PROXYKV_ASSIGN_OR_RETURN(TensorToWrite ft, from_torch("features." + std::to_string(i - begin), s.features));
      PROXYKV_ASSIGN_OR_RETURN(TensorToWrite pt, from_torch("labels." + std::to_string(i - begin), pred));
      tensors.push_back(std::move(ft));
      tensors.push_back(std::move(pt));
      meta.push_back({{"id", s.id}, {"tokens", pred.size(1)}});
    }
    const std::string name = training::mapper_shard_name(shard);
    PROXYKV_RETURN_IF_ERROR(
        write_safetensors((std::filesystem::path(out) / name).string(), tensors, {{"samples", meta.dump()}}));
    shards.push_back({{"file", name}, {"contexts", end - begin}});
    begin = end;
  }
  manifest["shards"] = shards;
  manifest["predicted_by"] = mapper_dir;
  std::ofstream manifest_out(std::filesystem::path(out) / "manifest.json");
  manifest_out << manifest.dump(2) << "\n";
  if (!manifest_out) return invalid_argument(out + ": cannot write manifest.json");
  std::cout << "predict-mapper: " << samples.size() << " contexts -> " << out << "\n";
  return Status::ok();
}

void register_train_mapper(CLI::App& app) {
  {
    auto mapper_dir = std::make_shared<std::string>();
    auto data = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    CLI::App* pred = app.add_subcommand(
        "predict-mapper", "a mapper's score maps for make-mapper-data contexts, in that format (labels = predictions)");
    pred->add_option("--mapper", *mapper_dir, "mapper checkpoint directory")->required();
    pred->add_option("--data", *data, "make-mapper-data directory")->required();
    pred->add_option("--out", *out, "output directory")->required();
    on_run(pred, [mapper_dir, data, out] { return run_predict_mapper(*mapper_dir, *data, *out); });
  }
  {
    auto data = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    CLI::App* cal = app.add_subcommand("calibrate-iam", "the kvzip_iam baseline's head map from mapper data");
    cal->add_option("--data", *data, "make-mapper-data directory (calibration contexts)")->required();
    cal->add_option("--out", *out, "IAM map JSON")->required();
    on_run(cal, [data, out] { return run_calibrate_iam(*data, *out); });
  }
  auto config = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("train-mapper", "train a HybridAxialMapper on make-mapper-data output");
  cmd->add_option("--config", *config, "mapper training config JSON")->required();
  on_run(cmd, [config] { return run(*config); });
}

}  // namespace proxykv::cli
