// Tests of the topology calculator (reference/netmodel_topology.hpp) against ISCA Table 3 (v3-facts
// §7.4): FT2, MPFT and FT3 counts exactly from radix 64 and 8 planes; costs with the fitted prices to
// the table's printed rounding; SF and DF (counts as given) as an out-of-sample check of the fit;
// bad radix, planes and prices rejected with the field named.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <stdexcept>

#include "reference/netmodel_topology.hpp"

namespace {

using namespace dsv3::netmodel;

const TopologyCost& row(const std::vector<TopologyCost>& t, const std::string& id) {
  for (const auto& c : t)
    if (c.counts.id == id) return c;
  throw std::runtime_error("no row " + id);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(NetmodelTopology, CountsReproduceIscaTable3) {
  const auto ft2 = fat_tree_2(64), mpft = multi_plane_fat_tree(64, 8), ft3 = fat_tree_3(64);
  EXPECT_EQ(ft2.endpoints, 2048);  // k^2/2
  EXPECT_EQ(ft2.switches, 96);     // 3k/2
  EXPECT_EQ(ft2.links, 2048);      // k^2/2
  EXPECT_EQ(mpft.endpoints, 16384);
  EXPECT_EQ(mpft.switches, 768);
  EXPECT_EQ(mpft.links, 16384);
  EXPECT_EQ(ft3.endpoints, 65536);  // k^3/4
  EXPECT_EQ(ft3.switches, 5120);    // 5k^2/4
  EXPECT_EQ(ft3.links, 131072);     // k^3/2
  for (const auto& t : {ft2, mpft, ft3}) {
    const auto& p = [&] {
      for (const auto& r : isca_table3())
        if (r.id == t.id) return r;
      throw std::runtime_error(t.id);
    }();
    EXPECT_EQ(t.endpoints, p.endpoints) << t.id;
    EXPECT_EQ(t.switches, p.switches) << t.id;
    EXPECT_EQ(t.links, p.links) << t.id;
  }
  // "Up to 16,384 GPUs" in two layers with 64-port switches and 8 planes (ISCA §5.1, v3-facts §7.4).
  EXPECT_EQ(mpft.endpoints, 16384);
  EXPECT_TRUE(slim_fly_isca().from_paper);
  EXPECT_EQ(dragonfly_isca().links, 384272);
}

TEST(NetmodelTopology, SmallRadixCountsByHand) {
  // k = 4: FT2 = 4 leaves x 2 endpoints, 2 spines, 8 links; FT3 = the classic k = 4 fat-tree:
  // 16 hosts, 20 switches, 32 links.
  EXPECT_EQ(fat_tree_2(4).endpoints, 8);
  EXPECT_EQ(fat_tree_2(4).switches, 6);
  EXPECT_EQ(fat_tree_2(4).links, 8);
  EXPECT_EQ(fat_tree_3(4).endpoints, 16);
  EXPECT_EQ(fat_tree_3(4).switches, 20);
  EXPECT_EQ(fat_tree_3(4).links, 32);
  EXPECT_EQ(multi_plane_fat_tree(4, 3).switches, 18);
}

TEST(NetmodelTopology, PriceFitSolvesItsTwoEquations) {
  const PriceModel p = isca_table3_price_fit();
  EXPECT_NEAR(96 * p.switch_usd + 2048 * p.link_usd, 4390.0 * 2048, 1e-3);   // FT2: 4.39 k$/endpoint
  EXPECT_NEAR(5120 * p.switch_usd + 131072 * p.link_usd, 491e6, 1e-2);       // FT3: 491 M$
  EXPECT_NEAR(p.switch_usd, 82427.8125, 1e-6);  // (8,990,720 * 131072 - 491e6 * 2048) / 2,097,152
  EXPECT_NEAR(p.link_usd, 526.1962890625, 1e-6);      // (96 * 491e6 - 5120 * 8,990,720) / 2,097,152
}

TEST(NetmodelTopology, FittedCostsReproduceTable3Rounding) {
  const auto t = topology_table();
  // Printed "Cost [M$]" is rounded to whole M$ (+-0.5 M$); "Cost/Endpoint [k$]" to 2 decimals for
  // FT2/MPFT (+-0.005 k$) and 1 decimal for FT3 (+-0.05 k$).
  EXPECT_NEAR(row(t, "FT2").cost_usd / 1e6, 9, 0.5);
  EXPECT_NEAR(row(t, "FT2").cost_per_endpoint_usd / 1e3, 4.39, 0.005);
  EXPECT_NEAR(row(t, "MPFT").cost_usd / 1e6, 72, 0.5);
  EXPECT_NEAR(row(t, "MPFT").cost_per_endpoint_usd / 1e3, 4.39, 0.005);
  EXPECT_NEAR(row(t, "FT3").cost_usd / 1e6, 491, 0.5);
  EXPECT_NEAR(row(t, "FT3").cost_per_endpoint_usd / 1e3, 7.5, 0.05);
  for (const char* id : {"FT2", "MPFT", "FT3", "SF", "DF"}) EXPECT_TRUE(row(t, id).paper.has_value()) << id;
}

TEST(NetmodelTopology, SlimFlyAndDragonflyAreAnOutOfSampleCheckOfTheFit) {
  // Not fitted: priced with the same two prices from the paper's counts. The paper's Slim Fly
  // methodology prices cables by type and length (and switches by radix), which one per-link and one
  // per-switch price cannot express, so these agree only to the fit's accuracy: SF 146.57 vs 146 M$
  // (+0.4 %), DF 1550.1 vs 1522 M$ (+1.8 %). The bound is 2 %, not the printed rounding.
  const auto t = topology_table();
  EXPECT_NEAR(row(t, "SF").cost_usd / 146e6, 1.0, 0.02);
  EXPECT_NEAR(row(t, "DF").cost_usd / 1522e6, 1.0, 0.02);
  EXPECT_NEAR(row(t, "SF").cost_usd / 146e6, 1.004, 0.001);  // the residuals themselves, as documented
  EXPECT_NEAR(row(t, "DF").cost_usd / 1522e6, 1.018, 0.001);
}

TEST(NetmodelTopology, OtherRadixAndPlanesHaveNoPaperColumn) {
  const auto t = topology_table(32, 4);
  EXPECT_EQ(row(t, "MPFT").counts.endpoints, 4 * 512);
  EXPECT_FALSE(row(t, "FT2").paper.has_value());
  EXPECT_TRUE(row(t, "SF").paper.has_value());  // SF/DF are always the paper's
  const nlohmann::json rows = topology_rows(t, isca_table3_price_fit());
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].at("counts_from"), "formula");
  EXPECT_EQ(rows[3].at("counts_from"), "isca_table3");
  EXPECT_TRUE(rows[0].at("paper").is_null());
  EXPECT_TRUE(rows[3].at("radix").is_null());
}

TEST(NetmodelTopology, BadInputIsAnErrorNamingTheField) {
  EXPECT_EQ(error_of([] { (void)fat_tree_2(63); }),
            "radix must be even and >= 2 (half the ports down, half up), got 63");
  EXPECT_NE(error_of([] { (void)fat_tree_3(0); }).find("radix must be even and >= 2"), std::string::npos);
  EXPECT_NE(error_of([] { (void)fat_tree_2(-4); }).find("got -4"), std::string::npos);
  EXPECT_EQ(error_of([] { (void)multi_plane_fat_tree(64, 0); }), "planes must be positive, got 0");
  EXPECT_NE(error_of([] { (void)fat_tree_3(int64_t{1} << 40); }).find("count overflows int64"),
            std::string::npos);
  PriceModel p{-1, 500, "given"};
  EXPECT_NE(error_of([&] { (void)topology_cost(fat_tree_2(64), p); }).find("switch_usd"), std::string::npos);
  p = {1000, std::numeric_limits<double>::quiet_NaN(), "given"};
  EXPECT_NE(error_of([&] { (void)topology_cost(fat_tree_2(64), p); }).find("link_usd"), std::string::npos);
}

}  // namespace
