// Tests of the node-limited routing traffic model (reference/netmodel_node_limit.hpp; v3-facts
// §3.6): hand-worked send counts and bytes, the limit's guarantees (M = 1: one node; never more than
// M nodes; unrestricted reaches more nodes), the unskewed router against the exact expectation of
// distinct nodes for 8 of 256 experts drawn uniformly, and bad input named.
#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>

#include "reference/netmodel_node_limit.hpp"

namespace {

using namespace dsv3::netmodel;
using dsv3::moe_gate::Placement;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// V3's placement: 256 experts, 4 per GPU, 64 GPUs, 8 per node (32 experts per node).
// Experts {0, 1, 4, 32, 33, 40, 64, 200} sit on GPUs {0, 0, 1, 8, 8, 10, 16, 50}, nodes {0, 1, 2, 6}.
const int32_t kIdx[8] = {0, 1, 4, 32, 33, 40, 64, 200};

TEST(NetmodelNodeLimit, TokenTrafficHandWorked) {
  const Placement pl;
  // From GPU 0 (node 0): IB to nodes 1, 2, 6; NVLink 0->1 on node 0, landing 8 -> 10 on node 1,
  // landing 16 is the target on node 2, landing 48 -> 50 on node 6.
  TokenTraffic t = token_traffic(kIdx, 8, 0, pl);
  EXPECT_EQ(t.gpus, 6);
  EXPECT_EQ(t.nodes, 4);
  EXPECT_EQ(t.remote_nodes, 3);
  EXPECT_EQ(t.nvlink_sends, 3);
  EXPECT_EQ(t.ib_sends_no_forwarding, 4);  // GPUs 8, 10, 16, 50
  // From GPU 9 (node 1, in-node index 1): IB to nodes 0, 2, 6; NVLink on node 0 landing 1 -> 0,
  // on node 1 the source 9 -> 8 and 10, landing 17 -> 16, landing 49 -> 50.
  t = token_traffic(kIdx, 8, 9, pl);
  EXPECT_EQ(t.nodes, 4);
  EXPECT_EQ(t.remote_nodes, 3);
  EXPECT_EQ(t.nvlink_sends, 5);
  EXPECT_EQ(t.ib_sends_no_forwarding, 4);  // GPUs 0, 1, 16, 50
  EXPECT_NE(error_of([] { token_traffic(kIdx, 8, 64, Placement{}); }).find("source rank 64"), std::string::npos);
  const int32_t bad[1] = {256};
  EXPECT_NE(error_of([&] { token_traffic(bad, 1, 0, Placement{}); }).find("expert 256 outside [0, 256)"), std::string::npos);
}

TEST(NetmodelNodeLimit, BytesHandWorked) {
  NodeLimitInputs in;
  in.hidden = 7168;
  // One token from GPU 0 (t = 0): 3 IB sends, 3 NVLink sends, 4 sends without forwarding, each
  // 7168 x 1 B (FP8 dispatch) + 7168 x 2 B (BF16 combine) = 21,504 B. Exact: integers in FP64.
  const std::vector<int32_t> idx(kIdx, kIdx + 8);
  NodeLimitRow r = node_limit_row(4, idx, 8, Placement{}, in);
  EXPECT_EQ(r.dispatch_send_bytes, 7168.0);
  EXPECT_EQ(r.combine_send_bytes, 14336.0);
  EXPECT_EQ(r.ib_bytes, 3 * 21504.0);
  EXPECT_EQ(r.nvlink_bytes, 3 * 21504.0);
  EXPECT_EQ(r.ib_bytes_no_forwarding, 4 * 21504.0);
  EXPECT_EQ(r.mean_nodes, 4.0);
  EXPECT_EQ(r.experts_per_node, 2.0);
  ASSERT_TRUE(r.nvlink_over_ib_time.has_value());
  EXPECT_DOUBLE_EQ(*r.nvlink_over_ib_time, 50.0 / 160.0);  // equal bytes: the bandwidth ratio
  // Two tokens: the second from GPU 1 (node 0, in-node index 1): IB 3; NVLink on node 0 source 1
  // -> 0, landing 9 -> 8 and 10, landing 17 -> 16, landing 49 -> 50: 5. Means (3+3)/2, (3+5)/2.
  std::vector<int32_t> two = idx;
  two.insert(two.end(), kIdx, kIdx + 8);
  r = node_limit_row(4, two, 8, Placement{}, in);
  EXPECT_EQ(r.ib_bytes, 3 * 21504.0);
  EXPECT_EQ(r.nvlink_bytes, 4 * 21504.0);
  // DeepEP's FP8 scales on each dispatch send (7168/128 x 4 B, v3-facts §9.1).
  in.dispatch_overhead_bytes = 224;
  r = node_limit_row(4, idx, 8, Placement{}, in);
  EXPECT_EQ(r.ib_bytes, 3 * (21504.0 + 224));
  // One node: nothing crosses IB, no time ratio.
  r = node_limit_row(8, idx, 8, Placement{256, 8, 8}, in);
  EXPECT_EQ(r.ib_bytes, 0.0);
  EXPECT_FALSE(r.nvlink_over_ib_time.has_value());
}

TEST(NetmodelNodeLimit, LimitBoundsNodesPerToken) {
  NodeLimitInputs in;
  in.tokens = 2048;
  const NodeLimitResult res = node_limit_table(in);
  ASSERT_EQ(res.rows.size(), 8u);
  EXPECT_EQ(res.routing.topk_groups, 4);  // V3's config limit is kept in the result
  for (const NodeLimitRow& r : res.rows) {
    EXPECT_LE(r.max_nodes, r.limit) << "M = " << r.limit;
    EXPECT_LE(r.mean_remote_nodes, r.mean_nodes);
    // The limited gate chooses from a subset of the unrestricted one's experts with the same
    // scores (bias 0), so its summed scores never exceed unrestricted's: exact, IEEE sums are monotone.
    EXPECT_LE(r.score_kept, 1.0);
    EXPECT_EQ(r.unrestricted, r.limit == 8);
  }
  const NodeLimitRow &m1 = res.rows[0], &m4 = res.rows[3], &u = res.rows[7];
  EXPECT_EQ(m1.mean_nodes, 1.0);  // M = 1: exactly one node per token
  EXPECT_EQ(m1.max_nodes, 1);
  EXPECT_GT(m4.mean_nodes, m1.mean_nodes);
  EXPECT_GT(u.mean_nodes, m4.mean_nodes);
  EXPECT_GT(u.ib_bytes, m4.ib_bytes);
  EXPECT_EQ(u.ib_vs_unrestricted, 1.0);
  EXPECT_EQ(u.score_kept, 1.0);
  // Reproducible from the seed; another seed draws another router.
  EXPECT_EQ(node_limit_rows(node_limit_table(in)), node_limit_rows(res));
  in.seed = 1;
  EXPECT_NE(node_limit_table(in).rows[7].mean_nodes, u.mean_nodes);
}

TEST(NetmodelNodeLimit, UnskewedRouterMatchesUniformExpectation) {
  // skew 0: every expert alike, so unrestricted top-8 is a uniform 8-subset of 256 experts and
  // E[distinct nodes] = 8 (1 - C(224, 8) / C(256, 8)); the source node is independent of the
  // choice, so E[remote nodes] = 7/8 E[nodes]; at M = 1, 7/8 of the tokens cross IB.
  NodeLimitInputs in;
  in.tokens = 4096;
  in.skew = 0;
  const NodeLimitResult res = node_limit_table(in);
  double none = 1;
  for (int i = 0; i < 8; ++i) none *= (224.0 - i) / (256.0 - i);
  const double expect = 8 * (1 - none);  // 5.2947
  // Tolerance: the per-token count's std is below 1, so the mean of 4096 has std < 0.016;
  // 0.08 is 5 of them (and the seed is fixed: the test cannot flake).
  EXPECT_NEAR(res.rows[7].mean_nodes, expect, 0.08);
  EXPECT_NEAR(res.rows[7].mean_remote_nodes, expect * 7 / 8, 0.08);
  EXPECT_NEAR(res.rows[0].mean_remote_nodes, 7.0 / 8, 0.03);  // Bernoulli(7/8): std 0.33/64 = 0.005
}

TEST(NetmodelNodeLimit, BadInputNamed) {
  auto err = [](std::function<void(NodeLimitInputs&)> set) {
    NodeLimitInputs in;
    in.tokens = 16;
    set(in);
    return error_of([&] { node_limit_table(in); });
  };
  EXPECT_NE(err([](auto& in) { in.tokens = 0; }).find("tokens must be >= 1, got 0"), std::string::npos);
  EXPECT_NE(err([](auto& in) { in.skew = -1; }).find("skew must be finite and >= 0"), std::string::npos);
  EXPECT_NE(err([](auto& in) { in.ib_gbs = 0; }).find("ib_gbs must be positive"), std::string::npos);
  EXPECT_NE(err([](auto& in) { in.ranks = 48; }).find("ranks = 48 does not divide experts = 256"), std::string::npos);
  EXPECT_NE(err([](auto& in) { in.model = "qwen2.5-72b"; }).find("has no MoE layers"), std::string::npos);
}

}  // namespace
