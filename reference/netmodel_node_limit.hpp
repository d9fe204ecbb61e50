// Node-limited routing traffic (v3-facts §3.6; V3-TR §2.1.2 "Node-Limited Routing", §3.2.2;
// ISCA §4.3): how many nodes a token's experts sit on, and the IB and NVLink bytes its dispatch
// and combine move, as the node limit M (the gate's n_limited_groups, one group per node) goes
// from 1 to the number of groups (M = groups: unrestricted routing). `dsv3 model node-limit`.
//
// Router (the model of reference/moe_gate_study.cpp, docs/moe.md): logits u_{t,i} = a_i + n_{t,i},
// a fixed per-expert skew a_i ~ N(0, skew^2) and per-token noise n ~ N(0, 1), both drawn from
// seed_from("node_limit seed=<seed> ..."); scores s = sigmoid(u) (softmax over the E logits for a
// softmax gate) rounded to FP32; routed by moe_gate::route_token with the config's Routing and
// topk_groups = M, bias zero. Every M routes the same scores.
//
// Placement (moe_gate::Placement): expert e on rank e / (E / ranks), rank r on node
// r / ranks_per_node; V3's training placement is 256 experts on 64 GPUs in 8 nodes (V3-TR §4.2),
// so group g (32 consecutive experts) is node g. Token t starts on source rank t mod ranks (tokens
// spread evenly over the EP ranks) and node src_node = source / ranks_per_node.
//
// Per token, with T = the distinct target ranks (GPUs holding one of its k experts) and
// N = the distinct target nodes:
//   nodes          = |N|                                  (what the limit bounds: nodes <= M)
//   remote_nodes   = |N \ {src_node}|
//   ib_sends       = remote_nodes: the token crosses IB once per remote target node, to the GPU
//                    with the source's in-node index (the landing GPU), V3-TR §3.2.2
//   nvlink_sends   = sum over n in N of |T on n \ {landing(n)}|, landing(src_node) = the source
//                    GPU itself: forwarded over NVLink inside each reached node, once per further
//                    target GPU (a GPU's several experts share one copy, as DeepEP sends per rank)
//   ib_sends_no_forwarding = |T on remote nodes|: every remote target GPU gets its own IB copy (the
//                    ISCA §4.3 contrast: 8 experts on 8 nodes cost 8t instead of Mt)
// Bytes per send: token_bytes = hidden x (dispatch_bytes_per_elem + combine_bytes_per_elem):
// FP8 dispatch (1 B) and BF16 combine (2 B) of V3's hidden 7168 (ISCA §3.2, V3-TR §3.3.3, DeepEP;
// v3-facts §7.2), 21,504 B; the combine retraces the dispatch path (NVLink back to the landing GPU,
// reduced there, one IB send back), so it has the same send counts. DeepEP's FP8 scales
// (7168/128 x 4 B = 224 B per send, v3-facts §9.1) are left out unless dispatch_overhead_bytes says.
//   ib_bytes = ib_sends x token_bytes,  nvlink_bytes = nvlink_sends x token_bytes (per token)
// Time ratio (V3-TR §3.2.2: NVLink 160 GB/s vs IB 50 GB/s, 3.2x): nvlink_over_ib_time =
// (mean nvlink_bytes / nvlink_gbs) / (mean ib_bytes / ib_gbs), every GPU's NIC and NVLink port
// assumed equally loaded: <= 1 means the NVLink forwarding hides behind the IB transfer.
// score_kept: mean over tokens of the chosen experts' summed unbiased scores at M, over the same
// at M = groups (1 for unrestricted): what the limit costs the gate.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/moe_gate.hpp"
#include "reference/moe_gate_balance.hpp"

namespace dsv3::netmodel {

struct NodeLimitInputs {
  std::string model = "deepseek-v3-671b";  // routing numbers from datasets/models (MoE configs only)
  int64_t tokens = 4096;  // routed tokens (DeepEP's normal-kernel batch, v3-facts §9.1)
  uint64_t seed = 0;      // selects the skew and noise draws
  double skew = 0.3;      // std of the per-expert logit skew a_i (moe_gate_study.cpp's kSkew)
  int64_t hidden = 0;     // elements per token; 0 = the config's dim (V3: 7168)
  double dispatch_bytes_per_elem = 1;  // FP8 dispatch (v3-facts §7.2)
  double combine_bytes_per_elem = 2;   // BF16 combine (v3-facts §7.2)
  double dispatch_overhead_bytes = 0;  // extra bytes per dispatch send (DeepEP FP8 scales: 224)
  double ib_gbs = 50;      // usable IB per GPU (V3-TR §3.2.2; 400 Gbps CX7)
  double nvlink_gbs = 160; // usable NVLink per GPU (V3-TR §3.2.2)
  // EP ranks and ranks per node holding the config's experts: 64 GPUs in 8 nodes (V3-TR §4.2).
  int64_t ranks = 64, ranks_per_node = 8;
  void validate() const;  // throws std::invalid_argument naming the field
};

// One token's counts (definitions above). idx: its k expert ids.
struct TokenTraffic {
  int64_t nodes = 0, remote_nodes = 0, gpus = 0, nvlink_sends = 0, ib_sends_no_forwarding = 0;
};
TokenTraffic token_traffic(const int32_t* idx, int64_t k, int64_t source_rank, const moe_gate::Placement& pl);

struct NodeLimitRow {
  int64_t limit = 0;          // M = topk_groups
  bool unrestricted = false;  // M == groups
  double mean_nodes = 0, mean_remote_nodes = 0, mean_gpus = 0, mean_nvlink_sends = 0, mean_ib_sends_no_forwarding = 0;
  int64_t max_nodes = 0;
  double experts_per_node = 0;  // k / mean_nodes
  double dispatch_send_bytes = 0, combine_send_bytes = 0;  // bytes per send
  double ib_bytes = 0, nvlink_bytes = 0, ib_bytes_no_forwarding = 0;  // per token, dispatch + combine
  double ib_vs_unrestricted = 0, nvlink_vs_unrestricted = 0;          // ratios to the M = groups row
  std::optional<double> nvlink_over_ib_time;  // none when no byte crosses IB
  double score_kept = 0;
};

struct NodeLimitResult {
  NodeLimitInputs in;
  moe_gate::Routing routing;    // the config's (topk_groups its own limit, V3: 4)
  moe_gate::Placement placement;
  std::vector<NodeLimitRow> rows;  // M = 1 .. groups
};

// The synthetic router's FP32 scores [tokens, experts] (model above).
std::vector<float> node_limit_scores(const NodeLimitInputs& in, const moe_gate::Routing& r);
// Sums a routing's traffic: indices [T, k]; token t from rank t mod ranks. score_kept is left 0.
NodeLimitRow node_limit_row(int64_t limit, const std::vector<int32_t>& indices, int64_t k, const moe_gate::Placement& pl,
                            const NodeLimitInputs& in);
NodeLimitResult node_limit_table(const NodeLimitInputs& in);
nlohmann::json node_limit_rows(const NodeLimitResult& r);

}  // namespace dsv3::netmodel
