// Scalar math of the training step shared by the CPU reference and the CUDA step
// (reference/fp8_train.hpp, optimized/fp8_train.cu), written so that both compute the same bits:
// every operation is one IEEE round-to-nearest operation through explicit intrinsics on the
// device (no FMA contraction) and plain operators on the host (built with -ffp-contract=off).
//   exp_det      e^x in FP64 from +, *, floor and exact scaling: Cody-Waite reduction by ln 2 and
//                a degree-13 Taylor polynomial (error about 1e-16 relative, the same on both sides,
//                where libm's exp and CUDA's differ in the last bit)
//   silu_det, silu_grad_det   SwiGLU's pieces on it
//   bf16_rn      RNE of a float to BF16 (finite or Inf input; NaN is handled by the callers)
//   AdamWConst, adamw_element   the AdamW update of fp8_train.hpp, per element
#pragma once

#include <cmath>
#include <cstdint>

#include "core/fp8_math.hpp"

namespace dsv3::fp8train::math {

#if defined(__CUDA_ARCH__)
DSV3_HD double dadd(double a, double b) { return __dadd_rn(a, b); }
DSV3_HD double dsub(double a, double b) { return __dsub_rn(a, b); }
DSV3_HD double dmul(double a, double b) { return __dmul_rn(a, b); }
DSV3_HD double ddiv(double a, double b) { return __ddiv_rn(a, b); }
DSV3_HD double dfloor(double a) { return floor(a); }
DSV3_HD double dscale2(double a, int e) { return ldexp(a, e); }
DSV3_HD float fsqrt(float a) { return __fsqrt_rn(a); }
DSV3_HD double dinf() { return __longlong_as_double(0x7ff0000000000000ll); }
#else
DSV3_HD double dadd(double a, double b) { return a + b; }
DSV3_HD double dsub(double a, double b) { return a - b; }
DSV3_HD double dmul(double a, double b) { return a * b; }
DSV3_HD double ddiv(double a, double b) { return a / b; }
DSV3_HD double dfloor(double a) { return std::floor(a); }
DSV3_HD double dscale2(double a, int e) { return std::ldexp(a, e); }
DSV3_HD float fsqrt(float a) { return std::sqrt(a); }
DSV3_HD double dinf() { return HUGE_VAL; }
#endif

DSV3_HD double exp_det(double x) {
  if (x != x) return x;                     // NaN
  if (x > 709.78) return dinf();            // overflows
  if (x < -745.2) return 0.0;               // below the smallest subnormal
  constexpr double kInvLn2 = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 32 bits: k * kLn2Hi is exact for |k| < 2^20
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double k = dfloor(dadd(dmul(x, kInvLn2), 0.5));
  const double r = dsub(dsub(x, dmul(k, kLn2Hi)), dmul(k, kLn2Lo));  // |r| <= 0.35
  double p = 1.0 / 6227020800.0;                                       // 1/13!
  constexpr double kInvFact[13] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                                   1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,     1.0 / 120.0,
                                   1.0 / 24.0,        1.0 / 6.0,        0.5,             1.0, 1.0};
  for (double c : kInvFact) p = dadd(dmul(p, r), c);
  return dscale2(p, static_cast<int>(k));  // exact scaling (one rounding in the subnormal range)
}

DSV3_HD double silu_det(double h) { return ddiv(h, dadd(1.0, exp_det(-h))); }

DSV3_HD double silu_grad_det(double h) {  // s (1 + h (1 - s)), s = sigmoid(h)
  const double s = ddiv(1.0, dadd(1.0, exp_det(-h)));
  return dmul(s, dadd(1.0, dmul(h, dsub(1.0, s))));
}

DSV3_HD float bf16_rn(float x) {
  const uint32_t u = fp8math::f2u(x);
  return fp8math::u2f((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

// The scalars of one AdamW step, rounded once to FP32 from FP64 (fp8_train.hpp).
struct AdamWConst {
  float b1, b2, c1, c2, decay, eps, bc2_sqrt, step_size;
};

// The moments' update from gradient g (m and v BF16 values, updated in place): m is
// non-decreasing in g and v in |g| (every rounding is monotone).
DSV3_HD void adamw_moments(const AdamWConst& k, float g, float& m, float& v) {
  namespace fm = fp8math;
  m = bf16_rn(fm::fadd(fm::fmul(k.b1, m), fm::fmul(k.c1, g)));
  v = bf16_rn(fm::fadd(fm::fmul(k.b2, v), fm::fmul(fm::fmul(k.c2, g), g)));
}

// The master weight's update from the new moments: non-increasing in m, and monotone in v.
DSV3_HD float adamw_weight(const AdamWConst& k, float w, float m, float v) {
  namespace fm = fp8math;
  const float decayed = fm::fmul(w, k.decay);
  const float denom = fm::fadd(fm::fdiv(fsqrt(v), k.bc2_sqrt), k.eps);
  return fm::fsub(decayed, fm::fmul(k.step_size, fm::fdiv(m, denom)));
}

// One element: w FP32 master, g FP32 gradient, m and v BF16 values (updated in place).
DSV3_HD void adamw_element(const AdamWConst& k, float g, float& w, float& m, float& v) {
  adamw_moments(k, g, m, v);
  w = adamw_weight(k, w, m, v);
}

}  // namespace dsv3::fp8train::math
