// Codec rules of core/dtype.hpp, from the format definitions (OCP FP8 spec; IEEE 754), and the
// compiler's own _Float16 conversion as an independent f16 implementation.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "core/dtype.hpp"
#include "core/fill.hpp"

namespace dsv3 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(Dtype, E4M3FormatConstants) {
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);            // S.1111.110 = max
  EXPECT_EQ(e4m3_to_f32(0x08), 0x1p-6f);           // min normal
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1p-9f);           // min subnormal
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));      // the only NaNs
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_EQ(e4m3_to_f32(0x80), -0.0f);
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));
}

TEST(Dtype, E5M2FormatConstants) {
  EXPECT_EQ(e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(e5m2_to_f32(0x7c), kInf);
  EXPECT_EQ(e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(e5m2_to_f32(0x04), 0x1p-14f);
  EXPECT_TRUE(std::isnan(e5m2_to_f32(0x7d)));
}

TEST(Dtype, EveryFp8CodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    const float v4 = e4m3_to_f32(static_cast<uint8_t>(c));
    if (!std::isnan(v4)) {
      EXPECT_EQ(f32_to_e4m3(v4, Saturation::none), c) << "e4m3 code " << c;
    }
    const float v5 = e5m2_to_f32(static_cast<uint8_t>(c));
    if (!std::isnan(v5)) {
      EXPECT_EQ(f32_to_e5m2(v5, Saturation::none), c) << "e5m2 code " << c;
    }
  }
}

TEST(Dtype, E4M3RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(f32_to_e4m3(464.0f, Saturation::none), 0x7e);  // tie 448|480: even mantissa (448)
  EXPECT_EQ(f32_to_e4m3(std::nextafter(464.0f, kInf), Saturation::none), 0x7f);  // rounds to 480: overflow -> NaN
  EXPECT_EQ(f32_to_e4m3(std::nextafter(464.0f, kInf), Saturation::finite), 0x7e);
  EXPECT_EQ(f32_to_e4m3(kInf, Saturation::finite), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-kInf, Saturation::finite), 0xfe);
  EXPECT_EQ(f32_to_e4m3(kInf, Saturation::none), 0x7f);
  EXPECT_EQ(f32_to_e4m3(kNaN), 0x7f);
  EXPECT_EQ(f32_to_e4m3(-kNaN), 0x7f);                       // CUDA's cvt drops the NaN sign
  EXPECT_EQ(f32_to_e4m3(0x1p-10f), 0x00);                    // half the min subnormal: tie to even (0)
  EXPECT_EQ(f32_to_e4m3(0x1.8p-10f), 0x01);                  // above the tie
  EXPECT_EQ(f32_to_e4m3(0x1.8p-9f), 0x02);                   // tie 1|2 -> even (2)
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);                     // tie 1.0|1.125 -> 1.0 (even)
  EXPECT_EQ(f32_to_e4m3(1.1875f), 0x3a);                     // tie 1.125|1.25 -> 1.25 (even)
}

TEST(Dtype, E5M2OverflowIsInfWithoutSaturation) {
  EXPECT_EQ(f32_to_e5m2(61440.0f, Saturation::none), 0x7c);  // tie 57344|65536 -> even (65536): Inf
  EXPECT_EQ(f32_to_e5m2(61440.0f, Saturation::finite), 0x7b);
  EXPECT_EQ(f32_to_e5m2(-kInf, Saturation::none), 0xfc);
  EXPECT_EQ(f32_to_e5m2(-kInf, Saturation::finite), 0xfb);
}

TEST(Dtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to Inf
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x00000001u)), 0x0000);  // f32 min subnormal -> 0
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // subnormal tie -> even
  EXPECT_EQ(f32_to_bf16(-kNaN), 0xffc0);
  for (uint32_t c = 0; c < 0x10000; c += 7) {
    const float v = bf16_to_f32(static_cast<uint16_t>(c));
    if (!std::isnan(v)) {
      EXPECT_EQ(f32_to_bf16(v), c);
    }
  }
}

// The bit-manipulating f32_to_bf16 and f32_to_e4m3 against the format-generic encoder: a stride
// through all float32 bit patterns, and every representable value with its neighbours and the
// exact midpoints to the next value (ties) with theirs, both signs, both saturation modes.
TEST(Dtype, FastEncodersEqualTheGenericOne) {
  std::vector<float> xs;
  for (uint64_t u = 0; u < (1ull << 32); u += 4093) xs.push_back(std::bit_cast<float>(static_cast<uint32_t>(u)));
  auto around = [&](float v, float next) {
    const float mid = static_cast<float>((static_cast<double>(v) + next) / 2);
    for (float x : {v, mid})
      xs.insert(xs.end(), {x, std::nextafter(x, INFINITY), std::nextafter(x, -INFINITY)});
  };
  for (uint32_t c = 0; c < 0x7f80; ++c) around(bf16_to_f32(static_cast<uint16_t>(c)), bf16_to_f32(static_cast<uint16_t>(c + 1)));
  for (uint32_t c = 0; c < 0x7e; ++c) around(e4m3_to_f32(static_cast<uint8_t>(c)), e4m3_to_f32(static_cast<uint8_t>(c + 1)));
  around(448.0f, 480.0f);
  xs.insert(xs.end(), {INFINITY, kNaN, 0.0f});
  const std::size_t n = xs.size();
  for (std::size_t i = 0; i < n; ++i) xs.push_back(-xs[i]);
  for (float x : xs) {
    ASSERT_EQ(f32_to_bf16(x), f32_encode_generic(x, DType::bf16, Saturation::none)) << std::bit_cast<uint32_t>(x);
    for (Saturation sat : {Saturation::none, Saturation::finite})
      ASSERT_EQ(f32_to_e4m3(x, sat), f32_encode_generic(x, DType::e4m3, sat)) << std::bit_cast<uint32_t>(x);
  }
}

// bf16_from_f64 rounds once to the nearest BF16, ties to even: for each d, the result and the
// BF16 values either side of it are compared by their distance to d (exact in double: the two
// neighbours bracket d, so Sterbenz's lemma applies). Doubles across the whole range, including
// ties, values a hair from ties (which FP32 would round onto the tie), subnormals and overflow.
TEST(Dtype, Bf16FromF64RoundsOnceToNearestEven) {
  std::vector<double> ds;
  Rng rng(42);
  for (int i = 0; i < 200000; ++i) {
    const double m = 1.0 + rng.uniform01();
    ds.push_back(std::ldexp(m, static_cast<int>(rng.next() % 280) - 140));
  }
  for (uint32_t c = 1; c < 0x7f80; c += 3) {  // ties and their neighbours in double
    const double v = bf16_to_f32(static_cast<uint16_t>(c)), next = bf16_to_f32(static_cast<uint16_t>(c + 1));
    const double mid = (v + next) / 2;
    ds.insert(ds.end(), {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e300), v});
  }
  ds.insert(ds.end(), {0x1.fefffffffffffp127, 0x1.ff00000000000p127, 1e300, 0.0});
  for (double d : ds) {
    for (double x : {d, -d}) {
      const uint16_t c = bf16_from_f64(x);
      const double got = bf16_to_f32(c);
      const uint16_t mag = c & 0x7fff;
      if (std::isinf(got)) {  // overflow only at or beyond the midpoint above the largest finite BF16
        ASSERT_GE(std::fabs(x), 0x1.ff00000000000p127) << x;
        continue;
      }
      const double up = bf16_to_f32(static_cast<uint16_t>(mag + 1)), down = mag ? bf16_to_f32(static_cast<uint16_t>(mag - 1)) : 0.0;
      const double ax = std::fabs(x), ag = std::fabs(got);
      ASSERT_LE(std::fabs(ax - ag), std::fabs(up - ax)) << x;
      ASSERT_LE(std::fabs(ax - ag), std::fabs(ax - down)) << x;
      if (std::fabs(ax - ag) == std::fabs(up - ax) || (mag && std::fabs(ax - ag) == std::fabs(ax - down))) {
        ASSERT_EQ(mag & 1, 0) << "tie not to even: " << x;
      }
      ASSERT_EQ(std::signbit(got), std::signbit(x)) << x;
    }
  }
  EXPECT_EQ(bf16_from_f64(std::numeric_limits<double>::quiet_NaN()), 0x7fc0);
  EXPECT_EQ(bf16_from_f64(-std::numeric_limits<double>::infinity()), 0xff80);
}

TEST(Dtype, F16MatchesTheCompilersConversion) {
  Rng rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng.next()));
    if (std::isnan(x)) continue;
    const _Float16 h = static_cast<_Float16>(x);
    ASSERT_EQ(f32_to_f16(x), std::bit_cast<uint16_t>(h)) << "x = " << x;
    ASSERT_EQ(std::bit_cast<uint32_t>(f16_to_f32(std::bit_cast<uint16_t>(h))),
              std::bit_cast<uint32_t>(static_cast<float>(h)));
  }
}

TEST(Dtype, Ue8m0CeilsToPowersOfTwo) {
  EXPECT_EQ(ue8m0_to_f32(f32_to_ue8m0_ceil(1.0f)), 1.0f);
  EXPECT_EQ(ue8m0_to_f32(f32_to_ue8m0_ceil(1.0000001f)), 2.0f);
  EXPECT_EQ(ue8m0_to_f32(f32_to_ue8m0_ceil(0.3f)), 0.5f);
  EXPECT_EQ(f32_to_ue8m0_ceil(0.0f), 0xff);
  EXPECT_EQ(f32_to_ue8m0_ceil(-1.0f), 0xff);
  EXPECT_EQ(f32_to_ue8m0_ceil(kInf), 254);
  EXPECT_TRUE(std::isnan(ue8m0_to_f32(0xff)));
  EXPECT_EQ(ue8m0_to_f32(127), 1.0f);
  EXPECT_EQ(ue8m0_to_f32(0), 0x1p-127f);
}

TEST(Dtype, NamesRoundTripAndUnknownNamesAreErrors) {
  for (DType t : {DType::f32, DType::bf16, DType::e4m3, DType::e5m2, DType::ue8m0}) EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  EXPECT_THROW(dtype_from_name("fp9"), std::invalid_argument);
}

TEST(Fill, SeededFillsAreDeterministicAndDistinct) {
  EXPECT_EQ(draw(Dist::normal, 42, 16, 16), draw(Dist::normal, 42, 16, 16));
  EXPECT_NE(draw(Dist::normal, 42, 16, 16), draw(Dist::normal, 43, 16, 16));
  EXPECT_NE(seed_from("case a"), seed_from("case b"));
  for (float v : draw(Dist::small_ints, 1, 1000, 10)) EXPECT_TRUE(v == std::round(v) && std::fabs(v) <= 8);
  int nan = 0, inf = 0;
  for (float v : draw(Dist::adversarial, 1, 4000, 10)) { nan += std::isnan(v); inf += std::isinf(v); }
  EXPECT_GT(nan, 0);
  EXPECT_GT(inf, 0);
  EXPECT_THROW(dist_from_name("gaussian"), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3
