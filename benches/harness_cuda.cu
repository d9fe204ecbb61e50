// GPU timing with CUDA events (see harness_cuda.hpp). Host code only: no kernels here.
#include "benches/harness_cuda.hpp"

#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "optimized/cuda_check.hpp"

namespace dsv3::bench {
namespace {

// One event pair reused by every measurement (the harness calls cuda_time once per iteration).
CudaEventPair& events() {
  static CudaEventPair e;
  return e;
}

}  // namespace

void cuda_flush_l2() {
  static std::unique_ptr<DeviceBuffer> buf;
  static uint8_t value = 0;
  if (!buf) {
    int dev = 0, l2 = 0;
    DSV3_CUDA_CHECK(cudaGetDevice(&dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    const std::size_t bytes = 2 * static_cast<std::size_t>(l2 > 0 ? l2 : 64 << 20);
    buf = std::make_unique<DeviceBuffer>(bytes, "L2 flush buffer");
  }
  DSV3_CUDA_CHECK(cudaMemsetAsync(buf->data(), ++value, buf->size(), 0));  // a new value each time
}

std::vector<double> cuda_time(const std::function<void()>& launch, int warmup, int iters, int reps, bool flush_l2) {
  if (iters < 1 || reps < 1 || warmup < 0)
    throw std::invalid_argument("cuda_time: iters and reps must be >= 1 and warmup >= 0 (got iters=" +
                                std::to_string(iters) + ", reps=" + std::to_string(reps) +
                                ", warmup=" + std::to_string(warmup) + ")");
  for (int i = 0; i < warmup; ++i) launch();
  DSV3_CUDA_CHECK(cudaGetLastError());
  CudaEventPair& ev = events();
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(reps));
  for (int r = 0; r < reps; ++r) {
    if (flush_l2) {
      double total = 0;
      for (int i = 0; i < iters; ++i) {
        cuda_flush_l2();
        ev.record_start();
        launch();
        ev.record_stop();
        total += ev.elapsed_s();
      }
      out.push_back(total / iters);
    } else {
      ev.record_start();
      for (int i = 0; i < iters; ++i) launch();
      ev.record_stop();
      out.push_back(ev.elapsed_s() / iters);
    }
  }
  DSV3_CUDA_CHECK(cudaGetLastError());
  return out;
}

}  // namespace dsv3::bench
