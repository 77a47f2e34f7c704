#include "proxykv/target/request_scheduler.h"

#include <utility>

namespace proxykv::target {

RequestScheduler::RequestScheduler(int workers, int64_t max_queued) : max_queued_(max_queued) {
  if (workers < 1) workers = 1;
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
}

RequestScheduler::~RequestScheduler() {
  shutdown();
}

bool RequestScheduler::submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || static_cast<int64_t>(jobs_.size()) >= max_queued_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void RequestScheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  workers_.clear();
}

int64_t RequestScheduler::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(jobs_.size());
}

int64_t RequestScheduler::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void RequestScheduler::work() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
    }
    try {
      job();
    } catch (...) {
      // A job reports its own errors; this only keeps the worker alive.
    }
    std::lock_guard<std::mutex> lock(mutex_);
    --running_;
  }
}

void TokenChannel::push_token(std::string text) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(Event{Event::Kind::kToken, std::move(text)});
  }
  cv_.notify_one();
}

void TokenChannel::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  cv_.notify_all();
}

TokenChannel::Event TokenChannel::pop() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [this] { return closed_ || !events_.empty(); });
  if (events_.empty()) return Event{Event::Kind::kEnd, {}};
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void TokenChannel::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
}

bool TokenChannel::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

}  // namespace proxykv::target
