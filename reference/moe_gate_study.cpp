// The balancing study (reference/moe_gate_balance.hpp balance_study; docs/moe.md).
//
// Model: router logits u_{t,i} = a_i + theta_i + n_{t,i}: a fixed per-expert skew a_i ~ N(0, 0.3^2)
// (experts with different base affinities), per-token noise n ~ N(0, 1), and offsets theta_i
// that only the balance loss trains (SGD, learning rate 1: with no language-model gradient in
// this model, alpha is the loss's whole strength). Scores s = sigmoid(u) in FP32, routed by the
// V3 gate (route_token: bias, 8 groups, top-4 groups, top-8). Every policy sees the same noise.
#include <cmath>

#include "core/fill.hpp"
#include "core/parallel.hpp"
#include "reference/moe_gate_balance.hpp"

namespace dsv3::moe_gate {
namespace {

constexpr int64_t kBlock = 64;     // tokens per parallel block (fixed: results independent of threads)
constexpr int64_t kSeqLen = 512;   // tokens per sequence of the sequence-wise loss
constexpr double kSkew = 0.3;      // standard deviation of the per-expert logit skew a_i

struct Policy {
  std::string name;
  bool bias_update = false;
  double alpha = 0;       // sequence-wise loss weight (0: none)
  bool no_skew = false;   // experts of equal base affinity: the sampling-noise floor of max/mean
};

struct StepResult {
  std::vector<float> scores;     // [T, E]
  std::vector<int32_t> indices;  // [T, k]
};

// One step's per-token noise [T, E], the same for every policy.
std::vector<float> step_noise(int64_t tokens, int64_t experts, int64_t step) {
  std::vector<float> n(static_cast<std::size_t>(tokens * experts));
  parallel_for((tokens + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      Rng rng(seed_from("moe_balance step " + std::to_string(step) + " block " + std::to_string(b)));
      for (int64_t i = b * kBlock * experts; i < std::min(tokens, (b + 1) * kBlock) * experts; ++i)
        n[static_cast<std::size_t>(i)] = static_cast<float>(rng.normal());
    }
  });
  return n;
}

StepResult route_step(const Routing& r, const std::vector<double>& skew, const std::vector<double>& theta,
                      const std::vector<float>& bias, const std::vector<float>& noise, int64_t tokens) {
  StepResult s;
  s.scores.resize(static_cast<std::size_t>(tokens * r.experts));
  s.indices.resize(static_cast<std::size_t>(tokens * r.topk));
  parallel_for((tokens + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    std::vector<double> w(static_cast<std::size_t>(r.topk));
    for (int64_t t = b0 * kBlock; t < std::min(tokens, b1 * kBlock); ++t) {
      float* sc = &s.scores[static_cast<std::size_t>(t * r.experts)];
      const float* nz = &noise[static_cast<std::size_t>(t * r.experts)];
      for (int64_t i = 0; i < r.experts; ++i) sc[i] = static_cast<float>(1.0 / (1.0 + std::exp(-(skew[i] + theta[i] + nz[i]))));
      route_token(r, sc, bias.data(), &s.indices[static_cast<std::size_t>(t * r.topk)], w.data());
    }
  });
  return s;
}

// d/dtheta of alpha * sum_i f_i P_i (V3-TR eqs 17-20), f held fixed (a count), averaged over the
// step's sequences: alpha / T_s * sum_t s_j (1 - s_j) / S_t * (f_j - sum_i f_i s_i / S_t).
std::vector<double> balance_loss_gradient(const Routing& r, const StepResult& s, int64_t tokens, double alpha) {
  const int64_t E = r.experts, seqs = tokens / kSeqLen, blocks_per_seq = kSeqLen / kBlock;
  std::vector<std::vector<double>> f(static_cast<std::size_t>(seqs), std::vector<double>(static_cast<std::size_t>(E), 0.0));
  for (int64_t t = 0; t < seqs * kSeqLen; ++t)
    for (int64_t j = 0; j < r.topk; ++j)
      f[static_cast<std::size_t>(t / kSeqLen)][static_cast<std::size_t>(s.indices[static_cast<std::size_t>(t * r.topk + j)])] +=
          static_cast<double>(E) / static_cast<double>(r.topk * kSeqLen);
  std::vector<std::vector<double>> part(static_cast<std::size_t>(seqs * blocks_per_seq),
                                        std::vector<double>(static_cast<std::size_t>(E), 0.0));
  parallel_for(seqs * blocks_per_seq, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const std::vector<double>& fs = f[static_cast<std::size_t>(b / blocks_per_seq)];
      std::vector<double>& g = part[static_cast<std::size_t>(b)];
      for (int64_t t = b * kBlock; t < (b + 1) * kBlock; ++t) {
        const float* sc = &s.scores[static_cast<std::size_t>(t * E)];
        double sum = 0, fs_dot = 0;
        for (int64_t i = 0; i < E; ++i) sum += sc[i];
        for (int64_t i = 0; i < E; ++i) fs_dot += fs[static_cast<std::size_t>(i)] * sc[i] / sum;
        for (int64_t j = 0; j < E; ++j)
          g[static_cast<std::size_t>(j)] += static_cast<double>(sc[j]) * (1 - sc[j]) / sum * (fs[static_cast<std::size_t>(j)] - fs_dot);
      }
    }
  });
  std::vector<double> grad(static_cast<std::size_t>(E), 0.0);
  for (const auto& g : part)  // block order: the same sum for any thread count
    for (int64_t j = 0; j < E; ++j) grad[static_cast<std::size_t>(j)] += alpha * g[static_cast<std::size_t>(j)] / static_cast<double>(kSeqLen * seqs);
  return grad;
}

}  // namespace

nlohmann::json balance_study(bool quick) {
  const Routing r = Routing::from(find_model("deepseek-v3-671b"));
  const Placement pl;  // 256 experts on 64 ranks, 8 per node
  const int64_t tokens = quick ? 1024 : 2048, steps = quick ? 80 : 200, every = quick ? 5 : 10;
  std::vector<double> skew(static_cast<std::size_t>(r.experts));
  Rng rng(seed_from("moe_balance skew"));
  for (double& a : skew) a = kSkew * rng.normal();
  const std::vector<double> no_skew(skew.size(), 0.0);
  const std::vector<Policy> policies = {{"unskewed_floor", false, 0, true}, {"none", false, 0}, {"bias_update", true, 0}, {"seq_loss_alpha_1e-4", false, 1e-4},
                                        {"seq_loss_alpha_10", false, 10.0}};
  const BiasUpdate update;  // gamma 0.001, band 0
  struct State {
    std::vector<double> theta;
    std::vector<float> bias;
  };
  std::vector<State> state(policies.size(), State{std::vector<double>(static_cast<std::size_t>(r.experts), 0.0),
                                                  std::vector<float>(static_cast<std::size_t>(r.experts), 0.0f)});
  nlohmann::json rows = nlohmann::json::array();
  std::vector<nlohmann::json> per_policy(policies.size(), nlohmann::json::array());
  for (int64_t step = 0; step < steps; ++step) {
    const std::vector<float> noise = step_noise(tokens, r.experts, step);
    for (std::size_t k = 0; k < policies.size(); ++k) {
      const Policy& pol = policies[k];
      State& st = state[k];
      const StepResult s = route_step(r, pol.no_skew ? no_skew : skew, st.theta, st.bias, noise, tokens);
      const LoadStats ls = load_stats(s.indices, r.topk, pl);
      if (step % every == 0 || step == steps - 1) {
        double fp = 0;  // sum_i f_i P_i per sequence, averaged (1 when perfectly balanced)
        for (int64_t q = 0; q < tokens / kSeqLen; ++q) {
          const std::vector<float> sc(s.scores.begin() + q * kSeqLen * r.experts, s.scores.begin() + (q + 1) * kSeqLen * r.experts);
          const std::vector<int32_t> ix(s.indices.begin() + q * kSeqLen * r.topk, s.indices.begin() + (q + 1) * kSeqLen * r.topk);
          fp += sequence_balance_loss(sc, ix, r.experts, r.topk, 1.0) / static_cast<double>(tokens / kSeqLen);
        }
        per_policy[k].push_back({{"policy", pol.name}, {"step", step}, {"tokens_per_step", tokens},
                                 {"expert_max_over_mean", ls.expert_max_over_mean}, {"rank_max_over_mean", ls.rank_max_over_mean},
                                 {"node_max_over_mean", ls.node_max_over_mean}, {"mean_nodes_per_token", ls.mean_nodes_per_token},
                                 {"empty_experts", ls.empty_experts}, {"seq_sum_f_p", fp},
                                 {"gamma", pol.bias_update ? update.gamma : 0.0}, {"alpha", pol.alpha}});
      }
      if (pol.bias_update) update.apply(ls.per_expert, st.bias);
      if (pol.alpha > 0) {
        const std::vector<double> g = balance_loss_gradient(r, s, tokens, pol.alpha);
        for (std::size_t i = 0; i < st.theta.size(); ++i) st.theta[i] -= g[i];  // SGD, learning rate 1
      }
    }
  }
  for (const auto& rows_of : per_policy)
    for (const auto& row : rows_of) rows.push_back(row);
  return rows;
}

}  // namespace dsv3::moe_gate
