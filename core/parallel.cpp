#include "core/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dsv3 {
namespace {

std::atomic<int> g_override{0};

int env_threads() {
  const char* v = std::getenv("DSV3_THREADS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end && *end == '\0' && n >= 1 && n <= 4096) ? static_cast<int>(n) : 0;
}

}  // namespace

int thread_count() {
  if (const int o = g_override.load()) return o;
  static const int from_env = env_threads();
  if (from_env) return from_env;
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_thread_count(int n) { g_override.store(std::max(0, n)); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t threads = std::min<int64_t>(thread_count(), max_chunks);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // Chunks handed out dynamically (a shared counter): balance without changing any result.
  const int64_t chunk = std::max(grain, n / (threads * 4));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (;;) {
      const int64_t b = next.fetch_add(chunk);
      if (b >= n) return;
      try {
        fn(b, std::min(n, b + chunk));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);  // stop handing out work
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads - 1));
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace dsv3
