// The tiny language model of fp8_train_lm.hpp: parameters, forward and backward in either recipe,
// the held-out evaluation and the training loop.
#include "reference/fp8_train_lm.hpp"

#include <chrono>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/safetensors.hpp"
#include "reference/mtp_accept.hpp"

namespace dsv3::fp8train {

void LmConfig::validate() const {
  auto positive = [](int64_t v, const char* what) {
    if (v < 1) throw std::invalid_argument(std::string("tiny LM: ") + what + " must be >= 1, got " + std::to_string(v));
  };
  positive(dim, "dim");
  positive(inter, "inter");
  positive(layers, "layers");
  positive(batch, "batch");
  if (vocab != 256) throw std::invalid_argument("tiny LM: vocab must be 256 (byte-level tokens), got " + std::to_string(vocab));
  if (seq < 2) throw std::invalid_argument("tiny LM: seq must be >= 2 (the MTP module predicts two ahead), got " + std::to_string(seq));
  if (!(mtp_lambda >= 0)) throw std::invalid_argument("tiny LM: mtp_lambda must be >= 0");
}

// ---------------------------------------------------------------------------------------------
// Parameters

namespace {

constexpr double kNormEps = 1e-6;  // model.py RMSNorm
constexpr double kInitStd = 0.02;

Param new_param(const std::string& name, int64_t rows, int64_t cols, uint64_t seed, bool ones) {
  Param p{name, rows, cols, {}, {}, {}, {}};
  p.w = ones ? std::vector<float>(static_cast<std::size_t>(rows * cols), 1.0f) : draw(Dist::normal, seed, rows * cols, cols, kInitStd);
  for (auto* v : {&p.grad, &p.m, &p.v}) v->assign(p.w.size(), 0.0f);
  return p;
}

std::vector<Param> new_mlp(const std::string& prefix, const LmConfig& c, uint64_t seed) {
  return {new_param(prefix + "gate_proj.weight", c.inter, c.dim, seed + 1, false),
          new_param(prefix + "up_proj.weight", c.inter, c.dim, seed + 2, false),
          new_param(prefix + "down_proj.weight", c.dim, c.inter, seed + 3, false)};
}

}  // namespace

Lm init_lm(const LmConfig& c, uint64_t seed) {
  Lm m;
  m.cfg = c;
  const uint64_t s = seed_from("tiny-lm init " + std::to_string(seed));
  m.embed = new_param("model.embed_tokens.weight", c.vocab, c.dim, s + 10, false);
  m.head = new_param("lm_head.weight", c.vocab, c.dim, s + 11, false);
  m.final_norm = new_param("model.norm.weight", 1, c.dim, 0, true);
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    m.norms.push_back(new_param(pre + "post_attention_layernorm.weight", 1, c.dim, 0, true));
    m.mlps.push_back(new_mlp(pre + "mlp.", c, s + 100 + 10 * static_cast<uint64_t>(l)));
  }
  const std::string mtp = "model.layers." + std::to_string(c.layers) + ".";
  m.enorm = new_param(mtp + "enorm.weight", 1, c.dim, 0, true);
  m.hnorm = new_param(mtp + "hnorm.weight", 1, c.dim, 0, true);
  m.eh_proj = new_param(mtp + "eh_proj.weight", c.dim, 2 * c.dim, s + 12, false);
  m.mtp_norm = new_param(mtp + "post_attention_layernorm.weight", 1, c.dim, 0, true);
  m.mtp_mlp = new_mlp(mtp + "mlp.", c, s + 50);
  m.shared_norm = new_param(mtp + "shared_head.norm.weight", 1, c.dim, 0, true);
  return m;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Pieces with their backward

struct NormCache {
  std::vector<float> x;
  std::vector<double> inv_rms;
};

// y = x / rms(x) * w per row (FP64, rounded once to BF16).
std::vector<float> rmsnorm(const std::vector<float>& x, int64_t rows, const Param& w, NormCache& c) {
  const int64_t d = w.cols;
  std::vector<float> y(x.size());
  c.x = x;
  c.inv_rms.resize(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[static_cast<std::size_t>(r * d + j)]) * x[static_cast<std::size_t>(r * d + j)];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + kNormEps);
    c.inv_rms[static_cast<std::size_t>(r)] = inv;
    for (int64_t j = 0; j < d; ++j)
      y[static_cast<std::size_t>(r * d + j)] = bf16_value(x[static_cast<std::size_t>(r * d + j)] * inv * w.w[static_cast<std::size_t>(j)]);
  }
  return y;
}

// dx (BF16 values) from dy; w.grad += sum over rows of dy * x / rms.
std::vector<float> rmsnorm_backward(const std::vector<float>& dy, const NormCache& c, Param& w) {
  const int64_t d = w.cols, rows = static_cast<int64_t>(c.inv_rms.size());
  std::vector<float> dx(dy.size());
  std::vector<double> dw(static_cast<std::size_t>(d), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double inv = c.inv_rms[static_cast<std::size_t>(r)];
    double dot = 0;  // sum_j (dy_j w_j) xhat_j
    for (int64_t j = 0; j < d; ++j) {
      const std::size_t e = static_cast<std::size_t>(r * d + j);
      const double xhat = c.x[e] * inv;
      dw[static_cast<std::size_t>(j)] += dy[e] * xhat;
      dot += dy[e] * static_cast<double>(w.w[static_cast<std::size_t>(j)]) * xhat;
    }
    for (int64_t j = 0; j < d; ++j) {
      const std::size_t e = static_cast<std::size_t>(r * d + j);
      const double xhat = c.x[e] * inv;
      dx[e] = bf16_value(inv * (dy[e] * static_cast<double>(w.w[static_cast<std::size_t>(j)]) - xhat * dot / static_cast<double>(d)));
    }
  }
  for (int64_t j = 0; j < d; ++j) w.grad[static_cast<std::size_t>(j)] += static_cast<float>(dw[static_cast<std::size_t>(j)]);
  return dx;
}

// Mean cross-entropy of FP32 logits [rows, V]; dlogits (BF16 values) = weight (softmax - onehot) / rows.
// argmax (lowest index on ties) per row into `top`.
double cross_entropy(const std::vector<float>& logits, const std::vector<int>& target, int64_t v, double weight,
                     std::vector<float>* dlogits, std::vector<int>& top) {
  const int64_t rows = static_cast<int64_t>(target.size());
  double loss = 0;
  if (dlogits) dlogits->assign(logits.size(), 0.0f);
  top.assign(static_cast<std::size_t>(rows), 0);
  std::vector<double> p(static_cast<std::size_t>(v));
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = logits.data() + r * v;
    int best = 0;
    for (int64_t j = 1; j < v; ++j)
      if (l[j] > l[best]) best = static_cast<int>(j);
    top[static_cast<std::size_t>(r)] = best;
    double z = 0;
    for (int64_t j = 0; j < v; ++j) z += p[static_cast<std::size_t>(j)] = std::exp(static_cast<double>(l[j]) - l[best]);
    const int t = target[static_cast<std::size_t>(r)];
    loss += std::log(z) - (static_cast<double>(l[t]) - l[best]);
    if (dlogits)
      for (int64_t j = 0; j < v; ++j)
        (*dlogits)[static_cast<std::size_t>(r * v + j)] =
            bf16_value(weight * (p[static_cast<std::size_t>(j)] / z - (j == t ? 1.0 : 0.0)) / static_cast<double>(rows));
  }
  return loss / static_cast<double>(rows);
}

std::vector<float> add_bf16(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> s(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) s[i] = bf16_value(static_cast<double>(a[i]) + b[i]);
  return s;
}

// A residual SwiGLU block: h + MLP(RMSNorm(h)).
struct Block {
  NormCache norm;
  SwigluCache mlp;
};

std::vector<float> block_forward(Recipe r, const std::vector<float>& h, int64_t rows, Param& norm, std::vector<Param>& mlp, Block& b) {
  const std::vector<float> n = rmsnorm(h, rows, norm, b.norm);
  std::vector<float> y(h.size());
  swiglu_forward(r, n.data(), rows, mlp[0], mlp[1], mlp[2], y.data(), b.mlp);
  return add_bf16(h, y);
}

// dh of the block's input from dh of its output.
std::vector<float> block_backward(const std::vector<float>& dout, Param& norm, std::vector<Param>& mlp, Block& b) {
  std::vector<float> dn(dout.size());
  swiglu_backward(b.mlp, dout.data(), dn.data(), mlp[0], mlp[1], mlp[2]);
  return add_bf16(dout, rmsnorm_backward(dn, b.norm, norm));
}

// The shared output head (a BF16 GEMM in both recipes) and the weighted mean cross-entropy of
// its FP32 logits: loss, argmax per row, and with `train` the BF16 dlogits for the backward.
struct HeadPass {
  LinearCache cache;
  std::vector<float> dlogits;
  std::vector<int> top;
  std::vector<float> logits;  // kept for evaluation passes
  double loss = 0;
};

HeadPass head_loss(Lm& m, const std::vector<float>& normed, const std::vector<int>& target, double weight, bool train) {
  const auto rows = static_cast<int64_t>(target.size());
  HeadPass h;
  std::vector<float> logits(static_cast<std::size_t>(rows * m.cfg.vocab));
  linear_forward(Recipe::bf16, normed.data(), rows, m.head, logits.data(), h.cache);
  h.loss = cross_entropy(logits, target, m.cfg.vocab, weight, train ? &h.dlogits : nullptr, h.top);
  if (!train) h.logits = std::move(logits);
  return h;
}

}  // namespace

Pass run_pass(Lm& m, Recipe r, const Batch& b, bool train) {
  const LmConfig& c = m.cfg;
  const int64_t d = c.dim, t1 = c.seq + 1, rows = c.batch * c.seq, mrows = c.batch * (c.seq - 1);
  auto tok = [&](int64_t s, int64_t i) { return b.tokens[static_cast<std::size_t>(s * t1 + i)]; };
  // Main model.
  std::vector<float> h(static_cast<std::size_t>(rows * d));
  std::vector<int> target(static_cast<std::size_t>(rows));
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i < c.seq; ++i) {
      const int64_t row = s * c.seq + i;
      std::copy_n(m.embed.w.begin() + tok(s, i) * d, d, h.begin() + row * d);
      target[static_cast<std::size_t>(row)] = tok(s, i + 1);
    }
  round_bf16(h);
  std::vector<Block> blocks(static_cast<std::size_t>(c.layers));
  for (int64_t l = 0; l < c.layers; ++l)
    h = block_forward(r, h, rows, m.norms[static_cast<std::size_t>(l)], m.mlps[static_cast<std::size_t>(l)], blocks[static_cast<std::size_t>(l)]);
  NormCache final_norm;
  const std::vector<float> hf = rmsnorm(h, rows, m.final_norm, final_norm);
  HeadPass main = head_loss(m, hf, target, 1.0, train);
  Pass out;
  out.loss_main = main.loss;

  // MTP module over positions 0 .. seq-2 of each sequence.
  std::vector<float> e(static_cast<std::size_t>(mrows * d)), hprev(static_cast<std::size_t>(mrows * d));
  std::vector<int> target2(static_cast<std::size_t>(mrows));
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i + 1 < c.seq; ++i) {
      const int64_t row = s * (c.seq - 1) + i;
      std::copy_n(m.embed.w.begin() + tok(s, i + 1) * d, d, e.begin() + row * d);
      std::copy_n(hf.begin() + (s * c.seq + i) * d, d, hprev.begin() + row * d);
      target2[static_cast<std::size_t>(row)] = tok(s, i + 2);
    }
  round_bf16(e);
  NormCache en, hn;
  const std::vector<float> ne = rmsnorm(e, mrows, m.enorm, en), nh = rmsnorm(hprev, mrows, m.hnorm, hn);
  std::vector<float> cat(static_cast<std::size_t>(mrows * 2 * d));
  for (int64_t row = 0; row < mrows; ++row) {  // embedding first: the checkpoint's eh_proj column order
    std::copy_n(ne.begin() + row * d, d, cat.begin() + row * 2 * d);
    std::copy_n(nh.begin() + row * d, d, cat.begin() + row * 2 * d + d);
  }
  LinearCache eh;
  std::vector<float> g(static_cast<std::size_t>(mrows * d));
  linear_forward(r, cat.data(), mrows, m.eh_proj, g.data(), eh);
  Block mtp_block;
  g = block_forward(r, g, mrows, m.mtp_norm, m.mtp_mlp, mtp_block);
  NormCache shared;
  const std::vector<float> gs = rmsnorm(g, mrows, m.shared_norm, shared);
  HeadPass mtp = head_loss(m, gs, target2, c.mtp_lambda, train);
  out.loss_mtp = mtp.loss;
  out.loss = out.loss_main + c.mtp_lambda * out.loss_mtp;

  int64_t correct = 0;
  for (int64_t row = 0; row < rows; ++row) correct += main.top[static_cast<std::size_t>(row)] == target[static_cast<std::size_t>(row)];
  out.main_accuracy = static_cast<double>(correct) / static_cast<double>(rows);
  if (!train) {
    out.main_logits = std::move(main.logits);
    out.mtp_logits = std::move(mtp.logits);
    return out;
  }
  // Backward: the MTP module first, then the main model with the MTP's gradient into hf.
  std::vector<float> dgs(gs.size());
  linear_backward(mtp.cache, mtp.dlogits.data(), dgs.data(), m.head);
  std::vector<float> dg = rmsnorm_backward(dgs, shared, m.shared_norm);
  dg = block_backward(dg, m.mtp_norm, m.mtp_mlp, mtp_block);
  std::vector<float> dcat(cat.size());
  linear_backward(eh, dg.data(), dcat.data(), m.eh_proj);
  std::vector<float> dne(ne.size()), dnh(nh.size());
  for (int64_t row = 0; row < mrows; ++row) {
    std::copy_n(dcat.begin() + row * 2 * d, d, dne.begin() + row * d);
    std::copy_n(dcat.begin() + row * 2 * d + d, d, dnh.begin() + row * d);
  }
  const std::vector<float> de = rmsnorm_backward(dne, en, m.enorm), dhprev = rmsnorm_backward(dnh, hn, m.hnorm);

  std::vector<float> dhf(hf.size());
  linear_backward(main.cache, main.dlogits.data(), dhf.data(), m.head);
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i + 1 < c.seq; ++i) {
      const int64_t row = s * (c.seq - 1) + i, main_row = s * c.seq + i;
      for (int64_t j = 0; j < d; ++j) {
        float& v = dhf[static_cast<std::size_t>(main_row * d + j)];
        v = bf16_value(static_cast<double>(v) + dhprev[static_cast<std::size_t>(row * d + j)]);
      }
      for (int64_t j = 0; j < d; ++j) m.embed.grad[static_cast<std::size_t>(tok(s, i + 1) * d + j)] += de[static_cast<std::size_t>(row * d + j)];
    }
  std::vector<float> dh = rmsnorm_backward(dhf, final_norm, m.final_norm);
  for (int64_t l = c.layers - 1; l >= 0; --l)
    dh = block_backward(dh, m.norms[static_cast<std::size_t>(l)], m.mlps[static_cast<std::size_t>(l)], blocks[static_cast<std::size_t>(l)]);
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i < c.seq; ++i)
      for (int64_t j = 0; j < d; ++j) m.embed.grad[static_cast<std::size_t>(tok(s, i) * d + j)] += dh[static_cast<std::size_t>((s * c.seq + i) * d + j)];
  return out;
}

namespace {

// A batch of c.batch windows of seq + 1 bytes; window s starts at start(s).
template <class Start> Batch windows_at(const std::vector<uint8_t>& text, const LmConfig& c, Start start) {
  const int64_t t1 = c.seq + 1;
  Batch b;
  b.tokens.resize(static_cast<std::size_t>(c.batch * t1));
  for (int64_t s = 0; s < c.batch; ++s) {
    const int64_t at = start(s);
    for (int64_t i = 0; i < t1; ++i) b.tokens[static_cast<std::size_t>(s * t1 + i)] = text[static_cast<std::size_t>(at + i)];
  }
  return b;
}

Batch sample(const std::vector<uint8_t>& text, const LmConfig& c, Rng& rng) {
  const auto span = static_cast<uint64_t>(static_cast<int64_t>(text.size()) - c.seq - 1);
  return windows_at(text, c, [&](int64_t) { return static_cast<int64_t>(rng.next() % (span + 1)); });
}

// Adds one batch's speculative acceptances (EvalResult) as sums over its row pairs; returns the
// number of pairs. The draws of the temperature-1 rule come from `rng`.
int64_t add_acceptance(const LmConfig& c, const Pass& p, Rng& rng, EvalResult& e) {
  const int64_t V = c.vocab;
  std::vector<float> pp(static_cast<std::size_t>(2 * V)), q(static_cast<std::size_t>(V));
  int32_t tokens[2];
  int64_t pairs = 0;
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i + 1 < c.seq; ++i, ++pairs) {
      mtp::softmax_f32(&p.main_logits[static_cast<std::size_t>((s * c.seq + i + 1) * V)], V, pp.data());
      std::copy_n(pp.begin(), V, pp.begin() + V);  // the bonus row is not looked at here: any distribution
      mtp::softmax_f32(&p.mtp_logits[static_cast<std::size_t>((s * (c.seq - 1) + i) * V)], V, q.data());
      const int32_t greedy_draft = mtp::argmax(q.data(), V);
      e.mtp_acceptance += static_cast<double>(mtp::verify(mtp::Rule::greedy, pp.data(), q.data(), &greedy_draft, nullptr, 1, V, tokens));
      const uint32_t bits[2] = {static_cast<uint32_t>(rng.next() >> 32), static_cast<uint32_t>(rng.next() >> 32)};
      const int32_t draft = mtp::sample_index(q.data(), nullptr, V, static_cast<uint32_t>(rng.next() >> 32));
      e.mtp_acceptance_t1 += static_cast<double>(mtp::verify(mtp::Rule::sample, pp.data(), q.data(), &draft, bits, 1, V, tokens));
      for (int64_t x = 0; x < V; ++x) e.mtp_acceptance_t1_expected += std::min(pp[static_cast<std::size_t>(x)], q[static_cast<std::size_t>(x)]);
    }
  return pairs;
}

EvalResult evaluate(Lm& m, Recipe r, const std::vector<uint8_t>& text, int64_t windows) {
  const LmConfig& c = m.cfg;
  const int64_t t1 = c.seq + 1, stride = (static_cast<int64_t>(text.size()) - t1) / std::max<int64_t>(1, windows);
  EvalResult e;
  int64_t batches = 0, pairs = 0;
  Rng rng(seed_from("fp8_train_lm speculative acceptance"));  // the same draws for every model
  for (int64_t w0 = 0; w0 < windows; w0 += c.batch, ++batches) {
    // A short last batch repeats its last window.
    const Batch b = windows_at(text, c, [&](int64_t s) { return std::min(w0 + s, windows - 1) * stride; });
    const Pass p = run_pass(m, r, b, false);
    e.loss_main += p.loss_main;
    e.loss_mtp += p.loss_mtp;
    e.main_accuracy += p.main_accuracy;
    pairs += add_acceptance(c, p, rng, e);
  }
  for (double* v : {&e.loss_main, &e.loss_mtp, &e.main_accuracy}) *v /= static_cast<double>(batches);
  for (double* v : {&e.mtp_acceptance, &e.mtp_acceptance_t1, &e.mtp_acceptance_t1_expected}) *v /= static_cast<double>(pairs);
  return e;
}

double lr_at(const TrainConfig& t, int64_t step) {  // step counts from 1
  if (step <= t.warmup) return t.lr * static_cast<double>(step) / static_cast<double>(t.warmup);
  const double progress = static_cast<double>(step - t.warmup) / static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup));
  return t.lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress))));
}

void write_weights(Lm& m, const std::filesystem::path& path, const TrainConfig& t) {
  std::vector<Tensor> ts;
  auto add = [&](const Param& p, const std::string& name) {
    const Shape shape = p.rows == 1 ? Shape{p.cols} : Shape{p.rows, p.cols};
    Tensor x(name, DType::bf16, shape);
    auto s = x.span<uint16_t>();
    for (std::size_t i = 0; i < p.w.size(); ++i) s[i] = f32_to_bf16(p.w[i]);
    ts.push_back(std::move(x));
  };
  for (Param* p : m.matrices()) add(*p, p->name);
  for (Param* p : m.vectors()) add(*p, p->name);
  add(m.head, "model.layers." + std::to_string(m.cfg.layers) + ".shared_head.head.weight");  // the checkpoint's copy
  std::vector<const Tensor*> ptrs;
  for (const Tensor& x : ts) ptrs.push_back(&x);
  const nlohmann::json cfg = {{"vocab", m.cfg.vocab}, {"dim", m.cfg.dim}, {"inter", m.cfg.inter}, {"layers", m.cfg.layers},
                              {"seq", m.cfg.seq}, {"mtp_lambda", m.cfg.mtp_lambda}, {"num_nextn_predict_layers", 1},
                              {"rms_norm_eps", kNormEps}};
  write_safetensors(path, ptrs,
                    {{"format", "pt"}, {"recipe", std::string(recipe_name(t.recipe))}, {"seed", std::to_string(t.seed)},
                     {"steps", std::to_string(t.steps)}, {"config", cfg.dump()},
                     {"about", "dsv3bench tiny byte-level LM (reference/fp8_train_lm.hpp); BF16 from FP32 masters"}});
}

}  // namespace

TrainResult train_lm(const LmConfig& mc, const TrainConfig& t, const Corpus& corpus, std::ostream* progress,
                     const std::filesystem::path& weights_out) {
  mc.validate();
  if (t.steps < 1) throw std::invalid_argument("tiny LM: steps must be >= 1");
  const int64_t need = mc.seq + 1;
  if (static_cast<int64_t>(corpus.train.size()) < need || static_cast<int64_t>(corpus.heldout.size()) < need)
    throw std::invalid_argument("tiny LM: the corpus (" + corpus.source + ") is shorter than one sequence of " + std::to_string(need) + " bytes");
  Lm m = init_lm(mc, t.seed);
  Rng rng(seed_from("tiny-lm batches " + std::to_string(t.seed)));
  TrainResult res;
  AdamW decay, no_decay;
  no_decay.weight_decay = 0;
  double seconds = 0;
  for (int64_t step = 1; step <= t.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    for (Param* p : m.matrices()) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
    for (Param* p : m.vectors()) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
    const Pass pass = run_pass(m, t.recipe, sample(corpus.train, mc, rng), true);
    StepLog log;
    log.step = step;
    log.lr = lr_at(t, step);
    decay.lr = no_decay.lr = log.lr;
    std::vector<Param*> all = m.matrices();
    for (Param* p : m.vectors()) all.push_back(p);
    log.skipped = !grads_finite(all);
    if (!log.skipped) {
      adamw_step(m.matrices(), step, decay);
      adamw_step(m.vectors(), step, no_decay);
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.train_loss = pass.loss;
    log.train_main = pass.loss_main;
    log.train_mtp = pass.loss_mtp;
    if (step % t.eval_every == 0 || step == t.steps) {
      log.evaluated = true;
      log.heldout = evaluate(m, t.recipe, corpus.heldout, t.eval_windows);
      if (progress)
        *progress << "tiny LM " << recipe_name(t.recipe) << " seed " << t.seed << ": step " << step << "/" << t.steps
                  << std::fixed << std::setprecision(3) << "  train " << pass.loss_main << "  held-out " << log.heldout.loss_main
                  << "  MTP " << log.heldout.loss_mtp << "  acceptance " << log.heldout.mtp_acceptance << std::setprecision(1)
                  << "  (" << seconds << " s)\n" << std::defaultfloat << std::flush;
    }
    res.log.push_back(log);
  }
  res.tokens = t.steps * mc.batch * mc.seq;
  res.seconds = seconds;
  res.final_eval = res.log.back().heldout;
  if (!weights_out.empty()) write_weights(m, weights_out, t);
  return res;
}

}  // namespace dsv3::fp8train
