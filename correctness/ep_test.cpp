// Property tests of the expert-parallel reference (reference/ep.hpp): the link accounting equals
// the node-limit model's per-token counts, the node limit holds, edge cases (world size 1, every
// token to one rank), the delivery check catches a misrouted, lost or duplicated token, bad input.
#include <gtest/gtest.h>

#include <cstring>

#include "correctness/reference_run.hpp"
#include "reference/ep.hpp"
#include "reference/ep_checks.hpp"
#include "reference/ep_placement.hpp"
#include "reference/netmodel_node_limit.hpp"

namespace dsv3::ep {
namespace {

Params params(int64_t r, int64_t g, int64_t t, int64_t m = 0, Draw d = Draw::router) {
  Params p;
  p.ranks = r; p.ranks_per_node = g; p.tokens = t; p.node_limit = m; p.draw = d; p.dim = 256;
  return p;
}

// IB, NVLink and local counts per rank sum to reference/netmodel_node_limit.hpp's per-token counts.
TEST(EpRef, LinkSendsMatchTheNodeLimitModel) {
  for (int64_t m : {1, 2, 4}) {
    const Params p = params(8, 2, 24, m);
    const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
    const auto idx = in[1].span<const int32_t>();
    const int64_t k = p.routing().topk;
    int64_t ib = 0, nv = 0, local = 0, max_nodes = 0;
    for (int64_t tok = 0; tok < p.ranks * p.tokens; ++tok) {
      const int64_t src = tok / p.tokens;
      const netmodel::TokenTraffic tt = netmodel::token_traffic(&idx[static_cast<std::size_t>(tok * k)], k, src, p.placement());
      ib += tt.remote_nodes;
      nv += tt.nvlink_sends;
      max_nodes = std::max(max_nodes, tt.nodes);
      bool self = false;
      for (int64_t c = 0; c < k; ++c) self = self || p.placement().rank_of(idx[static_cast<std::size_t>(tok * k + c)]) == src;
      local += self;
    }
    const auto s = tensor_named(out, "link_sends").span<const int32_t>();
    int64_t got[3] = {0, 0, 0};
    for (int64_t r = 0; r < p.ranks; ++r)
      for (int c = 0; c < 3; ++c) got[c] += s[static_cast<std::size_t>(r * 3 + c)];
    EXPECT_EQ(got[0], ib) << "M=" << m;
    EXPECT_EQ(got[1], nv) << "M=" << m;
    EXPECT_EQ(got[2], local) << "M=" << m;
    EXPECT_LE(max_nodes, m);  // the node limit holds
    EXPECT_GT(ib, 0);
  }
}

TEST(EpRef, WorldSizeOneIsAllLocal) {
  const Params p = params(1, 1, 8);
  const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
  EXPECT_EQ(tensor_named(out, "recv_count").get(0), 8.0);
  EXPECT_EQ(tensor_named(out, "link_sends").get(0), 0.0);  // IB
  EXPECT_EQ(tensor_named(out, "link_sends").get(1), 0.0);  // NVLink
  EXPECT_EQ(tensor_named(out, "link_sends").get(2), 8.0);  // local
}

TEST(EpRef, EveryTokenToRankZero) {
  const Params p = params(4, 2, 9, 0, Draw::all_to_rank0);
  const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
  const Tensor& n = tensor_named(out, "recv_count");
  EXPECT_EQ(n.get(0), 36.0);
  for (int64_t r = 1; r < 4; ++r) EXPECT_EQ(n.get(r), 0.0) << "rank " << r << " receives nothing";
  const std::vector<Tensor> aids = combine_aids(p, in);
  EXPECT_TRUE(delivery_check(p, aids, out).pass);
  EXPECT_TRUE(combine_check(p, aids, out).pass);
}

// The delivery check fails on a token sent to a rank without its experts, a lost token, a
// duplicated token and a corrupted payload byte.
TEST(EpRef, DeliveryCheckCatchesMisroutedLostAndDuplicatedTokens) {
  const Params p = params(4, 2, 6);
  const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in), aids = combine_aids(p, in);
  ASSERT_TRUE(delivery_check(p, aids, ref).pass) << delivery_check(p, aids, ref).message;
  const int64_t cap = p.capacity();
  auto mutate = [&](auto fn) {
    std::vector<Tensor> out = run_reference_poisoned(p, in);
    fn(out);
    return delivery_check(p, aids, out);
  };
  // Lost: rank 0 forgets its last row.
  const CompareReport lost = mutate([&](std::vector<Tensor>& o) {
    auto c = o[0].span<int32_t>();
    auto meta = o[1].span<int32_t>();
    const int64_t last = c[0] - 1;
    meta[static_cast<std::size_t>(last * 2)] = meta[static_cast<std::size_t>(last * 2 + 1)] = -1;
    std::memset(static_cast<uint8_t*>(o[4].raw()) + last * p.dim, 0, static_cast<std::size_t>(p.dim));
    --c[0];
  });
  EXPECT_FALSE(lost.pass);
  EXPECT_NE(lost.message.find("never arrived"), std::string::npos) << lost.message;
  // Duplicated: rank 1's second row repeats its first.
  const CompareReport dup = mutate([&](std::vector<Tensor>& o) {
    auto meta = o[1].span<int32_t>();
    meta[static_cast<std::size_t>((cap + 1) * 2)] = meta[static_cast<std::size_t>(cap * 2)];
    meta[static_cast<std::size_t>((cap + 1) * 2 + 1)] = meta[static_cast<std::size_t>(cap * 2 + 1)];
  });
  EXPECT_FALSE(dup.pass);
  // Corrupted payload.
  const CompareReport bad = mutate([&](std::vector<Tensor>& o) { static_cast<uint8_t*>(o[4].raw())[3] ^= 1; });
  EXPECT_FALSE(bad.pass);
  EXPECT_NE(bad.message.find("payload"), std::string::npos) << bad.message;
}

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

TEST(EpRef, LinkBandwidthIsTheBusiestRanksBytesOverTheTime) {
  Params p;
  p.ranks = 4; p.ranks_per_node = 2; p.dim = 512; p.wire = Wire::fp8;
  const double send = bytes_per_dispatch_send(p);
  EXPECT_EQ(send, 512 + 4 * 4);  // E4M3 codes and four f32 scales per row
  const int32_t sends[12] = {3, 5, 1, 7, 2, 0, 0, 0, 4, 1, 9, 0};  // [R, 3]: IB, NVLink, local
  const LinkBandwidth b = link_bandwidth(p, sends, send, 1e-6);
  EXPECT_EQ(b.ib_rank, 1);
  EXPECT_EQ(b.ib_bytes, 7 * send);
  EXPECT_EQ(b.nvlink_rank, 3);
  EXPECT_EQ(b.nvlink_bytes, 9 * send);
  EXPECT_DOUBLE_EQ(b.ib_gbs(), 7 * send / 1e-6 / 1e9);
  const int32_t local_only[12] = {0, 0, 5, 0, 0, 5, 0, 0, 5, 0, 0, 5};
  const LinkBandwidth l = link_bandwidth(p, local_only, bytes_per_combine_send(p), 1e-3);
  EXPECT_EQ(l.ib_rank, -1);
  EXPECT_EQ(l.nvlink_rank, -1);
  EXPECT_EQ(l.ib_gbs(), 0);
}

// nccl-tests' terms on a hand-counted case: every token to rank 0's experts, so rank s sends its T
// rows to rank 0 (rank 0's to itself); the combine sends them back, rank 0 all R T rows.
TEST(EpRef, AllToAllBandwidthCountsRowsAsNcclTestsDoes) {
  const Params p = params(4, 2, 9, 0, Draw::all_to_rank0);
  const std::vector<Tensor> in = make_inputs(p);
  const std::vector<int64_t> rows = rows_sent(p, in);
  for (int64_t s = 0; s < 4; ++s)
    for (int64_t d = 0; d < 4; ++d) EXPECT_EQ(rows[static_cast<std::size_t>(s * 4 + d)], d == 0 ? 9 : 0) << s << "->" << d;
  const double b = bytes_per_dispatch_send(p);
  const AllToAllBandwidth dispatch = alltoall_bandwidth(p, rows, false, b, 1e-3);
  EXPECT_EQ(dispatch.alg_bytes, 9 * b);  // every rank sends T rows
  EXPECT_EQ(dispatch.alg_rank, 0);       // the first of the tied ranks
  EXPECT_EQ(dispatch.bus_bytes, 9 * b);  // rank 1's rows leave it; rank 0's stay
  EXPECT_EQ(dispatch.bus_rank, 1);
  EXPECT_DOUBLE_EQ(dispatch.algbw_gbs(), 9 * b / 1e-3 / 1e9);
  const double c = bytes_per_combine_send(p);
  const AllToAllBandwidth combine = alltoall_bandwidth(p, rows, true, c, 1e-3);
  EXPECT_EQ(combine.alg_bytes, 36 * c);  // rank 0 returns all R T rows
  EXPECT_EQ(combine.alg_rank, 0);
  EXPECT_EQ(combine.bus_bytes, 27 * c);  // of which 3 T leave it
  EXPECT_EQ(combine.bus_rank, 0);
  // Rows sent equal rows received: the reference's receive counts are the column sums.
  const std::vector<Tensor> out = run_reference_poisoned(p, in);
  for (int64_t d = 0; d < 4; ++d) {
    int64_t col = 0;
    for (int64_t s = 0; s < 4; ++s) col += rows[static_cast<std::size_t>(s * 4 + d)];
    EXPECT_EQ(out[0].span<const int32_t>()[static_cast<std::size_t>(d)], col);
  }
}

// LogFMT-10 combine: partials with amax >= 1 in every group travel as BF16 (DeepEP's fallback), so
// y is the BF16 combine's bit for bit; small partials are encoded, so y moves, but by at most the
// level spacing (ep_checks.hpp) and the combine check passes. Bytes per send: DeepEP's 9184 at 7168.
TEST(EpRef, LogFmtCombineFallsBackOrStaysWithinItsLevelSpacing) {
  for (int x_log2 : {4, -6}) {
    Params bf = params(4, 2, 8);
    bf.x_scale_log2 = x_log2;
    Params lf = bf;
    lf.combine = CombineWire::logfmt10;
    const std::vector<Tensor> in = make_inputs(bf);  // the same inputs for both wires
    std::vector<Tensor> out_bf = allocate(output_specs(bf)), out_lf = allocate(output_specs(lf));
    run_reference(bf, in, out_bf);
    run_reference(lf, in, out_lf);
    const Tensor &y_bf = out_bf[out_bf.size() - 2], &y_lf = out_lf[out_lf.size() - 2];
    ASSERT_EQ(y_bf.name(), "y");
    int64_t differ = 0;
    for (int64_t i = 0; i < y_bf.numel(); ++i) differ += y_bf.get(i) != y_lf.get(i);
    if (x_log2 > 0) {
      EXPECT_EQ(differ, 0) << "every group has amax >= 1: all fallback, bit-identical";
    } else {
      // Every group encoded: its levels sit about 1% apart here, against the output's BF16 rounding
      // of 0.4%, so many but not all outputs move (3161 of 8192).
      EXPECT_GT(differ, y_bf.numel() / 4) << "every group encoded";
    }
    const std::vector<Tensor> aids = combine_aids(lf, in);
    const CompareReport c = combine_check(lf, aids, out_lf);
    EXPECT_TRUE(c.pass) << c.message;
  }
  Params v3 = params(4, 2, 16);
  v3.dim = 7168;
  v3.combine = CombineWire::logfmt10;
  EXPECT_EQ(bytes_per_combine_send(v3), 9184);  // v3-facts G31: 7168 x 10 / 8 + 56 x 4
  EXPECT_THROW(combine_wire_from_name("logfmt8"), std::invalid_argument);
}

TEST(EpRef, BadConfigurationsAreRejected) {
  Params p = params(3, 1, 4);  // 3 ranks do not divide 256 experts
  EXPECT_THROW(p.validate(), std::invalid_argument);
  p = params(4, 3, 4);
  EXPECT_THROW(p.validate(), std::invalid_argument);
  p = params(4, 2, 4);
  p.dim = 200;
  EXPECT_THROW(p.validate(), std::invalid_argument);
  p = params(4, 2, 4, 3);  // M = 3 > 2 nodes
  EXPECT_THROW(p.validate(), std::invalid_argument);
  p = params(4, 2, 4);
  std::vector<Tensor> in = make_inputs(p);
  in[1].span<int32_t>()[0] = 999;
  std::vector<Tensor> out = allocate(output_specs(p));
  EXPECT_THROW(run_reference(p, in, out), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3::ep
