// RemoteMaskProvider: the target's side of the proxy path (DESIGN.md §2 steps 2-6, docs/protocol.md).
//
//   zmq::context_t ctx(1);
//   RemoteMaskOptions o;
//   o.proxy_endpoints = {"tcp://proxy:5555"};
//   auto provider = RemoteMaskProvider::start(ctx, o).value();
//   engine.set_mask_provider(std::move(provider));
//
// request() registers the request under a fresh id and hands the ScoreRequest to a sender thread, so the
// engine's prefill starts at once; the sender (one DEALER over the proxy pool, round-robin) waits only for the
// proxy's Accepted. The mask comes back on the provider's own ROUTER (`mask_endpoint`, the ScoreRequest's
// reply_to): a PruneMask fulfils the pending request, an ErrorReply carrying its request id fails it. Every
// message arriving there is acknowledged with Accepted, late ones too (they are counted and dropped).
//
// Failure reasons (MaskOutcome::fallback_reason): "proxy_unavailable" (the proxy could not be reached, or was
// draining or full), "proxy_error" (the proxy refused the request, or failed after accepting it),
// "mapper_error" / "no_mapper" (the mapper failed, or serves no mapper for the model pair), "mask_deadline"
// (nothing arrived in time), "invalid_mask" (a PruneMask that does not describe this request's cache).
//
// Thread-safety: request() and PendingMask::wait() may be called from any thread. The sockets belong to the
// provider's two threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "proxykv/core/status.h"
#include "proxykv/target/mask_provider.h"
#include "proxykv/target/remote_mask_options.h"
#include "proxykv/transport/message.h"

namespace proxykv::target {

struct RemoteMaskStats {
  uint64_t requested = 0;
  uint64_t accepted = 0;  // proxies that acknowledged a ScoreRequest
  uint64_t masks = 0;     // PruneMask matched to a waiting request
  uint64_t errors = 0;    // ErrorReply matched to a waiting request, or a refused submit
  uint64_t late = 0;      // replies for requests nobody waits for (deadline passed, unknown id)
};

class RemoteMaskProvider : public MaskProvider {
 public:
  // Binds the mask receiver and starts the two threads. `context` must outlive the provider. (Fallbacks are
  // counted where the engine's outcome is known: the API server's proxykv_fallback_total{reason}.)
  static Result<std::shared_ptr<RemoteMaskProvider>> start(zmq::context_t& context, RemoteMaskOptions options);
  ~RemoteMaskProvider() override;
  RemoteMaskProvider(const RemoteMaskProvider&) = delete;
  RemoteMaskProvider& operator=(const RemoteMaskProvider&) = delete;

  std::unique_ptr<PendingMask> request(const MaskRequest& request) override;

  // The reply_to the proxy and mapper are given: tcp://advertise_host:port.
  const std::string& reply_to() const;
  RemoteMaskStats stats() const;

  struct Impl;

 private:
  explicit RemoteMaskProvider(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared with the PendingMasks handed out
};

// A PruneMask message as the engine's keep set, checked against the request's shape: layers, KV heads, tokens,
// every index in [0, tokens), ascending and unique (invalid_argument naming the first problem otherwise). Both
// encodings of docs/protocol.md are read: kept indices, and the packed bitmask (a U8 [L*H, ceil(T/8)] frame,
// row = layer*H + head, bit t%8 of byte t/8, LSB first, 1 = keep).
Result<scoring::KeepSet> keep_set_from_mask(const transport::Message& message, int64_t num_layers,
                                            int64_t num_kv_heads, int64_t num_tokens);

}  // namespace proxykv::target
