// Options shared by the subcommands that run a model (--device, --dtype, --threads), and what those that write
// one share.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "proxykv/model/decoder_lm.h"

namespace proxykv::cli {

struct RuntimeOptions {
  std::string device = "cpu";
  std::string dtype = "auto";
  int threads = 0;  // 0: LibTorch's default

  void add_to(CLI::App* cmd) {
    cmd->add_option("--device", device, "cpu | cuda | cuda:N")->envname("PROXYKV_DEVICE");
    cmd->add_option("--dtype", dtype, "auto | float32 | bfloat16 | float16")->envname("PROXYKV_DTYPE");
    cmd->add_option("--threads", threads, "intra-op threads (0: default)")->envname("PROXYKV_THREADS");
  }
  LoadOptions load_options() const { return LoadOptions{device, dtype}; }
  // Applies --threads to LibTorch (call before running a model).
  void apply() const;
};

// Copies `from_dir`/tokenizer.json into `to_dir` when there is one (a written model keeps its source's tokenizer).
Status copy_tokenizer(const std::string& from_dir, const std::string& to_dir);

}  // namespace proxykv::cli
