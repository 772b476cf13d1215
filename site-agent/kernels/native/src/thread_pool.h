// A tiny persistent thread pool: the caller's thread always takes part, so a
// pool of N threads keeps N-1 workers parked on a condition variable. Kernels
// are called synchronously from the JS thread, so one job runs at a time.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace patchfed {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(tid) once for every tid in [0, size()); tid 0 runs on the caller.
  void run(const std::function<void(int)>& fn);

 private:
  void worker_loop(int tid);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

// Process-wide pool used by the kernels (created on first use).
ThreadPool& kernel_pool();
// Replace the pool with one of `threads` threads (>= 1). Not thread-safe
// against running kernels; called from the JS thread only.
void set_kernel_threads(int threads);
int kernel_threads();
// Joins the workers (Node calls this from an env cleanup hook, so no joinable
// std::thread is left at exit).
void shutdown_kernel_pool();

// Splits [0, count) into contiguous ranges, one per pool thread, and calls
// fn(begin, end, tid) for the non-empty ones.
void parallel_for(int64_t count, const std::function<void(int64_t, int64_t, int)>& fn);

}  // namespace patchfed
