// Element-wise bounds for the tensor-core training steps (fp8_train_case.hpp): how far a step whose
// GEMMs accumulate on tensor cores may land from the reference, per output element.
//
// Linear layer, both recipes: every GEMM output is one GEMM away from operands the step computes
// bit for bit (fp8_quant's kernels, the BF16 casts), so
//   |y - y_ref|   <= eps(inner) mag + 2^-7 |y_ref|      (mag >= sum_k |a_k b_k|, Cauchy-Schwarz per
//   |dx - dx_ref| <= eps(inner) mag + 2^-7 |dx_ref|      128-group of the GEMM's operand values;
//   |g - g_ref|   <= eps(inner) mag + 2^-22 |g_ref|      2^-7: both sides' BF16 output roundings;
//                                                         2^-22: both sides' FP32 roundings of
//                                                         grad + dW, two half ulps each)
//   eps: FP8  fp8gemm::kEpsFp8 (4 steps x 33 aligned terms x 2^-13 per 128-group, docs/fp8-gemm.md);
//        BF16 (ceil(inner / 16) + 2) 2^-22: an assumption about cuBLAS's FP32 tensor-core
//             accumulation, stated as for fp8_gemm's cublas_bf16: each 16-wide step (and each of up
//             to two split-K reductions) loses at most 2^-22 of the magnitude (17 terms aligned,
//             truncated rather than rounded).
// The AdamW outputs: with the gradient anywhere in [g_ref - e, g_ref + e] (e its bound above), the
// new moments lie between their values at the interval's ends (m is non-decreasing in g, v in |g|)
// and the new weight between its values at the four corners of that box (non-increasing in m,
// monotone in v): the shared scalar code (fp8_train_math.hpp) evaluated at those points gives the
// exact range, so the bound is the range's reach on either side of the reference. A skipped step
// changes nothing: bound 0.
// SwiGLU: H, A and dH are requantized (FP8) or rounded (BF16) between GEMMs, so a GEMM's last-bit
// difference can move a code by a whole E4M3 step; no useful element-wise bound follows (bound
// +inf) and those outputs are held to a whole-tensor NMSE against the reference instead
// (set_tensor_core_tolerances says why the limits are what they are).
#include <Eigen/Dense>

#include <cmath>
#include <limits>

#include "core/registry.hpp"
#include "reference/fp8_gemm.hpp"
#include "reference/fp8_train_case.hpp"

namespace dsv3::fp8train {
namespace {

using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Per row and 128-group of a row-major [rows, inner] matrix: the group's Euclidean norm.
RowMajor group_norms(const std::vector<float>& a, int64_t rows, int64_t inner) {
  const int64_t groups = (inner + kTile - 1) / kTile;
  RowMajor n = RowMajor::Zero(rows, groups);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < inner; ++c) {
      const double v = a[static_cast<std::size_t>(r * inner + c)];
      n(r, c / kTile) += v * v;
    }
  return n.cwiseSqrt();
}

// mag [rows_a, rows_b] >= sum_k |a_ik b_jk|: per group, sum |a b| <= ||a_g|| ||b_g||.
RowMajor magnitude(const std::vector<float>& a, int64_t rows_a, const std::vector<float>& b, int64_t rows_b, int64_t inner) {
  return group_norms(a, rows_a, inner) * group_norms(b, rows_b, inner).transpose();
}

Tensor bound_tensor(const std::string& output, const Shape& shape) {
  Tensor t("bound:" + output, DType::f32, shape);
  for (float& v : t.span<float>()) v = std::numeric_limits<float>::infinity();
  return t;
}

// bound = eps mag + rtol |ref|; NaN (where a NaN input reaches the element: the NaN-position rule
// judges it) becomes +inf.
void gemm_bound(Tensor& bound, const RowMajor& mag, double eps, double rtol, const Tensor& ref) {
  auto b = bound.span<float>();
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double v = eps * mag.data()[i] + rtol * std::fabs(ref.get(i));
    b[static_cast<std::size_t>(i)] = std::isnan(v) ? std::numeric_limits<float>::infinity() : static_cast<float>(v);
  }
}

float reach(double lo, double hi, double ref) { return static_cast<float>(std::max(hi - ref, ref - lo)); }

// The AdamW outputs' bounds from the gradient's (file comment).
void adamw_bounds(const Params& p, const Param& in, const Tensor& g_ref, const Tensor& g_bound, const std::vector<Tensor>& ref,
                  std::size_t o, bool skipped, Tensor& bw, Tensor& bm, Tensor& bv) {
  const math::AdamWConst k = adamw_const(p.adamw(), p.step);
  auto w_out = bw.span<float>(), m_out = bm.span<float>(), v_out = bv.span<float>();
  for (int64_t i = 0; i < g_ref.numel(); ++i) {
    const auto e = static_cast<std::size_t>(i);
    if (skipped) {
      w_out[e] = m_out[e] = v_out[e] = 0.0f;
      continue;
    }
    const double g = g_ref.get(i), eg = g_bound.get(i);
    const float lo = std::nextafter(static_cast<float>(g - eg), -INFINITY), hi = std::nextafter(static_cast<float>(g + eg), INFINITY);
    const float amin = lo <= 0 && hi >= 0 ? 0.0f : std::min(std::fabs(lo), std::fabs(hi)), amax = std::max(std::fabs(lo), std::fabs(hi));
    float m_lo = in.m[e], m_hi = in.m[e], v_lo = in.v[e], v_hi = in.v[e], unused_m = in.m[e], unused_v = in.v[e];
    math::adamw_moments(k, lo, m_lo, unused_v);
    math::adamw_moments(k, hi, m_hi, unused_v);
    math::adamw_moments(k, amin, unused_m, v_lo);
    math::adamw_moments(k, amax, unused_m, v_hi);
    double w_lo = INFINITY, w_hi = -INFINITY;
    for (float mc : {m_lo, m_hi})
      for (float vc : {v_lo, v_hi}) {
        const double w = math::adamw_weight(k, in.w[e], mc, vc);
        w_lo = std::min(w_lo, w);
        w_hi = std::max(w_hi, w);
      }
    w_out[e] = reach(w_lo, w_hi, ref[o + 1].get(i));
    m_out[e] = reach(m_lo, m_hi, ref[o + 2].get(i));
    v_out[e] = reach(v_lo, v_hi, ref[o + 3].get(i));
    for (float* b : {&w_out[e], &m_out[e], &v_out[e]})
      if (std::isnan(*b)) *b = INFINITY;  // a non-finite gradient's element: the NaN/Inf-position rule judges it
  }
}

}  // namespace

double tensor_core_gemm_eps(Recipe r, int64_t inner) {
  if (r == Recipe::fp8) return fp8gemm::kEpsFp8;
  return static_cast<double>((inner + 15) / 16 + 2) * 0x1p-22;
}

std::vector<Tensor> tensor_core_bounds(const Params& p, const std::vector<Tensor>& in, const std::vector<Tensor>& ref) {
  const std::vector<TensorSpec> specs = output_specs(p);
  std::vector<Tensor> bounds;
  for (std::size_t i = 0; i + 1 < specs.size(); ++i) bounds.push_back(bound_tensor(specs[i].name, specs[i].shape));  // all but `skipped`
  if (p.layer != Layer::linear) return bounds;

  const int64_t m = p.m, k = p.k, n = p.n;
  const std::vector<float> x = load_values(in[0]), dy = load_values(in[1]);
  const std::vector<Param> ps = load_params(p, in);
  std::vector<float> wb = ps[0].w;
  round_bf16(wb);
  std::vector<float> xa = x, wa = wb, dya = dy, dyt, xt;  // the GEMMs' operand values
  if (p.recipe == Recipe::fp8) {
    const Fp8Rows xq = quantize_1x128(x.data(), m, k), wq = quantize_128x128(wb.data(), n, k), dyq = quantize_1x128(dy.data(), m, n);
    xa = dequantize(xq, k);
    wa = dequantize(wq, k);
    dya = dequantize(dyq, n);
    dyt = dequantize(retile_to_columns(dyq, n), m);
    xt = dequantize(retile_to_columns(xq, k), m);
  } else {
    dyt = transposed(dy.data(), m, n);
    xt = transposed(x.data(), m, k);
  }
  gemm_bound(bounds[0], magnitude(xa, m, wa, n, k), tensor_core_gemm_eps(p.recipe, k), fp8gemm::kRtolOut, ref[0]);
  gemm_bound(bounds[1], magnitude(dya, m, transposed(wa.data(), n, k), k, n), tensor_core_gemm_eps(p.recipe, n), fp8gemm::kRtolOut,
             ref[1]);
  gemm_bound(bounds[2], magnitude(dyt, n, xt, k, m), tensor_core_gemm_eps(p.recipe, m), 0x1p-22, ref[2]);
  const bool skipped = ref.back().get(0) != 0;
  adamw_bounds(p, ps[0], ref[2], bounds[2], ref, 2, skipped, bounds[3], bounds[4], bounds[5]);
  return bounds;
}

void set_tensor_core_tolerances(Variant& v, Recipe r) {
  // The whole-tensor limit (the only one on SwiGLU's outputs): a quarter of the recipe's own
  // relative L2 distance from the FP64 step, squared. That distance is >= 0.037 (FP8) and >= 0.0023
  // (BF16) for y, dx and every gradient (fp8_train_step_error in the CPU bundle): FP8
  // (0.037 / 4)^2 = 8.6e-5 -> 2^-14, BF16 (0.0023 / 4)^2 = 3.3e-7 -> 2^-22 (powers of two below);
  // the moments and weights move less than the gradient (0.1 of it in m, 0.05 of g^2 in v, a
  // learning-rate step in w) and take the same limit. A step within it is
  // indistinguishable from the reference at the recipe's own error level; a wrong index, scale or
  // padding moves whole tiles and lands near NMSE 1. An estimate: the tensor-core steps have not
  // run yet, and the first GPU run says how close they really land.
  const double nmse = r == Recipe::fp8 ? 0x1p-14 : 0x1p-22;
  Tolerance t = Tolerance::bounded_by(
      1.0, 0.0, false,
      std::string("|got - ref| <= bound:<output>: Linear, one GEMM from bit-exact operands (eps x Cauchy-Schwarz magnitude, eps ") +
          (r == Recipe::fp8 ? "kEpsFp8" : "(inner/16 + 2) 2^-22, an assumption about cuBLAS's FP32 accumulation") +
          ", + output roundings) and AdamW's exact range over it; SwiGLU +inf (requantized intermediates). NMSE: a quarter "
          "of the recipe's own error (reference/fp8_train_bounds.cpp)");
  t.magnitude_aid = "bound:*";
  t.max_nmse = nmse;
  v.tolerances["*"] = t;
  v.tolerances["skipped"] = Tolerance::bit_exact("the skip is decided by the gradients' finiteness, which the bounds preserve");
}

}  // namespace dsv3::fp8train
