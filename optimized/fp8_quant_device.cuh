// FP8 fine-grained quantization on the GPU (variant "cuda"): every op of reference/fp8_quant.hpp,
// bit-identical to the CPU reference. This header holds what the kernels share (constants, index
// math, scale/convention math, casts, NaN-propagating reductions, tile_at, launch_strided and
// the element-format x flag dispatch); the kernels and their launchers are in
//   optimized/fp8_quant_tiles.cu   quant_1x128, quant_128x128, dequant
//   optimized/fp8_quant_retile.cu  retile_1x128_to_128x1
//   optimized/fp8_quant_logfmt.cu  logfmt encode / decode
//   optimized/fp8_quant.cu         query_launch_cfg, unsupported_reason
// These kernels passed all 1160 gpu tests bit-exact on an H100 on 2026-11-23 (before the
// fused_torch convention was added).
//
// Shape symbols: M rows (tokens), K columns (channels), Kb = ceil(K/128), Mb = ceil(M/128).
// Exactness: the scale and the scaled value use core/fp8_math.hpp (fdiv/fmul are __fdiv_rn /
// __fmul_rn, never contracted); the element casts are the hardware cvt.rn.satfinite
// (cuda_fp8.h), bf16 outputs cvt.rn.bf16; tile amax is max.NaN.f32 (a NaN anywhere makes the
// tile amax NaN, like fp8math::amax_combine; inputs are |x| >= 0, so max order is irrelevant).
// Padding lanes contribute 0 to amax (which never changes it) and store nothing. Subnormals
// matter: never build these files with --use_fast_math or -ftz=true.
//
// Kernels (256 threads per block; on an H100, before this split, quant_1x128 reached 2466-2639 GB/s, 0.82-0.88 of the
// measured copy rate, quant_128x128 0.73-0.97, dequant_128x128 0.85; ptxas sm_90a: no
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
//
// Everything here is in an anonymous namespace: each .cu gets its own copy (internal linkage).
#pragma once

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
#include "optimized/bf16_device.cuh"
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

inline Dims dims_of(const Params& p) {
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

inline QArgs qargs_of(const Params& p) {
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

using ::dsv3::gpu::bf16_f32;  // BF16 helpers shared with the other components (optimized/bf16_device.cuh)
using ::dsv3::gpu::bf16_hi;
using ::dsv3::gpu::bf16_lo;
using ::dsv3::gpu::pack_bf16x2;
using ::dsv3::gpu::to_bf16;

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

// LogFMT-n of one 128-group held by a warp, lane l holding the group's columns l + 32 j (j < 4;
// valid[j] false past K): the group's parameters from its amax, smallest non-zero magnitude and
// non-finite flag (combined by shuffles; NaN never replaces amax or amin, as in the reference),
// and one value's code (a fallback group keeps the BF16 bits). Shared by logfmt_encode and the
// ep combine (optimized/ep_kernels.cu).
__device__ __forceinline__ fm::LogFmtGroup logfmt_warp_group(const uint16_t (&raw)[4], const bool (&valid)[4], int bits) {
  float amax = 0.0f, amin = fm::pos_inf();
  bool nonfinite = false;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (!valid[j]) continue;
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
  return fm::logfmt_group(amax, amax > 0.0f ? amin : 0.0f, nonfinite, bits);
}
__device__ __forceinline__ uint16_t logfmt_code(const fm::LogFmtGroup& g, uint16_t raw, int bits) {
  if (g.fallback) return raw;
  const uint32_t mag = fm::logfmt_encode_mag(g, fm::abs_f(bf16_f32(raw)), bits);
  return static_cast<uint16_t>(mag | ((raw & 0x8000u) && mag ? 1u << (bits - 1) : 0u));
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

inline void check_launch(const Params& p) {
  if (std::string why = unsupported_reason(p); !why.empty()) throw std::invalid_argument(why);
}

// The vector paths need whole 16-byte (bf16) / 8-byte (code) accesses: K % 8 == 0 and aligned
// pointers (cudaMalloc's are; a caller's offset pointer may not be, and then takes the scalar path).
inline bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

}  // namespace
}  // namespace dsv3::fp8::gpu
