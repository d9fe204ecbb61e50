// The FP64 MLA layer in naive and absorbed form (reference/mla_layer.hpp).
#include "reference/mla_layer.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/parallel.hpp"
#include "reference/mla_softmax.hpp"
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

Eigen::VectorXd random_norm(int64_t n, uint64_t seed) {
  const std::vector<float> g = draw(Dist::normal, seed, n, n, 0.1);
  Eigen::VectorXd v(n);
  for (int64_t i = 0; i < n; ++i) v(i) = bf16_to_f32(f32_to_bf16(1.0f + g[static_cast<std::size_t>(i)]));
  return v;
}

// Row-wise RMSNorm in FP64.
MatrixD rms_norm(const MatrixD& x, const Eigen::VectorXd& w, double eps) {
  MatrixD y(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) rms_norm_row(&x(r, 0), w.data(), x.cols(), eps, &y(r, 0));
  return y;
}

// Rotates each row's adjacent pairs; row r is at position start_pos + r.
void apply_rope(MatrixD& x, const std::vector<float>& freqs, int64_t start_pos) {
  const Eigen::Index rope = x.cols();
  std::vector<float> cs(static_cast<std::size_t>(rope));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    rope::cos_sin(freqs, start_pos + r, cs.data());
    rotate_pairs(&x(r, 0), rope, cs.data());
  }
}

}  // namespace

void rms_norm_row(const double* x, const double* w, int64_t n, double eps, double* y) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double rinv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * rinv * w[i];
}

void rotate_pairs(double* x, int64_t rope, const float* cs) {
  for (int64_t i = 0; i < rope / 2; ++i) {
    const double c = cs[2 * i], s = cs[2 * i + 1], x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * c - x1 * s;
    x[2 * i + 1] = x0 * s + x1 * c;
  }
}

MatrixD random_bf16_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  const std::vector<float> g = draw(Dist::normal, seed, rows * cols, cols, 1.0 / std::sqrt(static_cast<double>(cols)));
  MatrixD m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = bf16_to_f32(f32_to_bf16(g[static_cast<std::size_t>(i)]));
  return m;
}

LayerWeights random_layer_weights(const LayerDims& d, uint64_t seed) {
  LayerWeights w;
  if (d.q_lora > 0) {
    w.wq_a = random_bf16_matrix(d.q_lora, d.dim, seed + 1);
    w.q_norm = random_norm(d.q_lora, seed + 2);
    w.wq_b = random_bf16_matrix(d.heads * d.qk(), d.q_lora, seed + 3);
  } else {
    w.wq = random_bf16_matrix(d.heads * d.qk(), d.dim, seed + 4);
  }
  w.wkv_a = random_bf16_matrix(d.kv_lora + d.rope, d.dim, seed + 5);
  w.kv_norm = random_norm(d.kv_lora, seed + 6);
  w.wkv_b = random_bf16_matrix(d.heads * (d.nope + d.v), d.kv_lora, seed + 7);
  w.wo = random_bf16_matrix(d.dim, d.heads * d.v, seed + 8);
  return w;
}

std::string_view form_name(Form f) { return f == Form::naive ? "naive" : "absorbed"; }

std::vector<float> rope_frequencies(const LayerDims& d) {
  rope::Yarn yarn;
  yarn.dim = d.rope;
  return rope::frequencies(yarn);
}

namespace {

// W_UK [nope, kv_lora] and W_UV [v, kv_lora] of head hd: rows of wkv_b.
auto w_uk(const LayerDims& d, const LayerWeights& w, int64_t hd) { return w.wkv_b.middleRows(hd * (d.nope + d.v), d.nope); }
auto w_uv(const LayerDims& d, const LayerWeights& w, int64_t hd) { return w.wkv_b.middleRows(hd * (d.nope + d.v) + d.nope, d.v); }

}  // namespace

Projected project(const LayerDims& d, const LayerWeights& w, const MatrixD& h, int64_t start_pos) {
  if (h.cols() != d.dim) throw std::invalid_argument("mla layer: h has " + std::to_string(h.cols()) + " columns, dim is " + std::to_string(d.dim));
  const std::vector<float> freqs = rope_frequencies(d);
  Projected x;
  x.q = d.q_lora > 0 ? MatrixD(rms_norm(h * w.wq_a.transpose(), w.q_norm, d.eps) * w.wq_b.transpose()) : MatrixD(h * w.wq.transpose());
  for (int64_t hd = 0; hd < d.heads; ++hd) {
    MatrixD part = x.q.middleCols(hd * d.qk() + d.nope, d.rope);
    apply_rope(part, freqs, start_pos);
    x.q.middleCols(hd * d.qk() + d.nope, d.rope) = part;
  }
  const MatrixD kv = h * w.wkv_a.transpose();
  x.latent = rms_norm(kv.leftCols(d.kv_lora), w.kv_norm, d.eps);
  x.rope_key = kv.rightCols(d.rope);
  apply_rope(x.rope_key, freqs, start_pos);
  return x;
}

LayerCache make_cache(const LayerDims& d, const LayerWeights& w, const MatrixD& latent, const MatrixD& rope_key, Form form) {
  if (latent.cols() != d.kv_lora || rope_key.cols() != d.rope || latent.rows() != rope_key.rows())
    throw std::invalid_argument("mla layer cache: latent must be [L, " + std::to_string(d.kv_lora) + "] and rope_key [L, " +
                                std::to_string(d.rope) + "], got [" + std::to_string(latent.rows()) + ", " +
                                std::to_string(latent.cols()) + "] and [" + std::to_string(rope_key.rows()) + ", " +
                                std::to_string(rope_key.cols()) + "]");
  LayerCache c;
  c.form = form;
  c.len = latent.rows();
  if (form == Form::absorbed) {
    c.kv.resize(c.len, d.kv_lora + d.rope);
    c.kv << latent, rope_key;
    return c;
  }
  c.k.resize(static_cast<std::size_t>(d.heads));
  c.v.resize(static_cast<std::size_t>(d.heads));
  parallel_for(d.heads, [&](int64_t h0, int64_t h1) {
    for (int64_t hd = h0; hd < h1; ++hd) {
      MatrixD& k = c.k[static_cast<std::size_t>(hd)];
      k.resize(c.len, d.qk());
      k.leftCols(d.nope).noalias() = latent * w_uk(d, w, hd).transpose();
      k.rightCols(d.rope) = rope_key;
      c.v[static_cast<std::size_t>(hd)].noalias() = latent * w_uv(d, w, hd).transpose();
    }
  });
  return c;
}

int64_t cache_bf16_bytes_per_token(const LayerDims& d, Form form) {
  return form == Form::absorbed ? (d.kv_lora + d.rope) * 2 : d.heads * (d.qk() + d.v) * 2;
}

int64_t attention_flops_per_token(const LayerDims& d, Form form) {
  return form == Form::absorbed ? 2 * d.heads * (d.kv_lora + d.rope + d.kv_lora) : 2 * d.heads * (d.qk() + d.v);
}

MatrixD attend(const LayerDims& d, const LayerWeights& w, const MatrixD& q, const LayerCache& cache, int64_t q_pos) {
  const Eigen::Index S = q.rows();
  const int64_t H = d.heads, L = cache.len;
  if (q.cols() != H * d.qk()) throw std::invalid_argument("mla attend: q must have H * (nope + rope) columns");
  if (q_pos < 0 || q_pos + S > L)
    throw std::invalid_argument("mla attend: queries at positions " + std::to_string(q_pos) + ".." + std::to_string(q_pos + S - 1) +
                                " need their own keys in the cache, which holds " + std::to_string(L));
  const double scale = rope::softmax_scale(d.qk(), rope::Yarn{});  // the naive form's scale in both forms (model.py)
  const int64_t chunks = (L + kAttendChunk - 1) / kAttendChunk;
  // Masks keys a query cannot see: query i of the block sees positions <= q_pos + i.
  auto mask = [&](MatrixD& s, Eigen::Index row0, int64_t j0) {
    for (Eigen::Index i = 0; i < S; ++i)
      for (Eigen::Index j = std::max<int64_t>(0, q_pos + i + 1 - j0); j < s.cols(); ++j)
        s(row0 + i, j) = detail::Softmax::kNone;
  };

  // One state per chunk (absorbed: one over all H * S rows, head-major; naive: one per head).
  const std::size_t per_chunk = cache.form == Form::absorbed ? 1 : static_cast<std::size_t>(H);
  std::vector<detail::Softmax> states(static_cast<std::size_t>(chunks) * per_chunk);
  MatrixD q_abs;  // absorbed: [H * S, kv_lora + rope] = [q^C W_UK | q^R] per head
  if (cache.form == Form::absorbed) {
    q_abs.resize(H * S, d.kv_lora + d.rope);
    for (int64_t hd = 0; hd < H; ++hd) {
      q_abs.block(hd * S, 0, S, d.kv_lora).noalias() = q.middleCols(hd * d.qk(), d.nope) * w_uk(d, w, hd);
      q_abs.block(hd * S, d.kv_lora, S, d.rope) = q.middleCols(hd * d.qk() + d.nope, d.rope);
    }
  }
  parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t j0 = c * kAttendChunk, n = std::min(kAttendChunk, L - j0);
      if (cache.form == Form::absorbed) {
        const auto keys = cache.kv.middleRows(j0, n);
        MatrixD s = (q_abs * keys.transpose()) * scale;
        for (int64_t hd = 0; hd < H; ++hd) mask(s, hd * S, j0);
        detail::Softmax& st = states[static_cast<std::size_t>(c)] = detail::Softmax(H * S, d.kv_lora);
        st.add(s, keys.leftCols(d.kv_lora));
      } else {
        for (int64_t hd = 0; hd < H; ++hd) {
          const auto& k = cache.k[static_cast<std::size_t>(hd)];
          MatrixD s = (q.middleCols(hd * d.qk(), d.qk()) * k.middleRows(j0, n).transpose()) * scale;
          mask(s, 0, j0);
          detail::Softmax& st = states[static_cast<std::size_t>(c) * per_chunk + static_cast<std::size_t>(hd)] = detail::Softmax(S, d.v);
          st.add(s, cache.v[static_cast<std::size_t>(hd)].middleRows(j0, n));
        }
      }
    }
  });
  for (int64_t c = 1; c < chunks; ++c)  // in chunk order, whatever the threads did
    for (std::size_t u = 0; u < per_chunk; ++u) states[u].merge(states[static_cast<std::size_t>(c) * per_chunk + u]);

  MatrixD o(S, H * d.v);
  for (int64_t hd = 0; hd < H; ++hd) {
    const detail::Softmax& st = states[cache.form == Form::absorbed ? 0 : static_cast<std::size_t>(hd)];
    const Eigen::Index row0 = cache.form == Form::absorbed ? hd * S : 0;
    MatrixD p_v = st.acc.middleRows(row0, S);  // every query sees at least its own key: sum > 0
    for (Eigen::Index i = 0; i < S; ++i) p_v.row(i) /= st.sum(row0 + i);
    o.middleCols(hd * d.v, d.v) = cache.form == Form::absorbed ? MatrixD(p_v * w_uv(d, w, hd).transpose()) : p_v;
  }
  return o;
}

MatrixD layer_forward(const LayerDims& d, const LayerWeights& w, const MatrixD& h, Form form) {
  const Projected x = project(d, w, h, 0);
  return attend(d, w, x.q, make_cache(d, w, x.latent, x.rope_key, form), 0) * w.wo.transpose();
}

}  // namespace dsv3::mla
