// Property tests of the FP8 training step references (reference/fp8_train.hpp): the operands
// equal the foundation's quantizer, retile and FP8 GEMM reference bit for bit; the padding rule is
// exact; the FP64 step's gradients match finite differences; AdamW's first step, its skip on
// non-finite gradients, zero gradients and a zero weight block; bad input. Reference-vs-variant
// checks (and the FP64-step bounds) come from the registry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/compare.hpp"
#include "core/dtype.hpp"
#include "correctness/reference_run.hpp"
#include "reference/fp8_gemm.hpp"
#include "reference/fp8_quant.hpp"
#include "reference/fp8_train_case.hpp"

namespace dsv3::fp8train {
namespace {

std::vector<float> values(const Tensor& t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(t.get(static_cast<int64_t>(i)));
  return v;
}

Tensor bf16_tensor(const std::string& name, int64_t rows, int64_t cols, uint64_t seed) {
  Tensor t(name, DType::bf16, {rows, cols});
  fill(t, Dist::normal, seed);
  return t;
}

// The quantizers are fp8_quant's: same codes and scales for BF16 input, ragged K included.
TEST(Fp8TrainOperands, QuantizersEqualTheFoundation) {
  for (int64_t k : {128, 200}) {
    const Tensor x = bf16_tensor("x", 130, k, 7 + static_cast<uint64_t>(k));
    const std::vector<float> xv = values(x);
    fp8::Params qp;
    qp.m = 130;
    qp.k = k;
    Tensor codes("codes", DType::e4m3, {130, k}), rows_s("scales", DType::f32, {130, fp8::tiles(k)}),
        block_s("scales", DType::f32, {2, fp8::tiles(k)});
    fp8::quant_1x128(x, codes, rows_s, qp);
    const Fp8Rows a = quantize_1x128(xv.data(), 130, k);
    ASSERT_EQ(a.cols, pad128(k));
    for (int64_t r = 0; r < 130; ++r) {
      for (int64_t c = 0; c < k; ++c) ASSERT_EQ(a.codes[static_cast<std::size_t>(r * a.cols + c)], codes.span<uint8_t>()[static_cast<std::size_t>(r * k + c)]);
      for (int64_t c = k; c < a.cols; ++c) ASSERT_EQ(a.codes[static_cast<std::size_t>(r * a.cols + c)], 0);  // padding
      for (int64_t g = 0; g < a.groups(); ++g) ASSERT_EQ(a.scales[static_cast<std::size_t>(r * a.groups() + g)], rows_s.span<float>()[static_cast<std::size_t>(r * a.groups() + g)]);
    }
    qp.op = fp8::Op::quant_128x128;
    fp8::quant_128x128(x, codes, block_s, qp);
    const Fp8Rows b = quantize_128x128(xv.data(), 130, k);
    for (int64_t r = 0; r < 130; ++r) {
      for (int64_t c = 0; c < k; ++c) ASSERT_EQ(b.codes[static_cast<std::size_t>(r * b.cols + c)], codes.span<uint8_t>()[static_cast<std::size_t>(r * k + c)]);
      for (int64_t g = 0; g < b.groups(); ++g) ASSERT_EQ(b.scales[static_cast<std::size_t>(r * b.groups() + g)], block_s.span<float>()[static_cast<std::size_t>(r / 128 * b.groups() + g)]);
    }
  }
}

TEST(Fp8TrainOperands, RetileEqualsTheFoundationsRetile) {
  const int64_t m = 200, k = 136;
  const Tensor x = bf16_tensor("x", m, k, 11);
  fp8::Params qp;
  qp.m = m;
  qp.k = k;
  Tensor codes("codes", DType::e4m3, {m, k}), scales("scales", DType::f32, {m, fp8::tiles(k)});
  fp8::quant_1x128(x, codes, scales, qp);
  Tensor ct("codes_t", DType::e4m3, {k, m}), st("scales_t", DType::f32, {k, fp8::tiles(m)});
  qp.op = fp8::Op::retile_1x128_to_128x1;
  fp8::retile_1x128_to_128x1(codes, scales, ct, st, qp);
  const std::vector<float> xv = values(x);
  const Fp8Rows t = retile_to_columns(quantize_1x128(xv.data(), m, k), k);
  ASSERT_EQ(t.rows, k);
  ASSERT_EQ(t.cols, pad128(m));
  for (int64_t c = 0; c < k; ++c) {
    for (int64_t r = 0; r < m; ++r) ASSERT_EQ(t.codes[static_cast<std::size_t>(c * t.cols + r)], ct.span<uint8_t>()[static_cast<std::size_t>(c * m + r)]);
    for (int64_t g = 0; g < t.groups(); ++g) ASSERT_EQ(t.scales[static_cast<std::size_t>(c * t.groups() + g)], st.span<float>()[static_cast<std::size_t>(c * t.groups() + g)]);
  }
}

// The error model behind the FP64-step bounds (fp8_train_case.cpp): one E4M3 rounding of normal
// data in 1x128 tiles errs by 0.0257 relative L2 (numpy + ml_dtypes gave 0.02572 on other draws).
TEST(Fp8TrainOperands, RoundingErrorModel) {
  const std::vector<float> x = draw(Dist::normal, 21, 4096 * 128, 128);
  const std::vector<float> q = dequantize(quantize_1x128(x.data(), 4096, 128), 128);
  Agreement a;
  for (std::size_t i = 0; i < x.size(); ++i) a.add(q[i], x[i]);
  EXPECT_NEAR(a.rel_l2(), 0.0257, 0.0005);
}

// The deterministic exp behind SwiGLU (fp8_train_math.hpp) is within a few FP64 ulps of libm's
// over the range SwiGLU meets, and saturates like it outside.
TEST(Fp8TrainOperands, DeterministicExpIsAccurate) {
  double worst = 0;
  for (double x = -700; x <= 700; x += 0.0137) worst = std::max(worst, std::abs(math::exp_det(x) / std::exp(x) - 1));
  EXPECT_LT(worst, 4e-16);
  EXPECT_EQ(math::exp_det(0.0), 1.0);
  EXPECT_EQ(math::exp_det(-800.0), 0.0);
  EXPECT_TRUE(std::isinf(math::exp_det(800.0)));
  EXPECT_TRUE(std::isnan(math::exp_det(NAN)));
  EXPECT_NEAR(silu(1.0), 1.0 / (1.0 + std::exp(-1.0)), 1e-16);
  EXPECT_EQ(silu(-1000.0), -0.0);
}

// gemm_fp8 on a dense case's operands gives the FP8 GEMM reference's bits (f32 out, with and
// without accumulation); the transposed weight blocks give the same product as W itself.
TEST(Fp8TrainOperands, GemmEqualsTheFp8GemmReference) {
  for (bool acc : {false, true}) {
    fp8gemm::Params gp;
    gp.m = 70; gp.n = 200; gp.k = 384; gp.out = DType::f32; gp.accumulate = acc;
    const std::vector<Tensor> in = fp8gemm::make_inputs(gp);
    const std::vector<Tensor> ref = run_reference_poisoned(gp, in);
    Fp8Rows a, b;
    a.rows = gp.m; a.cols = gp.k;
    a.codes.assign(in[0].span<const uint8_t>().begin(), in[0].span<const uint8_t>().end());
    a.scales.assign(in[1].span<const float>().begin(), in[1].span<const float>().end());
    b.rows = gp.n; b.cols = gp.k;
    b.codes.assign(in[2].span<const uint8_t>().begin(), in[2].span<const uint8_t>().end());
    for (int64_t r = 0; r < gp.n; ++r)
      for (int64_t g = 0; g < gp.kb(); ++g) b.scales.push_back(in[3].span<const float>()[static_cast<std::size_t>(r / 128 * gp.kb() + g)]);
    std::vector<float> d = acc ? values(in[4]) : std::vector<float>(static_cast<std::size_t>(gp.m * gp.n));
    gemm_fp8(a, b, d.data(), acc);
    for (std::size_t i = 0; i < d.size(); ++i) ASSERT_EQ(d[i], ref[0].span<const float>()[i]) << "element " << i;
  }
  // (X W^T)^T = W X^T through the transposed blocks: same group sums, same scale products.
  const Tensor w = bf16_tensor("w", 256, 128, 3);
  const std::vector<float> wv = values(w);
  const Fp8Rows wq = quantize_128x128(wv.data(), 256, 128), wt = transpose_blocks(wq, 256);
  EXPECT_EQ(dequantize(wt, 256), [&] {
    const std::vector<float> v = dequantize(wq, 128);
    std::vector<float> t(v.size());
    for (int64_t r = 0; r < 256; ++r)
      for (int64_t c = 0; c < 128; ++c) t[static_cast<std::size_t>(c * 256 + r)] = v[static_cast<std::size_t>(r * 128 + c)];
    return t;
  }());
}

Param make_param(const std::string& name, int64_t rows, int64_t cols, uint64_t seed) {
  Param p{name, rows, cols, draw(Dist::normal, seed, rows * cols, cols, 0.1), {}, {}, {}};
  for (auto* v : {&p.grad, &p.m, &p.v}) v->assign(p.w.size(), 0.0f);
  return p;
}

// Zero padding along every inner dimension leaves every bit of the step unchanged: K 200 -> 256
// (Fprop), N 136 -> 256 (Dgrad), M 7 -> 128 (Wgrad).
TEST(Fp8TrainStep, PaddingRuleIsExact) {
  const int64_t m = 7, k = 200, n = 136, kp = 256, np = 256, mp = 128;
  const std::vector<float> x = draw(Dist::normal, 1, m * k, k), dy = draw(Dist::normal, 2, m * n, n, 0.01);
  std::vector<float> xb = x, dyb = dy;
  round_bf16(xb);
  round_bf16(dyb);
  Param w = make_param("weight", n, k, 3), wp = make_param("weight", np, kp, 4);
  std::fill(wp.w.begin(), wp.w.end(), 0.0f);
  for (int64_t r = 0; r < n; ++r) std::copy_n(w.w.begin() + r * k, k, wp.w.begin() + r * kp);
  std::vector<float> xpad(static_cast<std::size_t>(mp * kp), 0.0f), dypad(static_cast<std::size_t>(mp * np), 0.0f);
  for (int64_t r = 0; r < m; ++r) {
    std::copy_n(xb.begin() + r * k, k, xpad.begin() + r * kp);
    std::copy_n(dyb.begin() + r * n, n, dypad.begin() + r * np);
  }
  for (Recipe rc : {Recipe::fp8, Recipe::bf16}) {
    LinearCache c, cp;
    std::vector<float> y(static_cast<std::size_t>(m * n)), yp(static_cast<std::size_t>(mp * np));
    std::vector<float> dx(static_cast<std::size_t>(m * k)), dxp(static_cast<std::size_t>(mp * kp));
    std::fill(w.grad.begin(), w.grad.end(), 0.0f);
    std::fill(wp.grad.begin(), wp.grad.end(), 0.0f);
    linear_forward(rc, xb.data(), m, w, y.data(), c);
    linear_forward(rc, xpad.data(), mp, wp, yp.data(), cp);
    linear_backward(c, dyb.data(), dx.data(), w);
    linear_backward(cp, dypad.data(), dxp.data(), wp);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(y[static_cast<std::size_t>(r * n + j)], yp[static_cast<std::size_t>(r * np + j)]);
      for (int64_t j = 0; j < k; ++j) ASSERT_EQ(dx[static_cast<std::size_t>(r * k + j)], dxp[static_cast<std::size_t>(r * kp + j)]);
    }
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < k; ++j) ASSERT_EQ(w.grad[static_cast<std::size_t>(r * k + j)], wp.grad[static_cast<std::size_t>(r * kp + j)]) << recipe_name(rc);
  }
}

// The FP64 step's dx and weight gradients are those of L = sum(y * dy), checked by central
// differences. y is linear in x and W for a Linear, so its differences are exact up to FP64
// rounding (1e-9); SwiGLU's carry the O(h^2) truncation, h = 2^-12 on values of size 1: 1e-6.
TEST(Fp8TrainStep, Fp64GradientsMatchFiniteDifferences) {
  const double h = 0x1p-12;
  for (bool swiglu : {false, true}) {
    const int64_t m = 3, k = 4, n = 5;
    std::vector<float> x = draw(Dist::normal, 5, m * k, k), dy = draw(Dist::normal, 6, m * (swiglu ? k : n), 1);
    std::vector<Param> ps = {make_param("a", n, k, 7)};
    if (swiglu) ps = {make_param("gate", n, k, 7), make_param("up", n, k, 8), make_param("down", k, n, 9)};
    for (Param& p : ps)
      for (float& v : p.w) v *= 10.0f;  // weights of size 1: SwiGLU's curvature matters
    auto loss = [&] {
      std::vector<const Param*> ptr;
      for (const Param& p : ps) ptr.push_back(&p);
      const StepF64 s = step_f64(swiglu, x, dy, m, ptr, 1, AdamW{});
      double l = 0;
      for (std::size_t i = 0; i < s.y.size(); ++i) l += s.y[i] * dy[i];
      return std::make_pair(l, s);
    };
    const double tol = swiglu ? 1e-6 : 1e-9;
    const StepF64 s = loss().second;
    auto diff = [&](float& v) {  // divided by the steps float actually took
      const float v0 = v, up = v0 + static_cast<float>(h), down = v0 - static_cast<float>(h);
      v = up;
      const double lp = loss().first;
      v = down;
      const double lm = loss().first;
      v = v0;
      return (lp - lm) / (static_cast<double>(up) - static_cast<double>(down));
    };
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(diff(x[i]), s.dx[i], tol * (1 + std::abs(s.dx[i]))) << "dx " << i;
    for (std::size_t p = 0; p < ps.size(); ++p)
      for (std::size_t i = 0; i < ps[p].w.size(); ++i)
        EXPECT_NEAR(diff(ps[p].w[i]), s.params[p].dgrad[i], tol * (1 + std::abs(s.params[p].dgrad[i]))) << ps[p].name << " " << i;
  }
}

// Step 1 from zero moments: m^ = g, v^ = g^2, so the update is lr * g / (|g| + eps): lr * sign(g)
// after the weight decay, to the BF16 rounding of the moments (unit roundoff 2^-8 for m, halved
// under the square root for v), the FP32 steps (2^-20 together) and eps / |g|.
TEST(Fp8TrainAdamW, FirstStepMovesEachWeightByLr) {
  Param p = make_param("w", 4, 64, 12);
  const std::vector<float> g = draw(Dist::normal, 13, 256, 64, 1e-3);
  p.grad = g;
  const std::vector<float> w0 = p.w;
  AdamW h;
  ASSERT_TRUE(adamw_step({&p}, 1, h));
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double decayed = w0[i] * (1 - h.lr * h.weight_decay);
    EXPECT_NEAR(decayed - p.w[i], h.lr * (g[i] > 0 ? 1 : -1), h.lr * (0x1p-8 + 0x1p-9 + 0x1p-20 + h.eps / std::abs(g[i]))) << i;
  }
}

TEST(Fp8TrainAdamW, NonFiniteGradientSkipsTheWholeStep) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    Param a = make_param("a", 2, 8, 14), b = make_param("b", 2, 8, 15);
    a.grad.assign(16, 0.5f);
    b.grad.assign(16, 0.5f);
    b.grad[3] = bad;
    const Param a0 = a, b0 = b;
    EXPECT_FALSE(adamw_step({&a, &b}, 3, AdamW{}));
    EXPECT_EQ(a.w, a0.w);
    EXPECT_EQ(a.m, a0.m);
    EXPECT_EQ(b.v, b0.v);
  }
  Param a = make_param("a", 2, 8, 14);
  EXPECT_THROW(adamw_step({&a}, 0, AdamW{}), std::invalid_argument);  // t counts from 1
}

std::vector<Tensor> run_case(const Params& p) { return run_reference_poisoned(p, make_inputs(p)); }

Params linear_case(Special s, Recipe r = Recipe::fp8) {
  Params p;
  p.m = 64; p.k = 256; p.n = 256; p.special = s; p.recipe = r;
  return p;
}

// A NaN in dY: y is untouched, dx and the gradient carry NaN, the update is skipped (weights and
// moments exactly as given), skipped = 1. An Inf in the accumulated gradient: the same skip.
TEST(Fp8TrainStep, NonFiniteGradientsSkipTheUpdate) {
  for (Special s : {Special::nan_grad, Special::inf_grad}) {
    const Params p = linear_case(s);
    const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
    EXPECT_EQ(tensor_named(out, "skipped").get(0), 1.0) << special_name(s);
    for (const char* name : {"weight", "weight.exp_avg", "weight.exp_avg_sq"})
      EXPECT_EQ(std::memcmp(tensor_named(out, name).raw(), tensor_named(in, name).raw(), tensor_named(out, name).nbytes()), 0) << name;
    int64_t nan_dx = 0;
    for (int64_t i = 0; i < out[1].numel(); ++i) nan_dx += std::isnan(out[1].get(i));
    for (int64_t i = 0; i < out[0].numel(); ++i) ASSERT_TRUE(std::isfinite(out[0].get(i)));
    EXPECT_EQ(nan_dx, s == Special::nan_grad ? p.k : 0);  // the NaN's token row of dx
  }
  // The SwiGLU step skips as a whole: all three matrices and their moments exactly as given.
  Params p;
  p.layer = Layer::swiglu; p.m = 32; p.k = 128; p.n = 128; p.special = Special::nan_grad;
  const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
  EXPECT_EQ(tensor_named(out, "skipped").get(0), 1.0);
  for (const ParamSpec& w : param_specs(p))
    for (const std::string& name : {w.name, w.name + ".exp_avg", w.name + ".exp_avg_sq"})
      EXPECT_EQ(std::memcmp(tensor_named(out, name).raw(), tensor_named(in, name).raw(), tensor_named(out, name).nbytes()), 0) << name;
}

// Zero gradients: the gradient stays exactly zero, the moments only decay (m: 0.9 m rounded), and
// the weights still move by the decay and the moments' history.
TEST(Fp8TrainStep, ZeroGradientsOnlyDecayTheState) {
  for (Recipe r : {Recipe::fp8, Recipe::bf16}) {
    const Params p = linear_case(Special::zero_grad, r);
    const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
    const Tensor &g = tensor_named(out, "weight.grad"), &m = tensor_named(out, "weight.exp_avg");
    for (int64_t i = 0; i < g.numel(); ++i) {
      ASSERT_EQ(g.get(i), 0.0);
      ASSERT_EQ(m.get(i), bf16_to_f32(f32_to_bf16(0.9f * static_cast<float>(tensor_named(in, "weight.exp_avg").get(i)))));
    }
    for (int64_t i = 0; i < out[1].numel(); ++i) ASSERT_EQ(out[1].get(i), 0.0);  // dx = 0 W
    EXPECT_EQ(tensor_named(out, "skipped").get(0), 0.0);
  }
}

// A weight block of zeros quantizes to zero codes with the floored scale: its outputs stay finite
// and its gradient (from X and dY, not W) is as large as any other block's.
TEST(Fp8TrainStep, ZeroWeightBlockIsHandled) {
  const Params p = linear_case(Special::zero_block);
  const std::vector<Tensor> out = run_case(p);
  const Tensor& g = tensor_named(out, "weight.grad");
  for (const Tensor& t : out)
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_TRUE(std::isfinite(t.get(i))) << t.name();
  const std::vector<Tensor> in = make_inputs(p);
  const Tensor& g0 = tensor_named(in, "weight.grad");
  EXPECT_EQ(tensor_named(in, "weight").get(0), 0.0);
  // This step's increment per 128x128 block of W [n, k]: dW = dY^T X does not read W, so the zero
  // block's RMS is the others' up to sampling (16384 normal products each: a few percent).
  const int64_t rows = p.n, cols = p.k, nb_c = cols / 128;
  std::vector<double> sq(static_cast<std::size_t>(rows / 128 * nb_c), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double inc = g.get(r * cols + c) - g0.get(r * cols + c);
      sq[static_cast<std::size_t>(r / 128 * nb_c + c / 128)] += inc * inc;
    }
  double others = 0;
  for (std::size_t b = 1; b < sq.size(); ++b) others += sq[b] / static_cast<double>(sq.size() - 1);
  ASSERT_GT(sq.size(), 1u);
  // 0.2: ten times that spread, and far from 0 (a block the step skipped) or from a scale-blown one.
  EXPECT_NEAR(std::sqrt(sq[0] / others), 1.0, 0.2) << "the zero block's gradient increment against the other blocks'";
}

// FP8 is measurably further from the FP64 step than BF16, and both are inside their bounds.
TEST(Fp8TrainStep, Fp8ErrorExceedsBf16AndBothStayInBounds) {
  for (Layer l : {Layer::linear, Layer::swiglu}) {
    double err[2] = {0, 0};
    for (Recipe r : {Recipe::fp8, Recipe::bf16}) {
      Params p;
      p.layer = l; p.recipe = r; p.m = 128; p.k = 256; p.n = 128;
      const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
      for (const CompareReport& rep : high_precision_checks(p, high_precision_aids(p, in), out)) {
        EXPECT_TRUE(rep.pass) << rep.name << ": " << rep.message;
        if (rep.name == "y vs FP64 step") err[r == Recipe::fp8 ? 0 : 1] = rep.metric_value;
      }
    }
    EXPECT_GT(err[0], 5 * err[1]) << layer_name(l);
    EXPECT_GT(err[1], 0.0);
  }
}

// calc_diff's bound is the largest value a result within the relative L2 bound can take, reached
// when the result is the FP64 step shrunk by that bound: y = hp:y (1 - 0.99 L) passes both checks,
// y = hp:y (1 - 1.01 L) fails both (calc_diff = c^2 / (1 + (1 - c)^2) for a shrink by c).
TEST(Fp8TrainStep, CalcDiffBoundIsTheRelativeL2BoundsWorstCase) {
  Params p;
  p.layer = Layer::linear; p.recipe = Recipe::fp8; p.m = 64; p.k = 256; p.n = 128;
  const std::vector<Tensor> in = make_inputs(p), aids = high_precision_aids(p, in);
  std::vector<Tensor> out = run_reference_poisoned(p, in);
  const Tensor& hp_y = tensor_named(aids, "hp:y", "test");
  const double limit = high_precision_rel_l2_bound(p, "y");
  for (const double shrink : {0.99 * limit, 1.01 * limit}) {
    std::vector<float> y(static_cast<std::size_t>(hp_y.numel()));
    for (int64_t i = 0; i < hp_y.numel(); ++i) y[static_cast<std::size_t>(i)] = static_cast<float>(hp_y.get(i) * (1 - shrink));
    store_values(out[0], y);
    int seen = 0;
    for (const CompareReport& rep : high_precision_checks(p, aids, out)) {
      if (rep.name.rfind("y vs FP64 step", 0) != 0) continue;
      ++seen;
      // Storing y as BF16 adds rounding noise of RMS about 2^-8 / sqrt(3) relative; in quadrature with
      // 0.99 L it moves the relative L2 by under 0.001 L, and calc_diff by about 0.1%.
      EXPECT_EQ(rep.pass, shrink < limit) << rep.name << " " << rep.metric << " " << rep.metric_value << " shrink " << shrink;
      if (rep.metric == "calc_diff")
        EXPECT_NEAR(rep.metric_value, shrink * shrink / (1 + (1 - shrink) * (1 - shrink)), 0.02 * shrink * shrink);
    }
    EXPECT_EQ(seen, 2) << "a relative L2 and a calc_diff report for y";
  }
}

TEST(Fp8TrainStep, BadInputIsRejectedWithItsName) {
  Params p = linear_case(Special::none);
  std::vector<Tensor> in = make_inputs(p);
  in[1] = Tensor("dy", DType::bf16, {p.m, p.n + 1});
  std::vector<Tensor> out = allocate(output_specs(p));
  try {
    run_reference(p, in, out);
    FAIL() << "a dy of the wrong shape was accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("dy"), std::string::npos) << e.what();
  }
  p.m = 0;
  EXPECT_THROW(p.validate(), std::invalid_argument);
  EXPECT_THROW(layer_from_name("conv"), std::invalid_argument);
  EXPECT_THROW(recipe_from_name("fp4"), std::invalid_argument);
  Param w = make_param("weight", 8, 128, 1), other = make_param("weight", 8, 256, 2);
  LinearCache c;
  std::vector<float> x(128, 1.0f), y(8), dy(8, 1.0f);
  linear_forward(Recipe::fp8, x.data(), 1, w, y.data(), c);
  EXPECT_THROW(linear_backward(c, dy.data(), nullptr, other), std::invalid_argument);  // another layer's weight
  w.grad.pop_back();
  EXPECT_THROW(linear_forward(Recipe::fp8, x.data(), 1, w, y.data(), c), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3::fp8train
