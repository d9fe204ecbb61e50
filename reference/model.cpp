// The full forward: blocks, the latent cache, prefill and decode, the MTP module
// (reference/model.hpp).
#include "reference/model.hpp"

#include <algorithm>
#include <cmath>

#include "core/dtype.hpp"
#include "core/json_file.hpp"
#include "core/parallel.hpp"
#include "reference/mla_cache.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/rope.hpp"

namespace dsv3::model {

std::string_view cache_fmt_name(CacheFmt f) { return f == CacheFmt::bf16 ? "bf16" : f == CacheFmt::f64 ? "f64" : "fp8"; }

LatentCache::LatentCache(int64_t layers, int64_t width, CacheFmt fmt)
    : width_(width), fmt_(fmt), lens_(static_cast<std::size_t>(layers), 0), table_(static_cast<std::size_t>(layers)) {
  if (fmt == CacheFmt::fp8 && width != mla::kQk)
    throw InputError("model: the FP8 latent cache is FlashMLA's format for kv_lora_rank " + std::to_string(mla::kLatent) +
                     " + qk_rope_head_dim " + std::to_string(mla::kRope) + " (576 values per token); this config caches " +
                     std::to_string(width));
}

void LatentCache::append(int64_t layer, const double* values) {
  auto& len = lens_.at(static_cast<std::size_t>(layer));
  auto& table = table_[static_cast<std::size_t>(layer)];
  if (len % kPageTokens == 0) {  // a new page from the pool
    table.push_back(static_cast<int32_t>(pool_.size()));
    pool_.push_back(std::make_unique<double[]>(static_cast<std::size_t>(kPageTokens * width_)));
  }
  double* dst = pool_[static_cast<std::size_t>(table.back())].get() + (len % kPageTokens) * width_;
  if (fmt_ == CacheFmt::fp8) {  // BF16 values (the cache's input dtype), encoded, decoded as a reader sees them
    float v[mla::kQk];
    uint8_t token[mla::kFp8TokenBytes];
    for (int64_t i = 0; i < width_; ++i) v[i] = bf16_to_f32(bf16_from_f64(values[i]));
    mla::store_token(dsv3::mla::CacheFmt::fp8, v, token);
    mla::decode_token(dsv3::mla::CacheFmt::fp8, token, dst);
  } else {
    for (int64_t i = 0; i < width_; ++i) dst[i] = fmt_ == CacheFmt::bf16 ? static_cast<double>(bf16_to_f32(bf16_from_f64(values[i]))) : values[i];
  }
  ++len;
}

const double* LatentCache::token(int64_t layer, int64_t pos) const {
  const auto& table = table_.at(static_cast<std::size_t>(layer));
  return pool_[static_cast<std::size_t>(table.at(static_cast<std::size_t>(pos / kPageTokens)))].get() + (pos % kPageTokens) * width_;
}

Session::Session(const Weights& w, CacheFmt fmt)
    : cache(w.layers, w.cfg.kv_lora_rank + w.cfg.qk_rope_head_dim, fmt) {
  if (w.mtp) mtp_cache.emplace(1, w.cfg.kv_lora_rank + w.cfg.qk_rope_head_dim, fmt);
}

namespace {

using Codes = std::vector<uint16_t>;

std::vector<double> to_f64(const Codes& c) {
  std::vector<double> v(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) v[i] = bf16_to_f32(c[i]);
  return v;
}

Codes to_bf16(const std::vector<double>& v) {
  Codes c(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) c[i] = bf16_from_f64(v[i]);
  return c;
}

Codes norm_rows(const Codes& h, const Codes& w, int64_t dim, double eps) {
  Codes y(h.size());
  const auto T = static_cast<int64_t>(h.size()) / dim;
  for (int64_t t = 0; t < T; ++t) rmsnorm::normalize_row(&h[static_cast<std::size_t>(t * dim)], w.data(), dim, eps, &y[static_cast<std::size_t>(t * dim)]);
  return y;
}

// h + u, the exact sum rounded once to BF16.
void add_residual(Codes& h, const Codes& u) {
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = bf16_from_f64(static_cast<double>(bf16_to_f32(h[i])) + bf16_to_f32(u[i]));
}

// Dequantized rows [rows, cols] of a Linear (FP64, row-major).
std::vector<double> dense(const Linear& l) {
  std::vector<double> m(static_cast<std::size_t>(l.out() * l.in()));
  parallel_for(l.out(), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) l.row(o, &m[static_cast<std::size_t>(o * l.in())]);
  });
  return m;
}

// MLA in the absorbed form over the cache (reference/mla_layer.hpp's math, per token and head in
// a fixed order). x: the normed input [T, dim] (FP64 of BF16 values); appends T tokens to `layer`.
std::vector<double> attention(const ModelConfig& c, const Attention& a, LatentCache& cache, int64_t layer, const std::vector<double>& x,
                              int64_t T, int64_t start) {
  const mla::LayerDims d = mla::LayerDims::from(c);
  const int64_t H = d.heads, qk = d.qk(), C = d.kv_lora, R = d.rope, W = C + R;
  if (cache.len(layer) != start)
    throw std::logic_error("model: layer " + std::to_string(layer) + " cache holds " + std::to_string(cache.len(layer)) + " tokens, the step starts at " + std::to_string(start));
  std::vector<double> q;
  if (d.q_lora > 0) {
    std::vector<double> qa = apply(a.q_a, x, T);
    for (int64_t t = 0; t < T; ++t) mla::rms_norm_row(&qa[static_cast<std::size_t>(t * d.q_lora)], a.q_norm.data(), d.q_lora, d.eps, &qa[static_cast<std::size_t>(t * d.q_lora)]);
    q = apply(a.q_b, qa, T);
  } else {
    q = apply(a.q, x, T);
  }
  const std::vector<float> freqs = mla::rope_frequencies(d);
  std::vector<float> cs(static_cast<std::size_t>(R));
  const std::vector<double> kv = apply(a.kv_a, x, T);
  std::vector<double> entry(static_cast<std::size_t>(W));
  for (int64_t t = 0; t < T; ++t) {
    rope::cos_sin(freqs, start + t, cs.data());
    for (int64_t h = 0; h < H; ++h) mla::rotate_pairs(&q[static_cast<std::size_t>(t * H * qk + h * qk + d.nope)], R, cs.data());
    mla::rms_norm_row(&kv[static_cast<std::size_t>(t * W)], a.kv_norm.data(), C, d.eps, entry.data());
    std::copy_n(&kv[static_cast<std::size_t>(t * W + C)], R, entry.begin() + C);
    mla::rotate_pairs(entry.data() + C, R, cs.data());
    cache.append(layer, entry.data());
  }
  const std::vector<double> kv_b = dense(a.kv_b);  // [H (nope + v), C]: W_UK and W_UV per head
  const double scale = rope::softmax_scale(qk, rope::Yarn{});  // as reference/mla_layer.cpp
  std::vector<double> out(static_cast<std::size_t>(T * H * d.v));
  parallel_for(T * H, [&](int64_t i0, int64_t i1) {
    std::vector<double> qa(static_cast<std::size_t>(C)), p, o(static_cast<std::size_t>(C));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / H, h = i % H, pos = start + t;
      const double* qh = &q[static_cast<std::size_t>(t * H * qk + h * qk)];
      const double* uk = &kv_b[static_cast<std::size_t>(h * (d.nope + d.v) * C)];
      std::fill(qa.begin(), qa.end(), 0.0);
      for (int64_t n = 0; n < d.nope; ++n)  // q^C W_UK, summed over n in order
        for (int64_t col = 0; col < C; ++col) qa[static_cast<std::size_t>(col)] += qh[n] * uk[n * C + col];
      p.assign(static_cast<std::size_t>(pos + 1), 0.0);
      double mx = -INFINITY;
      for (int64_t j = 0; j <= pos; ++j) {
        const double* key = cache.token(layer, j);
        double s = 0, sr = 0;
        for (int64_t col = 0; col < C; ++col) s += qa[static_cast<std::size_t>(col)] * key[col];
        for (int64_t r = 0; r < R; ++r) sr += qh[d.nope + r] * key[C + r];
        p[static_cast<std::size_t>(j)] = (s + sr) * scale;
        mx = std::max(mx, p[static_cast<std::size_t>(j)]);
      }
      double sum = 0;
      std::fill(o.begin(), o.end(), 0.0);
      for (int64_t j = 0; j <= pos; ++j) {
        const double e = std::exp(p[static_cast<std::size_t>(j)] - mx);
        sum += e;
        const double* key = cache.token(layer, j);
        for (int64_t col = 0; col < C; ++col) o[static_cast<std::size_t>(col)] += e * key[col];
      }
      const double* uv = uk + d.nope * C;
      for (int64_t v = 0; v < d.v; ++v) {
        double acc = 0;
        for (int64_t col = 0; col < C; ++col) acc += uv[v * C + col] * o[static_cast<std::size_t>(col)];
        out[static_cast<std::size_t>(t * H * d.v + h * d.v + v)] = acc / sum;
      }
    }
  });
  return apply(a.o, out, T);
}

// w2 (silu(w1 x) * w3 x) for T rows, FP64.
std::vector<double> swiglu(const Mlp& m, const std::vector<double>& x, int64_t T) {
  const std::vector<double> g = apply(m.gate, x, T), u = apply(m.up, x, T);
  std::vector<double> act(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) act[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  return apply(m.down, act, T);
}

// The moe component's layer (reference/moe.hpp), token by token.
std::vector<double> moe_layer(const ModelConfig& c, const Moe& m, const Codes& xc, int64_t T) {
  const moe_gate::Routing r = moe_gate::Routing::from(c);
  const int64_t D = c.dim, E = r.experts, k = r.topk;
  const std::vector<double> x = to_f64(xc);
  const std::vector<double> logits = apply(m.gate, x, T);  // exact BF16 products, fixed-order FP64 sums
  std::vector<int32_t> idx(static_cast<std::size_t>(T * k));
  std::vector<double> g(static_cast<std::size_t>(T * k));
  {
    std::vector<float> lf(static_cast<std::size_t>(E)), scores(static_cast<std::size_t>(E));
    std::vector<double> w(static_cast<std::size_t>(k));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t e = 0; e < E; ++e) lf[static_cast<std::size_t>(e)] = static_cast<float>(logits[static_cast<std::size_t>(t * E + e)]);
      moe_gate::scores_from_logits(r, lf.data(), scores.data());
      moe_gate::route_token(r, scores.data(), m.bias ? m.bias->span<const float>().data() : nullptr, &idx[static_cast<std::size_t>(t * k)], w.data());
      for (int64_t j = 0; j < k; ++j) g[static_cast<std::size_t>(t * k + j)] = bf16_to_f32(bf16_from_f64(w[static_cast<std::size_t>(j)]));
    }
  }
  std::vector<double> y = m.shared ? swiglu(*m.shared, x, T) : std::vector<double>(static_cast<std::size_t>(T * D), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> xt(x.begin() + t * D, x.begin() + (t + 1) * D);
    std::vector<double> routed(static_cast<std::size_t>(D), 0.0);
    for (int64_t j = 0; j < k; ++j) {  // sum_j g_j FFN_j(x), in choice order, then + shared
      const std::vector<double> o = swiglu(m.experts[static_cast<std::size_t>(idx[static_cast<std::size_t>(t * k + j)])], xt, 1);
      for (int64_t col = 0; col < D; ++col) routed[static_cast<std::size_t>(col)] += g[static_cast<std::size_t>(t * k + j)] * o[static_cast<std::size_t>(col)];
    }
    for (int64_t col = 0; col < D; ++col) y[static_cast<std::size_t>(t * D + col)] = routed[static_cast<std::size_t>(col)] + y[static_cast<std::size_t>(t * D + col)];
  }
  return y;
}

void check_tokens(const ModelConfig& c, const std::vector<int32_t>& tokens, int64_t start, const char* what) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw InputError(std::string("model: ") + what + " token " + std::to_string(tokens[i]) + " at position " +
                       std::to_string(start + static_cast<int64_t>(i)) + " is outside the vocabulary of " + std::to_string(c.vocab_size));
}

Codes embed_rows(const Weights& w, const std::vector<int32_t>& tokens) {
  const int64_t D = w.cfg.dim;
  const auto e = w.embed.span<const uint16_t>();
  Codes h(tokens.size() * static_cast<std::size_t>(D));
  for (std::size_t t = 0; t < tokens.size(); ++t) std::copy_n(e.begin() + tokens[t] * D, D, h.begin() + static_cast<std::ptrdiff_t>(t) * D);
  return h;
}

std::vector<float> head_logits(const Weights& w, const Codes& normed, int64_t T) {
  const std::vector<double> l = apply(w.head, to_f64(normed), T);
  std::vector<float> out(l.size());
  for (std::size_t i = 0; i < l.size(); ++i) out[i] = static_cast<float>(l[i]);
  return out;
}

}  // namespace

std::vector<uint16_t> block_forward(const ModelConfig& c, const Block& b, LatentCache& cache, int64_t layer, const std::vector<uint16_t>& h_in,
                                    int64_t start) {
  const int64_t T = static_cast<int64_t>(h_in.size()) / c.dim;
  Codes h = h_in;
  add_residual(h, to_bf16(attention(c, b.attn, cache, layer, to_f64(norm_rows(h, b.attn_norm, c.dim, c.rms_norm_eps)), T, start)));
  const Codes f = norm_rows(h, b.ffn_norm, c.dim, c.rms_norm_eps);
  add_residual(h, to_bf16(b.mlp ? swiglu(*b.mlp, to_f64(f), T) : moe_layer(c, *b.moe, f, T)));
  return h;
}

StepOut forward(const Weights& w, Session& s, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = w.cfg;
  check_tokens(c, tokens, s.pos, "input");
  const auto T = static_cast<int64_t>(tokens.size());
  StepOut out;
  Codes h = embed_rows(w, tokens);
  out.hidden = h;
  for (int64_t l = 0; l < w.layers; ++l) {
    h = block_forward(c, w.blocks[static_cast<std::size_t>(l)], s.cache, l, h, s.pos);
    out.hidden.insert(out.hidden.end(), h.begin(), h.end());
  }
  out.final_hidden = norm_rows(h, w.final_norm, c.dim, c.rms_norm_eps);
  out.logits = head_logits(w, out.final_hidden, T);
  s.pos += T;
  return out;
}

std::vector<float> mtp_forward(const Weights& w, Session& s, const std::vector<uint16_t>& final_hidden, const std::vector<int32_t>& next_tokens,
                               int64_t start, MtpTrace* trace) {
  const ModelConfig& c = w.cfg;
  if (!w.mtp)
    throw InputError("model: no MTP module to run: " +
                     (w.mtp_note.empty() ? "config '" + c.id + "' has mtp_depth 0, so layer model.layers." + std::to_string(c.n_layers) +
                                               ".* (the depth-1 MTP module) was not looked for"
                                         : w.mtp_note));
  if (!s.mtp_cache) throw std::logic_error("model: this session was made for weights without the MTP module");
  check_tokens(c, next_tokens, start + 1, "MTP next");
  const auto T = static_cast<int64_t>(next_tokens.size());
  if (static_cast<int64_t>(final_hidden.size()) != T * c.dim)
    throw std::invalid_argument("model: MTP takes one hidden state per next token");
  const MtpModule& m = *w.mtp;
  const Codes e = norm_rows(embed_rows(w, next_tokens), m.enorm, c.dim, c.rms_norm_eps);
  const Codes hn = norm_rows(final_hidden, m.hnorm, c.dim, c.rms_norm_eps);
  std::vector<double> cat(static_cast<std::size_t>(T * 2 * c.dim));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < c.dim; ++i) {  // [embedding ; hidden], the checkpoint's order
      cat[static_cast<std::size_t>(t * 2 * c.dim + i)] = bf16_to_f32(e[static_cast<std::size_t>(t * c.dim + i)]);
      cat[static_cast<std::size_t>(t * 2 * c.dim + c.dim + i)] = bf16_to_f32(hn[static_cast<std::size_t>(t * c.dim + i)]);
    }
  const Codes in = to_bf16(apply(m.eh_proj, cat, T));
  const Codes g = block_forward(c, m.block, *s.mtp_cache, 0, in, start);
  if (trace) *trace = {in, g};
  return head_logits(w, norm_rows(g, m.shared_norm, c.dim, c.rms_norm_eps), T);
}

}  // namespace dsv3::model
