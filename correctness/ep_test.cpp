// Property tests of the expert-parallel reference (reference/ep.hpp): the link accounting equals
// the node-limit model's per-token counts, the node limit holds (and binds: it changes the
// routing), edge cases (world size 1, every token to one rank, tied gate scores), the delivery
// check catches a misrouted, relabelled, lost or duplicated token, the combine check a wrong or
// misaddressed partial, bad input. EPLB's placement: ep_placement_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "correctness/reference_run.hpp"
#include "reference/ep.hpp"
#include "reference/ep_checks.hpp"
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

// Distinct nodes holding the K experts at `idx`.
int64_t nodes_reached(const Params& p, const int32_t* idx) {
  std::set<int64_t> nodes;
  for (int64_t c = 0; c < p.routing().topk; ++c) nodes.insert(p.placement().node_of(idx[c]));
  return static_cast<int64_t>(nodes.size());
}

// One rank per node, so every send is IB: with 8 nodes and M = 4 (V3's own ratio; the eval case
// R=8 G=1 M=4) and with 4 nodes and M = 2 (ctest mpi.ep_np4_node_limit_binds) the limit binds:
// the same scores routed without it reach more than M nodes for some tokens, with it at most M
// and exactly M for some. The case's indices are the gate's on make_inputs' scores (its seed and
// router, repeated here); the IB sends are the remote nodes reached, and there is no NVLink send.
TEST(EpRef, NodeLimitBindsWithOneRankPerNode) {
  for (const auto& [ranks, m] : {std::pair<int64_t, int64_t>{8, 4}, {4, 2}}) {
    const Params p = params(ranks, 1, 16, m);
    const std::vector<Tensor> in = make_inputs(p), out = run_reference_poisoned(p, in);
    const moe_gate::Routing limited = p.routing();
    moe_gate::Routing unlimited = limited;
    unlimited.topk_groups = unlimited.groups;
    ASSERT_EQ(limited.groups, ranks);
    ASSERT_EQ(limited.topk_groups, m);
    netmodel::NodeLimitInputs router;  // as make_inputs draws the case's scores
    router.model = p.model;
    router.tokens = p.ranks * p.tokens;
    router.seed = seed_from(p.to_string());
    router.ranks = p.ranks;
    router.ranks_per_node = p.ranks_per_node;
    const std::vector<float> scores = netmodel::node_limit_scores(router, limited);
    const auto idx = in[1].span<const int32_t>();
    const int64_t K = limited.topk, E = limited.experts;
    std::vector<int32_t> got(static_cast<std::size_t>(K)), free(static_cast<std::size_t>(K));
    std::vector<double> w(static_cast<std::size_t>(K));
    int64_t over_limit_unlimited = 0, at_limit = 0, ib = 0;
    for (int64_t tok = 0; tok < router.tokens; ++tok) {
      const float* sc = &scores[static_cast<std::size_t>(tok * E)];
      moe_gate::route_token(limited, sc, nullptr, got.data(), w.data());
      ASSERT_TRUE(std::equal(got.begin(), got.end(), &idx[static_cast<std::size_t>(tok * K)])) << "token " << tok;
      moe_gate::route_token(unlimited, sc, nullptr, free.data(), w.data());
      const int64_t n = nodes_reached(p, got.data());
      EXPECT_LE(n, m);
      at_limit += n == m;
      over_limit_unlimited += nodes_reached(p, free.data()) > m;
      ib += netmodel::token_traffic(got.data(), K, tok / p.tokens, p.placement()).remote_nodes;
    }
    EXPECT_GT(over_limit_unlimited, 0) << "R=" << ranks << " M=" << m << ": the limit never binds";
    EXPECT_GT(at_limit, 0) << "R=" << ranks << " M=" << m;
    const auto sends = tensor_named(out, "link_sends").span<const int32_t>();
    int64_t ib_sent = 0;
    for (int64_t r = 0; r < p.ranks; ++r) {
      ib_sent += sends[static_cast<std::size_t>(r * 3)];
      EXPECT_EQ(sends[static_cast<std::size_t>(r * 3 + 1)], 0) << "one rank per node: no NVLink send";
    }
    EXPECT_EQ(ib_sent, ib);
    const std::vector<Tensor> aids = combine_aids(p, in);
    EXPECT_TRUE(delivery_check(p, aids, out).pass);
    EXPECT_TRUE(combine_check(p, aids, out).pass);
  }
}

// Tied gate scores: every node's group holds the same scores (distinct inside the group), so all
// group scores tie and the gate keeps the lowest M groups (moe_gate's tie rule: lower index
// first), then the top K / M experts of each. 4 nodes of 2 ranks, M = 2: every token goes to
// nodes 0 and 1, K / 2 experts on each; the ranks of nodes 2 and 3 receive nothing, and the
// reference still delivers and combines within the checks.
TEST(EpRef, TiedGateScoresKeepTheLowestNodes) {
  const Params p = params(8, 2, 6, 2);
  std::vector<Tensor> in = make_inputs(p);
  const moe_gate::Routing r = p.routing();
  const int64_t K = r.topk, E = r.experts, per = r.per_group(), n = p.ranks * p.tokens;
  auto idx = in[1].span<int32_t>();
  auto wts = in[2].span<float>();
  std::vector<float> scores(static_cast<std::size_t>(E));
  std::vector<double> w(static_cast<std::size_t>(K));
  for (int64_t tok = 0; tok < n; ++tok) {
    // Position j of every group: 0.5 + a distinct multiple of 2^-10 (a permutation of 0..per-1 that
    // varies with the token), exact in FP32, so the ties are exact.
    for (int64_t e = 0; e < E; ++e)
      scores[static_cast<std::size_t>(e)] = 0.5f + static_cast<float>(((e % per) * 37 + tok * 11) % per) * 0x1p-10f;
    moe_gate::route_token(r, scores.data(), nullptr, &idx[static_cast<std::size_t>(tok * K)], w.data());
    int64_t on_node[4] = {0, 0, 0, 0};
    for (int64_t c = 0; c < K; ++c) {
      ++on_node[p.placement().node_of(idx[static_cast<std::size_t>(tok * K + c)])];
      wts[static_cast<std::size_t>(tok * K + c)] = static_cast<float>(w[static_cast<std::size_t>(c)]);
    }
    EXPECT_EQ(on_node[0], K / 2) << "token " << tok;
    EXPECT_EQ(on_node[1], K / 2) << "token " << tok;
  }
  const std::vector<Tensor> out = run_reference_poisoned(p, in), aids = combine_aids(p, in);
  for (int64_t d = 4; d < 8; ++d) EXPECT_EQ(tensor_named(out, "recv_count").get(d), 0.0) << "rank " << d << " (nodes 2, 3)";
  const CompareReport delivery = delivery_check(p, aids, out), combine = combine_check(p, aids, out);
  EXPECT_TRUE(delivery.pass) << delivery.message;
  EXPECT_TRUE(combine.pass) << combine.message;
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

// Copies received row `from` of rank `a` (meta, choices, weights, payload, scales) over row `to`
// of rank `b` (FP8 wire; outputs in output_specs order).
void copy_row(const Params& p, std::vector<Tensor>& o, int64_t a, int64_t from, int64_t b, int64_t to) {
  const int64_t cap = p.capacity(), K = p.routing().topk, sg = p.scale_groups();
  const int64_t src = a * cap + from, dst = b * cap + to;
  auto meta = o[1].span<int32_t>();
  auto ex = o[2].span<int32_t>();
  auto w = o[3].span<float>();
  auto sc = o[5].span<float>();
  for (int64_t i = 0; i < 2; ++i) meta[static_cast<std::size_t>(dst * 2 + i)] = meta[static_cast<std::size_t>(src * 2 + i)];
  for (int64_t c = 0; c < K; ++c) {
    ex[static_cast<std::size_t>(dst * K + c)] = ex[static_cast<std::size_t>(src * K + c)];
    w[static_cast<std::size_t>(dst * K + c)] = w[static_cast<std::size_t>(src * K + c)];
  }
  auto* x = static_cast<uint8_t*>(o[4].raw());
  std::memcpy(x + dst * p.dim, x + src * p.dim, static_cast<std::size_t>(p.dim));
  for (int64_t g = 0; g < sg; ++g) sc[static_cast<std::size_t>(dst * sg + g)] = sc[static_cast<std::size_t>(src * sg + g)];
}

// The delivery check fails on a token sent to a rank without its experts (as the sender packed it
// for another rank, or with its choices made consistent with the wrong rank), a row carrying
// another token's id, a lost token, a duplicated token and a corrupted payload byte.
TEST(EpRef, DeliveryCheckCatchesMisroutedLostAndDuplicatedTokens) {
  const Params p = params(4, 2, 6);
  const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in), aids = combine_aids(p, in);
  ASSERT_TRUE(delivery_check(p, aids, ref).pass) << delivery_check(p, aids, ref).message;
  const int64_t cap = p.capacity(), K = p.routing().topk;
  auto mutate = [&](auto fn) {
    std::vector<Tensor> out = run_reference_poisoned(p, in);
    fn(out);
    return delivery_check(p, aids, out);
  };
  // Misrouted: a token that rank `from` received (row `row`) also lands on rank `to`, which holds
  // none of its experts, as that rank's next row.
  const auto count = ref[0].span<const int32_t>();
  const auto meta = ref[1].span<const int32_t>();
  const auto idx = in[1].span<const int32_t>();
  int64_t from = -1, row = -1, to = -1;
  for (int64_t d = 0; d < p.ranks && to < 0; ++d)
    for (int64_t i = 0; i < count[static_cast<std::size_t>(d)] && to < 0; ++i) {
      const auto at = static_cast<std::size_t>((d * cap + i) * 2);
      const int64_t tok = meta[at] * p.tokens + meta[at + 1];
      std::set<int64_t> holders;
      for (int64_t c = 0; c < K; ++c) holders.insert(p.placement().rank_of(idx[static_cast<std::size_t>(tok * K + c)]));
      for (int64_t r = 0; r < p.ranks && to < 0; ++r)
        if (!holders.count(r)) from = d, row = i, to = r;
    }
  ASSERT_GE(to, 0) << "no token misses a rank: pick another case";
  const CompareReport misrouted = mutate([&](std::vector<Tensor>& o) {
    copy_row(p, o, from, row, to, count[static_cast<std::size_t>(to)]);
    ++o[0].span<int32_t>()[static_cast<std::size_t>(to)];
  });
  EXPECT_FALSE(misrouted.pass);
  EXPECT_NE(misrouted.message.find("rank " + std::to_string(to) + ":"), std::string::npos) << misrouted.message;
  const CompareReport misrouted_clean = mutate([&](std::vector<Tensor>& o) {
    const int64_t at = to * cap + count[static_cast<std::size_t>(to)];
    copy_row(p, o, from, row, to, count[static_cast<std::size_t>(to)]);
    for (int64_t c = 0; c < K; ++c) {  // the choices a sender computes for a rank without the experts
      o[2].span<int32_t>()[static_cast<std::size_t>(at * K + c)] = -1;
      o[3].span<float>()[static_cast<std::size_t>(at * K + c)] = 0.0f;
    }
    ++o[0].span<int32_t>()[static_cast<std::size_t>(to)];
  });
  EXPECT_FALSE(misrouted_clean.pass);
  EXPECT_NE(misrouted_clean.message.find("has no expert here (misrouted)"), std::string::npos) << misrouted_clean.message;
  // Another token's id: rank 0's first two rows swap their token ids (no token lost or repeated).
  ASSERT_GE(count[0], 2);
  const CompareReport relabelled = mutate([&](std::vector<Tensor>& o) {
    auto m = o[1].span<int32_t>();
    std::swap(m[0], m[2]);
    std::swap(m[1], m[3]);
  });
  EXPECT_FALSE(relabelled.pass);
  EXPECT_NE(relabelled.message.find("rank 0: token"), std::string::npos) << relabelled.message;
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

// run_reference's steps by hand, up to the combine's finish: every rank packs its dispatch, what
// rank s packs for d is d's s-th packet, every rank stores and packs its partials; returns
// partials[s][d], what source s gets back from rank d (the dispatch outputs are in `out`).
std::vector<Packets> combine_partials(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  const auto R = static_cast<std::size_t>(p.ranks);
  std::vector<Packets> received(R, Packets(R)), partials(R, Packets(R));
  for (std::size_t s = 0; s < R; ++s) {
    Packets sent = pack_dispatch(p, static_cast<int64_t>(s), in, nullptr);
    for (std::size_t d = 0; d < R; ++d) received[d][s] = std::move(sent[d]);
  }
  for (std::size_t d = 0; d < R; ++d) {
    store_received(p, static_cast<int64_t>(d), received[d], out);
    Packets back = pack_combine(p, received[d]);
    for (std::size_t s = 0; s < R; ++s) partials[s][d] = std::move(back[s]);
  }
  return partials;
}

// The combine check fails on a partial with a wrong value or one naming another token of its
// source; finish_combine refuses a token id outside the source's tokens.
TEST(EpRef, CombineCheckCatchesAWrongOrMisaddressedPartial) {
  const Params p = params(4, 2, 6);  // BF16 combine: a partial row is the token (i32) and D BF16
  const std::vector<Tensor> in = make_inputs(p), ref = run_reference_poisoned(p, in), aids = combine_aids(p, in);
  auto finish = [&](auto mutate) {
    std::vector<Tensor> out = allocate(output_specs(p));
    std::vector<Packets> partials = combine_partials(p, in, out);
    mutate(partials);
    for (int64_t s = 0; s < p.ranks; ++s) finish_combine(p, s, partials[static_cast<std::size_t>(s)], out);
    return out;
  };
  const std::vector<Tensor> same = finish([](std::vector<Packets>&) {});
  const Tensor &y = tensor_named(same, "y"), &y_ref = tensor_named(ref, "y");
  ASSERT_EQ(std::memcmp(y.raw(), y_ref.raw(), y.nbytes()), 0) << "the steps by hand are run_reference's";
  ASSERT_TRUE(combine_check(p, aids, same).pass);
  // The partial to spoil: the first row source 0 gets back from another rank (at its largest
  // channel for a wrong value).
  int64_t sender = -1;
  finish([&](std::vector<Packets>& partials) {
    for (int64_t d = 1; d < p.ranks && sender < 0; ++d)
      if (!partials[0][static_cast<std::size_t>(d)].empty()) sender = d;
  });
  ASSERT_GE(sender, 0) << "source 0 gets nothing back from the other ranks: pick another case";
  auto largest_channel = [&](const std::vector<uint8_t>& row) {
    int64_t best = 0;
    float best_abs = -1;
    for (int64_t j = 0; j < p.dim; ++j) {
      uint16_t b;
      std::memcpy(&b, row.data() + 4 + 2 * j, 2);
      if (std::fabs(bf16_to_f32(b)) > best_abs) best_abs = std::fabs(bf16_to_f32(b)), best = j;
    }
    return best;
  };
  // A wrong value: the channel negated, so y moves by twice the partial, far past the bound
  // (2^-8 of the magnitudes, ep_checks.hpp).
  const std::vector<Tensor> wrong = finish([&](std::vector<Packets>& partials) {
    std::vector<uint8_t>& packet = partials[0][static_cast<std::size_t>(sender)];
    packet[static_cast<std::size_t>(4 + 2 * largest_channel(packet) + 1)] ^= 0x80;  // the BF16 sign bit
  });
  const CompareReport wrong_value = combine_check(p, aids, wrong);
  EXPECT_FALSE(wrong_value.pass);
  EXPECT_NE(wrong_value.message.find("y element"), std::string::npos) << wrong_value.message;
  // Another token: the row names the next token of source 0, which gets the partial twice while
  // its own token misses it.
  const std::vector<Tensor> misaddressed = finish([&](std::vector<Packets>& partials) {
    std::vector<uint8_t>& packet = partials[0][static_cast<std::size_t>(sender)];
    int32_t token;
    std::memcpy(&token, packet.data(), 4);
    token = static_cast<int32_t>((token + 1) % p.tokens);
    std::memcpy(packet.data(), &token, 4);
  });
  EXPECT_FALSE(combine_check(p, aids, misaddressed).pass);
  // A token outside 0..T-1: finish_combine refuses it.
  try {
    finish([&](std::vector<Packets>& partials) {
      const int32_t outside = static_cast<int32_t>(p.tokens);
      std::memcpy(partials[0][static_cast<std::size_t>(sender)].data(), &outside, 4);
    });
    ADD_FAILURE() << "a partial naming token " << p.tokens << " was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("names token 6"), std::string::npos) << e.what();
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
