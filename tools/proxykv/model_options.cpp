#include "model_options.h"
#include "proxykv/model/threads.h"

#include <filesystem>

#include <ATen/Parallel.h>

namespace proxykv::cli {

void RuntimeOptions::apply() const {
  set_compute_threads(threads);
}

Status copy_tokenizer(const std::string& from_dir, const std::string& to_dir) {
  namespace fs = std::filesystem;
  const fs::path tokenizer = fs::path(from_dir) / "tokenizer.json";
  if (!fs::exists(tokenizer)) return Status::ok();
  std::error_code ec;
  fs::copy_file(tokenizer, fs::path(to_dir) / "tokenizer.json", fs::copy_options::overwrite_existing, ec);
  if (ec) return invalid_argument(to_dir + ": cannot copy tokenizer.json: " + ec.message());
  return Status::ok();
}

}  // namespace proxykv::cli
