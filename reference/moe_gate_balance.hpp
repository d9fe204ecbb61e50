// Load balancing around the gate (v3-facts §3.4-§3.6; V3-TR §2.1.2, §4.2): expert load
// statistics for a placement, the auxiliary-loss-free bias update, the complementary
// sequence-wise balance loss, and the study that compares them on a skewed synthetic router.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/moe_gate.hpp"

namespace dsv3::moe_gate {

// Where experts live: expert e on rank e / experts_per_rank, rank r on node r / ranks_per_node
// (V3's training placement: 256 experts uniformly on 64 GPUs of 8 nodes, V3-TR §4.2).
struct Placement {
  int64_t experts = 256, ranks = 64, ranks_per_node = 8;
  void validate() const;  // throws std::invalid_argument naming the field
  int64_t rank_of(int64_t expert) const { return expert / (experts / ranks); }
  int64_t node_of(int64_t expert) const { return rank_of(expert) / ranks_per_node; }
  int64_t nodes() const { return ranks / ranks_per_node; }
};

// Token-expert assignments counted per expert, rank and node, and what they imply.
struct LoadStats {
  std::vector<int64_t> per_expert, per_rank, per_node;
  double expert_max_over_mean = 0, rank_max_over_mean = 0, node_max_over_mean = 0;
  double mean_nodes_per_token = 0;  // distinct nodes a token's experts sit on (network sends)
  int64_t max_nodes_per_token = 0;
  int64_t empty_experts = 0;        // experts no token chose
};
// indices: i32 [T, k] expert ids in [0, experts); throws std::invalid_argument for one outside.
LoadStats load_stats(const std::vector<int32_t>& indices, int64_t k, const Placement& pl);

// The bias update after a step (V3-TR §2.1.2: b_i -= gamma if expert i is overloaded, += gamma if
// underloaded). The paper leaves "overloaded" open; here expert i is overloaded when
// load_i > (1 + band) * mean load and underloaded when load_i < (1 - band) * mean load, unchanged
// in between. band = 0 is the common reading b_i += gamma * sign(mean - load_i) (v3-facts §3.4,
// [UNCONFIRMED]); the default.
struct BiasUpdate {
  double gamma = 0.001;  // V3-TR §4.2: 0.001 for the first 14.3T tokens, then 0
  double band = 0.0;
  void apply(const std::vector<int64_t>& per_expert_load, std::vector<float>& bias) const;
};

// The complementary sequence-wise balance loss (V3-TR eqs 17-20): alpha * sum_i f_i P_i over one
// sequence of T tokens, f_i = E / (k T) * #tokens choosing i, P_i = mean_t s_{i,t} / sum_j s_{j,t}.
// scores: the unbiased affinities [T, E]; indices [T, k] the chosen experts. alpha 1e-4 in V3.
// Throws std::invalid_argument for k < 1, indices that are not rows of k, scores that are not
// [T, E], or an expert index outside [0, E) (naming the token and the index).
double sequence_balance_loss(const std::vector<float>& scores, const std::vector<int32_t>& indices, int64_t experts,
                             int64_t k, double alpha);

// Study rows "moe_balance": a V3-shaped router (256 experts, 8 groups, top-4 groups, top-8)
// whose logits are a fixed per-expert skew plus per-token noise, routed for a number of steps
// under five policies: none, the bias update (gamma 0.001), the sequence-wise loss alone at V3's
// alpha (1e-4) and at a strong alpha (10, 10^5 times V3's: the strength at which the loss alone
// balances about as fast as the bias update), the loss acting through gradient steps on
// per-expert logit offsets; and unskewed_floor (no skew, no balancing: sampling noise alone). One row per (policy, sampled step): expert/rank/node max-over-mean
// load, nodes per token, the loss value. docs/moe.md states the model and its parameters.
nlohmann::json balance_study(bool quick);

}  // namespace dsv3::moe_gate
