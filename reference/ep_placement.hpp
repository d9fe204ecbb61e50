// Expert placement with redundant experts, as EPLB's global policy does it (v3-facts §3.7; the
// EPLB repository's README): replicate the heaviest experts, then pack the replicas onto ranks by
// load. V3's prefill deployment: 256 experts on 32 GPUs plus 32 redundant, 9 slots per GPU
// (V3-TR §3.4.1).
//   replicas   every expert starts with one; each of the ranks x slots - E extra slots goes to the
//              expert with the largest load per replica (ties: the lower id)
//   packing    replicas sorted by load per replica, largest first (ties: lower expert id), each to
//              the rank with the least load among those with a free slot (ties: the lower rank);
//              a token's load on an expert is split evenly over its replicas
//   contiguous the placement without redundancy: expert e on rank e / (E / ranks)
// Imbalance: the largest rank load over the mean rank load. EPLB's hierarchical policy (groups to
// nodes first) is not built.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::ep {

struct Placement {
  std::vector<int64_t> replicas;                 // per expert
  std::vector<std::vector<int64_t>> rank_slots;  // per rank: the experts of its slots
  std::vector<double> rank_load;
  double max_over_mean = 0;
};

// load: per expert (token count). Throws std::invalid_argument when ranks x slots < experts or the
// load is negative or not finite.
Placement eplb_global(const std::vector<double>& load, int64_t ranks, int64_t slots_per_rank);
Placement contiguous(const std::vector<double>& load, int64_t ranks);  // E divisible by ranks

// Bundle study "ep_placement": per router skew and redundancy, the rank imbalance of V3's gate's
// load (synthetic skewed router, reference/netmodel_node_limit.hpp) before and after EPLB.
nlohmann::json placement_study(bool quick);

}  // namespace dsv3::ep
