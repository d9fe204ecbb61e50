// The tensor-core steps' element-wise bounds (reference/fp8_train_bounds.cpp), tested on the CPU:
// AdamW's range covers every gradient inside the gradient's bound; a Linear step whose GEMMs sum
// in plain FP32 (another legitimate accumulation order) passes the bounds in both recipes, ragged
// shapes included, while the same step with two output columns swapped does not.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <utility>

#include "core/compare.hpp"
#include "core/dtype.hpp"
#include "correctness/reference_run.hpp"
#include "reference/fp8_train_case.hpp"

namespace dsv3::fp8train {
namespace {

Params linear(Recipe r, int64_t m, int64_t k, int64_t n) {
  Params p;
  p.recipe = r; p.m = m; p.k = k; p.n = n;
  return p;
}

// D [ra, rb] = A [ra, inner] . B [rb, inner]^T summed in FP32 in k order.
std::vector<float> float_gemm(const std::vector<float>& a, int64_t ra, const std::vector<float>& b, int64_t rb, int64_t inner) {
  std::vector<float> d(static_cast<std::size_t>(ra * rb));
  for (int64_t i = 0; i < ra; ++i)
    for (int64_t j = 0; j < rb; ++j) {
      float acc = 0.0f;
      for (int64_t c = 0; c < inner; ++c) acc += a[static_cast<std::size_t>(i * inner + c)] * b[static_cast<std::size_t>(j * inner + c)];
      d[static_cast<std::size_t>(i * rb + j)] = acc;
    }
  return d;
}

// The Linear step with every GEMM summed in FP32 (module comment), from the recipe's operand values.
std::vector<Tensor> float_accumulated_step(const Params& p, const std::vector<Tensor>& in) {
  const int64_t m = p.m, k = p.k, n = p.n;
  const std::vector<float> x = load_values(in[0]), dy = load_values(in[1]);
  std::vector<Param> ps = load_params(p, in);
  std::vector<float> wb = ps[0].w;
  round_bf16(wb);
  std::vector<float> xa = x, wa = wb, dya = dy, dyt = transposed(dy.data(), m, n), xt = transposed(x.data(), m, k);
  if (p.recipe == Recipe::fp8) {
    const Fp8Rows xq = quantize_1x128(x.data(), m, k), dyq = quantize_1x128(dy.data(), m, n);
    xa = dequantize(xq, k);
    wa = dequantize(quantize_128x128(wb.data(), n, k), k);
    dya = dequantize(dyq, n);
    dyt = dequantize(retile_to_columns(dyq, n), m);
    xt = dequantize(retile_to_columns(xq, k), m);
  }
  std::vector<Tensor> out = allocate(output_specs(p));
  store_values(out[0], float_gemm(xa, m, wa, n, k));
  store_values(out[1], float_gemm(dya, m, transposed(wa.data(), n, k), k, n));
  const std::vector<float> dw = float_gemm(dyt, n, xt, k, m);
  Param& w = ps[0];
  for (std::size_t i = 0; i < dw.size(); ++i) w.grad[i] += dw[i];
  store_values(out[2], w.grad);
  const math::AdamWConst c = adamw_const(p.adamw(), p.step);
  for (std::size_t i = 0; i < dw.size(); ++i) math::adamw_element(c, w.grad[i], w.w[i], w.m[i], w.v[i]);
  store_values(out[3], w.w);
  store_values(out[4], w.m);
  store_values(out[5], w.v);
  out[6].span<uint8_t>()[0] = 0;
  return out;
}

std::vector<CompareReport> judge(const Params& p, const std::vector<Tensor>& got, const std::vector<Tensor>& ref,
                                 const std::vector<Tensor>& bounds) {
  Variant v;
  set_tensor_core_tolerances(v, p.recipe);
  std::vector<CompareReport> reps;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const Tolerance& t = v.tolerance_for(ref[i].name());
    const Tensor* bound = i < bounds.size() ? &bounds[i] : nullptr;
    reps.push_back(compare_tensors(got[i], ref[i], t, bound));
  }
  return reps;
}

TEST(Fp8TrainBounds, AdamWRangeCoversEveryGradientInTheBound) {
  const Params p = linear(Recipe::fp8, 64, 256, 256);
  const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in);
  const std::vector<Tensor> b = tensor_core_bounds(p, in, ref);
  ASSERT_EQ(b[2].name(), "bound:weight.grad");
  const Param w = load_params(p, in)[0];
  const math::AdamWConst c = adamw_const(p.adamw(), p.step);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  int64_t moved = 0;
  for (int64_t i = 0; i < ref[2].numel(); i += 7) {
    const double g = ref[2].get(i), e = b[2].get(i);
    ASSERT_TRUE(std::isfinite(e) && e > 0) << i;
    for (double t : {-1.0, 1.0, u(rng), u(rng)}) {
      const auto s = static_cast<std::size_t>(i);
      float ww = w.w[s], m = w.m[s], v = w.v[s];
      math::adamw_element(c, static_cast<float>(g + t * e), ww, m, v);
      ASSERT_LE(std::fabs(ww - ref[3].get(i)), b[3].get(i)) << i;
      ASSERT_LE(std::fabs(m - ref[4].get(i)), b[4].get(i)) << i;
      ASSERT_LE(std::fabs(v - ref[5].get(i)), b[5].get(i)) << i;
      moved += ww != ref[3].get(i);
    }
  }
  EXPECT_GT(moved, 0);  // the gradient's bound is wide enough to move some weights: the test has teeth
}

TEST(Fp8TrainBounds, FloatAccumulatedStepPassesAndSwappedColumnsFail) {
  for (Recipe r : {Recipe::fp8, Recipe::bf16})
    for (const Params& p : {linear(r, 64, 256, 256), linear(r, 7, 200, 136)}) {
      const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in);
      const std::vector<Tensor> bounds = tensor_core_bounds(p, in, ref);
      std::vector<Tensor> got = float_accumulated_step(p, in);
      for (const CompareReport& rep : judge(p, got, ref, bounds)) EXPECT_TRUE(rep.pass) << p.to_string() << " " << rep.name << ": " << rep.message;
      for (std::size_t o : {0, 2}) {  // y and the gradient: columns 0 and 1 swapped
        std::vector<Tensor> bad = float_accumulated_step(p, in);
        Tensor& t = bad[o];
        const int64_t cols = t.shape()[1];
        for (int64_t row = 0; row < t.shape()[0]; ++row) {
          const std::size_t at = static_cast<std::size_t>(row * cols);
          if (t.dtype() == DType::f32) std::swap(t.span<float>()[at], t.span<float>()[at + 1]);
          else std::swap(t.span<uint16_t>()[at], t.span<uint16_t>()[at + 1]);
        }
        EXPECT_FALSE(judge(p, bad, ref, bounds)[o].pass) << p.to_string() << " " << t.name();
      }
    }
}

TEST(Fp8TrainBounds, SwigluHasNoElementwiseBoundButAnNmseLimit) {
  Params p = linear(Recipe::fp8, 16, 128, 128);
  p.layer = Layer::swiglu;
  const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in);
  const std::vector<Tensor> bounds = tensor_core_bounds(p, in, ref);
  ASSERT_EQ(bounds.size(), ref.size() - 1);
  for (const Tensor& b : bounds) EXPECT_TRUE(std::isinf(b.get(0))) << b.name();
  Variant v;
  set_tensor_core_tolerances(v, Recipe::fp8);
  EXPECT_GT(v.tolerance_for("gate_proj.grad").max_nmse, 0.0);
  EXPECT_EQ(v.tolerance_for("skipped").kind, Tolerance::Kind::exact);
}

}  // namespace
}  // namespace dsv3::fp8train
