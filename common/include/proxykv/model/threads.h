// The CPU threads a process computes with: LibTorch's intra-op pool and OpenBLAS's own.
#pragma once
#include <dlfcn.h>

#include <ATen/Parallel.h>

namespace proxykv {

// Sets LibTorch's intra-op threads to `n` (n > 0; otherwise nothing changes) and, when LibTorch's BLAS is OpenBLAS
// (Debian's libtorch, through libopenblas0-pthread), OpenBLAS's own pool too. at::set_num_threads does not reach that
// pool, whose default is every core. Two reasons to set it: on a busy 2-core machine the spinning BLAS threads double
// the wall time, and a GEMM split over another number of threads sums in another order. A train-lm config with
// "threads": 1 rebuilt a model whose weights differed in the 7th digit when OPENBLAS_NUM_THREADS was unset
// (bench/RESULTS.md, eighteenth session). Reached through dlsym, so nothing links OpenBLAS itself; with another BLAS
// the symbol is absent and only LibTorch's threads are set.
inline void set_compute_threads(int n) {
  if (n <= 0) return;
  at::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(n);
}

}  // namespace proxykv
