// Load statistics, the bias update and the sequence-wise balance loss
// (reference/moe_gate_balance.hpp) on hand-worked inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "reference/moe_gate_balance.hpp"

namespace dsv3::moe_gate {
namespace {

TEST(MoeBalance, LoadStatsCountExpertsRanksAndNodes) {
  // 8 experts on 4 ranks (2 each), 2 ranks per node: experts 0-3 on node 0, 4-7 on node 1.
  const Placement pl{8, 4, 2};
  // Three tokens, top-2: {0, 1} (node 0 only), {0, 5} (both nodes), {6, 7} (node 1 only).
  const LoadStats s = load_stats({0, 1, 0, 5, 6, 7}, 2, pl);
  EXPECT_EQ(s.per_expert, (std::vector<int64_t>{2, 1, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(s.per_rank, (std::vector<int64_t>{3, 0, 1, 2}));
  EXPECT_EQ(s.per_node, (std::vector<int64_t>{2, 2}));  // a token counts once per node it reaches
  EXPECT_DOUBLE_EQ(s.expert_max_over_mean, 2.0 / (6.0 / 8));
  EXPECT_DOUBLE_EQ(s.rank_max_over_mean, 3.0 / 1.5);
  EXPECT_DOUBLE_EQ(s.node_max_over_mean, 1.0);
  EXPECT_DOUBLE_EQ(s.mean_nodes_per_token, 4.0 / 3);
  EXPECT_EQ(s.max_nodes_per_token, 2);
  EXPECT_EQ(s.empty_experts, 3);
  EXPECT_THROW(load_stats({0, 8}, 2, pl), std::invalid_argument);   // expert outside the placement
  EXPECT_THROW(load_stats({0, 1, 2}, 2, pl), std::invalid_argument);  // not rows of k
  EXPECT_THROW((Placement{8, 3, 1}.validate()), std::invalid_argument);  // 3 ranks do not divide 8 experts
  EXPECT_THROW((Placement{8, 4, 3}.validate()), std::invalid_argument);
}

TEST(MoeBalance, BiasUpdateMovesOverAndUnderloadedExperts) {
  // Loads 10, 2, 6, 6: mean 6. Sign rule (band 0): overloaded -gamma, underloaded +gamma, at the mean unchanged.
  std::vector<float> bias = {0.0f, 0.0f, 0.5f, 0.0f};
  BiasUpdate{0.001, 0.0}.apply({10, 2, 6, 6}, bias);
  EXPECT_FLOAT_EQ(bias[0], -0.001f);
  EXPECT_FLOAT_EQ(bias[1], 0.001f);
  EXPECT_FLOAT_EQ(bias[2], 0.5f);
  EXPECT_FLOAT_EQ(bias[3], 0.0f);
  // A 50% band: 10 > 9 still overloaded, 2 < 3 still underloaded; 7 and 5 now inside the band.
  std::vector<float> b2(4, 0.0f);
  BiasUpdate{0.01, 0.5}.apply({10, 2, 7, 5}, b2);
  EXPECT_EQ(b2, (std::vector<float>{-0.01f, 0.01f, 0.0f, 0.0f}));
  std::vector<float> wrong(3, 0.0f);
  EXPECT_THROW(BiasUpdate{}.apply({1, 2, 3, 4}, wrong), std::invalid_argument);
}

TEST(MoeBalance, SequenceLossIsAlphaWhenBalancedAndLargerWhenNot) {
  // 4 experts, top-1, 4 tokens. Balanced: each expert chosen once, equal scores: f_i = 1,
  // P_i = 1/4, sum f_i P_i = 1.
  const std::vector<float> equal(16, 0.5f);
  EXPECT_DOUBLE_EQ(sequence_balance_loss(equal, {0, 1, 2, 3}, 4, 1, 1e-4), 1e-4);
  // All tokens to expert 0, which also holds half of every token's normalised score:
  // f = (4, 0, 0, 0), P_0 = 1/2, sum f P = 2.
  std::vector<float> skewed(16, 0.2f);  // rows (0.6, 0.2, 0.2, 0.2)
  for (int t = 0; t < 4; ++t) skewed[static_cast<std::size_t>(4 * t)] = 0.6f;
  EXPECT_NEAR(sequence_balance_loss(skewed, {0, 0, 0, 0}, 4, 1, 1.0), 2.0, 1e-7);
  EXPECT_THROW(sequence_balance_loss(equal, {0, 1}, 4, 1, 1.0), std::invalid_argument);  // scores for 4 tokens, 2 routed
  EXPECT_THROW(sequence_balance_loss(equal, {0, 1, 2, 3}, 4, 0, 1.0), std::invalid_argument);  // k = 0
}

TEST(MoeBalance, SequenceLossNamesAnExpertOutOfRange) {
  const std::vector<float> equal(16, 0.5f);
  for (int32_t bad : {4, -1}) {  // 4 experts: valid ids 0..3
    try {
      (void)sequence_balance_loss(equal, {0, 1, bad, 3}, 4, 1, 1.0);
      ADD_FAILURE() << "expert " << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("token 2"), std::string::npos) << msg;
      EXPECT_NE(msg.find("expert " + std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("[0, 4)"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace dsv3::moe_gate
