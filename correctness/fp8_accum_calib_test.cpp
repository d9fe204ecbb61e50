// CPU tests of the FP8 accumulation calibration (reference/fp8_accum_calib.hpp): the sanity
// probes really are exact in every candidate model, the probe set tells the textbook candidates
// apart, and the verdict logic names the right model when the "hardware" is a model.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "reference/fp8_accum_calib.hpp"

namespace dsv3::fp8accum {
namespace {

// Simulated hardware: every one of `regs` accumulators holds the model's prediction.
InstrRun simulate(const std::vector<Probe>& probes, const Model& m, int regs = 4 * 128) {
  InstrRun run{"sim", 0, "", {}};
  for (const Probe& p : probes) run.values.push_back(std::vector<float>(static_cast<std::size_t>(regs), predict(p, m)));
  return run;
}

TEST(Fp8AccumCalib, ProbeIdsAreUniqueAndStepsFull) {
  std::set<std::string> ids;
  for (const Probe& p : make_probes()) {
    EXPECT_TRUE(ids.insert(p.id).second) << p.id;
    EXPECT_GE(p.steps(), 1) << p.id;
    EXPECT_EQ(p.a_codes.size(), static_cast<std::size_t>(p.steps() * kProbeK)) << p.id;
  }
  EXPECT_GE(ids.size(), 80u);
}

TEST(Fp8AccumCalib, SanityProbesAreExactInEveryCandidate) {
  for (const Probe& p : make_probes()) {
    if (!p.sanity) continue;
    const double exact = exact_value(p);
    for (const Model& m : candidate_models()) EXPECT_EQ(static_cast<double>(predict(p, m)), exact) << p.id << " " << m.to_string();
  }
}

// The one-hot probe at position 5 sums to exactly 1.0 (c = 0, b = 1).
TEST(Fp8AccumCalib, OneHotProbeValue) {
  int found = 0;
  for (const Probe& p : make_probes()) {
    if (p.id != "sanity_onehot_5") continue;
    ++found;
    EXPECT_EQ(exact_value(p), 1.0);
  }
  EXPECT_EQ(found, 1);
}

// The V3 report model (f13 trunc accin) is identified up to its write-back rounding, which it
// never exercises: with the accumulator in the alignment a step's exact sum has at most
// 13 + 1 + 6 = 20 significant bits, so writing it back to FP32 never rounds.
TEST(Fp8AccumCalib, V3ModelIsIdentifiedUniquely) {
  const std::vector<Probe> probes = make_probes();
  std::ostringstream log;
  const nlohmann::json rows = analyse(probes, {simulate(probes, v3_report_model(0))}, log);
  const nlohmann::json& verdict = rows.back();
  EXPECT_EQ(verdict["verdict"], "match") << log.str();
  std::vector<std::string> matching = verdict["matching_models"];
  ASSERT_FALSE(matching.empty());
  EXPECT_EQ(matching, (std::vector<std::string>{"c32 f13 trunc accin wb=trunc nc=never",
                                               "c32 f13 trunc accin wb=rne nc=never"})) << log.str();
}

// How well the probes separate the candidates: models whose predictions agree on every probe form
// one class. Parameters a model never exercises (write-back when the chunk sum always fits FP32,
// flush when no result is subnormal, floor vs trunc without negative inexact members) merge
// classes, and so does a frac_bits beyond what one probe's span can show: B is one value per probe
// (the layout-robust design), so products span at most E4M3's 2^-9..448 (~18 binades) and models
// with frac_bits >= 17 merge, except where the accumulator takes part in the alignment (bigc_e,
// clow_g). Printed: the number of classes; asserted: for frac_bits <= 16 (the range of the V3
// claim), trunc/floor/rne x accin/accout x chunk x exponent source are all separated (write-back
// rne, no flush), and more than a quarter of all candidates are told apart.
TEST(Fp8AccumCalib, ProbesSeparateTheCandidates) {
  const std::vector<Probe> probes = make_probes();
  std::map<std::vector<uint32_t>, std::vector<std::string>> classes;
  std::set<std::vector<uint32_t>> core;
  int core_models = 0;
  for (const Model& m : candidate_models()) {
    std::vector<uint32_t> key;
    for (const Probe& p : probes) {
      const float v = predict(p, m);
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      key.push_back(bits);
    }
    classes[key].push_back(m.to_string());
    if (m.writeback == Rounding::nearest_even && !m.flush_subnormals &&
        m.frac_bits <= 16) {
      ++core_models;
      core.insert(key);
    }
  }
  std::cout << classes.size() << " classes of " << candidate_models().size() << " candidates; core "
            << core.size() << " of " << core_models << "\n";
  EXPECT_EQ(static_cast<int>(core.size()), core_models);
  EXPECT_GT(classes.size(), candidate_models().size() / 4);
}

TEST(Fp8AccumCalib, BrokenLayoutIsReported) {
  const std::vector<Probe> probes = make_probes();
  InstrRun run = simulate(probes, v3_report_model(0));
  run.values[3][7] = 2.0f;  // one accumulator of sanity_onehot_3 disagrees
  std::ostringstream log;
  const RunCheck rc = check_run(probes, run);
  EXPECT_FALSE(rc.layout_ok);
  EXPECT_TRUE(rc.sanity_ok);
  for (auto& v : run.values[3]) v = 2.0f;  // all agree but the sum is wrong (a duplicated K position)
  const RunCheck rc2 = check_run(probes, run);
  EXPECT_TRUE(rc2.layout_ok);
  EXPECT_FALSE(rc2.sanity_ok);
  EXPECT_EQ(analyse(probes, {run}, log).back()["verdict"], "probe broken");
}

}  // namespace
}  // namespace dsv3::fp8accum
