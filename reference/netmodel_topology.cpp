// Topology counts and cost (ISCA Table 3); formulas, sources and the price fit in netmodel_topology.hpp.
#include "reference/netmodel_topology.hpp"

#include <cmath>
#include <stdexcept>

namespace dsv3::netmodel {
namespace {

// a * b, or std::invalid_argument naming `what` when it overflows int64.
int64_t mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw std::invalid_argument(what + ": count overflows int64");
  return r;
}

void check_radix(int64_t radix) {
  if (radix < 2 || radix % 2 != 0)
    throw std::invalid_argument("radix must be even and >= 2 (half the ports down, half up), got " +
                                std::to_string(radix));
}

void check_planes(int64_t planes) {
  if (planes < 1) throw std::invalid_argument("planes must be positive, got " + std::to_string(planes));
}

// ISCA Table 3 (ISCA §5.1; v3-facts §7.4), as printed.
const std::vector<IscaTable3Row> kTable3{
    {"FT2", 2048, 96, 2048, 9, 4.39},
    {"MPFT", 16384, 768, 16384, 72, 4.39},
    {"FT3", 65536, 5120, 131072, 491, 7.5},
    {"SF", 32928, 1568, 32928, 146, 4.4},
    {"DF", 261632, 16352, 384272, 1522, 5.8},
};

const IscaTable3Row& table3(const std::string& id) {
  for (const auto& r : kTable3)
    if (r.id == id) return r;
  throw std::logic_error("no ISCA Table 3 column " + id);
}

}  // namespace

const std::vector<IscaTable3Row>& isca_table3() { return kTable3; }

TopologyCounts fat_tree_2(int64_t radix) {
  check_radix(radix);
  const int64_t half = radix / 2;
  // radix leaves with k/2 endpoints and k/2 uplinks each; k/2 spines with one link to every leaf.
  return {"FT2", "two-layer fat-tree", radix, 1, mul(radix, half, "FT2 endpoints"), radix + half,
          mul(radix, half, "FT2 links"), false};
}

TopologyCounts multi_plane_fat_tree(int64_t radix, int64_t planes) {
  check_planes(planes);
  const TopologyCounts p = fat_tree_2(radix);  // one plane
  return {"MPFT", "multi-plane fat-tree (" + std::to_string(planes) + " x FT2)", radix, planes,
          mul(planes, p.endpoints, "MPFT endpoints"), mul(planes, p.switches, "MPFT switches"),
          mul(planes, p.links, "MPFT links"), false};
}

TopologyCounts fat_tree_3(int64_t radix) {
  check_radix(radix);
  const int64_t half = radix / 2;
  const int64_t pod_switches = mul(radix, radix, "FT3 switches");  // k pods x (k/2 edge + k/2 agg)
  const int64_t cores = mul(half, half, "FT3 switches");
  const int64_t endpoints = mul(mul(radix, half, "FT3 endpoints"), half, "FT3 endpoints");  // k^3/4
  // Every edge switch has k/2 links up, every aggregation switch k/2 links up: k^3/4 each.
  return {"FT3", "three-layer fat-tree", radix, 1, endpoints, pod_switches + cores,
          mul(endpoints, 2, "FT3 links"), false};
}

TopologyCounts slim_fly_isca() {
  const auto& r = table3("SF");
  return {"SF", "Slim Fly (ISCA Table 3's counts)", 0, 1, r.endpoints, r.switches, r.links, true};
}

TopologyCounts dragonfly_isca() {
  const auto& r = table3("DF");
  return {"DF", "Dragonfly (ISCA Table 3's counts)", 0, 1, r.endpoints, r.switches, r.links, true};
}

void PriceModel::validate() const {
  if (!(switch_usd >= 0) || !std::isfinite(switch_usd))
    throw std::invalid_argument("switch_usd (price per switch) must be >= 0 and finite, got " +
                                nlohmann::json(switch_usd).dump());
  if (!(link_usd >= 0) || !std::isfinite(link_usd))
    throw std::invalid_argument("link_usd (price per link) must be >= 0 and finite, got " +
                                nlohmann::json(link_usd).dump());
}

PriceModel isca_table3_price_fit() {
  // Two equations, two unknowns (Cramer's rule): S_i * switch + L_i * link = C_i for
  // FT2 (C = 4.39 k$/endpoint * 2,048: "Cost/Endpoint" has 3 significant digits, "Cost" only 1) and
  // FT3 (C = 491 M$: 3 significant digits, "Cost/Endpoint" 7.5 only 2).
  const auto& a = table3("FT2");
  const auto& b = table3("FT3");
  const double sa = static_cast<double>(a.switches), la = static_cast<double>(a.links);
  const double sb = static_cast<double>(b.switches), lb = static_cast<double>(b.links);
  const double ca = a.cost_per_endpoint_kusd * 1e3 * static_cast<double>(a.endpoints);  // 8,990,720 $
  const double cb = b.cost_musd * 1e6;                                                 // 491,000,000 $
  const double det = sa * lb - sb * la;  // 2,097,152
  PriceModel p;
  p.switch_usd = (ca * lb - cb * la) / det;  // ~82,427 $
  p.link_usd = (sa * cb - sb * ca) / det;    // ~526 $
  p.source =
      "fit to ISCA Table 3: solved from FT2's 4.39 k$/endpoint and FT3's 491 M$ (the paper states no "
      "prices; it follows the Slim Fly paper's cost methodology)";
  return p;
}

TopologyCost topology_cost(const TopologyCounts& t, const PriceModel& p) {
  p.validate();
  TopologyCost c;
  c.counts = t;
  c.cost_usd = static_cast<double>(t.switches) * p.switch_usd + static_cast<double>(t.links) * p.link_usd;
  c.cost_per_endpoint_usd = c.cost_usd / static_cast<double>(t.endpoints);
  for (const auto& r : kTable3)
    if (r.id == t.id && r.endpoints == t.endpoints && r.switches == t.switches && r.links == t.links) c.paper = r;
  return c;
}

std::vector<TopologyCost> topology_table(int64_t radix, int64_t planes, const PriceModel& p) {
  std::vector<TopologyCost> out;
  for (const TopologyCounts& t : {fat_tree_2(radix), multi_plane_fat_tree(radix, planes), fat_tree_3(radix),
                                  slim_fly_isca(), dragonfly_isca()})
    out.push_back(topology_cost(t, p));
  return out;
}

nlohmann::json topology_rows(const std::vector<TopologyCost>& rows, const PriceModel& p) {
  nlohmann::json out = nlohmann::json::array();
  for (const TopologyCost& c : rows) {
    const TopologyCounts& t = c.counts;
    nlohmann::json row{{"topology", t.id},
                       {"name", t.name},
                       {"counts_from", t.from_paper ? "isca_table3" : "formula"},
                       {"radix", t.from_paper ? nlohmann::json(nullptr) : nlohmann::json(t.radix)},
                       {"planes", t.planes},
                       {"endpoints", t.endpoints},
                       {"switches", t.switches},
                       {"links", t.links},
                       {"switch_usd", p.switch_usd},
                       {"link_usd", p.link_usd},
                       {"price_source", p.source},
                       {"cost_usd", c.cost_usd},
                       {"cost_per_endpoint_usd", c.cost_per_endpoint_usd}};
    if (c.paper)
      row["paper"] = {{"endpoints", c.paper->endpoints},
                      {"switches", c.paper->switches},
                      {"links", c.paper->links},
                      {"cost_musd", c.paper->cost_musd},
                      {"cost_per_endpoint_kusd", c.paper->cost_per_endpoint_kusd}};
    else
      row["paper"] = nullptr;
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace dsv3::netmodel
