// Property tests of the FP8 GEMM references (reference/fp8_gemm.hpp): the documented summation
// order on hand-computed answers, the layouts' untouched rows, input errors, NaN/Inf propagation
// and the error budget's ordering. Reference-vs-variant checks come from the registry.
#include <gtest/gtest.h>

#include <cmath>

#include "core/compare.hpp"
#include "correctness/reference_run.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

constexpr uint8_t kOne = 0x38;  // 1.0 in E4M3

Params dense_params(int64_t m, int64_t n, int64_t k, DType out = DType::f32) {
  Params p;
  p.m = m; p.n = n; p.k = k; p.out = out;
  return p;
}

// Inputs with every code `code` and every scale 1.
std::vector<Tensor> uniform_inputs(const Params& p, uint8_t code) {
  std::vector<Tensor> in = allocate(input_specs(p));
  for (int i : {0, 2}) {
    auto c = in[static_cast<std::size_t>(i)].span<uint8_t>();
    std::fill(c.begin(), c.end(), code);
  }
  for (int i : {1, 3}) {
    auto s = in[static_cast<std::size_t>(i)].span<float>();
    std::fill(s.begin(), s.end(), 1.0f);
  }
  return in;
}

std::vector<Tensor> run(const Params& p, const std::vector<Tensor>& in) { return run_reference_poisoned(p, in); }

TEST(Fp8GemmRef, OnesSumToK) {
  const Params p = dense_params(3, 130, 384);
  const auto out = run(p, uniform_inputs(p, kOne));
  for (int64_t i = 0; i < out[0].numel(); ++i) ASSERT_EQ(out[0].get(i), 384.0);
}

// Group 0 sums to 1 with scale 2^24, group 1 sums to 1 with scale 1: FP32 gives
// RN(2^24 + 1) = 2^24 (ties to even), FP64 on the dequantized operands keeps 2^24 + 1.
TEST(Fp8GemmRef, SummationOrderIsFp32AcrossGroups) {
  const Params p = dense_params(1, 1, 256);
  auto in = uniform_inputs(p, 0x00);  // zeros
  in[0].span<uint8_t>()[0] = kOne;     // group 0: a0 * b0 = 1
  in[0].span<uint8_t>()[128] = kOne;   // group 1: a128 * b128 = 1
  in[2].span<uint8_t>()[0] = kOne;
  in[2].span<uint8_t>()[128] = kOne;
  in[1].span<float>()[0] = 0x1p24f;
  const auto out = run(p, in);
  EXPECT_EQ(out[0].get(0), 16777216.0);
  EXPECT_EQ(f64_dequant(p, in)[0], 16777217.0);
}

// Within a group the sum is exact before its one rounding. 84 products 448 * 448 = 200704 sum to
// 16859136 (> 2^24, where FP32's spacing is 2); then three products of 1. Added one by one in
// FP32 each +1 is a tie that rounds back to 16859136; the exact sum 16859139 rounds once to the
// even neighbour 16859140.
TEST(Fp8GemmRef, GroupSumIsExactThenRoundedOnce) {
  const Params p = dense_params(1, 1, 128);
  auto in = uniform_inputs(p, 0x00);
  auto a = in[0].span<uint8_t>();
  auto b = in[2].span<uint8_t>();
  for (int k = 0; k < 84; ++k) a[k] = b[k] = 0x7e;  // 448
  for (int k = 84; k < 87; ++k) a[k] = b[k] = kOne;
  float sequential = 0.0f;
  for (int k = 0; k < 87; ++k) sequential += k < 84 ? 200704.0f : 1.0f;
  ASSERT_EQ(sequential, 16859136.0f);
  const auto out = run(p, in);
  EXPECT_EQ(out[0].get(0), 16859140.0);
}

TEST(Fp8GemmRef, KMustBeAMultipleOf128) {
  Params p = dense_params(1, 128, 300);
  try {
    p.validate();
    FAIL() << "k = 300 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("k = 300 is not a positive multiple of 128"), std::string::npos) << e.what();
  }
}

TEST(Fp8GemmRef, WrongScaleShapeNamesTensorAndShapes) {
  const Params p = dense_params(4, 256, 256);
  auto in = uniform_inputs(p, kOne);
  in[1] = Tensor("sa", DType::f32, {4, 3});
  auto out = make_outputs(p);
  try {
    run_reference(p, in, out);
    FAIL() << "wrong sa shape accepted";
  } catch (const ShapeError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("sa"), std::string::npos) << w;
    EXPECT_NE(w.find("[4, 2]"), std::string::npos) << w;
    EXPECT_NE(w.find("[4, 3]"), std::string::npos) << w;
  }
}

TEST(Fp8GemmRef, WrongScaleDtypeIsRejected) {
  Params p = dense_params(4, 256, 256);
  auto in = uniform_inputs(p, kOne);
  in[3] = Tensor("sb", DType::ue8m0, {2, 2});  // f32 case given UE8M0 codes
  auto out = make_outputs(p);
  EXPECT_THROW(run_reference(p, in, out), ShapeError);
}

TEST(Fp8GemmRef, NanCodeAndInfScalePropagate) {
  const Params p = dense_params(3, 128, 256);
  auto in = uniform_inputs(p, kOne);
  in[0].span<uint8_t>()[5] = 0x7f;        // NaN code in row 0: the whole row is NaN
  in[1].span<float>()[2 * 1 + 1] = INFINITY;  // row 1, group 1: 128 * Inf = Inf
  const auto out = run(p, in);
  for (int64_t n = 0; n < 128; ++n) {
    EXPECT_TRUE(std::isnan(out[0].get(n)));
    EXPECT_EQ(out[0].get(128 + n), INFINITY);
    EXPECT_EQ(out[0].get(256 + n), 256.0);
  }
}

Params contiguous(std::vector<int64_t> rows) {
  Params p;
  p.layout = Layout::contiguous;
  p.rows = std::move(rows);
  p.n = 128;
  p.k = 128;
  return p;
}

TEST(Fp8GemmRef, ContiguousPaddingRowsAreUntouched) {
  const Params p = contiguous({1, 0, 130});
  const auto in = make_inputs(p);
  ASSERT_EQ(p.a_rows(), 128 + 256);
  const auto out = run(p, in);
  for (int64_t r = 0; r < p.a_rows(); ++r) {
    const bool token = r == 0 || (r >= 128 && r < 258);
    for (int64_t n = 0; n < p.n; ++n) ASSERT_EQ(std::isnan(out[0].get(r * p.n + n)), !token) << "row " << r;
  }
}

TEST(Fp8GemmRef, ContiguousMisalignedSegmentsAreErrors) {
  const Params p = contiguous({1, 130});
  auto in = make_inputs(p);
  auto gi = in[4].span<int32_t>();
  gi[1] = 1;  // row 1 of block 0 claims group 1 after group 0's row: not padded to 128
  auto out = make_outputs(p);
  try {
    run_reference(p, in, out);
    FAIL() << "misaligned segment accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("group_index[1] = 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("padded to a multiple of 128"), std::string::npos) << e.what();
  }
  gi[1] = -1;
  gi[2] = 0;  // a token after a padding row
  EXPECT_THROW(run_reference(p, in, out), std::invalid_argument);
}

TEST(Fp8GemmRef, MaskedRowsPastCountAreUntouchedAndCountsChecked) {
  Params p;
  p.layout = Layout::masked;
  p.m = 8;
  p.rows = {3, 0};
  p.n = 128;
  p.k = 256;
  auto in = make_inputs(p);
  const auto out = run(p, in);
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t r = 0; r < 8; ++r)
      ASSERT_EQ(std::isnan(out[0].get((g * 8 + r) * 128)), !(g == 0 && r < 3)) << g << ", " << r;
  in[4].span<int32_t>()[1] = 9;
  auto out2 = make_outputs(p);
  try {
    run_reference(p, in, out2);
    FAIL() << "count above capacity accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("counts[1] = 9"), std::string::npos) << e.what();
  }
}

TEST(Fp8GemmRef, ErrorBudgetKernelErrorIsFarBelowQuantizationError) {
  Params p = dense_params(32, 256, 1024);
  const auto in = make_inputs(p);
  const auto out = run(p, in);
  std::vector<double> emu(static_cast<std::size_t>(out[0].numel()));
  for (int64_t i = 0; i < out[0].numel(); ++i) emu[static_cast<std::size_t>(i)] = out[0].get(i);
  const auto deq = f64_dequant(p, in), orig = f64_original(p, make_originals(p));
  double e_kernel = 0, e_quant = 0, ref2 = 0;
  for (std::size_t i = 0; i < emu.size(); ++i) {
    e_kernel += (emu[i] - deq[i]) * (emu[i] - deq[i]);
    e_quant += (deq[i] - orig[i]) * (deq[i] - orig[i]);
    ref2 += orig[i] * orig[i];
  }
  // FP32 rounding (2^-24 per step) against E4M3 rounding (2^-4 relative per element).
  EXPECT_LT(std::sqrt(e_kernel / ref2), 1e-6);
  EXPECT_GT(std::sqrt(e_quant / ref2), 1e-3);
  EXPECT_LT(std::sqrt(e_quant / ref2), 0.1);
}

TEST(Fp8GemmRef, MagnitudeBoundsTheResultAndSmallIntsAreProvenExact) {
  Params p = dense_params(16, 256, 512);
  p.dist = Dist::small_ints;
  const auto in = make_inputs(p);
  const auto aids = check_aids(p, in);
  ASSERT_EQ(aids.size(), 2u);
  const auto deq = f64_dequant(p, in);
  int64_t exact = 0;
  for (int64_t i = 0; i < aids[0].numel(); ++i) {
    EXPECT_GE(aids[0].get(i), std::fabs(deq[static_cast<std::size_t>(i)]));
    exact += aids[1].get(i) != 0;
  }
  EXPECT_EQ(exact, aids[1].numel());  // small integers, K = 512: every step exact
  const auto out = run(p, in);
  for (int64_t i = 0; i < out[0].numel(); ++i) ASSERT_EQ(out[0].get(i), deq[static_cast<std::size_t>(i)]);
}

TEST(Fp8GemmRef, BoundedToleranceUsesMagnitudeAndExactMask) {
  Tensor ref("d", DType::f32, {2});
  Tensor got("d", DType::f32, {2});
  Tensor mag("magnitude:d", DType::f32, {2});
  Tensor mask("exact:d", DType::u8, {2});
  ref.span<float>()[0] = 1.0f; ref.span<float>()[1] = 1.0f;
  got.span<float>()[0] = 1.001f; got.span<float>()[1] = 1.0f;
  mag.span<float>()[0] = 1.0f; mag.span<float>()[1] = 1.0f;
  mask.span<uint8_t>()[0] = 0; mask.span<uint8_t>()[1] = 1;
  const Tolerance t = Tolerance::bounded_by(0.01, 0, true, "test");
  EXPECT_TRUE(compare_tensors(got, ref, t, &mag, &mask).pass);
  got.span<float>()[1] = 1.0000001f;  // proven exact: one ulp fails
  EXPECT_FALSE(compare_tensors(got, ref, t, &mag, &mask).pass);
  EXPECT_FALSE(compare_tensors(got, ref, t, nullptr, nullptr).pass);  // bounded needs a magnitude
}

}  // namespace
}  // namespace dsv3::fp8gemm
