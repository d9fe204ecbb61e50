// RMSNorm on the GPU (variant "cuda"; the definition is reference/rmsnorm.hpp).
//
// One block per row; 16-byte loads of 8 BF16 values when the width is a multiple of 8 (every V3
// norm: 7168, 1536, 512), scalar loads otherwise. Pass 1 sums the squares in FP32 (warp shuffles,
// then one value per warp through shared memory); rinv = RN(1 / sqrt(RN(RN(ss / D) + eps))) with
// __frsqrt_rn; pass 2 re-reads the row (from L1/L2: at most 14 KB) and writes
// RN_bf16(RN_bf16(x * rinv) * w). The only difference from the reference is the FP32 sum's order
// (the reference sums in FP64); the tolerance (3 BF16 ulps) is derived at the registration below.
// Memory-bound: 4 bytes per element (read x, write y); the bench reports GB/s against the copy
// ceiling. Not yet run on a GPU: correctness is shown only by the gpu tests on a lent device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>

#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "reference/rmsnorm.hpp"

namespace dsv3::rmsnorm {
namespace {

using gpu::bf16_f32;
using gpu::to_bf16;

__device__ __forceinline__ uint16_t normalize(uint16_t x, uint16_t w, float rinv) {
  const float n = bf16_f32(to_bf16(__fmul_rn(bf16_f32(x), rinv)));
  return to_bf16(__fmul_rn(n, bf16_f32(w)));  // exact product, one rounding
}

template <bool kVec>
__global__ void rmsnorm_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                               uint16_t* __restrict__ y, int dim, float eps) {
  const uint16_t* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  uint16_t* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  if constexpr (kVec) {
    for (int i = threadIdx.x * 8; i < dim; i += blockDim.x * 8) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr + i));
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float a = gpu::bf16_lo(u[k]), b = gpu::bf16_hi(u[k]);
        ss = __fmaf_rn(a, a, ss);
        ss = __fmaf_rn(b, b, ss);
      }
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      const float a = bf16_f32(xr[i]);
      ss = __fmaf_rn(a, a, ss);
    }
  }
  const float rinv = __frsqrt_rn(__fadd_rn(__fdiv_rn(gpu::block_sum(ss), static_cast<float>(dim)), eps));
  if constexpr (kVec) {
    for (int i = threadIdx.x * 8; i < dim; i += blockDim.x * 8) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr + i));
      const uint4 g = __ldg(reinterpret_cast<const uint4*>(w + i));
      const uint32_t u[4] = {v.x, v.y, v.z, v.w}, q[4] = {g.x, g.y, g.z, g.w};
      uint32_t o[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        o[k] = normalize(u[k] & 0xffffu, q[k] & 0xffffu, rinv) |
               (static_cast<uint32_t>(normalize(u[k] >> 16, q[k] >> 16, rinv)) << 16);
      *reinterpret_cast<uint4*>(yr + i) = make_uint4(o[0], o[1], o[2], o[3]);
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = normalize(xr[i], w[i], rinv);
  }
}

std::string unsupported(const Params& p) {
  if (p.rows > 0x7fffffff) return "rows > 2^31 - 1 (one block per row)";
  if (p.dim > 0x7fffffff) return "dim > 2^31 - 1";
  return {};
}

class CudaRunner final : public DeviceRunner<Params> {
 public:
  CudaRunner(const Params& p, Io& io) : DeviceRunner(p, io, "rmsnorm/cuda") { p_.validate(); }
  void run() override {
    const bool vec = p_.dim % 8 == 0;  // rows then start on 16-byte boundaries (cudaMalloc is 256-aligned)
    const int per_thread = vec ? 8 : 1;
    const int threads = static_cast<int>(std::clamp<int64_t>((p_.dim / per_thread + 31) / 32 * 32, 32, 1024));
    const auto grid = static_cast<unsigned>(p_.rows);
    const auto eps = static_cast<float>(p_.eps);
    if (vec) rmsnorm_kernel<true><<<grid, threads>>>(dev_.in<uint16_t>(0), dev_.in<uint16_t>(1), dev_.out<uint16_t>(0), static_cast<int>(p_.dim), eps);
    else rmsnorm_kernel<false><<<grid, threads>>>(dev_.in<uint16_t>(0), dev_.in<uint16_t>(1), dev_.out<uint16_t>(0), static_cast<int>(p_.dim), eps);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
};

}  // namespace
}  // namespace dsv3::rmsnorm

void dsv3_register_rmsnorm_cuda() {
  using namespace dsv3;
  using namespace dsv3::rmsnorm;
  Variant v = cuda_variant<Params, CudaRunner>("rmsnorm", "cuda", "one block per row, FP32 block reduction, 16-byte loads (optimized/rmsnorm.cu)",
                                                unsupported);
  v.tolerances["*"] = Tolerance::in_ulps(
      3, DType::bf16,
      "the FP32 sum of squares runs in another order than the reference's FP64 sum, so rinv may differ in its "
      "last FP32 bits and RN_bf16(x * rinv) by one ulp; times w (significand < 2) that is < 2 ulps of y before "
      "the last rounding, so <= 2 ulps after it, 3 where the two results round into different binades");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}
