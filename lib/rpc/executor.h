#pragma once
// A bounded thread pool that runs handler bodies off gRPC's threads (STYLE.md §6: reactions
// never block). Owned by main; joined on destruction.

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pml::rpc {

class Executor {
 public:
  // `threads` workers (≥1) and at most `max_queue` waiting tasks.
  Executor(size_t threads, size_t max_queue);
  ~Executor();  // Drains queued tasks, then joins.
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. Returns false (and does not run it) when the queue is full or the executor
  // is shutting down; the caller answers RESOURCE_EXHAUSTED / UNAVAILABLE. Thread-safe.
  bool TrySubmit(std::function<void()> task);

  // Stops accepting work, runs what is queued, joins the workers. Idempotent.
  void Shutdown();

  size_t queued() const;

 private:
  void Work();

  const size_t max_queue_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace pml::rpc
