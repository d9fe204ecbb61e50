// Node-limited routing traffic; formulas and sources in netmodel_node_limit.hpp.
#include "reference/netmodel_node_limit.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/fill.hpp"
#include "core/model_config.hpp"

namespace dsv3::netmodel {

void NodeLimitInputs::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("node-limit: " + what); };
  if (tokens < 1) bad("tokens must be >= 1, got " + std::to_string(tokens));
  if (!(skew >= 0) || !std::isfinite(skew)) bad("skew must be finite and >= 0, got " + std::to_string(skew));
  if (hidden < 0) bad("hidden must be >= 0 (0: the config's dim), got " + std::to_string(hidden));
  if (!(dispatch_bytes_per_elem > 0) || !std::isfinite(dispatch_bytes_per_elem)) bad("dispatch_bytes_per_elem must be positive");
  if (!(combine_bytes_per_elem > 0) || !std::isfinite(combine_bytes_per_elem)) bad("combine_bytes_per_elem must be positive");
  if (!(dispatch_overhead_bytes >= 0) || !std::isfinite(dispatch_overhead_bytes)) bad("dispatch_overhead_bytes must be >= 0");
  if (!(ib_gbs > 0) || !std::isfinite(ib_gbs)) bad("ib_gbs must be positive");
  if (!(nvlink_gbs > 0) || !std::isfinite(nvlink_gbs)) bad("nvlink_gbs must be positive");
  if (ranks < 1) bad("ranks must be >= 1, got " + std::to_string(ranks));
  if (ranks_per_node < 1) bad("ranks_per_node must be >= 1, got " + std::to_string(ranks_per_node));
}

TokenTraffic token_traffic(const int32_t* idx, int64_t k, int64_t source_rank, const moe_gate::Placement& pl) {
  if (source_rank < 0 || source_rank >= pl.ranks)
    throw std::invalid_argument("node-limit: source rank " + std::to_string(source_rank) + " outside [0, " +
                                std::to_string(pl.ranks) + ")");
  std::vector<int64_t> ranks;
  ranks.reserve(static_cast<std::size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    if (idx[j] < 0 || idx[j] >= pl.experts)
      throw std::invalid_argument("node-limit: expert " + std::to_string(idx[j]) + " outside [0, " + std::to_string(pl.experts) + ")");
    ranks.push_back(pl.rank_of(idx[j]));
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  const int64_t rpn = pl.ranks_per_node, src_node = source_rank / rpn;
  TokenTraffic t;
  t.gpus = static_cast<int64_t>(ranks.size());
  int64_t last_node = -1;
  for (int64_t r : ranks) {  // sorted by rank, hence grouped by node
    const int64_t node = r / rpn;
    if (node != last_node) {
      ++t.nodes;
      if (node != src_node) ++t.remote_nodes;
      last_node = node;
    }
    const int64_t landing = node == src_node ? source_rank : node * rpn + source_rank % rpn;
    if (r != landing) ++t.nvlink_sends;
    if (node != src_node) ++t.ib_sends_no_forwarding;
  }
  return t;
}

std::vector<float> node_limit_scores(const NodeLimitInputs& in, const moe_gate::Routing& r) {
  const std::string id = "node_limit seed=" + std::to_string(in.seed);
  Rng skew_rng(seed_from(id + " skew"));
  std::vector<double> a(static_cast<std::size_t>(r.experts));
  for (double& x : a) x = in.skew * skew_rng.normal();
  Rng rng(seed_from(id + " noise"));
  std::vector<float> s(static_cast<std::size_t>(in.tokens * r.experts));
  std::vector<double> u(static_cast<std::size_t>(r.experts));
  for (int64_t t = 0; t < in.tokens; ++t) {
    for (int64_t i = 0; i < r.experts; ++i) u[static_cast<std::size_t>(i)] = a[static_cast<std::size_t>(i)] + rng.normal();
    float* out = &s[static_cast<std::size_t>(t * r.experts)];
    if (r.sigmoid) {
      for (int64_t i = 0; i < r.experts; ++i) out[i] = static_cast<float>(1.0 / (1.0 + std::exp(-u[static_cast<std::size_t>(i)])));
    } else {  // softmax over the experts (V2), max-shifted
      const double m = *std::max_element(u.begin(), u.end());
      double sum = 0;
      for (double x : u) sum += std::exp(x - m);
      for (int64_t i = 0; i < r.experts; ++i) out[i] = static_cast<float>(std::exp(u[static_cast<std::size_t>(i)] - m) / sum);
    }
  }
  return s;
}

NodeLimitRow node_limit_row(int64_t limit, const std::vector<int32_t>& indices, int64_t k, const moe_gate::Placement& pl,
                            const NodeLimitInputs& in) {
  pl.validate();
  if (k < 1 || indices.empty() || indices.size() % static_cast<std::size_t>(k) != 0)
    throw std::invalid_argument("node-limit: " + std::to_string(indices.size()) + " indices are not rows of k = " + std::to_string(k));
  const int64_t tokens = static_cast<int64_t>(indices.size()) / k;
  NodeLimitRow row;
  row.limit = limit;
  int64_t nodes = 0, remote = 0, gpus = 0, nvl = 0, nofwd = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const TokenTraffic tt = token_traffic(&indices[static_cast<std::size_t>(t * k)], k, t % pl.ranks, pl);
    nodes += tt.nodes, remote += tt.remote_nodes, gpus += tt.gpus, nvl += tt.nvlink_sends, nofwd += tt.ib_sends_no_forwarding;
    row.max_nodes = std::max(row.max_nodes, tt.nodes);
  }
  const auto T = static_cast<double>(tokens);
  row.mean_nodes = static_cast<double>(nodes) / T;
  row.mean_remote_nodes = static_cast<double>(remote) / T;
  row.mean_gpus = static_cast<double>(gpus) / T;
  row.mean_nvlink_sends = static_cast<double>(nvl) / T;
  row.mean_ib_sends_no_forwarding = static_cast<double>(nofwd) / T;
  row.experts_per_node = static_cast<double>(k) / row.mean_nodes;
  row.dispatch_send_bytes = static_cast<double>(in.hidden) * in.dispatch_bytes_per_elem + in.dispatch_overhead_bytes;
  row.combine_send_bytes = static_cast<double>(in.hidden) * in.combine_bytes_per_elem;
  const double send = row.dispatch_send_bytes + row.combine_send_bytes;
  row.ib_bytes = row.mean_remote_nodes * send;
  row.nvlink_bytes = row.mean_nvlink_sends * send;
  row.ib_bytes_no_forwarding = row.mean_ib_sends_no_forwarding * send;
  if (row.ib_bytes > 0) row.nvlink_over_ib_time = (row.nvlink_bytes / in.nvlink_gbs) / (row.ib_bytes / in.ib_gbs);
  return row;
}

NodeLimitResult node_limit_table(const NodeLimitInputs& in_given) {
  in_given.validate();
  NodeLimitResult res;
  res.in = in_given;
  res.routing = moe_gate::Routing::from(find_model(in_given.model));
  if (res.in.hidden == 0) res.in.hidden = res.routing.dim;
  res.placement = moe_gate::Placement{res.routing.experts, res.in.ranks, res.in.ranks_per_node};
  res.placement.validate();
  const moe_gate::Routing& base = res.routing;
  const int64_t T = res.in.tokens, E = base.experts, k = base.topk;
  const std::vector<float> scores = node_limit_scores(res.in, base);
  std::vector<double> kept;  // summed chosen scores per M
  std::vector<double> w(static_cast<std::size_t>(k));
  for (int64_t m = 1; m <= base.groups; ++m) {
    moe_gate::Routing r = base;
    r.topk_groups = m;
    if (k > m * r.per_group()) continue;  // this limit cannot hold k experts (validate would refuse)
    r.validate();
    std::vector<int32_t> idx(static_cast<std::size_t>(T * k));
    double sum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float* s = &scores[static_cast<std::size_t>(t * E)];
      int32_t* ix = &idx[static_cast<std::size_t>(t * k)];
      moe_gate::route_token(r, s, nullptr, ix, w.data());  // bias zero: the limit alone decides
      for (int64_t j = 0; j < k; ++j) sum += s[ix[j]];
    }
    NodeLimitRow row = node_limit_row(m, idx, k, res.placement, res.in);
    row.unrestricted = m == base.groups;
    res.rows.push_back(row);
    kept.push_back(sum);
  }
  const NodeLimitRow& u = res.rows.back();  // M = groups
  for (std::size_t i = 0; i < res.rows.size(); ++i) {
    NodeLimitRow& row = res.rows[i];
    row.ib_vs_unrestricted = u.ib_bytes > 0 ? row.ib_bytes / u.ib_bytes : 0;
    row.nvlink_vs_unrestricted = u.nvlink_bytes > 0 ? row.nvlink_bytes / u.nvlink_bytes : 0;
    row.score_kept = kept[i] / kept.back();
  }
  return res;
}

nlohmann::json node_limit_rows(const NodeLimitResult& res) {
  nlohmann::json rows = nlohmann::json::array();
  const NodeLimitInputs& in = res.in;
  for (const NodeLimitRow& r : res.rows) {
    rows.push_back({{"model", in.model},
                    {"node_limit", r.limit},
                    {"unrestricted", r.unrestricted},
                    {"config_limit", res.routing.topk_groups},
                    {"groups", res.routing.groups},
                    {"experts", res.routing.experts},
                    {"topk", res.routing.topk},
                    {"ranks", res.placement.ranks},
                    {"ranks_per_node", res.placement.ranks_per_node},
                    {"nodes", res.placement.nodes()},
                    {"tokens", in.tokens},
                    {"seed", in.seed},
                    {"skew", in.skew},
                    {"hidden", in.hidden},
                    {"dispatch_bytes_per_elem", in.dispatch_bytes_per_elem},
                    {"combine_bytes_per_elem", in.combine_bytes_per_elem},
                    {"dispatch_overhead_bytes", in.dispatch_overhead_bytes},
                    {"ib_gbs", in.ib_gbs},
                    {"nvlink_gbs", in.nvlink_gbs},
                    {"mean_nodes_per_token", r.mean_nodes},
                    {"max_nodes_per_token", r.max_nodes},
                    {"mean_remote_nodes", r.mean_remote_nodes},
                    {"mean_gpus_per_token", r.mean_gpus},
                    {"mean_nvlink_sends", r.mean_nvlink_sends},
                    {"mean_ib_sends_no_forwarding", r.mean_ib_sends_no_forwarding},
                    {"experts_per_node", r.experts_per_node},
                    {"dispatch_send_bytes", r.dispatch_send_bytes},
                    {"combine_send_bytes", r.combine_send_bytes},
                    {"ib_bytes_per_token", r.ib_bytes},
                    {"nvlink_bytes_per_token", r.nvlink_bytes},
                    {"ib_bytes_per_token_no_forwarding", r.ib_bytes_no_forwarding},
                    {"ib_vs_unrestricted", r.ib_vs_unrestricted},
                    {"nvlink_vs_unrestricted", r.nvlink_vs_unrestricted},
                    {"nvlink_over_ib_time", r.nvlink_over_ib_time ? nlohmann::json(*r.nvlink_over_ib_time) : nlohmann::json(nullptr)},
                    {"score_kept", r.score_kept}});
  }
  return rows;
}

}  // namespace dsv3::netmodel
