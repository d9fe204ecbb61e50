// Property tests of the FP8 accumulation model (reference/fp8_accum.hpp). Every expected value
// below is derived by hand in the comment next to it; grid = 2^(E - frac_bits) where E is the
// leading-bit exponent of the largest member of the alignment set.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "reference/fp8_accum.hpp"

namespace dsv3::fp8accum {
namespace {

Model make(int frac, Rounding r, bool accin, Rounding wb = Rounding::nearest_even, int nc = 0) {
  Model m;
  m.frac_bits = frac;
  m.align_rounding = r;
  m.acc_in_alignment = accin;
  m.writeback = wb;
  m.promote_every = nc;
  return m;
}

std::vector<Model> all_models(int nc = 0) {
  std::vector<Model> ms;
  for (int f : {13, 14, 17, 23})
    for (Rounding r : {Rounding::truncate, Rounding::floor, Rounding::nearest_even})
      for (bool accin : {false, true})
        for (Rounding wb : {Rounding::truncate, Rounding::nearest_even}) ms.push_back(make(f, r, accin, wb, nc));
  return ms;
}

// Random E4M3-representable values with |v| <= max_abs (codes decoded by core/dtype.cpp).
std::vector<float> e4m3_values(int64_t n, uint64_t seed, double max_abs) {
  Rng rng(seed);
  std::vector<float> v;
  while (static_cast<int64_t>(v.size()) < n) {
    const uint8_t code = static_cast<uint8_t>(rng.next() >> 56);
    const double x = decode_element(DType::e4m3, &code, 0);
    if (std::isfinite(x) && std::fabs(x) <= max_abs) v.push_back(static_cast<float>(x));
  }
  return v;
}

// Small integers: |a| <= 4, |b| <= 2, K = 512: every partial sum is an integer below 2^12 in
// magnitude, every product an integer <= 8, so E <= 12 and the grid is <= 2^-1 for frac_bits >= 13:
// nothing is ever rounded and every model returns the exact sum, promoted or not.
TEST(Fp8AccumModel, SmallIntegersAreExactInEveryModel) {
  Rng rng(7);
  const int64_t k = 512;
  std::vector<float> a(k), b(k);
  double exact = 0;
  for (int64_t i = 0; i < k; ++i) {
    a[i] = static_cast<float>(static_cast<int>(rng.next() % 9) - 4);
    b[i] = static_cast<float>(static_cast<int>(rng.next() % 5) - 2);
    exact += a[i] * b[i];
  }
  for (int nc : {0, 32, 128})
    for (const Model& m : all_models(nc)) EXPECT_EQ(dot(a.data(), b.data(), k, m), exact) << m.to_string();
}

// frac_bits 23 with the accumulator in the alignment: |a|, |b| <= 0.875 so every product is a
// multiple of 2^-18 (E4M3's smallest step 2^-9, squared) below 0.77, and with K = 64 every partial
// sum is below 49 < 2^6: E <= 5, grid <= 2^-18 divides everything and FP32's 24 bits hold every
// partial sum (2^6 / 2^-18 = 2^24), so the model equals exact summation for every rounding.
TEST(Fp8AccumModel, Frac23AccInEqualsExactSumWhenEverythingFits) {
  const std::vector<float> a = e4m3_values(64, 11, 0.875), b = e4m3_values(64, 12, 0.875);
  double exact = 0;
  for (int i = 0; i < 64; ++i) exact += static_cast<double>(a[i]) * b[i];  // multiples of 2^-18 < 2^6: exact
  for (Rounding r : {Rounding::truncate, Rounding::floor, Rounding::nearest_even})
    EXPECT_EQ(static_cast<double>(dot(a.data(), b.data(), 64, make(23, r, true))), exact) << rounding_name(r);
}

// acc = 1024 = 2^10 and one product p = 0.1875 = 1.5 * 2^-3, frac_bits 13.
//   accin: E = 10, grid = 2^-3 = 0.125; p / grid = 1.5 -> trunc 1 (1024.125), RNE tie -> 2 (1024.25).
//   accout: p alone, E = -3, grid 2^-16: exact; 1024 + 0.1875 = 1024.1875 fits FP32 (ulp 2^-13).
// With p = -0.1875: accin trunc -1 -> 1023.875; floor -2 -> 1023.75; RNE tie -> -2 -> 1023.75.
TEST(Fp8AccumModel, TruncationRneAndAccumulatorAlignmentDiffer) {
  const float b = 1.0f, pa = 0.1875f, na = -0.1875f;
  EXPECT_EQ(mma_step(1024.0f, &pa, &b, 1, make(13, Rounding::truncate, true)), 1024.125f);
  EXPECT_EQ(mma_step(1024.0f, &pa, &b, 1, make(13, Rounding::nearest_even, true)), 1024.25f);
  EXPECT_EQ(mma_step(1024.0f, &pa, &b, 1, make(13, Rounding::truncate, false)), 1024.1875f);
  EXPECT_EQ(mma_step(1024.0f, &pa, &b, 1, make(13, Rounding::nearest_even, false)), 1024.1875f);
  EXPECT_EQ(mma_step(1024.0f, &na, &b, 1, make(13, Rounding::truncate, true)), 1023.875f);
  EXPECT_EQ(mma_step(1024.0f, &na, &b, 1, make(13, Rounding::floor, true)), 1023.75f);
  EXPECT_EQ(mma_step(1024.0f, &na, &b, 1, make(13, Rounding::nearest_even, true)), 1023.75f);
}

// The accumulator itself is aligned: acc = 1024.09375 = 1024 + 3/32, p = 2^-9, frac_bits 13,
// grid 0.125: acc / grid = 8192.75 -> trunc 8192 (1024.0), RNE 8193 (1024.125); p rounds to 0.
// accout: 1024.09375 + 2^-9 = 1024.095703125, exact in FP32 (a multiple of 2^-13 below 2^11).
TEST(Fp8AccumModel, AccumulatorLosesItsOwnLowBitsWhenAligned) {
  const float a = 0.001953125f, b = 1.0f;
  EXPECT_EQ(mma_step(1024.09375f, &a, &b, 1, make(13, Rounding::truncate, true)), 1024.0f);
  EXPECT_EQ(mma_step(1024.09375f, &a, &b, 1, make(13, Rounding::nearest_even, true)), 1024.125f);
  EXPECT_EQ(mma_step(1024.09375f, &a, &b, 1, make(13, Rounding::truncate, false)), 1024.095703125f);
}

// Swamping: acc = 2^20, 32 products of 96 = 1.5 * 2^6, frac_bits 13 -> grid 2^7 = 128.
//   accin trunc: 96/128 = 0.75 -> 0 each: the sum stays 2^20 = 1048576.
//   accin RNE: 0.75 -> 1 each: 2^20 + 32 * 128 = 1052672.
//   accout: products alone are exact (E = 6), 2^20 + 3072 = 1051648 fits FP32.
TEST(Fp8AccumModel, LargeAccumulatorSwampsSmallProducts) {
  const std::vector<float> a(32, 96.0f), b(32, 1.0f);
  EXPECT_EQ(mma_step(1048576.0f, a.data(), b.data(), 32, make(13, Rounding::truncate, true)), 1048576.0f);
  EXPECT_EQ(mma_step(1048576.0f, a.data(), b.data(), 32, make(13, Rounding::nearest_even, true)), 1052672.0f);
  EXPECT_EQ(mma_step(1048576.0f, a.data(), b.data(), 32, make(13, Rounding::truncate, false)), 1051648.0f);
}

// Write-back rounding, frac_bits 23, acc 0: products 60, 4 and 3 * 2^-18 (2^-9 x 3*2^-9).
// E = 5, grid 2^-18: all exact; the sum 64 + 3 * 2^-18 needs 25 bits. FP32 ulp at 64 is 2^-17, so
// the sum is 64 + 1.5 ulp: RNE -> 64 + 2^-16, truncation -> 64 + 2^-17. With frac_bits 13 the grid
// is 2^-8 and the small product truncates away: 64.
TEST(Fp8AccumModel, WriteBackRounding) {
  const float a[3] = {60.0f, 4.0f, 0.001953125f}, b[3] = {1.0f, 1.0f, 0.005859375f};
  EXPECT_EQ(mma_step(0.0f, a, b, 3, make(23, Rounding::truncate, true, Rounding::nearest_even)), 64.0f + 0x1p-16f);
  EXPECT_EQ(mma_step(0.0f, a, b, 3, make(23, Rounding::truncate, true, Rounding::truncate)), 64.0f + 0x1p-17f);
  EXPECT_EQ(mma_step(0.0f, a, b, 3, make(13, Rounding::truncate, true)), 64.0f);
}

// Product exponent source, frac_bits 13, acc 0, b = 1.875: products 448 x 1.875 = 840 (leading bit
// 2^9, operand exponents 8 + 0) and 2^-5 x 1.875 = 0.05859375.
//   value:    E = 9, grid 2^-4: 0.05859375 = 0.9375 units -> trunc 0: 840.
//   operands: E = 8, grid 2^-5: 1.875 units -> trunc 1: 840 + 2^-5 = 840.03125.
TEST(Fp8AccumModel, ProductExponentFromValueOrOperands) {
  const float a[2] = {448.0f, 0.03125f}, b[2] = {1.875f, 1.875f};
  Model m = make(13, Rounding::truncate, true);
  EXPECT_EQ(mma_step(0.0f, a, b, 2, m), 840.0f);
  m.align_exponent = ExpSource::operands;
  EXPECT_EQ(mma_step(0.0f, a, b, 2, m), 840.03125f);
  EXPECT_EQ(m.to_string(), "c32 f13 trunc accin wb=rne nc=never opexp");
  const double p[2] = {840.0, 0.05859375};
  EXPECT_THROW(mma_step_products(0.0f, p, nullptr, 2, m), std::invalid_argument);
}

// promote_every = chunk: every step starts from +0 and is added into an FP32 sum with IEEE RNE,
// i.e. dot == sum over chunks of fp32(mma_step(0, chunk)) accumulated in FP32.
TEST(Fp8AccumModel, PromoteEveryChunkIsPerChunkFp32Accumulation) {
  const int64_t k = 1000;  // not a multiple of 32: the last chunk has 8 elements
  const std::vector<float> a = e4m3_values(k, 21, 448), b = e4m3_values(k, 22, 448);
  for (const Model& m : all_models(32)) {
    float expect = 0.0f;
    for (int64_t s = 0; s < k; s += 32)
      expect = expect + mma_step(0.0f, a.data() + s, b.data() + s, static_cast<int>(std::min<int64_t>(32, k - s)), m);
    EXPECT_EQ(dot(a.data(), b.data(), k, m), expect) << m.to_string();
  }
}

// The V3 report's claim in miniature: on K = 4096 normal-ish E4M3 inputs, the truncating 13-bit
// model without promotion loses more than with promotion every 128 (summed over 16 dot products).
TEST(Fp8AccumModel, PromotionReducesTruncationError) {
  const int64_t k = 4096;
  double err_never = 0, err_128 = 0;
  for (int r = 0; r < 16; ++r) {
    std::vector<float> a = e4m3_values(k, 100 + r, 8), b = e4m3_values(k, 200 + r, 8);
    double exact = 0;
    for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(a[i]) * b[i];
    err_never += std::fabs(dot(a.data(), b.data(), k, v3_report_model(0)) - exact);
    err_128 += std::fabs(dot(a.data(), b.data(), k, v3_report_model(128)) - exact);
  }
  EXPECT_GT(err_never, 2 * err_128);
}

// round_to_f32 on exact values: 2^24 + 1 is a tie (RNE -> 2^24, even); 2^24 + 3 -> 2^24 + 4 (RNE)
// or 2^24 + 2 (trunc); 2^-150 * 3 = 1.5 * 2^-149 -> RNE 2^-148, trunc 2^-149, flushed 0; 2^128
// overflows to inf (RNE) or FLT_MAX (trunc); negative values mirror.
TEST(Fp8AccumModel, RoundToF32) {
  EXPECT_EQ(round_to_f32((1 << 24) + 1, 0, Rounding::nearest_even), 16777216.0f);
  EXPECT_EQ(round_to_f32((1 << 24) + 3, 0, Rounding::nearest_even), 16777220.0f);
  EXPECT_EQ(round_to_f32((1 << 24) + 3, 0, Rounding::truncate), 16777218.0f);
  EXPECT_EQ(round_to_f32(-((1 << 24) + 3), 0, Rounding::truncate), -16777218.0f);
  EXPECT_EQ(round_to_f32(3, -150, Rounding::nearest_even), 0x1p-148f);
  EXPECT_EQ(round_to_f32(3, -150, Rounding::truncate), 0x1p-149f);
  EXPECT_EQ(round_to_f32(3, -150, Rounding::nearest_even, true), 0.0f);
  EXPECT_EQ(round_to_f32(1, 128, Rounding::nearest_even), INFINITY);
  EXPECT_EQ(round_to_f32(1, 128, Rounding::truncate), FLT_MAX);
}

// FP32 subnormal flush: c = 1.5 * 2^-140 (subnormal) plus zero products. Without flush every
// model returns c (accin: c alone sets E and has 2 significant bits, exact; accout: nothing to
// add); with flush both return +0.
TEST(Fp8AccumModel, SubnormalAccumulatorFlush) {
  const float c = std::ldexp(1.5f, -140), zero[2] = {0.0f, 0.0f};
  for (bool accin : {true, false}) {
    Model m = make(13, Rounding::truncate, accin);
    EXPECT_EQ(mma_step(c, zero, zero, 2, m), c) << m.to_string();
    m.flush_subnormals = true;
    EXPECT_EQ(mma_step(c, zero, zero, 2, m), 0.0f) << m.to_string();
    EXPECT_FALSE(std::signbit(mma_step(c, zero, zero, 2, m)));
  }
}

TEST(Fp8AccumModel, ValidateNamesTheField) {
  Model m;
  m.promote_every = 48;
  EXPECT_THROW(m.validate(), std::invalid_argument);
  m.promote_every = 128;
  EXPECT_NO_THROW(m.validate());
  EXPECT_EQ(m.to_string(), "c32 f13 trunc accin wb=rne nc=128");
}

}  // namespace
}  // namespace dsv3::fp8accum
