// dsv3 model node-limit: node-limited routing traffic over the node limit M
// (reference/netmodel_node_limit.hpp; docs/netmodel.md). Prints the table, --json writes the rows.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "core/json_file.hpp"
#include "reference/netmodel_node_limit.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

using namespace dsv3::netmodel;

void print_node_limit(const NodeLimitResult& res) {
  const NodeLimitInputs& in = res.in;
  const auto& r = res.routing;
  const auto& pl = res.placement;
  std::printf("Node-limited routing traffic (V3-TR §2.1.2, §3.2.2; ISCA §4.3; v3-facts §3.6)\n\n");
  std::printf("Router: %s, %lld experts in %lld groups, top-%lld, config limit %lld groups; synthetic scores\n"
              "  s = %s(a_i + n_ti), skew a_i ~ N(0, %g^2), noise N(0, 1), seed %llu, %lld tokens, bias 0\n",
              in.model.c_str(), static_cast<long long>(r.experts), static_cast<long long>(r.groups),
              static_cast<long long>(r.topk), static_cast<long long>(r.topk_groups), r.sigmoid ? "sigmoid" : "softmax",
              in.skew, static_cast<unsigned long long>(in.seed), static_cast<long long>(in.tokens));
  std::printf("Placement: %lld experts on %lld GPUs, %lld per node: %lld nodes%s; token t starts on GPU t mod %lld\n",
              static_cast<long long>(pl.experts), static_cast<long long>(pl.ranks), static_cast<long long>(pl.ranks_per_node),
              static_cast<long long>(pl.nodes()), pl.nodes() == r.groups ? " (one group per node)" : " (groups != nodes: M limits groups)",
              static_cast<long long>(pl.ranks));
  const NodeLimitRow& f = res.rows.front();
  std::printf("Bytes per send: dispatch %lld x %g B + %g B = %.0f B, combine %lld x %g B = %.0f B; together %.0f B\n",
              static_cast<long long>(in.hidden), in.dispatch_bytes_per_elem, in.dispatch_overhead_bytes, f.dispatch_send_bytes,
              static_cast<long long>(in.hidden), in.combine_bytes_per_elem, f.combine_send_bytes,
              f.dispatch_send_bytes + f.combine_send_bytes);
  std::printf("IB bytes = remote target nodes x send bytes; NVLink bytes = target GPUs other than each reached\n"
              "node's landing GPU x send bytes; no-fwd IB = every remote target GPU sent over IB (per token,\n"
              "dispatch + combine). NVL/IB time at %g / %g GB/s (<= 1: forwarding hidden behind IB).\n\n",
              in.nvlink_gbs, in.ib_gbs);
  std::printf("%4s %7s %5s %7s %6s %7s %10s %10s %10s %7s %7s %7s %7s\n", "M", "nodes", "max", "remote", "exp/n", "NVL snd",
              "IB B", "NVLink B", "no-fwd IB", "IB/unr", "NVL/unr", "NVL/IB t", "score");
  for (const NodeLimitRow& x : res.rows) {
    char m[16];
    std::snprintf(m, sizeof m, "%lld%s", static_cast<long long>(x.limit), x.unrestricted ? "*" : (x.limit == r.topk_groups ? "c" : ""));
    char t[16] = "-";
    if (x.nvlink_over_ib_time) std::snprintf(t, sizeof t, "%.3f", *x.nvlink_over_ib_time);
    std::printf("%4s %7.3f %5lld %7.3f %6.2f %7.3f %10.0f %10.0f %10.0f %7.3f %7.3f %7s %7.4f\n", m, x.mean_nodes,
                static_cast<long long>(x.max_nodes), x.mean_remote_nodes, x.experts_per_node, x.mean_nvlink_sends,
                x.ib_bytes, x.nvlink_bytes, x.ib_bytes_no_forwarding, x.ib_vs_unrestricted, x.nvlink_vs_unrestricted, t,
                x.score_kept);
  }
  std::printf("\n*: unrestricted (M = groups), c: the config's limit. nodes: mean distinct nodes per token; remote:\n"
              "those other than the source's (IB sends); exp/n: experts per reached node; score: the chosen\n"
              "experts' summed scores over the unrestricted routing's.\n");
}

}  // namespace

void add_model_node_limit(CLI::App& model) {
  auto* cmd = model.add_subcommand("node-limit", "Node-limited routing: nodes, IB and NVLink bytes per token over the node limit M");
  cmd->footer(
      "Routes a seeded synthetic router (per-token sigmoid scores with a per-expert skew, as the MoE\n"
      "balancing study) with the config's gate at every node limit M = 1..groups (M = groups is\n"
      "unrestricted routing) and counts, per token, the distinct nodes its experts sit on, the IB sends\n"
      "(one per remote node: V3 crosses IB once per target node, then forwards over NVLink; V3-TR\n"
      "§3.2.2, ISCA §4.3) and the NVLink sends, with their bytes (FP8 dispatch + BF16 combine of the\n"
      "hidden size). Placement: experts uniformly on --ranks GPUs, --ranks-per-node per node (V3: 64, 8).\n"
      "Formulas and sources: reference/netmodel_node_limit.hpp, docs/netmodel.md.\n\n"
      "Examples:\n"
      "  dsv3 model node-limit\n"
      "  dsv3 model node-limit --tokens 16384 --seed 3 --skew 1.0 --json nl.json");
  auto in = std::make_shared<NodeLimitInputs>();
  auto json = std::make_shared<std::string>();
  cmd->add_option("--model", in->model, "MoE model config")->capture_default_str();
  cmd->add_option("--tokens", in->tokens, "Tokens routed")->capture_default_str();
  cmd->add_option("--seed", in->seed, "Seed of the skew and noise draws")->capture_default_str();
  cmd->add_option("--skew", in->skew, "Std of the per-expert logit skew (0: experts alike)")->capture_default_str();
  cmd->add_option("--hidden", in->hidden, "Elements per token (0: the config's dim, V3 7168)")->capture_default_str();
  cmd->add_option("--dispatch-bytes", in->dispatch_bytes_per_elem, "Bytes per element, dispatch (FP8)")->capture_default_str();
  cmd->add_option("--combine-bytes", in->combine_bytes_per_elem, "Bytes per element, combine (BF16)")->capture_default_str();
  cmd->add_option("--dispatch-overhead", in->dispatch_overhead_bytes,
                  "Extra bytes per dispatch send (DeepEP FP8 scales: 224)")->capture_default_str();
  cmd->add_option("--ib-gbs", in->ib_gbs, "Usable IB per GPU, GB/s (V3-TR §3.2.2)")->capture_default_str();
  cmd->add_option("--nvlink-gbs", in->nvlink_gbs, "Usable NVLink per GPU, GB/s (V3-TR §3.2.2)")->capture_default_str();
  cmd->add_option("--ranks", in->ranks, "EP GPUs holding the experts")->capture_default_str();
  cmd->add_option("--ranks-per-node", in->ranks_per_node, "GPUs per node")->capture_default_str();
  cmd->add_option("--json", *json, "Also write the rows (docs/netmodel.md \"node_limit\") to this JSON file");
  cmd->callback([=] {
    const NodeLimitResult res = node_limit_table(*in);
    print_node_limit(res);
    if (json->empty()) return;
    write_json_atomic(*json, node_limit_rows(res));
    std::cerr << "model node-limit: wrote " << *json << "\n";
  });
}

}  // namespace dsv3::cli
