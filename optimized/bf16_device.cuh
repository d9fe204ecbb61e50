// Device helpers shared by the CUDA variants: BF16 bits <-> FP32 (exact widening, RNE narrowing,
// as __float2bfloat16_rn) and block-wide FP32 reductions.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace dsv3::gpu {

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }          // low half of a pair
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }  // high half
__device__ __forceinline__ float bf16_f32(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
__device__ __forceinline__ uint16_t to_bf16(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
// One correct RNE rounding of an FP64 value to BF16 (core/dtype.cpp's bf16_from_f64 gives the same
// bits): round to odd into FP32 (truncate, then set the last bit when inexact), then RNE to BF16.
__device__ __forceinline__ uint16_t bf16_from_f64(double d) {
  float t = __double2float_rz(d);
  if (static_cast<double>(t) != d && d == d) t = __uint_as_float(__float_as_uint(t) | 1u);
  return to_bf16(t);
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // RNE, as __float2bfloat16_rn
  return static_cast<uint32_t>(__bfloat16_as_ushort(v.x)) | (static_cast<uint32_t>(__bfloat16_as_ushort(v.y)) << 16);
}

// Sum (RN adds) or max (fmaxf: a NaN operand is ignored) over the block; every thread gets the
// result. Any block size up to 1024; may be called several times in a row (it ends with a barrier).
template <bool kMax>
__device__ inline float block_reduce(float v) {
  __shared__ float part[32];
  __shared__ float total;
  auto op = [](float a, float b) { return kMax ? fmaxf(a, b) : __fadd_rn(a, b); };
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? part[lane] : (kMax ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) s = op(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();  // part and total are reused by the next call
  return r;
}
__device__ inline float block_sum(float v) { return block_reduce<false>(v); }
__device__ inline float block_max(float v) { return block_reduce<true>(v); }

}  // namespace dsv3::gpu
