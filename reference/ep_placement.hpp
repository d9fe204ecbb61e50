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
// EPLB's hierarchical policy (what EPLB uses when the node count divides the group count, e.g. V3's
// prefill): (1) whole expert groups onto nodes, groups / nodes each, by balanced packing of the
// groups' loads; (2) inside each node, its experts replicated over the node's slots as above;
// (3) those replicas packed onto the node's ranks as above. A group's experts then stay in one node,
// so the gate's node limit (at most M groups per token, one group per node) still bounds the nodes
// a token reaches; the global policy scatters them. The global policy is the hierarchical one with
// one group and one node.
//   balanced packing  items largest first (ties: the lower index), each to the least-loaded pack
//                     with room (ties: the lower pack), exactly items / packs per pack
// Imbalance: the largest rank load over the mean rank load.
// Nodes per token: a token's expert e is served by replica (token mod replicas(e)) in rank order
// (replicas share the load evenly, as above); the distinct nodes (rank / ranks_per_node) reached.
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
  std::vector<int64_t> group_node;  // hierarchical: the node of each group; empty otherwise
};

// load: per expert (token count). Throws std::invalid_argument when ranks x slots < experts or the
// load is negative or not finite.
Placement eplb_global(const std::vector<double>& load, int64_t ranks, int64_t slots_per_rank);
Placement contiguous(const std::vector<double>& load, int64_t ranks);  // E divisible by ranks
// std::invalid_argument naming the count unless groups | E, nodes | groups, nodes | ranks, and each
// node's ranks x slots hold its experts.
Placement eplb_hierarchical(const std::vector<double>& load, int64_t groups, int64_t nodes, int64_t ranks, int64_t slots_per_rank);

// Mean distinct nodes per token of `indices` [tokens, k] under pl (rule above).
double mean_nodes_per_token(const Placement& pl, const std::vector<int32_t>& indices, int64_t k, int64_t ranks_per_node);

// Bundle study "ep_placement": V3's gate (node limit 4 of 8 groups) on the synthetic skewed router
// (reference/netmodel_node_limit.hpp), per skew, for two deployments (32 GPUs in 4 nodes, V3's
// prefill unit; 64 GPUs in 8 nodes) and 0, 1 or 2 redundant experts per GPU: the rank imbalance
// and nodes per token of the contiguous placement, EPLB's global and its hierarchical policy.
nlohmann::json placement_study(bool quick);

}  // namespace dsv3::ep
