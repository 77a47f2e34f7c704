#include "proxykv/training/mapper_data.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "proxykv/tensor/safetensors.h"
#include "proxykv/tensor/torch_tensor.h"

namespace proxykv::training {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "proxykv-mapper-data/1";

json model_shape(const DecoderLM& m) {
  return {{"arch", architecture_class_name(m.spec().arch)},
          {"layers", m.spec().num_layers},
          {"kv_heads", m.spec().num_kv_heads},
          {"hidden", m.spec().hidden_size},
          {"params", m.spec().num_parameters()}};
}

}  // namespace

std::string mapper_shard_name(size_t i) {
  std::ostringstream s;
  s << "shard-" << std::setw(5) << std::setfill('0') << i << ".safetensors";
  return s.str();
}

Status make_mapper_data(const DecoderLM& proxy, const DecoderLM& target, const Tokenizer& tokenizer,
                        const std::vector<tasks::TaskContext>& contexts, const MapperDataOptions& options,
                        const std::string& out_dir, const std::function<void(int64_t, int64_t)>& progress) {
  PROXYKV_RETURN_IF_ERROR(proxy::validate_feature_options(options.features));
  if (proxy.spec().vocab_size != target.spec().vocab_size) {
    return invalid_argument("proxy and target vocabularies differ (" + std::to_string(proxy.spec().vocab_size) +
                            " vs " + std::to_string(target.spec().vocab_size) + "): not one family");
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return invalid_argument(out_dir + ": cannot create: " + ec.message());
  PROXYKV_ASSIGN_OR_RETURN(auto kvzip, scoring::make_scorer("kvzip", options.features.scorer));

  const int64_t total =
      options.limit > 0 ? std::min<int64_t>(options.limit, static_cast<int64_t>(contexts.size())) : contexts.size();
  json shards = json::array();
  std::vector<TensorToWrite> tensors;
  json samples = json::array();
  auto flush = [&]() -> Status {
    if (samples.empty()) return Status::ok();
    const std::string name = mapper_shard_name(shards.size());
    PROXYKV_RETURN_IF_ERROR(
        write_safetensors((fs::path(out_dir) / name).string(), tensors, {{"samples", samples.dump()}}));
    shards.push_back({{"file", name}, {"contexts", samples.size()}});
    tensors.clear();
    samples = json::array();
    return Status::ok();
  };
  for (int64_t i = 0; i < total; ++i) {
    const auto& ctx = contexts[i];
    std::vector<int32_t> ids32 = tokenizer.encode("<bos> <ctx> " + ctx.context + " </ctx>");
    at::Tensor ids = at::tensor(std::vector<int64_t>(ids32.begin(), ids32.end()), at::kLong);
    PROXYKV_ASSIGN_OR_RETURN(proxy::ProxyFeatures f, proxy::extract_features(proxy, ids, options.features));
    KvCache cache = target.new_cache();
    PrefillOptions popts;
    popts.chunk_size = options.features.scorer.prefill_chunk;
    target.prefill(ids, cache, popts);
    PROXYKV_ASSIGN_OR_RETURN(at::Tensor scores, kvzip->finish(target, cache, ids));
    const int64_t k = static_cast<int64_t>(samples.size());
    PROXYKV_ASSIGN_OR_RETURN(TensorToWrite ft, from_torch("features." + std::to_string(k), f.features));
    PROXYKV_ASSIGN_OR_RETURN(TensorToWrite lt,
                             from_torch("labels." + std::to_string(k), proxy::scores_to_rows(scores)));
    tensors.push_back(std::move(ft));
    tensors.push_back(std::move(lt));
    samples.push_back({{"id", ctx.id}, {"task", ctx.task}, {"tokens", ids.size(0)}});
    if (static_cast<int64_t>(samples.size()) >= options.contexts_per_shard) PROXYKV_RETURN_IF_ERROR(flush());
    if (progress) progress(i + 1, total);
  }
  PROXYKV_RETURN_IF_ERROR(flush());
  const auto& so = options.features.scorer;
  json manifest = {{"format", kFormat},
                   {"channels", options.features.channels},
                   {"proxy", model_shape(proxy)},
                   {"target", model_shape(target)},
                   {"n_sink", so.n_sink},
                   {"kvzip_chunk", so.kvzip_chunk},
                   {"window", so.window},
                   {"contexts", total},
                   {"shards", shards}};
  std::ofstream out(fs::path(out_dir) / "manifest.json");
  out << manifest.dump(2) << "\n";
  if (!out) return invalid_argument(out_dir + ": cannot write manifest.json");
  return Status::ok();
}

Result<MapperDataset> read_mapper_data(const std::string& dir) {
  const fs::path manifest_path = fs::path(dir) / "manifest.json";
  std::ifstream in(manifest_path);
  if (!in) return not_found(manifest_path.string() + ": no manifest (not a mapper data directory?)");
  MapperDataset ds;
  ds.manifest = json::parse(in, nullptr, /*allow_exceptions=*/false);
  const json& m = ds.manifest;
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != kFormat || !m.contains("shards") ||
      !m["shards"].is_array()) {
    return invalid_argument(manifest_path.string() + ": not a " + kFormat + " manifest");
  }
  try {
    const int64_t C = static_cast<int64_t>(m.at("channels").size());
    const int64_t P = m.at("proxy").at("layers").get<int64_t>() * m.at("proxy").at("kv_heads").get<int64_t>();
    const int64_t Q = m.at("target").at("layers").get<int64_t>() * m.at("target").at("kv_heads").get<int64_t>();
    for (const auto& shard : m["shards"]) {
      const std::string file = shard.at("file").get<std::string>();
      if (file.find('/') != std::string::npos || file.find("..") != std::string::npos) {
        return invalid_argument(manifest_path.string() + ": shard name '" + file + "' leaves the directory");
      }
      PROXYKV_ASSIGN_OR_RETURN(auto st, SafetensorsFile::open((fs::path(dir) / file).string()));
      auto meta = st->metadata().find("samples");
      if (meta == st->metadata().end()) return invalid_argument(st->path() + ": no 'samples' metadata");
      json samples = json::parse(meta->second, nullptr, false);
      if (!samples.is_array()) return invalid_argument(st->path() + ": 'samples' metadata is not a list");
      for (size_t k = 0; k < samples.size(); ++k) {
        PROXYKV_ASSIGN_OR_RETURN(TensorView fv, st->get("features." + std::to_string(k)));
        PROXYKV_ASSIGN_OR_RETURN(TensorView lv, st->get("labels." + std::to_string(k)));
        PROXYKV_ASSIGN_OR_RETURN(at::Tensor f, to_torch(fv));
        PROXYKV_ASSIGN_OR_RETURN(at::Tensor l, to_torch(lv));
        if (f.dim() != 3 || f.size(0) != C || f.size(1) != P || l.dim() != 2 || l.size(0) != Q ||
            l.size(1) != f.size(2) || f.scalar_type() != at::kFloat || l.scalar_type() != at::kFloat) {
          return invalid_argument(st->path() + ": sample " + std::to_string(k) +
                                  " does not have the manifest's shapes [C, P, T] / [Q, T]");
        }
        ds.samples.push_back({samples[k].value("id", ""), samples[k].value("task", ""), f, l});
      }
    }
  } catch (const json::exception& e) {
    return invalid_argument(manifest_path.string() + ": " + e.what());
  }
  return ds;
}

}  // namespace proxykv::training
