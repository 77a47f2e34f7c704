// RequestScheduler: the worker thread(s) that run model work (prefill, scoring, decoding) for the HTTP layer.
//
// HTTP threads never run the model themselves: they submit a job and wait for its result, or, when streaming,
// drain a TokenChannel the job fills, so a slow client never holds the engine's model lock. The queue is
// bounded; a full queue is refused at once (the API answers 429 with Retry-After) rather than growing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace proxykv::target {

class RequestScheduler {
 public:
  RequestScheduler(int workers, int64_t max_queued);
  ~RequestScheduler();  // shutdown()
  RequestScheduler(const RequestScheduler&) = delete;
  RequestScheduler& operator=(const RequestScheduler&) = delete;

  // Queues `job`; false (job not taken) when the queue is full or the scheduler is shutting down. A job must
  // not throw (exceptions are caught and dropped, to keep the worker alive).
  bool submit(std::function<void()> job);
  // Runs every job already queued, then joins the workers. Idempotent.
  void shutdown();

  int64_t queued() const;
  int64_t running() const;

 private:
  void work();

  const int64_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  int64_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// One streamed generation, from the worker (producer) to an HTTP thread (consumer). Unbounded, but a
// generation is bounded by max_tokens.
class TokenChannel {
 public:
  struct Event {
    enum class Kind { kToken, kEnd } kind = Kind::kToken;
    std::string text;  // kToken: the token's text
  };
  void push_token(std::string text);
  void close();  // the producer is done (the result is then set by the producer before close)
  // Blocks until an event is available; kEnd once closed and drained.
  Event pop();
  // The consumer went away: the producer should stop.
  void cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool closed_ = false;
  bool cancelled_ = false;
};

}  // namespace proxykv::target
