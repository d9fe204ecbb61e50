// Scalar FP8 scale and LogFMT math shared by the CPU reference and the CUDA kernels.
//
// Only IEEE-754 single-precision +, -, *, / with round-to-nearest are used, written through
// the macros below so that nvcc cannot contract them into FMAs (host code is built with
// -ffp-contract=off), so both sides compute the same bits. The FP8 element conversion itself is
// NOT shared: the reference uses core/dtype.cpp, the kernels use the hardware cvt instructions.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DSV3_HD __host__ __device__ __forceinline__
#else
#define DSV3_HD inline
#endif

namespace dsv3::fp8math {

#if defined(__CUDA_ARCH__)
DSV3_HD float fadd(float a, float b) { return __fadd_rn(a, b); }
DSV3_HD float fsub(float a, float b) { return __fsub_rn(a, b); }
DSV3_HD float fmul(float a, float b) { return __fmul_rn(a, b); }
DSV3_HD float fdiv(float a, float b) { return __fdiv_rn(a, b); }
DSV3_HD uint32_t f2u(float x) { return __float_as_uint(x); }
DSV3_HD float u2f(uint32_t x) { return __uint_as_float(x); }
#else
DSV3_HD float fadd(float a, float b) { return a + b; }
DSV3_HD float fsub(float a, float b) { return a - b; }
DSV3_HD float fmul(float a, float b) { return a * b; }
DSV3_HD float fdiv(float a, float b) { return a / b; }
DSV3_HD uint32_t f2u(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
DSV3_HD float u2f(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }
#endif

constexpr float kAmaxFloor = 1e-4f;  // DeepSeek kernel.py / DeepGEMM / DeepEP clamp

DSV3_HD bool is_nan(float x) { return (f2u(x) & 0x7fffffffu) > 0x7f800000u; }
DSV3_HD float abs_f(float x) { return u2f(f2u(x) & 0x7fffffffu); }
DSV3_HD float quiet_nan() { return u2f(0x7fc00000u); }
DSV3_HD float pos_inf() { return u2f(0x7f800000u); }

// Tile amax with NaN propagation (a NaN anywhere in the tile makes the tile's amax NaN, as
// torch.amax does); fmaxf would drop it. Combine partial results with amax_combine.
DSV3_HD float amax_combine(float m, float a) {
  if (is_nan(m) || is_nan(a)) return quiet_nan();
  return a > m ? a : m;
}

// Multipliers of the multiplying quantizer conventions (reference/fp8_quant.hpp), y = x * f;
// `a` is the tile amax already floored at kAmaxFloor.
//   fused:       f = fmax / a, one IEEE quotient (DeepEP's CUDA kernels: kFP8Amax / amax).
//   fused_torch: f = (1 / a) * fmax, two roundings: how torch evaluates DeepEP's Python helper
//                `448.0 / x_amax` (a Python scalar over a tensor is Tensor.__rtruediv__, which
//                is `self.reciprocal() * other`).
DSV3_HD float fused_multiplier(float a, float fmax) { return fdiv(fmax, a); }
DSV3_HD float fused_torch_multiplier(float a, float fmax) { return fmul(fdiv(1.0f, a), fmax); }

// Power of two >= s (DeepGEMM ceil_to_ue8m0): exponent field +1 unless the mantissa is zero,
// clamped to [1, 254]. s must be positive; NaN stays NaN.
DSV3_HD float ceil_pow2(float s) {
  if (is_nan(s)) return s;
  uint32_t u = f2u(s);
  uint32_t e = (u >> 23) & 0xffu;
  if (e == 0xffu) return u2f(254u << 23);
  if ((u & 0x7fffffu) != 0 || e == 0) ++e;
  if (e < 1) e = 1;
  if (e > 254) e = 254;
  return u2f(e << 23);
}

// 2^n for integer n in [-126, 127], exactly.
DSV3_HD float pow2i(int n) { return u2f(static_cast<uint32_t>(n + 127) << 23); }

// log2(x) for x > 0 (x = 0 gives -inf, Inf gives +inf). About 1e-7 relative accuracy; what
// matters is that host and device produce the same bits.
DSV3_HD float log2_det(float x) {
  if (x == 0.0f) return -pos_inf();
  if (!(x < pos_inf())) return x;
  int e = 0;
  if (x < 1.17549435e-38f) { x = fmul(x, 8388608.0f); e = -23; }  // subnormal: scale by 2^23
  const uint32_t u = f2u(x);
  e += static_cast<int>((u >> 23) & 0xffu) - 127;
  float m = u2f((u & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) { m = fmul(m, 0.5f); ++e; }
  // log2(m) = (2 / ln 2) * atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716
  const float t = fdiv(fsub(m, 1.0f), fadd(m, 1.0f));
  const float t2 = fmul(t, t);
  float p = 1.0f / 11.0f;
  p = fadd(fmul(p, t2), 1.0f / 9.0f);
  p = fadd(fmul(p, t2), 1.0f / 7.0f);
  p = fadd(fmul(p, t2), 1.0f / 5.0f);
  p = fadd(fmul(p, t2), 1.0f / 3.0f);
  p = fadd(fmul(p, t2), 1.0f);
  return fadd(static_cast<float>(e), fmul(fmul(p, t), 2.88539008f));
}

// 2^y. Results below the normal range are rounded once, correctly, by the last multiply.
DSV3_HD float exp2_det(float y) {
  if (is_nan(y)) return y;
  if (y >= 128.0f) return pos_inf();
  if (y < -160.0f) return 0.0f;
  float n = static_cast<float>(static_cast<int>(y));
  if (n > y) n = fsub(n, 1.0f);  // floor
  const float f = fsub(y, n);     // [0, 1), exact
  // 2^f = e^(f ln2), Taylor to degree 9 on [0, ln 2)
  const float z = fmul(f, 0.693147181f);
  float p = 1.0f / 362880.0f;
  p = fadd(fmul(p, z), 1.0f / 40320.0f);
  p = fadd(fmul(p, z), 1.0f / 5040.0f);
  p = fadd(fmul(p, z), 1.0f / 720.0f);
  p = fadd(fmul(p, z), 1.0f / 120.0f);
  p = fadd(fmul(p, z), 1.0f / 24.0f);
  p = fadd(fmul(p, z), 1.0f / 6.0f);
  p = fadd(fmul(p, z), 0.5f);
  p = fadd(fmul(p, z), 1.0f);
  p = fadd(fmul(p, z), 1.0f);
  const int ni = static_cast<int>(n);
  if (ni >= -126) return fmul(p, pow2i(ni));
  return fmul(fmul(p, pow2i(-126)), pow2i(ni + 126));
}

// ---- LogFMT-n (ISCA §3.2; DeepEP's logfmt_encode semantics) ----
// Group meta: log_amin = max(log2(amin), log2(amax) - 32), amin the smallest non-zero |x|;
// step = (log_amax - log_amin) / (2^(n-1) - 2); level j (code j+1) = 2^(log_amin + j*step).
struct LogFmtGroup {
  float log_amin, log_amax, step;
  bool fallback;  // group sent as BF16: amax >= 1, NaN/Inf present, or log_amin >= log_amax
};

DSV3_HD int logfmt_levels(int bits) { return (1 << (bits - 1)) - 1; }  // non-zero codes

// The group as a decoder sees it: from the stored (log_amin, log_amax) of an encoded group.
DSV3_HD LogFmtGroup logfmt_group_from_meta(float log_amin, float log_amax, int bits) {
  return {log_amin, log_amax, fdiv(fsub(log_amax, log_amin), static_cast<float>(logfmt_levels(bits) - 1)), false};
}

DSV3_HD LogFmtGroup logfmt_group(float amax, float amin_nonzero, bool has_nonfinite, int bits) {
  LogFmtGroup g;
  g.log_amax = log2_det(amax);
  const float floor_log = fsub(g.log_amax, 32.0f);
  const float lmin = amin_nonzero > 0.0f ? log2_det(amin_nonzero) : -pos_inf();
  g.log_amin = lmin > floor_log ? lmin : floor_log;
  g.fallback = has_nonfinite || !(amax < 1.0f) || !(g.log_amin < g.log_amax);
  g.step = g.fallback ? 0.0f : logfmt_group_from_meta(g.log_amin, g.log_amax, bits).step;
  return g;
}

DSV3_HD float logfmt_level(const LogFmtGroup& g, int j) {
  return exp2_det(fadd(g.log_amin, fmul(static_cast<float>(j), g.step)));
}

// Midpoint between level j-1 and level j; level -1 is zero.
DSV3_HD float logfmt_mid_below(const LogFmtGroup& g, int j) {
  const float hi = logfmt_level(g, j);
  const float lo = j > 0 ? logfmt_level(g, j - 1) : 0.0f;
  return fmul(fadd(lo, hi), 0.5f);
}

// Magnitude code in [0, levels]: 0 is zero, j+1 is level j. Nearest level in linear space, ties up.
DSV3_HD uint32_t logfmt_encode_mag(const LogFmtGroup& g, float a, int bits) {
  const int levels = logfmt_levels(bits);
  if (a == 0.0f) return 0;
  float t = fdiv(fsub(log2_det(a), g.log_amin), g.step);
  int j = t < -1.0f ? -1 : (t > static_cast<float>(levels - 1) ? levels - 1 : static_cast<int>(t));
  if (t < 0.0f && t > -1.0f) j = 0;
  while (j + 1 <= levels - 1 && a >= logfmt_mid_below(g, j + 1)) ++j;
  while (j >= 0 && a < logfmt_mid_below(g, j)) --j;
  return static_cast<uint32_t>(j + 1);
}

DSV3_HD float logfmt_decode_mag(const LogFmtGroup& g, uint32_t mag) {
  return mag == 0 ? 0.0f : logfmt_level(g, static_cast<int>(mag) - 1);
}

// A code of an encoded group (sign bit 2^(bits-1) over the magnitude code) as FP32.
DSV3_HD float logfmt_decode_code(const LogFmtGroup& g, uint32_t code, int bits) {
  const uint32_t sign_bit = 1u << (bits - 1);
  const float mag = logfmt_decode_mag(g, code & (sign_bit - 1));
  return (code & sign_bit) ? -mag : mag;
}

}  // namespace dsv3::fp8math
