// The RoPE/YaRN reference (reference/rope.hpp) against V3's published constants (v3-facts §1.2,
// §2.1, G24, G25) and properties of a rotation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/parallel.hpp"
#include "correctness/reference_run.hpp"
#include "reference/rope.hpp"

namespace dsv3::rope {
namespace {

TEST(RopeRef, V3YarnCorrectionRangeAndScale) {
  const Yarn v3;
  EXPECT_EQ(correction_range(v3), std::make_pair(int64_t{10}, int64_t{23}));  // G24
  EXPECT_NEAR(softmax_scale(192, v3), 0.1352337789, 5e-11);                  // G25
  EXPECT_NEAR(0.1 * std::log(40.0) + 1.0, 1.3688879454, 5e-11);
  Yarn v2lite;
  v2lite.mscale = 0.707;
  EXPECT_NEAR(softmax_scale(192, v2lite), 0.1147214, 5e-8);  // v3-facts §2.1
  Yarn plain;
  plain.enabled = false;
  EXPECT_DOUBLE_EQ(softmax_scale(192, plain), 1.0 / std::sqrt(192.0));
}

TEST(RopeRef, YarnKeepsHighFrequenciesAndDividesLowOnesByTheFactor) {
  Yarn y, plain;
  plain.enabled = false;
  const auto f = frequencies(y), f0 = frequencies(plain);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_EQ(f0[0], 1.0f);
  for (int i = 0; i < 32; ++i) {
    if (i <= 10) {
      EXPECT_EQ(f[i], f0[i]) << i;  // ramp 0: unchanged
    } else if (i >= 23) {
      EXPECT_EQ(f[i], f0[i] / 40.0f) << i;  // ramp 1: divided by s = 40
    } else {
      EXPECT_TRUE(f[i] < f0[i] && f[i] > f0[i] / 40.0f) << i;  // blended
    }
    if (i > 0) {
      EXPECT_LT(f[i], f[i - 1]) << "frequencies fall with i";
    }
  }
}

std::vector<Tensor> rotate(const Params& p, const std::vector<Tensor>& in) { return run_reference_poisoned(p, in); }

TEST(RopeRef, AdjacentPairsAndPositionZeroIsIdentity) {
  Params p;
  p.tokens = 2; p.heads = 1; p.max_pos = 100;
  std::vector<Tensor> in = make_inputs(p);
  auto x = in[0].span<uint16_t>();
  std::fill(x.begin(), x.end(), uint16_t{0});
  x[0] = f32_to_bf16(1.0f);   // token 0: e_0
  x[64] = f32_to_bf16(1.0f);  // token 1: e_0
  in[1].span<int32_t>()[0] = 0;
  in[1].span<int32_t>()[1] = 3;
  const auto y = rotate(p, in);
  EXPECT_EQ(y[0].get(0), 1.0);
  for (int j = 1; j < 64; ++j) EXPECT_EQ(y[0].get(j), 0.0) << j;
  // e_0 at position 3 rotates within the pair (0, 1) only, by angle 3 * f_0 = 3 rad.
  EXPECT_EQ(y[0].get(64), bf16_to_f32(f32_to_bf16(static_cast<float>(std::cos(3.0)))));
  EXPECT_EQ(y[0].get(65), bf16_to_f32(f32_to_bf16(static_cast<float>(std::sin(3.0)))));
  for (int j = 2; j < 64; ++j) EXPECT_EQ(y[0].get(64 + j), 0.0) << "not rotate-half: element " << j;
}

TEST(RopeRef, ScoresDependOnlyOnTheRelativePosition) {
  // q at m and k at n: q'.k' = sum over pairs of |q||k| cos(angle difference), a function of m - n.
  Params p;
  p.tokens = 4; p.heads = 1; p.max_pos = 163840;
  std::vector<Tensor> in = make_inputs(p);
  auto x = in[0].span<uint16_t>();
  for (int j = 0; j < 64; ++j) x[128 + j] = x[j], x[192 + j] = x[64 + j];  // tokens 2, 3 = tokens 0, 1
  const int32_t pos[4] = {1000, 900, 151000, 150900};  // same offset 100, far apart in absolute position
  std::memcpy(in[1].raw(), pos, sizeof pos);
  const auto y = rotate(p, in);
  double s0 = 0, s1 = 0, norm = 0;
  for (int j = 0; j < 64; ++j) {
    s0 += y[0].get(j) * y[0].get(64 + j);
    s1 += y[0].get(128 + j) * y[0].get(192 + j);
    norm += std::fabs(y[0].get(j) * y[0].get(64 + j));
  }
  // BF16 outputs (2^-8 relative each) and FP32 angles of size up to 1.5e5 rad (ulp ~ 0.008 rad):
  // agreement to a few percent of sum |q_j k_j| is what the formats allow.
  EXPECT_NEAR(s0, s1, 0.05 * norm);
  EXPECT_GT(norm, 1.0);
}

TEST(RopeRef, RotationKeepsPairNorms) {
  Params p;
  p.tokens = 16; p.heads = 8; p.max_pos = 163840; p.dist = Dist::outliers;
  const auto in = make_inputs(p);
  const auto y = rotate(p, in);
  for (int64_t i = 0; i < in[0].numel(); i += 2) {
    const double a = std::hypot(in[0].get(i), in[0].get(i + 1)), b = std::hypot(y[0].get(i), y[0].get(i + 1));
    EXPECT_NEAR(a, b, a * 0x1p-7) << i;  // two BF16 roundings of the rotated pair
  }
}

TEST(RopeRef, OneAndFourThreadsGiveIdenticalOutputs) {
  Params p;
  p.tokens = 301; p.heads = 5;
  const auto in = make_inputs(p);
  set_thread_count(1);
  const auto a = rotate(p, in);
  set_thread_count(4);
  const auto b = rotate(p, in);
  set_thread_count(0);
  EXPECT_EQ(std::memcmp(a[0].raw(), b[0].raw(), a[0].nbytes()), 0);
  const auto t1 = cos_sin_table(Yarn{}, 5000);
  set_thread_count(3);
  const auto t3 = cos_sin_table(Yarn{}, 5000);
  set_thread_count(0);
  EXPECT_EQ(t1, t3);
}

TEST(RopeRef, PositionOutsideTheTableIsNamed) {
  Params p;
  p.tokens = 3; p.max_pos = 10;
  std::vector<Tensor> in = make_inputs(p);
  in[1].span<int32_t>()[1] = 10;
  std::vector<Tensor> out = allocate(output_specs(p));
  try {
    run_reference(p, in, out);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("positions[1] = 10"), std::string::npos) << e.what();
  }
  in[1].span<int32_t>()[1] = -1;
  EXPECT_THROW(run_reference(p, in, out), std::invalid_argument);
  p.max_pos = 0;
  EXPECT_THROW(p.validate(), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3::rope
