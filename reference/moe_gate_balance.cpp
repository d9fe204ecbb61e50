// Load statistics, the bias update, the sequence-wise balance loss and the balancing study
// (reference/moe_gate_balance.hpp).
#include "reference/moe_gate_balance.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "core/fill.hpp"
#include "core/parallel.hpp"

namespace dsv3::moe_gate {

void Placement::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("moe placement: " + what); };
  if (experts < 1) bad("experts must be >= 1");
  if (ranks < 1 || experts % ranks != 0) bad("ranks = " + std::to_string(ranks) + " does not divide experts = " + std::to_string(experts));
  if (ranks_per_node < 1 || ranks % ranks_per_node != 0)
    bad("ranks_per_node = " + std::to_string(ranks_per_node) + " does not divide ranks = " + std::to_string(ranks));
}

namespace {

double max_over_mean(const std::vector<int64_t>& v) {
  const double total = static_cast<double>(std::accumulate(v.begin(), v.end(), int64_t{0}));
  if (total == 0) return 0;
  return static_cast<double>(*std::max_element(v.begin(), v.end())) / (total / static_cast<double>(v.size()));
}

}  // namespace

LoadStats load_stats(const std::vector<int32_t>& indices, int64_t k, const Placement& pl) {
  pl.validate();
  if (k < 1 || indices.size() % static_cast<std::size_t>(k) != 0)
    throw std::invalid_argument("moe load: " + std::to_string(indices.size()) + " indices are not rows of k = " + std::to_string(k));
  LoadStats s;
  s.per_expert.assign(static_cast<std::size_t>(pl.experts), 0);
  s.per_rank.assign(static_cast<std::size_t>(pl.ranks), 0);
  s.per_node.assign(static_cast<std::size_t>(pl.nodes()), 0);
  const auto tokens = static_cast<int64_t>(indices.size()) / k;
  int64_t node_sum = 0;
  std::vector<char> seen(static_cast<std::size_t>(pl.nodes()));
  for (int64_t t = 0; t < tokens; ++t) {
    std::fill(seen.begin(), seen.end(), 0);
    int64_t nodes = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = indices[static_cast<std::size_t>(t * k + j)];
      if (e < 0 || e >= pl.experts)
        throw std::invalid_argument("moe load: token " + std::to_string(t) + " routes to expert " + std::to_string(e) +
                                    ", outside [0, " + std::to_string(pl.experts) + ")");
      ++s.per_expert[static_cast<std::size_t>(e)];
      ++s.per_rank[static_cast<std::size_t>(pl.rank_of(e))];
      const auto n = static_cast<std::size_t>(pl.node_of(e));
      if (!seen[n]) {
        seen[n] = 1;
        ++nodes;
      }
    }
    for (std::size_t n = 0; n < seen.size(); ++n) s.per_node[n] += seen[n];  // a token crosses to a node once
    node_sum += nodes;
    s.max_nodes_per_token = std::max(s.max_nodes_per_token, nodes);
  }
  s.expert_max_over_mean = max_over_mean(s.per_expert);
  s.rank_max_over_mean = max_over_mean(s.per_rank);
  s.node_max_over_mean = max_over_mean(s.per_node);
  s.mean_nodes_per_token = tokens ? static_cast<double>(node_sum) / static_cast<double>(tokens) : 0.0;
  s.empty_experts = std::count(s.per_expert.begin(), s.per_expert.end(), int64_t{0});
  return s;
}

void BiasUpdate::apply(const std::vector<int64_t>& load, std::vector<float>& bias) const {
  if (load.size() != bias.size()) throw std::invalid_argument("moe bias update: load and bias sizes differ");
  const double mean = static_cast<double>(std::accumulate(load.begin(), load.end(), int64_t{0})) / static_cast<double>(load.size());
  for (std::size_t i = 0; i < load.size(); ++i) {
    const auto l = static_cast<double>(load[i]);
    if (l > (1 + band) * mean) bias[i] = static_cast<float>(bias[i] - gamma);
    else if (l < (1 - band) * mean) bias[i] = static_cast<float>(bias[i] + gamma);
  }
}

double sequence_balance_loss(const std::vector<float>& scores, const std::vector<int32_t>& indices, int64_t experts,
                             int64_t k, double alpha) {
  if (k < 1 || experts < 1 || indices.size() % static_cast<std::size_t>(k) != 0)
    throw std::invalid_argument("moe balance loss: " + std::to_string(indices.size()) + " indices are not rows of k = " +
                                std::to_string(k) + " (experts " + std::to_string(experts) + ")");
  const auto tokens = static_cast<int64_t>(indices.size()) / k;
  if (tokens == 0 || static_cast<int64_t>(scores.size()) != tokens * experts)
    throw std::invalid_argument("moe balance loss: scores must be [T, E] for the T tokens of indices");
  std::vector<double> f(static_cast<std::size_t>(experts), 0.0), p(static_cast<std::size_t>(experts), 0.0);
  for (std::size_t q = 0; q < indices.size(); ++q) {
    const int32_t e = indices[q];
    if (e < 0 || e >= experts)
      throw std::invalid_argument("moe balance loss: token " + std::to_string(static_cast<int64_t>(q) / k) + " routes to expert " +
                                  std::to_string(e) + ", outside [0, " + std::to_string(experts) + ")");
    f[static_cast<std::size_t>(e)] += static_cast<double>(experts) / static_cast<double>(k * tokens);
  }
  for (int64_t t = 0; t < tokens; ++t) {
    double sum = 0;
    for (int64_t i = 0; i < experts; ++i) sum += scores[static_cast<std::size_t>(t * experts + i)];
    for (int64_t i = 0; i < experts; ++i) p[static_cast<std::size_t>(i)] += scores[static_cast<std::size_t>(t * experts + i)] / sum / static_cast<double>(tokens);
  }
  double loss = 0;
  for (int64_t i = 0; i < experts; ++i) loss += f[static_cast<std::size_t>(i)] * p[static_cast<std::size_t>(i)];
  return alpha * loss;
}

}  // namespace dsv3::moe_gate
