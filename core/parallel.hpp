// parallel_for: the references' one threading helper.
//
// Splits [0, n) into contiguous chunks of at least `grain` indices and runs fn(begin, end) on up to
// thread_count() threads (the calling thread takes part). Results never depend on the thread
// count as long as fn(begin, end) writes only the outputs of indices in [begin, end) and reads
// nothing another chunk writes: every reference that uses it is written that way, and the tests
// compare 1 thread with several. The first exception thrown by any chunk is rethrown here after
// all threads have joined.
//
// thread_count(): the environment variable DSV3_THREADS when set (>= 1), else
// std::thread::hardware_concurrency().
#pragma once

#include <cstdint>
#include <functional>

namespace dsv3 {

int thread_count();
// Overrides thread_count() for the current process (tests); 0 restores the default.
void set_thread_count(int n);

void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn, int64_t grain = 1);

}  // namespace dsv3
