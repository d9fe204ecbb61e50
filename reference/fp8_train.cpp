// The FP8 training step: Linear and SwiGLU forward/backward in both recipes, AdamW with BF16
// moments, and the FP64 step they are measured against (semantics in fp8_train.hpp).
#include "reference/fp8_train.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fp8_math.hpp"
#include "core/parallel.hpp"

namespace dsv3::fp8train {
namespace fm = fp8math;

std::string_view recipe_name(Recipe r) { return r == Recipe::fp8 ? "fp8" : "bf16"; }

Recipe recipe_from_name(std::string_view s) {
  if (s == "fp8") return Recipe::fp8;
  if (s == "bf16") return Recipe::bf16;
  throw std::invalid_argument("recipe must be fp8 or bf16, got '" + std::string(s) + "'");
}

double silu(double h) { return math::silu_det(h); }
double silu_grad(double h) { return math::silu_grad_det(h); }

math::AdamWConst adamw_const(const AdamW& h, int64_t t) {
  if (t < 1) throw std::invalid_argument("fp8_train AdamW: step t must be >= 1, got " + std::to_string(t));
  const auto f32 = [](double v) { return static_cast<float>(v); };
  return {f32(h.beta1), f32(h.beta2), f32(1.0 - h.beta1), f32(1.0 - h.beta2), f32(1.0 - h.lr * h.weight_decay), f32(h.eps),
          f32(std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(t)))),
          f32(h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(t))))};
}

namespace {

void require_param(const Param& p, int64_t rows, int64_t cols, const char* what) {
  const auto n = static_cast<std::size_t>(rows * cols);
  if (p.rows != rows || p.cols != cols || p.w.size() != n || p.grad.size() != n || p.m.size() != n || p.v.size() != n)
    throw std::invalid_argument(std::string("fp8_train: ") + what + " '" + p.name + "' is [" + std::to_string(p.rows) + ", " +
                                std::to_string(p.cols) + "] with " + std::to_string(p.w.size()) + " weights, " +
                                std::to_string(p.grad.size()) + " gradients, " + std::to_string(p.m.size()) + "/" +
                                std::to_string(p.v.size()) + " moments; expected [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "] and that many of each");
}

std::vector<float> bf16_copy(const std::vector<float>& w) {
  std::vector<float> r = w;
  round_bf16(r);
  return r;
}

// Copies the first `real` columns of each row of a [rows, ld] f32 buffer, rounded to BF16.
void store_bf16(const std::vector<float>& src, int64_t rows, int64_t ld, int64_t real, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < real; ++c) dst[r * real + c] = bf16_value(src[static_cast<std::size_t>(r * ld + c)]);
}

}  // namespace

void linear_forward(Recipe r, const float* x, int64_t m, const Param& w, float* y, LinearCache& c) {
  require_param(w, w.rows, w.cols, "linear weight");
  c = LinearCache{};
  c.recipe = r;
  c.m = m;
  c.k = w.cols;
  c.n = w.rows;
  std::vector<float> acc(static_cast<std::size_t>(m * c.n));
  if (r == Recipe::fp8) {
    c.xq = quantize_1x128(x, m, c.k);
    c.wq = quantize_128x128(bf16_copy(w.w).data(), c.n, c.k);  // from the BF16 copy of the master
    gemm_fp8(c.xq, c.wq, acc.data(), false);
  } else {
    c.x.assign(x, x + m * c.k);
    c.w = bf16_copy(w.w);
    gemm_bf16(c.x.data(), c.w.data(), m, c.n, c.k, acc.data(), false);
  }
  store_bf16(acc, m, c.n, c.n, y);
}

void linear_backward(const LinearCache& c, const float* dy, float* dx, Param& w, const float* x_fresh) {
  require_param(w, c.n, c.k, "linear weight (backward)");
  const int64_t m = c.m, n = c.n, k = c.k;
  if (c.recipe == Recipe::fp8) {
    const Fp8Rows dyq = quantize_1x128(dy, m, n);
    if (dx) {  // Dgrad: dY [M, N] . (W^T [Kp, N])^T, the padding columns dropped
      std::vector<float> acc(static_cast<std::size_t>(m * c.wq.cols));
      gemm_fp8(dyq, transpose_blocks(c.wq, n), acc.data(), false);
      store_bf16(acc, m, c.wq.cols, k, dx);
    }
    // Wgrad: dY^T [N, M] . (X^T [K, M])^T, both 1x128 along M
    const Fp8Rows xt = x_fresh ? quantize_1x128(transposed(x_fresh, m, k).data(), k, m) : retile_to_columns(c.xq, k);
    gemm_fp8(retile_to_columns(dyq, n), xt, w.grad.data(), true);
  } else {
    if (dx) {
      std::vector<float> acc(static_cast<std::size_t>(m * k));
      gemm_bf16(dy, transposed(c.w.data(), n, k).data(), m, k, n, acc.data(), false);
      store_bf16(acc, m, k, k, dx);
    }
    const std::vector<float> xt = transposed(x_fresh ? x_fresh : c.x.data(), m, k);
    gemm_bf16(transposed(dy, m, n).data(), xt.data(), n, k, m, w.grad.data(), true);
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

void swiglu_forward(Recipe r, const float* x, int64_t m, const Param& gate, const Param& up, const Param& down,
                    float* y, SwigluCache& c) {
  const int64_t f = gate.rows, d = gate.cols, fp = pad128(f);
  require_param(gate, f, d, "gate_proj");
  require_param(up, f, d, "up_proj");
  require_param(down, d, f, "down_proj");
  c = SwigluCache{};
  c.recipe = r;
  c.m = m;
  c.d = d;
  c.f = f;
  c.w13 = Param{"gate_proj+up_proj", 2 * fp, d, {}, {}, {}, {}};
  for (auto* v : {&c.w13.w, &c.w13.grad, &c.w13.m, &c.w13.v}) v->assign(static_cast<std::size_t>(2 * fp * d), 0.0f);
  std::copy(gate.w.begin(), gate.w.end(), c.w13.w.begin());
  std::copy(up.w.begin(), up.w.end(), c.w13.w.begin() + fp * d);

  std::vector<float> h(static_cast<std::size_t>(m * 2 * fp));
  linear_forward(r, x, m, c.w13, h.data(), c.up);  // [M, 2 Fp], BF16 values; the padding columns are 0
  std::vector<float> a(static_cast<std::size_t>(m * f));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < f; ++j) {
      const double h1 = h[static_cast<std::size_t>(i * 2 * fp + j)], h3 = h[static_cast<std::size_t>(i * 2 * fp + fp + j)];
      a[static_cast<std::size_t>(i * f + j)] = bf16_value(silu(h1) * h3);
    }
  if (r == Recipe::fp8)
    c.hq = quantize_1x128(h.data(), m, 2 * fp);
  else
    c.h = std::move(h);
  linear_forward(r, a.data(), m, down, y, c.down);
}

void swiglu_backward(SwigluCache& c, const float* dy, float* dx, Param& gate, Param& up, Param& down) {
  const int64_t m = c.m, d = c.d, f = c.f, fp = pad128(f);
  require_param(gate, f, d, "gate_proj (backward)");
  require_param(up, f, d, "up_proj (backward)");
  // The SwiGLU input, recomputed from the cache.
  const std::vector<float> h = c.recipe == Recipe::fp8 ? dequantize(c.hq, 2 * fp) : c.h;
  std::vector<float> a(static_cast<std::size_t>(m * f));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < f; ++j)
      a[static_cast<std::size_t>(i * f + j)] =
          bf16_value(silu(h[static_cast<std::size_t>(i * 2 * fp + j)]) * h[static_cast<std::size_t>(i * 2 * fp + fp + j)]);

  std::vector<float> da(static_cast<std::size_t>(m * f));
  linear_backward(c.down, dy, da.data(), down, a.data());  // dA, and W2's gradient from A'

  std::vector<float> dh(static_cast<std::size_t>(m * 2 * fp), 0.0f);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < f; ++j) {
      const double g = da[static_cast<std::size_t>(i * f + j)];
      const double h1 = h[static_cast<std::size_t>(i * 2 * fp + j)], h3 = h[static_cast<std::size_t>(i * 2 * fp + fp + j)];
      dh[static_cast<std::size_t>(i * 2 * fp + j)] = bf16_value(g * h3 * silu_grad(h1));
      dh[static_cast<std::size_t>(i * 2 * fp + fp + j)] = bf16_value(g * silu(h1));
    }
  std::fill(c.w13.grad.begin(), c.w13.grad.end(), 0.0f);
  linear_backward(c.up, dh.data(), dx, c.w13);
  // Split the stacked gradient: grad += dW1, dW3 (RN32 each, as the accumulating GEMM would).
  for (int64_t i = 0; i < f * d; ++i) {
    gate.grad[static_cast<std::size_t>(i)] = fm::fadd(gate.grad[static_cast<std::size_t>(i)], c.w13.grad[static_cast<std::size_t>(i)]);
    up.grad[static_cast<std::size_t>(i)] = fm::fadd(up.grad[static_cast<std::size_t>(i)], c.w13.grad[static_cast<std::size_t>(fp * d + i)]);
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW

bool grads_finite(const std::vector<Param*>& ps) {
  for (const Param* p : ps)
    for (float g : p->grad)
      if (!std::isfinite(g)) return false;
  return true;
}

bool adamw_step(const std::vector<Param*>& ps, int64_t t, const AdamW& h) {
  const math::AdamWConst k = adamw_const(h, t);
  if (!grads_finite(ps)) return false;
  for (Param* p : ps) {
    require_param(*p, p->rows, p->cols, "AdamW parameter");
    for (std::size_t i = 0; i < p->w.size(); ++i) math::adamw_element(k, p->grad[i], p->w[i], p->m[i], p->v[i]);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The FP64 step

namespace {

// y [M, N] = x [M, K] . w [N, K]^T in FP64 (Eigen, threaded over fixed 64-row blocks).
std::vector<double> matmul_nt(const std::vector<double>& x, const std::vector<double>& w, int64_t m, int64_t n, int64_t k) {
  using MapC = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  using Map = Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  std::vector<double> y(static_cast<std::size_t>(m * n), 0.0);
  constexpr int64_t kRows = 64;
  parallel_for((m + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRows, rows = std::min(kRows, m - r0);
      Map(y.data() + r0 * n, rows, n).noalias() = MapC(x.data() + r0 * k, rows, k) * MapC(w.data(), n, k).transpose();
    }
  });
  return y;
}

std::vector<double> transpose64(const std::vector<double>& x, int64_t rows, int64_t cols) {
  return transposed(x.data(), rows, cols);
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Linear in FP64: y = x w^T; backward dx = dy w, dW = dy^T x.
struct Linear64 {
  int64_t m, n, k;
  std::vector<double> x, w;
  std::vector<double> forward() const { return matmul_nt(x, w, m, n, k); }
  std::vector<double> dgrad(const std::vector<double>& dy) const { return matmul_nt(dy, transpose64(w, n, k), m, k, n); }
  std::vector<double> wgrad(const std::vector<double>& dy) const {
    return matmul_nt(transpose64(dy, m, n), transpose64(x, m, k), n, k, m);
  }
};

}  // namespace

StepF64 step_f64(bool swiglu, const std::vector<float>& x, const std::vector<float>& dy, int64_t m,
                 const std::vector<const Param*>& layer_params, int64_t t, const AdamW& h) {
  StepF64 out;
  std::vector<std::vector<double>> dgrads;
  if (!swiglu) {
    const Param& w = *layer_params.at(0);
    const Linear64 lin{m, w.rows, w.cols, widen(x), widen(w.w)};
    out.y = lin.forward();
    const std::vector<double> g = widen(dy);
    out.dx = lin.dgrad(g);
    dgrads.push_back(lin.wgrad(g));
  } else {
    const Param &gate = *layer_params.at(0), &up = *layer_params.at(1), &down = *layer_params.at(2);
    const int64_t f = gate.rows, d = gate.cols;
    const std::vector<double> xd = widen(x);
    const Linear64 l1{m, f, d, xd, widen(gate.w)}, l3{m, f, d, xd, widen(up.w)};
    const std::vector<double> h1 = l1.forward(), h3 = l3.forward();
    std::vector<double> a(h1.size());
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = silu(h1[i]) * h3[i];
    const Linear64 l2{m, d, f, a, widen(down.w)};
    out.y = l2.forward();
    const std::vector<double> g = widen(dy);
    const std::vector<double> da = l2.dgrad(g);
    std::vector<double> dh1(a.size()), dh3(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      dh1[i] = da[i] * h3[i] * silu_grad(h1[i]);
      dh3[i] = da[i] * silu(h1[i]);
    }
    const std::vector<double> dx1 = l1.dgrad(dh1), dx3 = l3.dgrad(dh3);
    out.dx.resize(dx1.size());
    for (std::size_t i = 0; i < dx1.size(); ++i) out.dx[i] = dx1[i] + dx3[i];
    dgrads = {l1.wgrad(dh1), l3.wgrad(dh3), l2.wgrad(g)};
  }
  bool finite = true;
  for (std::size_t p = 0; p < layer_params.size(); ++p)
    for (std::size_t i = 0; i < dgrads[p].size(); ++i) finite = finite && std::isfinite(dgrads[p][i] + layer_params[p]->grad[i]);
  out.skipped = !finite;
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t)), bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  for (std::size_t p = 0; p < layer_params.size(); ++p) {
    const Param& s = *layer_params[p];
    StepF64::ParamOut o;
    o.dgrad = dgrads[p];
    o.w = widen(s.w);
    o.m = widen(s.m);
    o.v = widen(s.v);
    if (finite)
      for (std::size_t i = 0; i < o.w.size(); ++i) {
        const double g = s.grad[i] + o.dgrad[i];
        o.m[i] = h.beta1 * o.m[i] + (1 - h.beta1) * g;
        o.v[i] = h.beta2 * o.v[i] + (1 - h.beta2) * g * g;
        o.w[i] = o.w[i] * (1 - h.lr * h.weight_decay) - h.lr * (o.m[i] / bc1) / (std::sqrt(o.v[i] / bc2) + h.eps);
      }
    out.params.push_back(std::move(o));
  }
  return out;
}

}  // namespace dsv3::fp8train
