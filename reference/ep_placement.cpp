// EPLB's global and hierarchical policies and the placement study (ep_placement.hpp).
#include "reference/ep_placement.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/model_config.hpp"
#include "reference/moe_gate.hpp"
#include "reference/moe_gate_balance.hpp"
#include "reference/netmodel_node_limit.hpp"

namespace dsv3::ep {
namespace {

void finish(Placement& pl, const std::vector<double>& load) {
  pl.rank_load.assign(pl.rank_slots.size(), 0.0);
  for (std::size_t r = 0; r < pl.rank_slots.size(); ++r)
    for (int64_t e : pl.rank_slots[r]) pl.rank_load[r] += load[static_cast<std::size_t>(e)] / static_cast<double>(pl.replicas[static_cast<std::size_t>(e)]);
  const double mean = std::accumulate(pl.rank_load.begin(), pl.rank_load.end(), 0.0) / static_cast<double>(pl.rank_load.size());
  pl.max_over_mean = mean > 0 ? *std::max_element(pl.rank_load.begin(), pl.rank_load.end()) / mean : 1.0;
}

void check_load(const std::vector<double>& load) {
  if (load.empty()) throw std::invalid_argument("ep placement: no experts");
  for (double l : load)
    if (!(l >= 0) || !std::isfinite(l)) throw std::invalid_argument("ep placement: expert loads must be finite and >= 0");
}

// Items into `packs` packs of exactly n / packs each: largest weight first (ties: the lower index),
// each to the least-loaded pack with room (ties: the lower pack). Returns each item's pack.
std::vector<int64_t> balanced_packing(const std::vector<double>& weight, int64_t packs) {
  const auto n = static_cast<int64_t>(weight.size());
  const int64_t per_pack = n / packs;
  std::vector<int64_t> order(weight.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return weight[static_cast<std::size_t>(a)] > weight[static_cast<std::size_t>(b)]; });
  std::vector<int64_t> pack_of(weight.size(), -1), items(static_cast<std::size_t>(packs), 0);
  std::vector<double> pack_load(static_cast<std::size_t>(packs), 0.0);
  for (int64_t i : order) {
    int64_t best = -1;
    for (int64_t p = 0; p < packs; ++p)
      if (items[static_cast<std::size_t>(p)] < per_pack &&
          (best < 0 || pack_load[static_cast<std::size_t>(p)] < pack_load[static_cast<std::size_t>(best)]))
        best = p;
    pack_of[static_cast<std::size_t>(i)] = best;
    ++items[static_cast<std::size_t>(best)];
    pack_load[static_cast<std::size_t>(best)] += weight[static_cast<std::size_t>(i)];
  }
  return pack_of;
}

// Replicates `experts` (ids into load) over ranks [first, first + ranks) x slots: each extra slot to
// the expert with the largest load per replica (ties: the earlier in `experts`), then every replica
// (expert order, load / replicas) packed onto those ranks by balanced_packing.
void place_within(const std::vector<double>& load, const std::vector<int64_t>& experts, int64_t first, int64_t ranks,
                  int64_t slots, Placement& pl) {
  auto per_replica = [&](int64_t x) { return load[static_cast<std::size_t>(x)] / static_cast<double>(pl.replicas[static_cast<std::size_t>(x)]); };
  for (int64_t extra = ranks * slots - static_cast<int64_t>(experts.size()); extra > 0; --extra) {
    int64_t best = experts.front();
    for (int64_t x : experts)
      if (per_replica(x) > per_replica(best)) best = x;
    ++pl.replicas[static_cast<std::size_t>(best)];
  }
  std::vector<int64_t> item_expert;
  std::vector<double> item_load;
  for (int64_t x : experts)
    for (int64_t c = 0; c < pl.replicas[static_cast<std::size_t>(x)]; ++c) {
      item_expert.push_back(x);
      item_load.push_back(per_replica(x));
    }
  const std::vector<int64_t> rank_of = balanced_packing(item_load, ranks);
  // Slots filled in the packing's order (largest replica first), as the rank lists show them.
  std::vector<int64_t> order(item_load.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return item_load[static_cast<std::size_t>(a)] > item_load[static_cast<std::size_t>(b)]; });
  for (int64_t i : order)
    pl.rank_slots[static_cast<std::size_t>(first + rank_of[static_cast<std::size_t>(i)])].push_back(item_expert[static_cast<std::size_t>(i)]);
}

}  // namespace

Placement contiguous(const std::vector<double>& load, int64_t ranks) {
  check_load(load);
  const auto e = static_cast<int64_t>(load.size());
  if (ranks < 1 || e % ranks != 0) throw std::invalid_argument("ep placement: " + std::to_string(ranks) + " ranks do not divide " + std::to_string(e) + " experts");
  Placement pl;
  pl.replicas.assign(load.size(), 1);
  pl.rank_slots.resize(static_cast<std::size_t>(ranks));
  for (int64_t x = 0; x < e; ++x) pl.rank_slots[static_cast<std::size_t>(x / (e / ranks))].push_back(x);
  finish(pl, load);
  return pl;
}

Placement eplb_global(const std::vector<double>& load, int64_t ranks, int64_t slots_per_rank) {
  check_load(load);
  const auto e = static_cast<int64_t>(load.size());
  if (ranks < 1 || slots_per_rank < 1 || ranks * slots_per_rank < e)
    throw std::invalid_argument("ep placement: " + std::to_string(ranks) + " ranks x " + std::to_string(slots_per_rank) +
                                " slots cannot hold " + std::to_string(e) + " experts");
  std::vector<int64_t> all(static_cast<std::size_t>(e));
  std::iota(all.begin(), all.end(), 0);
  Placement pl;
  pl.replicas.assign(load.size(), 1);
  pl.rank_slots.resize(static_cast<std::size_t>(ranks));
  place_within(load, all, 0, ranks, slots_per_rank, pl);
  finish(pl, load);
  return pl;
}

Placement eplb_hierarchical(const std::vector<double>& load, int64_t groups, int64_t nodes, int64_t ranks, int64_t slots_per_rank) {
  check_load(load);
  const auto e = static_cast<int64_t>(load.size());
  auto bad = [&](const std::string& what) { throw std::invalid_argument("ep placement (hierarchical): " + what); };
  if (groups < 1 || e % groups != 0) bad(std::to_string(groups) + " groups do not divide " + std::to_string(e) + " experts");
  if (nodes < 1 || groups % nodes != 0) bad(std::to_string(nodes) + " nodes do not divide " + std::to_string(groups) + " groups");
  if (ranks < 1 || ranks % nodes != 0) bad(std::to_string(nodes) + " nodes do not divide " + std::to_string(ranks) + " ranks");
  const int64_t per_group = e / groups, ranks_per_node = ranks / nodes;
  if (slots_per_rank < 1 || ranks_per_node * slots_per_rank < e / nodes)
    bad(std::to_string(ranks_per_node) + " ranks x " + std::to_string(slots_per_rank) + " slots per node cannot hold its " +
        std::to_string(e / nodes) + " experts");
  // Step 1: whole groups onto nodes, groups / nodes each, balanced by the groups' loads.
  std::vector<double> group_load(static_cast<std::size_t>(groups), 0.0);
  for (int64_t x = 0; x < e; ++x) group_load[static_cast<std::size_t>(x / per_group)] += load[static_cast<std::size_t>(x)];
  Placement pl;
  pl.group_node = balanced_packing(group_load, nodes);
  pl.replicas.assign(load.size(), 1);
  pl.rank_slots.resize(static_cast<std::size_t>(ranks));
  // Steps 2 and 3 inside each node: replicate its experts over its slots, pack onto its ranks.
  for (int64_t n = 0; n < nodes; ++n) {
    std::vector<int64_t> mine;
    for (int64_t g = 0; g < groups; ++g)
      if (pl.group_node[static_cast<std::size_t>(g)] == n)
        for (int64_t x = g * per_group; x < (g + 1) * per_group; ++x) mine.push_back(x);
    place_within(load, mine, n * ranks_per_node, ranks_per_node, slots_per_rank, pl);
  }
  finish(pl, load);
  return pl;
}

double mean_nodes_per_token(const Placement& pl, const std::vector<int32_t>& indices, int64_t k, int64_t ranks_per_node) {
  if (k < 1 || ranks_per_node < 1 || indices.size() % static_cast<std::size_t>(k) != 0)
    throw std::invalid_argument("ep placement: indices are not [tokens, k] or ranks_per_node < 1");
  std::vector<std::vector<int64_t>> holders(pl.replicas.size());  // expert -> its replicas' ranks, rank order
  for (std::size_t r = 0; r < pl.rank_slots.size(); ++r)
    for (int64_t x : pl.rank_slots[r]) holders[static_cast<std::size_t>(x)].push_back(static_cast<int64_t>(r));
  const auto tokens = static_cast<int64_t>(indices.size()) / k;
  if (tokens == 0) return 0;
  int64_t sum = 0;
  std::vector<int64_t> seen;
  for (int64_t t = 0; t < tokens; ++t) {
    seen.clear();
    for (int64_t j = 0; j < k; ++j) {
      const auto x = static_cast<std::size_t>(indices[static_cast<std::size_t>(t * k + j)]);
      if (x >= holders.size() || holders[x].empty()) throw std::invalid_argument("ep placement: a routed expert has no replica");
      const int64_t node = holders[x][static_cast<std::size_t>(t) % holders[x].size()] / ranks_per_node;
      if (std::find(seen.begin(), seen.end(), node) == seen.end()) seen.push_back(node);
    }
    sum += static_cast<int64_t>(seen.size());
  }
  return static_cast<double>(sum) / static_cast<double>(tokens);
}

nlohmann::json placement_study(bool quick) {
  const ModelConfig m = find_model("deepseek-v3-671b");
  const moe_gate::Routing r = moe_gate::Routing::from(m);
  const int64_t tokens = 32 * (quick ? 512 : 4096);  // 4096 per GPU of the prefill unit
  nlohmann::json rows = nlohmann::json::array();
  for (double skew : {0.0, 0.3, 1.0}) {
    netmodel::NodeLimitInputs in;
    in.tokens = tokens;
    in.skew = skew;
    in.seed = 7;
    const std::vector<float> scores = netmodel::node_limit_scores(in, r);
    std::vector<int32_t> idx(static_cast<std::size_t>(tokens * r.topk));
    std::vector<double> w(static_cast<std::size_t>(r.topk));
    for (int64_t t = 0; t < tokens; ++t)
      moe_gate::route_token(r, &scores[static_cast<std::size_t>(t * r.experts)], nullptr, &idx[static_cast<std::size_t>(t * r.topk)], w.data());
    for (const auto& [ranks, nodes] : {std::pair<int64_t, int64_t>{32, 4}, {64, 8}}) {
      const int64_t per_node = ranks / nodes;
      const moe_gate::LoadStats ls = moe_gate::load_stats(idx, r.topk, moe_gate::Placement{r.experts, ranks, per_node});
      const std::vector<double> load(ls.per_expert.begin(), ls.per_expert.end());
      const Placement before = contiguous(load, ranks);
      const double before_nodes = mean_nodes_per_token(before, idx, r.topk, per_node);
      for (int64_t redundant : {int64_t{0}, ranks, 2 * ranks}) {
        const int64_t slots = (r.experts + redundant) / ranks;
        const Placement global = eplb_global(load, ranks, slots);
        const Placement hier = eplb_hierarchical(load, r.groups, nodes, ranks, slots);
        rows.push_back({{"experts", r.experts}, {"groups", r.groups}, {"node_limit", r.topk_groups}, {"ranks", ranks},
                        {"nodes", nodes}, {"tokens", tokens}, {"skew", skew}, {"redundant", redundant},
                        {"expert_max_over_mean", ls.expert_max_over_mean}, {"contiguous_rank_max_over_mean", before.max_over_mean},
                        {"eplb_rank_max_over_mean", global.max_over_mean},
                        {"hierarchical_rank_max_over_mean", hier.max_over_mean},
                        {"max_replicas", *std::max_element(global.replicas.begin(), global.replicas.end())},
                        {"contiguous_nodes_per_token", before_nodes},
                        {"eplb_nodes_per_token", mean_nodes_per_token(global, idx, r.topk, per_node)},
                        {"hierarchical_nodes_per_token", mean_nodes_per_token(hier, idx, r.topk, per_node)}});
      }
    }
  }
  return rows;
}

}  // namespace dsv3::ep
