// Test helpers shared by the target's unit tests, torch-free so the HTTP tests compile without LibTorch. The
// definitions live in target_engine_test.cpp.
#pragma once

#include <future>
#include <memory>
#include <string>

#include "proxykv/target/target_engine.h"

namespace proxykv::target::testing {

// A fresh temp directory holding a tiny random Qwen3-style model of the family vocabulary (2 layers, 2 KV heads)
// and the family tokenizer.json.
std::string make_test_model_dir();
// TargetEngine::load of make_test_model_dir() (once per process) with `options` (model_dir is filled in).
std::unique_ptr<TargetEngine> make_test_engine(EngineOptions options = {});

// A mask provider whose request() fulfils `requested` and whose mask wait() blocks until `release` is ready,
// then fails with reason "mask_deadline": a request held inside the engine, for overload and drain tests.
std::shared_ptr<MaskProvider> make_gated_provider(std::shared_ptr<std::promise<void>> requested,
                                                  std::shared_future<void> release);

}  // namespace proxykv::target::testing
