// GPU timing for the bench harness: CUDA events around work enqueued on the default stream.
// No CUDA types here (plain C++ callers); errors throw dsv3::CudaError (optimized/cuda_check.hpp).
#pragma once

#include <functional>
#include <vector>

namespace dsv3::bench {

// Times `launch` (which enqueues work on the default stream) with CUDA events; warmup calls first;
// returns seconds per call for each of `reps` repetitions of `iters` calls.
// flush_l2: the L2 is flushed (cuda_flush_l2) before every call; then each call is timed on its
// own, so the flush is never inside the timed interval, and a repetition's value is the mean.
std::vector<double> cuda_time(const std::function<void()>& launch, int warmup, int iters, int reps, bool flush_l2);

// Writes a device buffer of twice the L2 size on the default stream (allocated once, kept).
void cuda_flush_l2();

}  // namespace dsv3::bench
