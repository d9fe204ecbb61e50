// EPLB's global policy and the placement study (ep_placement.hpp).
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
  Placement pl;
  pl.replicas.assign(load.size(), 1);
  for (int64_t extra = ranks * slots_per_rank - e; extra > 0; --extra) {
    std::size_t best = 0;
    for (std::size_t x = 1; x < load.size(); ++x)
      if (load[x] / static_cast<double>(pl.replicas[x]) > load[best] / static_cast<double>(pl.replicas[best])) best = x;
    ++pl.replicas[best];
  }
  struct Item {
    double load;
    int64_t expert;
  };
  std::vector<Item> items;
  for (int64_t x = 0; x < e; ++x)
    for (int64_t c = 0; c < pl.replicas[static_cast<std::size_t>(x)]; ++c)
      items.push_back({load[static_cast<std::size_t>(x)] / static_cast<double>(pl.replicas[static_cast<std::size_t>(x)]), x});
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.load > b.load; });
  pl.rank_slots.resize(static_cast<std::size_t>(ranks));
  std::vector<double> rank_load(static_cast<std::size_t>(ranks), 0.0);
  for (const Item& it : items) {
    int64_t best = -1;
    for (int64_t r = 0; r < ranks; ++r)
      if (static_cast<int64_t>(pl.rank_slots[static_cast<std::size_t>(r)].size()) < slots_per_rank &&
          (best < 0 || rank_load[static_cast<std::size_t>(r)] < rank_load[static_cast<std::size_t>(best)]))
        best = r;
    pl.rank_slots[static_cast<std::size_t>(best)].push_back(it.expert);
    rank_load[static_cast<std::size_t>(best)] += it.load;
  }
  finish(pl, load);
  return pl;
}

nlohmann::json placement_study(bool quick) {
  // V3's prefill unit: 256 experts on 32 GPUs in 4 nodes, 4096 tokens per GPU, top-8 of the V3 gate.
  const ModelConfig m = find_model("deepseek-v3-671b");
  const moe_gate::Routing r = moe_gate::Routing::from(m);
  const int64_t ranks = 32, tokens = ranks * (quick ? 512 : 4096);
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
    const moe_gate::LoadStats ls = moe_gate::load_stats(idx, r.topk, moe_gate::Placement{r.experts, ranks, 8});
    const std::vector<double> load(ls.per_expert.begin(), ls.per_expert.end());
    const Placement before = contiguous(load, ranks);
    for (int64_t redundant : {0, 32, 64}) {
      const Placement after = eplb_global(load, ranks, (r.experts + redundant) / ranks);
      rows.push_back({{"experts", r.experts}, {"ranks", ranks}, {"tokens", tokens}, {"skew", skew}, {"redundant", redundant},
                      {"expert_max_over_mean", ls.expert_max_over_mean}, {"contiguous_rank_max_over_mean", before.max_over_mean},
                      {"eplb_rank_max_over_mean", after.max_over_mean},
                      {"max_replicas", *std::max_element(after.replicas.begin(), after.replicas.end())}});
    }
  }
  return rows;
}

}  // namespace dsv3::ep
