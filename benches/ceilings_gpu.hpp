// Measured GPU ceilings that the bench harness reports results against (frac_ceiling).
//   copy_gbs     device-to-device copy, read + write bytes / time, 1e9 B/s: the faster of a
//                16-byte-vector grid-stride copy kernel and cudaMemcpy D2D, over 1 GiB
//                (256 MiB when quick), best repetition
//   bf16_tflops  cuBLASLt 8192^3 GEMM, BF16 in, FP32 accumulate, BF16 out, TN, heuristic algo
//   fp8_tflops   the same with E4M3 A and B (TN, as cuBLASLt requires for FP8), no scales, BF16 out
// No CUDA types here; the caller checks cuda_presence() first.
#pragma once

#include <string>

namespace dsv3::bench {

struct GpuCeilings {
  double copy_gbs = 0, bf16_tflops = 0, fp8_tflops = 0;
  std::string copy_method, gemm_method;  // how each number was obtained, for the bundle
};

// Throws CudaError on CUDA or cuBLASLt failures.
GpuCeilings measure_gpu_ceilings(bool quick);

}  // namespace dsv3::bench
