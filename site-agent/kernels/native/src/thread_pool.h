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

  // Calls fn(tid) on the caller (tid 0) and on every worker that wakes up
  // before the caller's own fn(0) returns; returns once those have finished.
  // fn must therefore share its work dynamically (see parallel_for): a worker
  // the OS has not scheduled yet is not waited for on a busy machine.
  void run(const std::function<void(int)>& fn);

 private:
  void worker_loop(int tid);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  bool active_ = false;  // workers may still join the current job
  int running_ = 0;      // workers inside the current job
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

// Calls fn(begin, end, tid) over contiguous ranges covering [0, count). The
// ranges are handed out dynamically (about 8 per thread), so a thread the OS
// deschedules on a busy machine does not hold the others up; fn must
// therefore not depend on which thread (tid) runs a range, except for
// per-thread scratch space.
void parallel_for(int64_t count, const std::function<void(int64_t, int64_t, int)>& fn);

// Number of ranges parallel_for would use for `count` items (>= 1), and the
// range of one of them; for callers that keep one partial result per range.
int64_t parallel_ranges(int64_t count);
void range_bounds(int64_t count, int64_t ranges, int64_t index, int64_t* begin, int64_t* end);

}  // namespace patchfed
