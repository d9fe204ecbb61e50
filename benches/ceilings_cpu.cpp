// Ceilings measured in this run: CPU memcpy bandwidth and Eigen's single-thread f32 GEMM rate here;
// the GPU ones (benches/ceilings_gpu.cu) when a device is present.
#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "benches/harness.hpp"
#include "core/cuda_probe.hpp"
#include "core/parallel.hpp"
#if DSV3_HAVE_CUDA
#include "benches/ceilings_gpu.hpp"
#endif

namespace dsv3::bench {
namespace {

template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

}  // namespace

void measure_cpu_ceilings(Ceilings& c, bool quick) {
  const std::size_t bytes = (quick ? 64u : 256u) << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const double t_copy = best_seconds(quick ? 3 : 10, [&] {
    std::memcpy(dst.data(), src.data(), bytes);
    asm volatile("" : : "r"(dst.data()) : "memory");
  });
  c.cpu_memcpy_gbs = 2.0 * static_cast<double>(bytes) / t_copy / 1e9;
  c.rows.push_back({{"name", "cpu_memcpy_bandwidth"}, {"unit", "GB/s"}, {"value", c.cpu_memcpy_gbs},
                    {"method", "memcpy of " + std::to_string(bytes >> 20) + " MiB, read+write bytes, best of " +
                                   std::to_string(quick ? 3 : 10)}});

  const int n = quick ? 512 : 1024;
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), out(n, n);
  const double t_gemm = best_seconds(quick ? 2 : 5, [&] { out.noalias() = a * b; });
  c.cpu_gemm_gflops = 2.0 * n * n * static_cast<double>(n) / t_gemm / 1e9;
  c.rows.push_back({{"name", "cpu_eigen_gemm_f32"}, {"unit", "GFLOP/s"}, {"value", c.cpu_gemm_gflops},
                    {"method", "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                                   "." + std::to_string(EIGEN_MINOR_VERSION) + " MatrixXf " + std::to_string(n) +
                                   "^3, single thread, best of " + std::to_string(quick ? 2 : 5)}});

  // The rate the threaded references build on: FP64 products of 128-wide K slices (the fp8_gemm
  // reference's group sums), one 256-row block per task on thread_count() threads.
  const int rows = quick ? 1024 : 4096, cols = 1024, depth = 128;
  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const MatD x = MatD::Random(rows, depth), w = MatD::Random(cols, depth);
  MatD y(rows, cols);
  const double t64 = best_seconds(quick ? 2 : 5, [&] {
    parallel_for(rows / 256, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) y.middleRows(b * 256, 256).noalias() = x.middleRows(b * 256, 256) * w.transpose();
    });
  });
  c.cpu_gemm_f64_threads_gflops = 2.0 * rows * cols * static_cast<double>(depth) / t64 / 1e9;
  c.rows.push_back({{"name", "cpu_eigen_gemm_f64_threads"}, {"unit", "GFLOP/s"}, {"value", c.cpu_gemm_f64_threads_gflops},
                    {"method", "Eigen MatrixXd row-major [" + std::to_string(rows) + " x 128] . [128 x 1024], 256-row blocks on " +
                                   std::to_string(thread_count()) + " threads (parallel_for), best of " +
                                   std::to_string(quick ? 2 : 5)}});
}

void measure_gpu_ceilings_into(Ceilings& c, bool quick) {
  if (!cuda_presence().available) return;
#if DSV3_HAVE_CUDA
  const GpuCeilings g = measure_gpu_ceilings(quick);
  c.gpu_copy_gbs = g.copy_gbs;
  c.gpu_bf16_tflops = g.bf16_tflops;
  c.gpu_fp8_tflops = g.fp8_tflops;
  c.rows.push_back({{"name", "gpu_copy_bandwidth"}, {"unit", "GB/s"}, {"value", g.copy_gbs}, {"method", g.copy_method}});
  c.rows.push_back({{"name", "gpu_cublaslt_bf16_gemm"}, {"unit", "TFLOP/s"}, {"value", g.bf16_tflops}, {"method", g.gemm_method}});
  c.rows.push_back({{"name", "gpu_cublaslt_fp8_gemm"}, {"unit", "TFLOP/s"}, {"value", g.fp8_tflops}, {"method", g.gemm_method}});
#else
  (void)c;
  (void)quick;
#endif
}

}  // namespace dsv3::bench
