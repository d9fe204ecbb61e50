// CPU tests of the FP8 accumulation calibration (reference/fp8_accum_calib.hpp): the sanity
// probes really are exact in every candidate model, the probe set tells the textbook candidates
// apart, and the verdict logic names the right model when the "hardware" is a model.
#include <gtest/gtest.h>

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

TEST(Fp8AccumCalib, EachCandidateIsRecoveredFromItsOwnPredictions) {
  const std::vector<Probe> probes = make_probes();
  int ambiguous = 0;
  const std::vector<Model> cands = candidate_models();
  for (std::size_t i = 0; i < cands.size(); i += 97) {  // a sample: each analyse() predicts all 1440
    const Model& m = cands[i];
    std::ostringstream log;
    const nlohmann::json rows = analyse(probes, {simulate(probes, m, 4)}, log);
    std::vector<std::string> matching = rows.back()["matching_models"];
    EXPECT_NE(std::find(matching.begin(), matching.end(), m.to_string()), matching.end()) << m.to_string();
    ambiguous += matching.size() > 1;
  }
  // Recorded, not required: candidates indistinguishable by the probes (e.g. floor vs truncate
  // when no aligned value is negative and inexact) are reported together by the verdict.
  RecordProperty("ambiguous_candidates", ambiguous);
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
