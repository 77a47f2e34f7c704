#include "model_options.h"

#include <ATen/Parallel.h>

namespace proxykv::cli {

void RuntimeOptions::apply() const {
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace proxykv::cli
