#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

namespace patchfed {

ThreadPool::ThreadPool(int threads) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (!active_) continue;  // woke too late: the caller already finished this job
      job = job_;
      ++running_;
    }
    (*job)(tid);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--running_ == 0) finished_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    active_ = true;
    ++generation_;
  }
  wake_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mutex_);
  active_ = false;
  finished_.wait(lock, [&] { return running_ == 0; });
  job_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool> g_pool;
int g_threads = 0;

int default_threads() {
  if (const char* env = std::getenv("PATCHFED_CONV_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 256);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 64u));
}
}  // namespace

ThreadPool& kernel_pool() {
  if (!g_pool) {
    if (g_threads <= 0) g_threads = default_threads();
    g_pool = std::make_unique<ThreadPool>(g_threads);
  }
  return *g_pool;
}

void set_kernel_threads(int threads) {
  g_threads = std::max(1, threads);
  g_pool.reset();
}

int kernel_threads() { return g_pool ? g_pool->size() : (g_threads > 0 ? g_threads : default_threads()); }

void shutdown_kernel_pool() { g_pool.reset(); }

int64_t parallel_ranges(int64_t count) {
  if (count <= 0) return 0;
  const int64_t threads = kernel_pool().size();
  return threads <= 1 ? 1 : std::min<int64_t>(count, threads * 8);
}

void range_bounds(int64_t count, int64_t ranges, int64_t index, int64_t* begin, int64_t* end) {
  *begin = count * index / ranges;
  *end = count * (index + 1) / ranges;
}

void parallel_for(int64_t count, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (count <= 0) return;
  const int64_t ranges = parallel_ranges(count);
  if (ranges <= 1) {
    fn(0, count, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  kernel_pool().run([&](int tid) {
    for (;;) {
      const int64_t index = next.fetch_add(1, std::memory_order_relaxed);
      if (index >= ranges) return;
      int64_t begin, end;
      range_bounds(count, ranges, index, &begin, &end);
      if (begin < end) fn(begin, end, tid);
    }
  });
}

}  // namespace patchfed
