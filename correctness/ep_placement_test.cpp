// EPLB's expert placement (reference/ep_placement.hpp): the global and hierarchical policies on
// hand-worked cases, and the placement study's properties (redundancy lowers a skewed router's
// imbalance; the hierarchical policy keeps the gate's node limit). Split from ep_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference/ep_placement.hpp"

namespace dsv3::ep {
namespace {

// EPLB's global policy on a hand-worked case: loads 10, 1, 1, 1 on 2 ranks x 3 slots. The two
// extra slots go to expert 0 (10/1, then 10/2 beat 1); replicas of 10/3 are packed first: ranks
// 0, 1, 0 (tie: the lower rank); then the ones: rank 1 (3.33 < 6.67), rank 1, and rank 0 (rank 1
// is full): loads 7.67 and 5.33, max/mean 7.67 / 6.5. Contiguous: 11 and 2, 11 / 6.5.
TEST(EpPlacement, GlobalPolicyOnAHandWorkedCase) {
  const std::vector<double> load = {10, 1, 1, 1};
  const Placement after = eplb_global(load, 2, 3);
  EXPECT_EQ(after.replicas, (std::vector<int64_t>{3, 1, 1, 1}));
  EXPECT_EQ(after.rank_slots[0], (std::vector<int64_t>{0, 0, 3}));
  EXPECT_EQ(after.rank_slots[1], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_NEAR(after.max_over_mean, (20.0 / 3 + 1) / 6.5, 1e-12);
  EXPECT_NEAR(contiguous(load, 2).max_over_mean, 11 / 6.5, 1e-12);
  EXPECT_THROW(eplb_global(load, 1, 3), std::invalid_argument);  // 3 slots for 4 experts
  EXPECT_THROW(eplb_global({1, -1}, 2, 1), std::invalid_argument);
}

// EPLB's hierarchical policy on a hand-worked case: 8 experts in 4 groups of 2, 2 nodes of 2 ranks
// x 3 slots. Loads 8 0 | 1 1 | 3 3 | 2 2: groups 8, 2, 6, 4 -> node 0 gets groups 0 and 1 (8, then
// the last, 2), node 1 groups 2 and 3 (6 and 4). Node 0's two extra slots both go to expert 0
// (8/1, then 8/2 > 1): three replicas of 8/3 -> ranks 0, 1, 0; then 1, 1 -> rank 1, rank 1; 0 ->
// rank 0: loads 16/3 and 14/3. Node 1: experts 4 and 5 (3, ties: the lower first) get one extra
// each: 2, 2 -> ranks 2, 3; four replicas of 1.5 alternate: 5 and 5. Max/mean (16/3) / 5.
TEST(EpPlacement, HierarchicalPolicyOnAHandWorkedCase) {
  const std::vector<double> load = {8, 0, 1, 1, 3, 3, 2, 2};
  const Placement h = eplb_hierarchical(load, 4, 2, 4, 3);
  EXPECT_EQ(h.group_node, (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(h.replicas, (std::vector<int64_t>{3, 1, 1, 1, 2, 2, 1, 1}));
  EXPECT_EQ(h.rank_slots[0], (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(h.rank_slots[1], (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(h.rank_slots[2], (std::vector<int64_t>{6, 4, 5}));
  EXPECT_EQ(h.rank_slots[3], (std::vector<int64_t>{7, 4, 5}));
  EXPECT_NEAR(h.max_over_mean, (16.0 / 3) / 5, 1e-12);
  // Token 0 -> experts 0 and 4: replica 0 of each, ranks 0 and 2, two nodes; token 1 -> experts 0
  // and 1: replica 1 of expert 0 (rank 0) and expert 1 (rank 0), one node.
  EXPECT_DOUBLE_EQ(mean_nodes_per_token(h, {0, 4, 0, 1}, 2, 2), 1.5);
  // With one group and one node it is the global policy.
  const std::vector<double> skewed = {10, 1, 1, 1};
  const Placement g = eplb_global(skewed, 2, 3), one = eplb_hierarchical(skewed, 1, 1, 2, 3);
  EXPECT_EQ(one.rank_slots, g.rank_slots);
  EXPECT_EQ(one.replicas, g.replicas);
  auto named = [&](int64_t groups, int64_t nodes, int64_t ranks, int64_t slots, const char* what) {
    try {
      eplb_hierarchical(load, groups, nodes, ranks, slots);
      ADD_FAILURE() << "no error for " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  named(3, 1, 4, 3, "groups do not divide");
  named(4, 3, 3, 3, "nodes do not divide 4 groups");
  named(4, 2, 3, 3, "nodes do not divide 3 ranks");
  named(4, 2, 4, 1, "cannot hold its 4 experts");
}

TEST(EpPlacement, RedundancyLowersTheImbalanceOfASkewedRouter) {
  const nlohmann::json rows = placement_study(true);
  int checked = 0;
  for (const auto& r : rows) {
    if (r["skew"].get<double>() < 1.0) continue;
    EXPECT_GT(r["contiguous_rank_max_over_mean"].get<double>(), 1.2);  // a skewed router loads some ranks more
    EXPECT_LT(r["eplb_rank_max_over_mean"].get<double>(), r["contiguous_rank_max_over_mean"].get<double>());
    EXPECT_LT(r["hierarchical_rank_max_over_mean"].get<double>(), r["contiguous_rank_max_over_mean"].get<double>());
    if (r["redundant"].get<int64_t>() == r["ranks"].get<int64_t>()) {  // one redundant expert per GPU
      EXPECT_LT(r["eplb_rank_max_over_mean"].get<double>(), 1.1);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // two deployments x three redundancies
  for (const auto& r : rows) {
    // Hierarchical keeps each group in one node: the gate's limit still bounds the nodes per token;
    // with one group per node (64 GPUs in 8 nodes) they are the contiguous placement's exactly.
    EXPECT_LE(r["hierarchical_nodes_per_token"].get<double>(), r["node_limit"].get<double>());
    if (r["nodes"] == r["groups"]) {
      EXPECT_DOUBLE_EQ(r["hierarchical_nodes_per_token"].get<double>(), r["contiguous_nodes_per_token"].get<double>());
      EXPECT_GT(r["eplb_nodes_per_token"].get<double>(), r["hierarchical_nodes_per_token"].get<double>()) << r.dump();
    }
  }
}

}  // namespace
}  // namespace dsv3::ep
