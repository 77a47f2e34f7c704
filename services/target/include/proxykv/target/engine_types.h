// What the target engine takes and returns, free of LibTorch, so that the HTTP layer and tests that only talk to
// the engine compile without torch headers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace proxykv::target {

// The compression asked for a context. Keep ratio: the FRACTION KEPT of the context's KV entries (KVzip's
// convention; kvpress's compression ratio is 1 - keep_ratio). level: "global" | "layer" | "head" | "token"
// (selection.h).
struct CompressionRequest {
  std::string method = "full";  // "full", a local scorer (snapkv, kvzip, ...), or "proxykv" (remote mask)
  double keep_ratio = 1.0;      // in (0, 1]
  std::string level = "global";
  // Per-head safeguard of the global and layer levels, in [0, 1]; 0: none (scoring::select_entries).
  double head_floor = 0.0;
};

// What compress_context did, and what it cost.
struct CompressionStats {
  int64_t context_tokens = 0;  // tokens of the prefilled prompt (`<bos> <ctx> ... </ctx>`): KV entries per head
  int64_t kv_bytes = 0;        // bytes of the stored entries after eviction
  int64_t kv_bytes_full = 0;   // ... before eviction
  int64_t kept_entries = 0;    // (layer, head, token) entries kept / scored
  int64_t total_entries = 0;
  // FNV-1a 64 (16 hex digits) of the kept (layer, head, token) entries; empty when nothing was evicted. Two
  // contexts with the same digest kept the same entries: how a client checks that the services' mask is the
  // one an in-process computation gives.
  std::string mask_digest;
  double keep_ratio = 1.0;       // requested
  std::string requested_method;  // what the client asked for
  std::string method;            // what was actually used ("snapkv" when "proxykv" fell back)
  std::string fallback_reason;   // empty when the requested method was used; else e.g. "proxy_unavailable"
  std::string level = "global";
  double head_floor = 0.0;
  // Seconds.
  double tokenize_s = 0;
  double prefill_s = 0;
  double mask_wait_s = 0;  // waiting for a remote mask after the prefill (proxykv only)
  double score_s = 0;      // local scoring after the prefill (scorer finish + selection)
  double compact_s = 0;    // real eviction
  double total_s = 0;      // time to compressed cache
};

struct GenerationOptions {
  int64_t max_tokens = 16;  // >= 1
};

// One generated token as it is streamed: `text` is what it adds to the decoded text so far (can be empty, e.g.
// a byte-level token that completes no UTF-8 character yet; the missing text comes with a later token). The
// concatenation of every `text` equals GenerationResult::text.
struct TokenEvent {
  int32_t id = 0;
  std::string text;
};
// Called for each token while the engine's model lock is held: must not block (push to a queue). Returning
// false stops generation (finish reason "abort"), e.g. when the client went away.
using TokenCallback = std::function<bool(const TokenEvent&)>;

enum class FinishReason { kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason reason);  // "stop" | "length" | "abort" (OpenAI's and vLLM's words)

struct GenerationResult {
  std::vector<int32_t> token_ids;  // the stop token that ended generation is not included
  std::string text;                // decoded without special tokens
  int64_t prompt_tokens = 0;       // question tokens (context completions) or prompt tokens (plain completions)
  int64_t completion_tokens = 0;
  FinishReason finish_reason = FinishReason::kLength;
  double time_to_first_token_s = 0;  // from the call (lock wait included) to the first token
  double total_s = 0;
};

struct EngineOptions {
  std::string model_dir;   // HF directory with config.json, weights and tokenizer.json
  std::string model_name;  // the id clients use; default: the directory's name
  std::string device = "cpu";
  std::string dtype = "auto";
  int torch_threads = 0;               // LibTorch's intra-op threads and OpenBLAS's; 0 = leave their defaults
  int64_t max_context_tokens = 32768;  // longest prompt (context or plain completion) accepted, in tokens
  int64_t max_new_tokens = 1024;       // largest max_tokens accepted
  int64_t prefill_chunk = 512;
  int64_t kvzip_chunk = 2048;
  std::string fallback_method = "snapkv";  // used when "proxykv" cannot get a mask; any local method
  // How long "proxykv" waits for the remote mask, from the start of the target's own prefill (the mask is
  // awaited only after that prefill); then the fallback method is used, reason "mask_deadline".
  int64_t mask_deadline_ms = 5000;
  uint64_t seed = 0;                       // the random scorer's
};

}  // namespace proxykv::target
