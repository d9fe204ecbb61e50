// GPU ceilings (see ceilings_gpu.hpp): device copy bandwidth and cuBLASLt BF16 / FP8 GEMM rates.
// Measured effect: not yet run on a GPU.
#include "benches/ceilings_gpu.hpp"

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "benches/harness_cuda.hpp"
#include "optimized/cublaslt.hpp"
#include "optimized/cuda_check.hpp"

namespace dsv3::bench {
namespace {

constexpr int kThreads = 256;

// Grid-stride copy, 16 bytes per access, 4 accesses in flight per thread.
__global__ void __launch_bounds__(kThreads) copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst,
                                                        std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * kThreads;
  std::size_t i = static_cast<std::size_t>(blockIdx.x) * kThreads + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    dst[i] = a;
    dst[i + stride] = b;
    dst[i + 2 * stride] = c;
    dst[i + 3 * stride] = d;
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

__device__ __forceinline__ float hash_unit(std::size_t i, uint32_t seed) {  // [-1, 1)
  uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) ^ seed;
  h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
  return static_cast<float>(h >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

// Non-trivial GEMM operands (all-zero inputs would understate the power draw).
__global__ void fill_bf16(uint16_t* p, std::size_t n, uint32_t seed) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * kThreads)
    p[i] = static_cast<uint16_t>(__float_as_uint(hash_unit(i, seed)) >> 16);
}
__global__ void fill_e4m3(uint8_t* p, std::size_t n, uint32_t seed) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * kThreads)
    p[i] = __nv_cvt_float_to_fp8(4.0f * hash_unit(i, seed), __NV_SATFINITE, __NV_E4M3);
}

int sm_count() {
  int dev = 0, sms = 0;
  DSV3_CUDA_CHECK(cudaGetDevice(&dev));
  DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

void measure_copy(GpuCeilings& c, bool quick) {
  const std::size_t bytes = quick ? (std::size_t{256} << 20) : (std::size_t{1} << 30);
  DeviceBuffer src(bytes, "copy source"), dst(bytes, "copy destination");
  src.poison(0x3c);
  int per_sm = 0;
  DSV3_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, copy_kernel, kThreads, 0));
  const unsigned grid = static_cast<unsigned>(sm_count() * std::max(per_sm, 1));
  const std::size_t n16 = bytes / 16;
  const int iters = quick ? 3 : 10, reps = quick ? 3 : 5;
  const double moved = 2.0 * static_cast<double>(bytes);  // read + write
  const double kernel_gbs = moved / best(cuda_time([&] {
    copy_kernel<<<grid, kThreads>>>(src.as<uint4>(), dst.as<uint4>(), n16);
  }, 2, iters, reps, false)) / 1e9;
  const double memcpy_gbs = moved / best(cuda_time([&] {
    DSV3_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, 0));
  }, 2, iters, reps, false)) / 1e9;
  src.check_canaries();
  dst.check_canaries();
  const std::string size = quick ? "256 MiB" : "1 GiB";
  if (kernel_gbs >= memcpy_gbs) {
    c.copy_gbs = kernel_gbs;
    c.copy_method = "16-byte grid-stride copy kernel over " + size + " (cudaMemcpy D2D: " +
                    std::to_string(memcpy_gbs) + " GB/s), read+write bytes, best of " + std::to_string(reps);
  } else {
    c.copy_gbs = memcpy_gbs;
    c.copy_method = "cudaMemcpy D2D over " + size + " (copy kernel: " + std::to_string(kernel_gbs) +
                    " GB/s), read+write bytes, best of " + std::to_string(reps);
  }
}

// D[m, n] = A^T B, column-major: A stored [k, m] (transposed), B stored [k, n], D [m, n].
double gemm_tflops(cudaDataType_t in_type, int64_t n, bool quick, DeviceBuffer& workspace) {
  const std::size_t in_size = in_type == CUDA_R_16BF ? 2 : 1;
  const std::size_t elems = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  DeviceBuffer a(elems * in_size, "gemm A"), b(elems * in_size, "gemm B"), d(elems * 2, "gemm D");
  const unsigned fill_grid = static_cast<unsigned>(sm_count() * 8);
  if (in_type == CUDA_R_16BF) {
    fill_bf16<<<fill_grid, kThreads>>>(a.as<uint16_t>(), elems, 1u);
    fill_bf16<<<fill_grid, kThreads>>>(b.as<uint16_t>(), elems, 2u);
  } else {
    fill_e4m3<<<fill_grid, kThreads>>>(a.as<uint8_t>(), elems, 1u);
    fill_e4m3<<<fill_grid, kThreads>>>(b.as<uint8_t>(), elems, 2u);
  }
  DSV3_CUDA_CHECK(cudaGetLastError());

  LtMatmul g;
  DSV3_LT_CHECK(cublasLtMatmulDescCreate(&g.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  g.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  g.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&g.a, in_type, n, n, n));
  DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&g.b, in_type, n, n, n));
  DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&g.d, CUDA_R_16BF, n, n, n));  // C (unused, beta = 0) and D
  if (!g.heuristic(workspace.size()))
    throw CudaError(std::string("cuBLASLt found no algorithm for the ") + (in_size == 1 ? "FP8" : "BF16") +
                    " ceiling GEMM");
  const float alpha = 1.0f, beta = 0.0f;
  auto launch = [&] {
    DSV3_LT_CHECK(cublasLtMatmul(g.handle, g.op, &alpha, a.data(), g.a, b.data(), g.b, &beta, d.data(), g.d,
                                 d.data(), g.d, &g.algo.algo, workspace.data(), workspace.size(), 0));
  };
  const double t = best(cuda_time(launch, 2, quick ? 3 : 10, quick ? 2 : 5, false));
  d.check_canaries();
  workspace.check_canaries();
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / t / 1e12;
}

}  // namespace

GpuCeilings measure_gpu_ceilings(bool quick) {
  GpuCeilings c;
  measure_copy(c, quick);
  constexpr int64_t kN = 8192;
  DeviceBuffer workspace(std::size_t{64} << 20, "cuBLASLt workspace");
  c.bf16_tflops = gemm_tflops(CUDA_R_16BF, kN, quick, workspace);
  c.fp8_tflops = gemm_tflops(CUDA_R_8F_E4M3, kN, quick, workspace);
  c.gemm_method = "cuBLASLt matmul " + std::to_string(kN) + "^3, TN (A transposed), FP32 accumulate, BF16 out, "
                  "heuristic algorithm, 64 MiB workspace, best of " + std::to_string(quick ? 2 : 5) +
                  "; FP8: E4M3 A and B, no scale pointers";
  return c;
}

}  // namespace dsv3::bench
