// FP8 1x128 -> 128x1 re-tiling kernel (variant "cuda"; shared helpers and the full kernel notes in
// optimized/fp8_quant_device.cuh): codes [M, K] + scales [M, Kb] -> dequantize, transpose,
// requantize -> codes_t [K, M], scales_t [K, Mb], as the backward pass needs for Wgrad.
// A block per 128 tokens x 64 channels through shared memory; bit-identical to the reference.
#include "optimized/fp8_quant_device.cuh"

namespace dsv3::fp8::gpu {
namespace {

// ---- retile 1x128 -> 128x1 --------------------------------------------------------------------

// Block (x: 64 channels, y: 128 tokens). kVec codes per load (4 when K % 4 == 0, else 1).
template <Elem E, bool kDiv, int kVec>
__global__ void __launch_bounds__(kThreads) retile(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                                   uint8_t* __restrict__ codes_t, float* __restrict__ scales_t, Dims d,
                                                   QArgs q) {
  __shared__ float tile[kRetileCh][128 + 1];  // dequantized x^T, [channel][token]; +1: no bank conflicts reading
  const uint32_t c0 = blockIdx.x * kRetileCh, r0 = blockIdx.y * 128, kbi = c0 / 128;
  constexpr uint32_t kGroups = kRetileCh / kVec;  // loads per token row
  for (uint32_t g = threadIdx.x; g < 128 * kGroups; g += kThreads) {
    const uint32_t rl = g / kGroups, cl = (g % kGroups) * kVec, r = r0 + rl, c = c0 + cl;
    float v[kVec] = {};
    if (r < d.m && c < d.k) {  // K % 4 == 0 when kVec == 4, so c < K covers c + 3
      const uint64_t i = static_cast<uint64_t>(r) * d.k + c;
      const float s = __ldg(scales + static_cast<uint64_t>(r) * d.kb + kbi);
      if constexpr (kVec == 4) {
        const uint32_t w = __ldg(reinterpret_cast<const unsigned int*>(codes + i));
        const float2 a = decode_x2<E>(w & 0xffffu), b = decode_x2<E>(w >> 16);
        v[0] = fm::fmul(a.x, s); v[1] = fm::fmul(a.y, s); v[2] = fm::fmul(b.x, s); v[3] = fm::fmul(b.y, s);
      } else {
        v[0] = fm::fmul(decode_x1<E>(codes[i]), s);
      }
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) tile[cl + j][rl] = v[j];
  }
  __syncthreads();
  const uint32_t lane = threadIdx.x & 31;
  for (uint32_t cl = threadIdx.x >> 5; cl < kRetileCh && c0 + cl < d.k; cl += kThreads / 32) {
    float f[4], amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) amax = max_nan(amax, fabsf(f[j] = tile[cl][lane + 32 * j]));
    const TileScale t = tile_scale<kDiv>(shfl_max_nan(amax, 32), q);
    const uint64_t c = c0 + cl;
    uint8_t* dst = codes_t + c * d.m;  // codes_t [K, M]
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (r0 + lane + 32 * j < d.m) dst[r0 + lane + 32 * j] = cvt_x1<E>(scaled<kDiv>(f[j], t));
    if (lane == 0) scales_t[c * d.mb + blockIdx.y] = t.s;  // scales_t [K, Mb]
  }
}


}  // namespace

void retile_1x128_to_128x1(const uint8_t* codes, const float* scales, uint8_t* codes_t, float* scales_t,
                           const Params& p, const LaunchCfg&, cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  const QArgs q = qargs_of(p);
  const dim3 grid((d.k + kRetileCh - 1) / kRetileCh, d.mb);
  dispatch(p, [&](auto e, auto div) {
    constexpr Elem E = decltype(e)::value;
    constexpr bool D = decltype(div)::value;
    if (d.k % 4 == 0 && aligned(codes, 4)) retile<E, D, 4><<<grid, kThreads, 0, stream>>>(codes, scales, codes_t, scales_t, d, q);
    else retile<E, D, 1><<<grid, kThreads, 0, stream>>>(codes, scales, codes_t, scales_t, d, q);
  });
  DSV3_CUDA_CHECK(cudaGetLastError());
}


}  // namespace dsv3::fp8::gpu
