// The FP64 MLA layer in naive and absorbed form (reference/mla_layer.hpp).
#include "reference/mla_layer.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "reference/rope.hpp"

namespace dsv3::mla {

LayerDims LayerDims::from(const ModelConfig& m) {
  if (!m.is_mla_moe()) throw std::invalid_argument("mla: model '" + m.id + "' is not an MLA model (family " + m.family + ")");
  LayerDims d;
  d.dim = m.dim; d.heads = m.n_heads; d.q_lora = m.q_lora_rank; d.kv_lora = m.kv_lora_rank;
  d.nope = m.qk_nope_head_dim; d.rope = m.qk_rope_head_dim; d.v = m.v_head_dim; d.eps = m.rms_norm_eps;
  return d;
}

namespace {

MatrixD random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  const std::vector<float> g = draw(Dist::normal, seed, rows * cols, cols, 1.0 / std::sqrt(static_cast<double>(cols)));
  MatrixD m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = bf16_to_f32(f32_to_bf16(g[static_cast<std::size_t>(i)]));
  return m;
}

Eigen::VectorXd random_norm(int64_t n, uint64_t seed) {
  const std::vector<float> g = draw(Dist::normal, seed, n, n, 0.1);
  Eigen::VectorXd v(n);
  for (int64_t i = 0; i < n; ++i) v(i) = bf16_to_f32(f32_to_bf16(1.0f + g[static_cast<std::size_t>(i)]));
  return v;
}

// Row-wise RMSNorm in FP64.
MatrixD rms_norm(const MatrixD& x, const Eigen::VectorXd& w, double eps) {
  MatrixD y(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const double rinv = 1.0 / std::sqrt(x.row(r).squaredNorm() / static_cast<double>(x.cols()) + eps);
    y.row(r) = (x.row(r) * rinv).cwiseProduct(w.transpose());
  }
  return y;
}

// Rotates each row's adjacent pairs; row r is at position r.
void apply_rope(MatrixD& x, const std::vector<float>& freqs) {
  const Eigen::Index rope = x.cols();
  std::vector<float> cs(static_cast<std::size_t>(rope));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    rope::cos_sin(freqs, r, cs.data());
    for (int64_t i = 0; i < rope / 2; ++i) {
      const double c = cs[2 * i], s = cs[2 * i + 1], x0 = x(r, 2 * i), x1 = x(r, 2 * i + 1);
      x(r, 2 * i) = x0 * c - x1 * s;
      x(r, 2 * i + 1) = x0 * s + x1 * c;
    }
  }
}

// Softmax over row i's first i + 1 entries (causal), in place; the rest set to 0.
void causal_softmax(MatrixD& s) {
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    const double m = s.row(i).head(i + 1).maxCoeff();
    double sum = 0;
    for (Eigen::Index j = 0; j <= i; ++j) sum += (s(i, j) = std::exp(s(i, j) - m));
    s.row(i).head(i + 1) /= sum;
    s.row(i).tail(s.cols() - i - 1).setZero();
  }
}

}  // namespace

LayerWeights random_layer_weights(const LayerDims& d, uint64_t seed) {
  LayerWeights w;
  if (d.q_lora > 0) {
    w.wq_a = random_matrix(d.q_lora, d.dim, seed + 1);
    w.q_norm = random_norm(d.q_lora, seed + 2);
    w.wq_b = random_matrix(d.heads * d.qk(), d.q_lora, seed + 3);
  } else {
    w.wq = random_matrix(d.heads * d.qk(), d.dim, seed + 4);
  }
  w.wkv_a = random_matrix(d.kv_lora + d.rope, d.dim, seed + 5);
  w.kv_norm = random_norm(d.kv_lora, seed + 6);
  w.wkv_b = random_matrix(d.heads * (d.nope + d.v), d.kv_lora, seed + 7);
  w.wo = random_matrix(d.dim, d.heads * d.v, seed + 8);
  return w;
}

MatrixD layer_forward(const LayerDims& d, const LayerWeights& w, const MatrixD& h, Form form) {
  if (h.cols() != d.dim) throw std::invalid_argument("mla layer: h has " + std::to_string(h.cols()) + " columns, dim is " + std::to_string(d.dim));
  const Eigen::Index S = h.rows();
  rope::Yarn yarn;
  yarn.dim = d.rope;
  const std::vector<float> freqs = rope::frequencies(yarn);
  const double scale = rope::softmax_scale(d.qk(), yarn);

  // Queries [S, H * (nope + rope)], RoPE on each head's last `rope` columns.
  MatrixD q = d.q_lora > 0 ? MatrixD(rms_norm(h * w.wq_a.transpose(), w.q_norm, d.eps) * w.wq_b.transpose())
                           : MatrixD(h * w.wq.transpose());
  for (int64_t hd = 0; hd < d.heads; ++hd) {
    MatrixD part = q.middleCols(hd * d.qk() + d.nope, d.rope);
    apply_rope(part, freqs);
    q.middleCols(hd * d.qk() + d.nope, d.rope) = part;
  }
  // Latent [S, kv_lora] (normalized) and the shared roped key [S, rope].
  const MatrixD kv = h * w.wkv_a.transpose();
  const MatrixD c = rms_norm(kv.leftCols(d.kv_lora), w.kv_norm, d.eps);
  MatrixD kr = kv.rightCols(d.rope);
  apply_rope(kr, freqs);

  MatrixD o(S, d.heads * d.v);  // per-head outputs before wo
  for (int64_t hd = 0; hd < d.heads; ++hd) {
    const MatrixD w_uk = w.wkv_b.middleRows(hd * (d.nope + d.v), d.nope);    // [nope, kv_lora]
    const MatrixD w_uv = w.wkv_b.middleRows(hd * (d.nope + d.v) + d.nope, d.v);  // [v, kv_lora]
    const MatrixD qc = q.middleCols(hd * d.qk(), d.nope), qr = q.middleCols(hd * d.qk() + d.nope, d.rope);
    MatrixD s;
    if (form == Form::naive) {
      const MatrixD kc = c * w_uk.transpose();  // [S, nope]
      s = (qc * kc.transpose() + qr * kr.transpose()) * scale;
      causal_softmax(s);
      o.middleCols(hd * d.v, d.v) = s * (c * w_uv.transpose());
    } else {
      const MatrixD q_abs = qc * w_uk;  // [S, kv_lora]: W_UK^T folded into the query
      s = (q_abs * c.transpose() + qr * kr.transpose()) * scale;
      causal_softmax(s);
      o.middleCols(hd * d.v, d.v) = (s * c) * w_uv.transpose();  // latent output, then W_UV
    }
  }
  return o * w.wo.transpose();
}

}  // namespace dsv3::mla
