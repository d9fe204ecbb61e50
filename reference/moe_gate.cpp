// The DeepSeekMoE gate reference (reference/moe_gate.hpp).
#include "reference/moe_gate.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/parallel.hpp"

namespace dsv3::moe_gate {

Routing Routing::from(const ModelConfig& m) {
  if (!m.is_mla_moe()) throw std::invalid_argument("moe_gate: model '" + m.id + "' has no MoE layers (family " + m.family + ")");
  Routing r;
  r.dim = m.dim;
  r.experts = m.n_routed_experts;
  r.groups = m.n_expert_groups;
  r.topk_groups = m.n_limited_groups;
  r.topk = m.n_activated_experts;
  r.route_scale = m.route_scale;
  r.sigmoid = m.score_func == "sigmoid";
  r.bias = m.has_router_bias();
  r.validate();
  return r;
}

void Routing::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("moe_gate: " + what); };
  if (dim < 1) bad("dim must be >= 1, got " + std::to_string(dim));
  if (experts < 1) bad("n_routed_experts must be >= 1, got " + std::to_string(experts));
  if (groups < 1 || experts % groups != 0)
    bad("n_expert_groups = " + std::to_string(groups) + " does not divide n_routed_experts = " + std::to_string(experts));
  if (topk_groups < 1 || topk_groups > groups)
    bad("n_limited_groups = " + std::to_string(topk_groups) + " must be in [1, n_expert_groups = " + std::to_string(groups) + "]");
  if (topk < 1 || topk > topk_groups * per_group())
    bad("n_activated_experts = " + std::to_string(topk) + " exceeds the " + std::to_string(topk_groups * per_group()) +
        " experts of the n_limited_groups = " + std::to_string(topk_groups) + " allowed groups");
  if (bias && groups > 1 && per_group() < 2) bad("a biased gate scores a group by its top 2 experts: groups need >= 2 experts");
  if (!(route_scale > 0) || !std::isfinite(route_scale)) bad("route_scale must be finite and > 0");
}

std::string_view bias_fill_name(BiasFill b) {
  switch (b) {
    case BiasFill::zero: return "zero";
    case BiasFill::random: return "random";
    case BiasFill::skewed: return "skewed";
  }
  return "?";
}

std::string Params::to_string() const {
  std::ostringstream os;
  os << model << " t=" << tokens << ' ' << dist_name(dist);
  if (routing().bias) os << " bias=" << bias_fill_name(bias);
  if (dim) os << " dim=" << dim;
  return os.str();
}

Routing Params::routing() const {
  Routing r = Routing::from(find_model(model));
  if (dim) r.dim = dim;
  r.validate();
  if (tokens < 1) throw std::invalid_argument("moe_gate: tokens must be >= 1, got " + std::to_string(tokens));
  return r;
}

std::vector<TensorSpec> input_specs(const Params& p) {
  const Routing r = p.routing();
  std::vector<TensorSpec> s = {{"x", DType::bf16, {p.tokens, r.dim}}, {"weight", DType::bf16, {r.experts, r.dim}}};
  if (r.bias) s.push_back({"bias", DType::f32, {r.experts}});
  return s;
}

std::vector<TensorSpec> output_specs(const Params& p) {
  const Routing r = p.routing();
  return {{"weights", DType::bf16, {p.tokens, r.topk}}, {"indices", DType::i32, {p.tokens, r.topk}}};
}

std::vector<Tensor> make_inputs(const Params& p) {
  const Routing r = p.routing();
  std::vector<Tensor> in = allocate(input_specs(p));
  const uint64_t seed = seed_from(p.to_string());
  fill(in[0], p.dist, seed);
  // Centroids ~ N(0, 1/dim): logits of a unit-variance x are ~ N(0, 1), sigmoid scores spread.
  const std::vector<float> g = draw(Dist::normal, seed + 1, r.experts * r.dim, r.dim, 1.0 / std::sqrt(static_cast<double>(r.dim)));
  auto w = in[1].span<uint16_t>();
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(g[i]);
  if (r.bias) {
    auto b = in[2].span<float>();
    Rng rng(seed + 2);
    for (std::size_t e = 0; e < b.size(); ++e) {
      if (p.bias == BiasFill::zero) b[e] = 0;
      else if (p.bias == BiasFill::random) b[e] = static_cast<float>(0.05 * rng.normal());
      else b[e] = e % 17 == 0 ? 0.5f : 0.0f;  // skewed: every 17th expert lifted past any sigmoid gap
    }
  }
  return in;
}

bool ranks_before(float a, int64_t ia, float b, int64_t ib) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && (!std::isnan(b) || ia < ib);
  return a > b || (a == b && ia < ib);
}

std::vector<int64_t> top_k(const float* vals, int64_t n, int64_t k) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return ranks_before(vals[a], a, vals[b], b); });
  order.resize(static_cast<std::size_t>(k));
  return order;
}

namespace {

constexpr int64_t kTokenBlock = 64;  // fixed GEMM blocks: the same sums for any thread count

}  // namespace

void biased_scores(const Routing& r, const float* scores, const float* bias, float* biased) {
  for (int64_t e = 0; e < r.experts; ++e)
    biased[e] = r.bias && bias ? scores[e] + bias[e] : scores[e];  // FP32 add, as model.py
}

std::vector<float> group_scores(const Routing& r, const float* biased) {
  const int64_t per = r.per_group();
  std::vector<float> score(static_cast<std::size_t>(r.groups));
  for (int64_t g = 0; g < r.groups; ++g) {
    const std::vector<int64_t> best = top_k(&biased[g * per], per, r.bias ? 2 : 1);
    score[g] = r.bias ? biased[g * per + best[0]] + biased[g * per + best[1]] : biased[g * per + best[0]];
  }
  return score;
}

void weights_of(const Routing& r, const float* scores, const int32_t* idx, double* w) {
  double sum = 0;
  for (int64_t j = 0; j < r.topk; ++j) {
    w[j] = scores[idx[j]];
    sum += w[j];
  }
  for (int64_t j = 0; j < r.topk; ++j) w[j] = (r.sigmoid ? w[j] / sum : w[j]) * r.route_scale;
}

void route_token(const Routing& r, const float* scores, const float* bias, int32_t* idx, double* w) {
  std::vector<float> biased(static_cast<std::size_t>(r.experts));
  biased_scores(r, scores, bias, biased.data());
  if (r.groups > 1) {
    const std::vector<float> group_score = group_scores(r, biased.data());
    std::vector<bool> keep(static_cast<std::size_t>(r.groups), false);
    for (int64_t g : top_k(group_score.data(), r.groups, r.topk_groups)) keep[g] = true;
    for (int64_t e = 0; e < r.experts; ++e)
      if (!keep[e / r.per_group()]) biased[e] = -std::numeric_limits<float>::infinity();
  }
  const std::vector<int64_t> chosen = top_k(biased.data(), r.experts, r.topk);
  for (int64_t j = 0; j < r.topk; ++j) idx[j] = static_cast<int32_t>(chosen[j]);
  weights_of(r, scores, idx, w);
}

void scores_from_logits(const Routing& r, const float* logits, float* scores) {
  if (r.sigmoid) {
    for (int64_t e = 0; e < r.experts; ++e) scores[e] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logits[e]))));
    return;
  }
  double m = -std::numeric_limits<double>::infinity(), z = 0;  // softmax over the FP32 logits, in FP64
  for (int64_t e = 0; e < r.experts; ++e) m = std::max(m, static_cast<double>(logits[e]));
  for (int64_t e = 0; e < r.experts; ++e) z += std::exp(static_cast<double>(logits[e]) - m);
  for (int64_t e = 0; e < r.experts; ++e) scores[e] = static_cast<float>(std::exp(static_cast<double>(logits[e]) - m) / z);
}

std::vector<float> gate_scores(const Params& p, const std::vector<Tensor>& in) {
  const Routing r = p.routing();
  require_tensors(in, input_specs(p), "moe_gate inputs");
  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  MatD wt(r.dim, r.experts);  // W^T in FP64 (BF16 values: every product below is exact)
  for (int64_t e = 0; e < r.experts; ++e)
    for (int64_t c = 0; c < r.dim; ++c) wt(c, e) = in[1].get(e * r.dim + c);
  std::vector<float> scores(static_cast<std::size_t>(p.tokens * r.experts));  // [T, E]
  const int64_t blocks = (p.tokens + kTokenBlock - 1) / kTokenBlock;
  parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    std::vector<float> logit(static_cast<std::size_t>(r.experts));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = blk * kTokenBlock, n = std::min(kTokenBlock, p.tokens - t0);
      MatD x(n, r.dim);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < r.dim; ++c) x(t, c) = in[0].get((t0 + t) * r.dim + c);
      const MatD logits = x * wt;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t e = 0; e < r.experts; ++e) logit[static_cast<std::size_t>(e)] = static_cast<float>(logits(t, e));
        scores_from_logits(r, logit.data(), &scores[static_cast<std::size_t>((t0 + t) * r.experts)]);
      }
    }
  });
  return scores;
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  const Routing r = p.routing();
  require_tensors(in, input_specs(p), "moe_gate/ref inputs");
  require_tensors(out, output_specs(p), "moe_gate/ref outputs");
  const std::vector<float> scores = gate_scores(p, in);
  const float* bias = r.bias ? in[2].span<const float>().data() : nullptr;
  auto weights = out[0].span<uint16_t>();
  auto indices = out[1].span<int32_t>();
  parallel_for(p.tokens, [&](int64_t t0, int64_t t1) {
    std::vector<double> w(static_cast<std::size_t>(r.topk));
    for (int64_t t = t0; t < t1; ++t) {  // each token on its own: any split gives the same result
      route_token(r, &scores[static_cast<std::size_t>(t * r.experts)], bias, &indices[static_cast<std::size_t>(t * r.topk)], w.data());
      for (int64_t j = 0; j < r.topk; ++j) weights[static_cast<std::size_t>(t * r.topk + j)] = bf16_from_f64(w[j]);
    }
  });
}

double flops(const Params& p) {
  const Routing r = p.routing();
  return 2.0 * static_cast<double>(p.tokens) * static_cast<double>(r.experts) * static_cast<double>(r.dim);
}

double bytes_moved(const Params& p) {
  const Routing r = p.routing();
  const auto t = static_cast<double>(p.tokens), e = static_cast<double>(r.experts), d = static_cast<double>(r.dim);
  return 2 * t * d + 2 * e * d + (r.bias ? 4 * e : 0) + t * static_cast<double>(r.topk) * (2 + 4);
}

}  // namespace dsv3::moe_gate
