// The ep component: cases (world sizes 1-8, one or several nodes, node limits that bind, FP8 /
// power-of-two / BF16 wires, every token to one rank), the simulated-ranks reference, and two checks that hold
// for any execution of a case whatever its order: the delivery check (every token at exactly the
// ranks that hold its experts, payload and choices intact) and the combine's bound against FP64.
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/ep.hpp"
#include "reference/ep_checks.hpp"
#include "reference/ep_placement.hpp"

namespace dsv3::ep {
namespace {

Case ep_case(const std::string& model, int64_t r, int64_t g, int64_t t, Wire w = Wire::fp8, int64_t m = 0,
             Draw draw = Draw::router, int64_t dim = 256, CombineWire combine = CombineWire::bf16, int x_scale_log2 = 0) {
  Params p;
  p.model = model; p.ranks = r; p.ranks_per_node = g; p.tokens = t; p.wire = w; p.node_limit = m; p.draw = draw; p.dim = dim;
  p.combine = combine; p.x_scale_log2 = x_scale_log2;
  p.validate();
  return make_case(p);
}

std::vector<Case> eval_cases() {
  const std::string v3 = "deepseek-v3-671b";
  std::vector<Case> c;
  c.push_back(ep_case(v3, 1, 1, 8));               // world size 1: everything local
  c.push_back(ep_case(v3, 2, 2, 16));              // one node, NVLink only
  c.push_back(ep_case(v3, 2, 1, 16));              // two nodes, IB only
  for (Wire w : {Wire::fp8, Wire::fp8_pow2, Wire::bf16}) c.push_back(ep_case(v3, 4, 2, 16, w));
  c.push_back(ep_case(v3, 8, 2, 12, Wire::fp8, 2));  // 4 nodes, M = 2: forwarding inside nodes
  c.push_back(ep_case(v3, 8, 2, 12, Wire::fp8, 4));  // M = nodes: unrestricted
  c.push_back(ep_case(v3, 8, 4, 7, Wire::fp8, 1));   // 2 nodes, M = 1: every token stays on one node
  // 8 nodes of one rank, M = 4 (V3's 8 groups, top-4): IB only, and the limit binds (unlimited,
  // tokens reach more than 4 nodes: EpRef.NodeLimitBindsWithOneRankPerNode).
  c.push_back(ep_case(v3, 8, 1, 8, Wire::fp8, 4));
  c.push_back(ep_case(v3, 4, 2, 1));                 // one token per rank
  c.push_back(ep_case(v3, 4, 2, 9, Wire::fp8, 0, Draw::all_to_rank0));  // rank 0 receives all, the rest nothing
  c.push_back(ep_case("deepseek-v2-lite-16b", 4, 2, 16, Wire::bf16));   // softmax gate, top-6 of 64
  c.push_back(ep_case("tiny-test", 2, 1, 16, Wire::fp8, 0, Draw::router, 128));
  // LogFMT-10 combine: unit-scale partials (amax >= 1: mostly sent as BF16, DeepEP's fallback) and
  // x scaled by 2^-6 (every group encoded).
  for (int x_log2 : {0, -6}) {
    c.push_back(ep_case(v3, 4, 2, 16, Wire::fp8, 0, Draw::router, 256, CombineWire::logfmt10, x_log2));
  }
  // No case with tied gate scores: a case's routing comes from Params' draws (reference/ep.cpp
  // make_inputs), which have no tied one; EpRef.TiedGateScoresKeepTheLowestNodes routes tied
  // scores through the gate and holds the reference to the delivery and combine checks.
  return c;
}

// V3 sizes (datasets/shapes/ep.json): 7168 channels, 4096 tokens per rank, top-8 of 256.
std::vector<Case> perf_cases() {
  return load_shape_cases("ep", [](const nlohmann::json& c, const std::string& at) {
    std::vector<Case> out;
    const std::string model = json_field<std::string>(c, "model", at);
    const int64_t r = json_field<int64_t>(c, "ranks", at), g = json_field<int64_t>(c, "ranks_per_node", at);
    const int64_t t = json_field<int64_t>(c, "tokens", at), dim = json_field<int64_t>(c, "dim", at);
    const int64_t m = json_field_or<int64_t>(c, "node_limit", 0, at);
    const CombineWire combine = combine_wire_from_name(json_field_or<std::string>(c, "combine", "bf16", at));
    const int x_log2 = static_cast<int>(json_field_or<int64_t>(c, "x_scale_log2", 0, at));
    for (const std::string& w : json_one_or_list<std::string>(c, "wire", "fp8", at))
      out.push_back(ep_case(model, r, g, t, wire_from_name(w), m, Draw::router, dim, combine, x_log2));
    return out;
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "ep";
  c.description = "expert-parallel dispatch (FP8 1x128 or BF16) and combine (BF16 or LogFMT-10) over simulated ranks, V3 node-limited path and link accounting";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  c.study = [](bool quick) { return nlohmann::json{{"ep_placement", placement_study(quick)}}; };
  bind_case_hooks<Params>(c);
  c.check_aids = [](const Case& k, const std::vector<Tensor>& in, const std::vector<Tensor>&) { return combine_aids(k.as<Params>(), in); };
  c.extra_checks = [](const Case& k, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
    return std::vector<CompareReport>{delivery_check(k.as<Params>(), aids, got), combine_check(k.as<Params>(), aids, got)};
  };
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "ep", "simulated ranks in one process: per-rank packing, a copying transport, per-rank unpacking (reference/ep.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "threads over ranks: a rank's packing and unpacking write only its own packets, slices and link counts");
}

}  // namespace dsv3::ep

void dsv3_register_ep_ref() { dsv3::ep::register_component(); }
