// The FP8 quantization reference, tested against properties that follow from its definition
// (reference/fp8_quant.hpp). CUDA and other variants are checked against this reference by the
// generic checker (test_main.cpp), bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp8_math.hpp"
#include "core/parallel.hpp"
#include "correctness/reference_run.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {
namespace {

Params make(Op op, int64_t m, int64_t k, Dist d = Dist::normal) {
  Params p;
  p.op = op; p.m = m; p.k = k; p.dist = d;
  return p;
}

Tensor bf16_tensor(int64_t m, int64_t k, const std::vector<float>& v) {
  Tensor t("x", DType::bf16, {m, k});
  auto s = t.span<uint16_t>();
  for (std::size_t i = 0; i < v.size(); ++i) s[i] = f32_to_bf16(v[i]);
  return t;
}

std::vector<Tensor> quantize(const Params& p, const Tensor& x) { return run_reference_poisoned(p, {x}); }

TEST(Fp8QuantRef, KnownTile) {
  // One 1x128 tile of integers -8..8: amax 8, s = 8/448, and x/s lands on e4m3 values.
  std::vector<float> v(128);
  for (int i = 0; i < 128; ++i) v[i] = static_cast<float>(i % 17 - 8);
  const Params p = make(Op::quant_1x128, 1, 128);
  const auto out = quantize(p, bf16_tensor(1, 128, v));
  EXPECT_EQ(out[1].span<float>()[0], 8.0f / 448.0f);
  EXPECT_EQ(out[0].span<uint8_t>()[16], 0x7e);  // x = 8 -> 448, the max code
  EXPECT_EQ(out[0].span<uint8_t>()[9], 0x66);   // x = 1 -> 56 = 1.75 * 2^5: exponent field 12, mantissa 6
  EXPECT_EQ(out[0].span<uint8_t>()[8], 0x00);   // x = 0
}

TEST(Fp8QuantRef, RoundTripErrorIsAtMostHalfAnUlp) {
  for (Elem e : {Elem::e4m3, Elem::e5m2}) {
    Params p = make(Op::quant_1x128, 33, 1000);
    p.elem = e;
    const auto in = make_inputs(p);
    const auto out = quantize(p, in[0]);
    const double half_ulp_rel = e == Elem::e4m3 ? 0x1p-4 : 0x1p-3;     // 3 or 2 mantissa bits
    const double min_normal = e == Elem::e4m3 ? 0x1p-6 : 0x1p-14;
    const double sub_quantum = e == Elem::e4m3 ? 0x1p-9 : 0x1p-16;
    for (int64_t r = 0; r < p.m; ++r)
      for (int64_t c = 0; c < p.k; ++c) {
        const double s = out[1].get(r * tiles(p.k) + c / kTile), x = in[0].get(r * p.k + c);
        const double q = out[0].get(r * p.k + c) * s;
        // Normal range: relative half ulp (plus the f32 rounding of x/s); subnormal: absolute.
        const double bound = std::fabs(x / s) >= min_normal ? half_ulp_rel * std::fabs(x) * (1 + 1e-6) : 0.5 * sub_quantum * s;
        ASSERT_LE(std::fabs(q - x), bound) << p.to_string() << " at [" << r << ", " << c << "]";
      }
  }
}

TEST(Fp8QuantRef, RaggedSizesBehaveAsZeroPadded) {
  const Params p = make(Op::quant_128x128, 130, 300);
  const Tensor x = make_inputs(p)[0];
  Params pp = make(Op::quant_128x128, 256, 384);
  Tensor padded("x", DType::bf16, {256, 384});
  std::fill(padded.span<uint16_t>().begin(), padded.span<uint16_t>().end(), 0);
  for (int64_t r = 0; r < 130; ++r)
    for (int64_t c = 0; c < 300; ++c) padded.span<uint16_t>()[r * 384 + c] = x.span<const uint16_t>()[r * 300 + c];
  const auto a = quantize(p, x), b = quantize(pp, padded);
  for (int64_t i = 0; i < a[1].numel(); ++i) EXPECT_EQ(a[1].span<float>()[i], b[1].span<float>()[i]) << "scale " << i;
  for (int64_t r = 0; r < 130; ++r)
    for (int64_t c = 0; c < 300; ++c) ASSERT_EQ(a[0].span<uint8_t>()[r * 300 + c], b[0].span<uint8_t>()[r * 384 + c]);
  for (uint8_t code : b[0].span<uint8_t>().subspan(131 * 384)) ASSERT_EQ(code, 0);  // padding quantizes to zero
}

TEST(Fp8QuantRef, AmaxFloorForAllZeroTiles) {
  const Params p = make(Op::quant_1x128, 2, 256, Dist::zeros);
  const auto out = quantize(p, make_inputs(p)[0]);
  for (float s : out[1].span<float>()) EXPECT_EQ(s, 1e-4f / 448.0f);
  for (uint8_t c : out[0].span<uint8_t>()) EXPECT_EQ(c, 0);
}

TEST(Fp8QuantRef, Ue8m0ScalesArePowersOfTwoCoveringAmax) {
  Params p = make(Op::quant_1x128, 16, 512);
  p.scale_fmt = ScaleFmt::ue8m0;
  const Tensor x = make_inputs(p)[0];
  const auto out = quantize(p, x);
  for (int64_t t = 0; t < out[1].numel(); ++t) {
    const float s = out[1].span<float>()[t];
    EXPECT_EQ(ue8m0_to_f32(f32_to_ue8m0_ceil(s)), s) << "not a power of two: " << s;
    float amax = 0;
    for (int64_t c = 0; c < 128; ++c) amax = std::max(amax, std::fabs(static_cast<float>(x.get(t / 4 * 512 + (t % 4) * 128 + c))));
    EXPECT_GE(s * 448.0f, amax);
    EXPECT_LT(s * 448.0f, 2 * amax);
  }
}

TEST(Fp8QuantRef, ConventionsDifferByAtMostOneCodeAndAgreeForPowerOfTwoScales) {
  for (ScaleFmt f : {ScaleFmt::f32, ScaleFmt::ue8m0}) {
    Params p = make(Op::quant_1x128, 64, 1024, Dist::uniform);
    p.scale_fmt = f;
    const Tensor x = make_inputs(p)[0];
    p.conv = Convention::divide;
    const auto d = quantize(p, x);
    for (Convention c : {Convention::reciprocal, Convention::fused, Convention::fused_torch}) {
      p.conv = c;
      const auto o = quantize(p, x);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const int a = d[0].span<uint8_t>()[i], b = o[0].span<uint8_t>()[i];
        if (f == ScaleFmt::ue8m0) ASSERT_EQ(a, b) << conv_name(c) << " at " << i;
        else ASSERT_LE(std::abs((a & 0x7f) - (b & 0x7f)), 1) << conv_name(c) << " at " << i;
      }
    }
  }
}

TEST(Fp8QuantRef, NanPoisonsItsTileOnlyAndInfGivesNanCode) {
  std::vector<float> v(256, 1.0f);
  v[5] = std::numeric_limits<float>::quiet_NaN();
  v[130] = std::numeric_limits<float>::infinity();
  const Params p = make(Op::quant_1x128, 1, 256);
  const auto out = quantize(p, bf16_tensor(1, 256, v));
  EXPECT_TRUE(std::isnan(out[1].span<float>()[0]));
  EXPECT_TRUE(std::isinf(out[1].span<float>()[1]));
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[0].span<uint8_t>()[i], 0x7f);
  EXPECT_EQ(out[0].span<uint8_t>()[130], 0x7f);  // Inf / Inf
  EXPECT_EQ(out[0].span<uint8_t>()[131], 0x00);  // 1 / Inf
}

TEST(Fp8QuantRef, RetileRequantizesEach128TokenColumnSegment) {
  const Params p = make(Op::retile_1x128_to_128x1, 200, 256);
  const std::vector<Tensor> in = make_inputs(p);  // 1x128 codes + scales of a normal fill
  std::vector<Tensor> out = make_outputs(p);
  run_reference(p, in, out);
  const Tensor &codes = in[0], &scales = in[1], &codes_t = out[0], &scales_t = out[1];
  for (int64_t c = 0; c < p.k; ++c)
    for (int64_t mb = 0; mb < tiles(p.m); ++mb) {
      // The 128x1 scale is the tile scale of the dequantized column segment.
      float amax = 0;
      for (int64_t r = mb * kTile; r < std::min(p.m, (mb + 1) * kTile); ++r)
        amax = std::max(amax, std::fabs(static_cast<float>(codes.get(r * p.k + c)) *
                                        static_cast<float>(scales.get(r * tiles(p.k) + c / kTile))));
      const float st = scales_t.span<const float>()[c * tiles(p.m) + mb];
      ASSERT_EQ(st, tile_scale(amax, p.elem, p.scale_fmt)) << "channel " << c << ", token tile " << mb;
      // Values survive within one e4m3 half ulp (relative) of the requantization.
      for (int64_t r = mb * kTile; r < std::min(p.m, (mb + 1) * kTile); ++r) {
        const double x = codes.get(r * p.k + c) * scales.get(r * tiles(p.k) + c / kTile);
        const double y = codes_t.get(c * p.m + r) * st;
        if (std::fabs(x / st) >= 0x1p-6) ASSERT_LE(std::fabs(y - x), 0x1p-4 * std::fabs(x) * (1 + 1e-6)) << r << ", " << c;
        else ASSERT_LE(std::fabs(y - x), 0x1p-10 * st) << r << ", " << c;
      }
    }
}

TEST(Fp8QuantRef, WrongShapesNameExpectedAndGiven) {
  const Params p = make(Op::quant_1x128, 4, 256);
  Tensor x("x", DType::bf16, {4, 200});
  std::vector<Tensor> out = make_outputs(p);
  try {
    quant_1x128(x, out[0], out[1], p);
    FAIL() << "no error for a wrong input shape";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 256]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[4, 200]"), std::string::npos) << e.what();
  }
  Params bad = p;
  bad.k = 0;
  EXPECT_THROW(make_inputs(bad), std::invalid_argument);
}

TEST(LogFmtMath, DeterministicLog2AndExp2AreAccurate) {
  // Series truncated far below float precision: error is a few float roundings (< 4e-7 rel / abs).
  for (float x = 1e-30f; x < 1e30f; x *= 1.37f) {
    EXPECT_NEAR(fp8math::log2_det(x), std::log2(static_cast<double>(x)), 4e-7 * std::max(1.0, std::fabs(std::log2(static_cast<double>(x))))) << x;
  }
  for (float y = -140.0f; y < 127.0f; y += 0.173f) {
    const double want = std::exp2(static_cast<double>(y));
    EXPECT_NEAR(fp8math::exp2_det(y), want, 4e-7 * want + 0x1p-149) << y;
  }
}

TEST(LogFmt, EncodesToTheNearestLevelInLinearSpace) {
  for (int bits : {8, 10}) {
    Params p = make(Op::logfmt, 8, 512);
    p.logfmt_bits = bits;
    p.scale = 0.01;
    const Tensor x = make_inputs(p)[0];
    std::vector<Tensor> out = make_outputs(p);
    run_reference(p, {x}, out);
    const uint32_t sign_bit = 1u << (bits - 1);
    const int levels = fp8math::logfmt_levels(bits);
    int encoded = 0;
    for (int64_t r = 0; r < p.m; ++r)
      for (int64_t kb = 0; kb < tiles(p.k); ++kb) {
        const int64_t gi = r * tiles(p.k) + kb;
        if (out[2].span<uint8_t>()[gi]) continue;
        const fp8math::LogFmtGroup g =
            fp8math::logfmt_group_from_meta(out[1].span<float>()[2 * gi], out[1].span<float>()[2 * gi + 1], bits);
        for (int64_t c = kb * kTile; c < (kb + 1) * kTile; ++c) {
          const float a = std::fabs(static_cast<float>(x.get(r * p.k + c)));
          const uint32_t code = out[0].span<uint16_t>()[r * p.k + c];
          const int mag = static_cast<int>(code & (sign_bit - 1));
          const double chosen = std::fabs(a - fp8math::logfmt_decode_mag(g, static_cast<uint32_t>(mag)));
          for (int other : {mag - 1, mag + 1}) {
            if (other < 0 || other > levels) continue;
            ASSERT_LE(chosen, std::fabs(a - fp8math::logfmt_decode_mag(g, static_cast<uint32_t>(other))))
                << "bits " << bits << " value " << a << " code " << mag;
          }
          ++encoded;
        }
      }
    EXPECT_GT(encoded, p.m * p.k / 2) << "most groups of 0.01-scaled normals must be encoded, not fall back";
  }
}

TEST(LogFmt, FallsBackToExactBf16WhenAmaxReachesOne) {
  Params p = make(Op::logfmt, 2, 256);
  const Tensor x = make_inputs(p)[0];  // N(0, 1): every group has amax >= 1
  std::vector<Tensor> out = make_outputs(p);
  run_reference(p, {x}, out);
  for (uint8_t f : out[2].span<uint8_t>()) EXPECT_EQ(f, 1);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(out[3].span<uint16_t>()[i], x.span<const uint16_t>()[i]);
}

TEST(LogFmt, RangeIsClampedTo32Octaves) {
  std::vector<float> v(128, 0.5f);
  v[3] = 1e-30f;  // far below amax / 2^32
  Params p = make(Op::logfmt, 1, 128);
  std::vector<Tensor> out = make_outputs(p);
  run_reference(p, {bf16_tensor(1, 128, v)}, out);
  EXPECT_EQ(out[2].span<uint8_t>()[0], 0);
  EXPECT_FLOAT_EQ(out[1].span<float>()[0], -33.0f);  // log2(0.5) - 32
  EXPECT_EQ(out[0].span<uint16_t>()[3] & 0x1ff, 0u);  // rounds to zero, below half the lowest level
}

// The references are threaded with parallel_for (core/parallel.hpp); each chunk writes only its
// own tiles, so 1 thread and 4 threads must give the same bytes. Ragged M and K (partial tiles
// in both directions, several 128-row blocks) so chunks split inside and across tile rows.
TEST(Fp8QuantRef, OneAndFourThreadsGiveIdenticalOutputs) {
  struct Scheme { Elem e; Convention c; ScaleFmt f; };
  const Scheme schemes[] = {{Elem::e4m3, Convention::divide, ScaleFmt::f32},
                            {Elem::e4m3, Convention::fused_torch, ScaleFmt::f32},
                            {Elem::e5m2, Convention::reciprocal, ScaleFmt::ue8m0}};
  auto run_with = [](int threads, const Params& p, const std::vector<Tensor>& in) {
    struct Restore { ~Restore() { set_thread_count(0); } } restore;
    set_thread_count(threads);
    return run_reference_poisoned(p, in);
  };
  int compared = 0;
  for (Op op : {Op::quant_1x128, Op::quant_128x128, Op::dequant_1x128, Op::dequant_128x128,
                Op::retile_1x128_to_128x1, Op::logfmt})
    for (const Scheme& s : schemes) {
      Params p = make(op, 387, 300, Dist::outlier_channels);
      p.elem = s.e; p.conv = s.c; p.scale_fmt = s.f;
      if (op == Op::logfmt) p.scale = 0.01;  // most groups encoded, some fall back
      const std::vector<Tensor> in = make_inputs(p);
      const auto one = run_with(1, p, in), four = run_with(4, p, in);
      ASSERT_EQ(one.size(), four.size());
      for (std::size_t i = 0; i < one.size(); ++i) {
        ASSERT_EQ(one[i].nbytes(), four[i].nbytes());
        EXPECT_EQ(std::memcmp(one[i].raw(), four[i].raw(), one[i].nbytes()), 0)
            << p.to_string() << ": output " << one[i].describe() << " differs between 1 and 4 threads";
        ++compared;
      }
    }
  EXPECT_EQ(compared, 3 * (2 * 2 + 2 * 1 + 2 + 4));  // quant: codes+scales, dequant: y, retile: 2, logfmt: 4
}

}  // namespace
}  // namespace dsv3::fp8
