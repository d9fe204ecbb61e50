// FP8 fine-grained quantization on the GPU (variant "cuda"): every op of reference/fp8_quant.hpp,
// bit-identical to the CPU reference.
//
// Shape symbols: M rows (tokens), K columns (channels), Kb = ceil(K/128), Mb = ceil(M/128).
// Exactness: the scale and the scaled value use core/fp8_math.hpp (fdiv/fmul are __fdiv_rn /
// __fmul_rn, never contracted); the element casts are the hardware cvt.rn.satfinite
// (cuda_fp8.h), bf16 outputs cvt.rn.bf16; tile amax is max.NaN.f32 (a NaN anywhere makes the
// tile amax NaN, like fp8math::amax_combine; inputs are |x| >= 0, so max order is irrelevant).
// Padding lanes contribute 0 to amax (which never changes it) and store nothing. Subnormals
// matter: never build this file with --use_fast_math or -ftz=true.
//
// Kernels (256 threads per block; measured effect: not yet run on a GPU; ptxas sm_90a: no
// spills, quant_1x128_vec 40 registers under __launch_bounds__(256, 6)):
//   quant_1x128_vec      K % 8 == 0. A half-warp owns a 1x128 tile, each lane one 16-byte load
//                        (8 bf16); kUnroll tiles loaded before reducing (32 B in flight per
//                        thread); 4-step shuffle max; 8 codes as one 8-byte store; grid-stride
//                        over M*Kb tiles with a multiply-shift divider for (row, tile).
//   quant_1x128_scalar   any K: a warp per tile, lane l holds columns l, l+32, l+64, l+96.
//   quant_128x128_vec    K % 8 == 0: a block per 128x128 block, each thread 8 rows x 8 columns
//                        in registers (8 16-byte loads), warp + shared-memory amax, then quantize.
//   quant_128x128_scalar any K: as above with scalar loads, reading the block twice.
//   dequant_vec          K % 8 == 0: 8 codes (8 B) -> 8 bf16 (16 B) per thread-step, 4 steps in flight.
//   dequant_scalar       any K: one element per thread-step.
//   retile               a block per 128 tokens x 64 channels: dequantized into shared memory
//                        [channel][token], then a warp per channel: amax over the 128 tokens,
//                        quantize, 32-byte coalesced stores of the transposed codes.
//                        4-byte code loads when K % 4 == 0, else byte loads.
//   logfmt_encode        a warp per 128-group: amax/amin/non-finite by shuffles, then
//                        fp8math::logfmt_group / logfmt_encode_mag per element.
//   logfmt_decode        a warp per 128-group: fp8math::logfmt_decode_mag per element.
// The vector paths also need aligned pointers (16 B bf16, 8 B codes; 4 B for retile), which
// cudaMalloc's are; otherwise the scalar path runs.
// Grid-stride kernels launch at most one wave of resident blocks (occupancy queried once per
// kernel). Limits (unsupported_reason): M*K < 2^31 (32-bit element indices), Mb <= 65535 (grid.y).
#include "optimized/fp8_quant.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/fp8_math.hpp"
#include "optimized/cuda_check.hpp"

namespace dsv3::fp8::gpu {
namespace {
namespace fm = fp8math;

constexpr int kThreads = 256;
constexpr int kUnroll = 2;                      // quant_1x128_vec tiles in flight per half-warp
constexpr int kDequantUnroll = 4;               // dequant_vec chunks in flight per thread
constexpr int kRetileCh = 64;                   // retile: channels per block (divides 128)

// n / d for 32-bit n by multiply and shift (Granlund-Montgomery): l = ceil(log2 d),
// m = floor(2^32 (2^l - d) / d) + 1, n / d = (mulhi(n, m) + n) >> l, the sum taken in 64 bits.
struct FastDiv {
  uint32_t d = 1, m = 1, l = 0;
  FastDiv() = default;
  explicit FastDiv(uint32_t div) : d(div) {
    while ((uint64_t{1} << l) < d) ++l;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return static_cast<uint32_t>((static_cast<uint64_t>(__umulhi(n, m)) + n) >> l);
  }
};

// Sizes as 32-bit values (unsupported_reason guarantees M*K < 2^31).
struct Dims {
  uint32_t m, k, kb, mb;
  FastDiv by_kb;  // tile index -> row
  FastDiv by_k;   // element index -> row
  FastDiv by_k8;  // 8-element chunk index -> row (K % 8 == 0)
};

Dims dims_of(const Params& p) {
  Dims d{};
  d.m = static_cast<uint32_t>(p.m);
  d.k = static_cast<uint32_t>(p.k);
  d.kb = static_cast<uint32_t>(tiles(p.k));
  d.mb = static_cast<uint32_t>(tiles(p.m));
  d.by_kb = FastDiv(d.kb);
  d.by_k = FastDiv(d.k);
  d.by_k8 = FastDiv(d.k % 8 == 0 ? d.k / 8 : 1);
  return d;
}

// How a tile's elements are scaled before the cast (fp8_quant.hpp): divide x / s, else x * f
// with f = 1/s (reciprocal, or any non-divide convention with ue8m0), fmax/amax (fused) or
// (1/amax)*fmax (fused_torch, fm::fused_torch_multiplier).
struct QArgs {
  float fmax;
  bool ue8m0;
  bool recip;
  bool torch;  // fused_torch (only read when !recip)
};

QArgs qargs_of(const Params& p) {
  return {p.elem == Elem::e4m3 ? kE4M3Max : kE5M2Max, p.scale_fmt == ScaleFmt::ue8m0,
          p.conv == Convention::reciprocal || p.scale_fmt == ScaleFmt::ue8m0, p.conv == Convention::fused_torch};
}

struct TileScale {
  float s;  // the stored scale
  float f;  // multiplier (unused when dividing)
};

template <bool kDiv>
__device__ __forceinline__ TileScale tile_scale(float amax, const QArgs& q) {
  const float a = amax < fm::kAmaxFloor ? fm::kAmaxFloor : amax;  // NaN stays NaN
  float s = fm::fdiv(a, q.fmax);
  if (q.ue8m0) s = fm::ceil_pow2(s);
  float f = 0.0f;
  if constexpr (!kDiv) f = q.recip ? fm::fdiv(1.0f, s) : q.torch ? fm::fused_torch_multiplier(a, q.fmax) : fm::fdiv(q.fmax, a);
  return {s, f};
}

template <bool kDiv>
__device__ __forceinline__ float scaled(float x, const TileScale& t) {
  if constexpr (kDiv) return fm::fdiv(x, t.s);
  else return fm::fmul(x, t.f);
}

template <Elem E>
constexpr __nv_fp8_interpretation_t kInterp = E == Elem::e4m3 ? __NV_E4M3 : __NV_E5M2;

// Two floats -> two codes (lo in the low byte), hardware cvt.rn.satfinite.
template <Elem E>
__device__ __forceinline__ uint32_t cvt_x2(float lo, float hi) {
  return __nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, kInterp<E>);
}
template <Elem E>
__device__ __forceinline__ uint8_t cvt_x1(float x) {
  return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, kInterp<E>);
}
// Two codes (lo in the low byte) -> two floats, exact (fp8 -> f16 -> f32).
template <Elem E>
__device__ __forceinline__ float2 decode_x2(uint32_t two_codes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two_codes), kInterp<E>);
  return __half22float2(__half2(h));
}
template <Elem E>
__device__ __forceinline__ float decode_x1(uint8_t code) {
  return decode_x2<E>(code).x;
}

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float bf16_f32(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // RNE, as __float2bfloat16_rn
  return static_cast<uint32_t>(__bfloat16_as_ushort(v.x)) | (static_cast<uint32_t>(__bfloat16_as_ushort(v.y)) << 16);
}
__device__ __forceinline__ uint16_t to_bf16(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }

// NaN-propagating max (PTX max.NaN, sm_80+): NaN if either operand is NaN.
__device__ __forceinline__ float max_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
// Reduces over the lanes that differ in bits below `width` (16: a half-warp, 32: the warp).
__device__ __forceinline__ float shfl_max_nan(float v, int width) {
  for (int o = width / 2; o > 0; o /= 2) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide amax (kThreads threads, one call per block).
__device__ __forceinline__ float block_max_nan(float v) {
  __shared__ float part[kThreads / 32];
  v = shfl_max_nan(v, 32);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float a = part[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) a = max_nan(a, part[w]);
  return a;
}

// Tile u of the [M, Kb] grid of 1x128 tiles: element offset of its row, and its first column.
struct TileAt {
  uint64_t base;
  uint32_t c0;
};
__device__ __forceinline__ TileAt tile_at(uint32_t u, const Dims& d) {
  const uint32_t row = d.by_kb.div(u);
  return {static_cast<uint64_t>(row) * d.k, (u - row * d.kb) * 128};
}

__device__ __forceinline__ uint32_t global_warp() { return (blockIdx.x * kThreads + threadIdx.x) >> 5; }
__device__ __forceinline__ uint32_t warp_count() { return (gridDim.x * kThreads) >> 5; }

// ---- quant 1x128 ------------------------------------------------------------------------------

template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads, 6) quant_1x128_vec(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                            float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, half = lane >> 4, sub = lane & 15;
  const uint32_t units = d.m * d.kb, step = 2 * warp_count();
  for (uint32_t base = 2 * global_warp(); base < units; base += step * kUnroll) {
    uint4 v[kUnroll];
    uint32_t u[kUnroll];
    uint64_t off[kUnroll];
    bool ok[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {  // issue every load before the first reduction
      u[j] = base + step * j + half;
      const uint32_t row = d.by_kb.div(u[j]);
      const uint32_t col = (u[j] - row * d.kb) * 128 + 8 * sub;
      ok[j] = u[j] < units && col < d.k;
      off[j] = static_cast<uint64_t>(row) * d.k + col;
      v[j] = ok[j] ? __ldg(reinterpret_cast<const uint4*>(x + off[j])) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const float f[8] = {bf16_lo(v[j].x), bf16_hi(v[j].x), bf16_lo(v[j].y), bf16_hi(v[j].y),
                          bf16_lo(v[j].z), bf16_hi(v[j].z), bf16_lo(v[j].w), bf16_hi(v[j].w)};
      float amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = max_nan(amax, fabsf(f[i]));
      const TileScale t = tile_scale<kDiv>(shfl_max_nan(amax, 16), q);
      if (ok[j]) {
        uint2 c;
        c.x = cvt_x2<E>(scaled<kDiv>(f[0], t), scaled<kDiv>(f[1], t)) |
              (cvt_x2<E>(scaled<kDiv>(f[2], t), scaled<kDiv>(f[3], t)) << 16);
        c.y = cvt_x2<E>(scaled<kDiv>(f[4], t), scaled<kDiv>(f[5], t)) |
              (cvt_x2<E>(scaled<kDiv>(f[6], t), scaled<kDiv>(f[7], t)) << 16);
        *reinterpret_cast<uint2*>(codes + off[j]) = c;
      }
      if (sub == 0 && u[j] < units) scales[u[j]] = t.s;  // scales [M, Kb]: index = tile index
    }
  }
}

template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_1x128_scalar(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                               float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb;
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    float f[4];
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      f[j] = c < d.k ? bf16_f32(x[base + c]) : 0.0f;
      amax = max_nan(amax, fabsf(f[j]));
    }
    const TileScale t = tile_scale<kDiv>(shfl_max_nan(amax, 32), q);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c < d.k) codes[base + c] = cvt_x1<E>(scaled<kDiv>(f[j], t));
    }
    if (lane == 0) scales[u] = t.s;
  }
}

// ---- quant 128x128 ----------------------------------------------------------------------------

// Thread (warp w, lane) holds rows 16w + 2p + (lane >> 4), p < 8, columns 8 (lane & 15) + [0, 8).
template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_128x128_vec(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                              float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t col = blockIdx.x * 128 + 8 * (lane & 15);
  const uint32_t row0 = blockIdx.y * 128 + 16 * warp + (lane >> 4);
  uint4 v[8];
  float amax = 0.0f;
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t row = row0 + 2 * p;
    v[p] = col < d.k && row < d.m ? __ldg(reinterpret_cast<const uint4*>(x + static_cast<uint64_t>(row) * d.k + col))
                                  : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t w[4] = {v[p].x, v[p].y, v[p].z, v[p].w};
#pragma unroll
    for (int i = 0; i < 4; ++i) amax = max_nan(max_nan(amax, fabsf(bf16_lo(w[i]))), fabsf(bf16_hi(w[i])));
  }
  const TileScale t = tile_scale<kDiv>(block_max_nan(amax), q);
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t row = row0 + 2 * p;
    if (col >= d.k || row >= d.m) continue;
    const uint32_t w[4] = {v[p].x, v[p].y, v[p].z, v[p].w};
    uint32_t c2[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) c2[i] = cvt_x2<E>(scaled<kDiv>(bf16_lo(w[i]), t), scaled<kDiv>(bf16_hi(w[i]), t));
    *reinterpret_cast<uint2*>(codes + static_cast<uint64_t>(row) * d.k + col) =
        make_uint2(c2[0] | (c2[1] << 16), c2[2] | (c2[3] << 16));
  }
  if (threadIdx.x == 0) scales[blockIdx.y * d.kb + blockIdx.x] = t.s;
}

// Thread t holds column t % 128 of rows t / 128 + 2j, j < 64; reads the block twice.
template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_128x128_scalar(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                                 float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t col = blockIdx.x * 128 + (threadIdx.x & 127);
  const uint32_t row0 = blockIdx.y * 128 + (threadIdx.x >> 7);
  const uint32_t rows = min(128u, d.m - blockIdx.y * 128);
  float amax = 0.0f;
  if (col < d.k)
    for (uint32_t r = row0; r < blockIdx.y * 128 + rows; r += 2)
      amax = max_nan(amax, fabsf(bf16_f32(x[static_cast<uint64_t>(r) * d.k + col])));
  const TileScale t = tile_scale<kDiv>(block_max_nan(amax), q);
  if (col < d.k)
    for (uint32_t r = row0; r < blockIdx.y * 128 + rows; r += 2) {
      const uint64_t i = static_cast<uint64_t>(r) * d.k + col;
      codes[i] = cvt_x1<E>(scaled<kDiv>(bf16_f32(x[i]), t));
    }
  if (threadIdx.x == 0) scales[blockIdx.y * d.kb + blockIdx.x] = t.s;
}

// ---- dequant ----------------------------------------------------------------------------------

template <Elem E, bool kBlock>
__global__ void __launch_bounds__(kThreads) dequant_vec(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                                        uint16_t* __restrict__ y, Dims d) {
  const uint32_t chunks = d.m * (d.k / 8);  // 8 elements each, never straddling a tile
  const uint32_t stride = gridDim.x * kThreads;
  for (uint32_t base = blockIdx.x * kThreads + threadIdx.x; base < chunks; base += stride * kDequantUnroll) {
    uint2 c[kDequantUnroll];
    float s[kDequantUnroll];
#pragma unroll
    for (int j = 0; j < kDequantUnroll; ++j) {
      const uint32_t n = base + stride * j;
      if (n >= chunks) continue;
      const uint32_t row = d.by_k8.div(n);
      const uint32_t col = (n - row * (d.k / 8)) * 8;
      c[j] = __ldg(reinterpret_cast<const uint2*>(codes) + n);
      s[j] = __ldg(scales + (kBlock ? row / 128 : row) * d.kb + col / 128);
    }
#pragma unroll
    for (int j = 0; j < kDequantUnroll; ++j) {
      const uint32_t n = base + stride * j;
      if (n >= chunks) continue;
      const float2 a = decode_x2<E>(c[j].x & 0xffffu), b = decode_x2<E>(c[j].x >> 16);
      const float2 e = decode_x2<E>(c[j].y & 0xffffu), g = decode_x2<E>(c[j].y >> 16);
      const float sj = s[j];
      reinterpret_cast<uint4*>(y)[n] =
          make_uint4(pack_bf16x2(fm::fmul(a.x, sj), fm::fmul(a.y, sj)), pack_bf16x2(fm::fmul(b.x, sj), fm::fmul(b.y, sj)),
                     pack_bf16x2(fm::fmul(e.x, sj), fm::fmul(e.y, sj)), pack_bf16x2(fm::fmul(g.x, sj), fm::fmul(g.y, sj)));
    }
  }
}

template <Elem E, bool kBlock>
__global__ void __launch_bounds__(kThreads) dequant_scalar(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                                           uint16_t* __restrict__ y, Dims d) {
  const uint32_t n = d.m * d.k;
  for (uint32_t i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
    const uint32_t row = d.by_k.div(i);
    const uint32_t col = i - row * d.k;
    const float s = __ldg(scales + (kBlock ? row / 128 : row) * d.kb + col / 128);
    y[i] = to_bf16(fm::fmul(decode_x1<E>(codes[i]), s));
  }
}

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

// ---- LogFMT -----------------------------------------------------------------------------------

// A warp per 128-group; lane l holds columns l, l+32, l+64, l+96 of it.
__global__ void __launch_bounds__(kThreads) logfmt_encode_kernel(const uint16_t* __restrict__ x, uint16_t* __restrict__ codes,
                                                                 float* __restrict__ meta, uint8_t* __restrict__ fallback,
                                                                 Dims d, int bits) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb, sign_bit = 1u << (bits - 1);
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    uint16_t raw[4] = {};
    float amax = 0.0f, amin = fm::pos_inf();  // as the reference: NaN never replaces either
    bool nonfinite = false;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      raw[j] = x[base + c];
      const float a = fm::abs_f(bf16_f32(raw[j]));
      nonfinite |= !(a < fm::pos_inf());
      if (a > amax) amax = a;
      if (a > 0.0f && a < amin) amin = a;
    }
    for (int o = 16; o > 0; o /= 2) {  // partials are never NaN: plain max/min combine them
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      amin = fminf(amin, __shfl_xor_sync(0xffffffffu, amin, o));
    }
    nonfinite = __any_sync(0xffffffffu, nonfinite);
    const fm::LogFmtGroup g = fm::logfmt_group(amax, amax > 0.0f ? amin : 0.0f, nonfinite, bits);
    if (lane == 0) {
      meta[2 * static_cast<uint64_t>(u)] = g.log_amin;
      meta[2 * static_cast<uint64_t>(u) + 1] = g.log_amax;
      fallback[u] = g.fallback ? 1 : 0;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      uint16_t out = raw[j];  // fallback groups carry the bf16 bits
      if (!g.fallback) {
        const uint32_t mag = fm::logfmt_encode_mag(g, fm::abs_f(bf16_f32(raw[j])), bits);
        out = static_cast<uint16_t>(mag | ((raw[j] & 0x8000u) && mag ? sign_bit : 0u));
      }
      codes[base + c] = out;
    }
  }
}

__global__ void __launch_bounds__(kThreads) logfmt_decode_kernel(const uint16_t* __restrict__ codes, const float* __restrict__ meta,
                                                                 const uint8_t* __restrict__ fallback, uint16_t* __restrict__ y,
                                                                 Dims d, int bits) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb, sign_bit = 1u << (bits - 1);
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    const bool fb = fallback[u] != 0;
    const fm::LogFmtGroup g =
        fm::logfmt_group_from_meta(meta[2 * static_cast<uint64_t>(u)], meta[2 * static_cast<uint64_t>(u) + 1], bits);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      const uint16_t code = codes[base + c];
      if (fb) {
        y[base + c] = code;
      } else {
        const float mag = fm::logfmt_decode_mag(g, code & (sign_bit - 1));
        y[base + c] = to_bf16((code & sign_bit) ? -mag : mag);
      }
    }
  }
}

// ---- launch helpers ---------------------------------------------------------------------------

// Launches a grid-stride kernel for `work` items at `per_block` items per block-iteration: at
// most one wave of resident blocks (queried once per kernel; a second, partial wave would leave
// SMs idle), and as many blocks as spread the iterations evenly (no near-empty last pass, which
// would run latency-bound).
template <auto Kernel, class... Args>
void launch_strided(uint64_t work, uint64_t per_block, const LaunchCfg& cfg, cudaStream_t stream, Args... args) {
  static const int per_sm = [] {
    int b = 0;
    DSV3_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, Kernel, kThreads, 0));
    return b < 1 ? 1 : b;
  }();
  const uint64_t want = std::max<uint64_t>(1, (work + per_block - 1) / per_block);  // block-iterations
  const uint64_t cap = static_cast<uint64_t>(cfg.sms) * static_cast<uint64_t>(per_sm);
  const uint64_t iterations = (want + cap - 1) / cap;
  const auto grid = static_cast<unsigned>((want + iterations - 1) / iterations);
  Kernel<<<grid, kThreads, 0, stream>>>(args...);
}

// Calls f(integral_constant<Elem>, bool_constant<flag>): the element format and one compile-time flag.
template <class F>
void dispatch(Elem elem, bool flag, F&& f) {
  using E4 = std::integral_constant<Elem, Elem::e4m3>;
  using E5 = std::integral_constant<Elem, Elem::e5m2>;
  if (elem == Elem::e4m3) {
    if (flag) f(E4{}, std::true_type{}); else f(E4{}, std::false_type{});
  } else {
    if (flag) f(E5{}, std::true_type{}); else f(E5{}, std::false_type{});
  }
}

// The flag of the quantizing kernels: does the convention divide (x / s)?
template <class F>
void dispatch(const Params& p, F&& f) {
  dispatch(p.elem, p.conv == Convention::divide, std::forward<F>(f));
}

void check_launch(const Params& p) {
  if (std::string why = unsupported_reason(p); !why.empty()) throw std::invalid_argument(why);
}

// The vector paths need whole 16-byte (bf16) / 8-byte (code) accesses: K % 8 == 0 and aligned
// pointers (cudaMalloc's are; a caller's offset pointer may not be, and then takes the scalar path).
bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

}  // namespace

LaunchCfg query_launch_cfg() {
  LaunchCfg c;
  int dev = 0;
  DSV3_CUDA_CHECK(cudaGetDevice(&dev));
  DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev));
  return c;
}

std::string unsupported_reason(const Params& p) {
  auto what = [&] { return "fp8 " + std::string(op_name(p.op)) + " on the GPU: "; };
  if (p.m < 1 || p.k < 1) return what() + "m and k must be >= 1";
  if (p.m >= (int64_t{1} << 31) || p.k >= (int64_t{1} << 31) || p.m * p.k >= (int64_t{1} << 31))
    return what() + "m*k = " + std::to_string(p.m) + "*" + std::to_string(p.k) +
           " >= 2^31 elements (the kernels index with 32 bits)";
  if (tiles(p.m) > 65535) return what() + "ceil(m/128) = " + std::to_string(tiles(p.m)) + " > 65535 (grid.y limit)";
  return {};
}

void quant_1x128(const uint16_t* x, uint8_t* codes, float* scales, const Params& p, const LaunchCfg& cfg,
                 cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  const QArgs q = qargs_of(p);
  const uint64_t units = static_cast<uint64_t>(d.m) * d.kb;
  dispatch(p, [&](auto e, auto div) {
    constexpr Elem E = decltype(e)::value;
    constexpr bool D = decltype(div)::value;
    if (d.k % 8 == 0 && aligned(x, 16) && aligned(codes, 8))
      launch_strided<quant_1x128_vec<E, D>>(units, (kThreads / 16) * kUnroll, cfg, stream, x, codes, scales, d, q);
    else
      launch_strided<quant_1x128_scalar<E, D>>(units, kThreads / 32, cfg, stream, x, codes, scales, d, q);
  });
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void quant_128x128(const uint16_t* w, uint8_t* codes, float* scales, const Params& p, const LaunchCfg&,
                   cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  const QArgs q = qargs_of(p);
  const dim3 grid(d.kb, d.mb);
  dispatch(p, [&](auto e, auto div) {
    if (d.k % 8 == 0 && aligned(w, 16) && aligned(codes, 8))
      quant_128x128_vec<decltype(e)::value, decltype(div)::value><<<grid, kThreads, 0, stream>>>(w, codes, scales, d, q);
    else
      quant_128x128_scalar<decltype(e)::value, decltype(div)::value><<<grid, kThreads, 0, stream>>>(w, codes, scales, d, q);
  });
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void dequant(const uint8_t* codes, const float* scales, uint16_t* y, const Params& p, const LaunchCfg& cfg,
             cudaStream_t stream) {
  check_launch(p);
  if (p.op != Op::dequant_1x128 && p.op != Op::dequant_128x128)
    throw std::invalid_argument("fp8 gpu::dequant: op must be dequant_1x128 or dequant_128x128, got " +
                                std::string(op_name(p.op)));
  const Dims d = dims_of(p);
  const bool block = p.op == Op::dequant_128x128;
  const bool vec = d.k % 8 == 0 && aligned(codes, 8) && aligned(y, 16);
  const uint64_t n = static_cast<uint64_t>(d.m) * d.k;
  auto go = [&](auto e, auto blk) {
    constexpr Elem E = decltype(e)::value;
    constexpr bool B = decltype(blk)::value;
    if (vec)
      launch_strided<dequant_vec<E, B>>(n / 8, static_cast<uint64_t>(kThreads) * kDequantUnroll, cfg, stream, codes,
                                        scales, y, d);
    else
      launch_strided<dequant_scalar<E, B>>(n, kThreads, cfg, stream, codes, scales, y, d);
  };
  dispatch(p.elem, block, go);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

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

void logfmt_encode(const uint16_t* x, uint16_t* codes, float* meta, uint8_t* fallback, const Params& p,
                   const LaunchCfg& cfg, cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  launch_strided<logfmt_encode_kernel>(static_cast<uint64_t>(d.m) * d.kb, kThreads / 32, cfg, stream, x, codes, meta,
                                       fallback, d, p.logfmt_bits);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void logfmt_decode(const uint16_t* codes, const float* meta, const uint8_t* fallback, uint16_t* y,
                   const Params& p, const LaunchCfg& cfg, cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  launch_strided<logfmt_decode_kernel>(static_cast<uint64_t>(d.m) * d.kb, kThreads / 32, cfg, stream, codes, meta,
                                       fallback, y, d, p.logfmt_bits);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv3::fp8::gpu
