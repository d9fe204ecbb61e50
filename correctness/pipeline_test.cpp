// Property tests of the pipeline simulator (reference/pipeline.hpp): invariants on every schedule
// (dependencies with their latency, F before B before W per stage, one chunk at a time per rank),
// V3-TR Table 2's formulas (v3-facts §6) over PP in {4, 8, 16} and several micro-batch counts,
// where and why they do not hold, the ZB-H1 memory property, DualPipe's phase counts, and bad
// input naming its field. The registry adds the per-case ref-vs-table2 comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "reference/pipeline.hpp"

namespace {

using namespace dsv3::pipeline;

Params params(ScheduleKind k, int64_t pp, int64_t m, ChunkTimes t = {}) {
  Params p;
  p.schedule = k;
  p.pp = pp;
  p.micro_batches = m;
  p.times = t;
  return p;
}

struct Sim {
  Schedule s;
  SimResult r;
};
Sim run(const Params& p) {
  Schedule s = make_schedule(p);
  SimResult r = simulate(s);
  return {std::move(s), std::move(r)};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// Micro-batch counts per schedule: the fewest allowed, ragged ones, many.
std::vector<int64_t> counts(ScheduleKind k, int64_t pp) {
  if (k == ScheduleKind::dualpipe) return {2 * pp, 2 * pp + 2, 3 * pp, 4 * pp + 6};
  return {pp, pp + 1, 2 * pp + 3, 4 * pp};
}

TEST(PipelineSim, InvariantsHoldForEverySchedule) {
  const std::vector<ChunkTimes> times = {{}, {2, 3, 1, 4, 0}, {1, 2, 0.5, 2.5, 0.3}, {1, 1.5, 1, 2, 0}, {0.7, 2, 1.9, 2.1, 1}};
  for (ScheduleKind k : all_schedules())
    for (int64_t pp : {2, 4, 6, 8, 16})
      for (int64_t m : counts(k, pp))
        for (const ChunkTimes& t : times) {
          const Sim x = run(params(k, pp, m, t));
          const auto bad = check_invariants(x.s, x.r);
          EXPECT_TRUE(bad.empty()) << x.s.params.to_string() << ": " << (bad.empty() ? "" : bad.front());
        }
}

TEST(PipelineSim, InvariantCheckCatchesABrokenRun) {
  Sim x = run(params(ScheduleKind::one_f_one_b, 4, 8));
  ASSERT_TRUE(check_invariants(x.s, x.r).empty());
  SimResult early = x.r;  // a backward moved before its forward ends
  for (Event& e : early.events)
    if (e.chunk.kind == Kind::B && e.rank == 3) {
      e.start -= 0.5;
      e.end -= 0.5;
      break;
    }
  EXPECT_FALSE(check_invariants(x.s, early).empty());
  SimResult missing = x.r;
  missing.events.pop_back();
  EXPECT_FALSE(check_invariants(x.s, missing).empty());
}

TEST(PipelineSim, ChunkCountsPerRank) {
  // Every (dir, mb, stage) gets one forward and one backward; ZB1P and DualPipe split some.
  for (ScheduleKind k : all_schedules()) {
    const Sim x = run(params(k, 8, k == ScheduleKind::dualpipe ? 20 : 10));
    size_t fwd = 0, bwd = 0, w = 0, bi = 0;
    for (const auto& list : x.s.per_rank)
      for (const Chunk& c : list) {
        fwd += c.kind == Kind::F || c.kind == Kind::FB;
        bwd += c.kind == Kind::B || c.kind == Kind::Bi || c.kind == Kind::FB;
        w += c.kind == Kind::W;
        bi += c.kind == Kind::Bi;
      }
    const size_t work = static_cast<size_t>(x.s.dirs * x.s.mb_per_dir * x.s.stages);
    EXPECT_EQ(fwd, work) << schedule_name(k);
    EXPECT_EQ(bwd, work) << schedule_name(k);
    EXPECT_EQ(w, bi) << schedule_name(k);
    EXPECT_EQ(w == 0, k == ScheduleKind::one_f_one_b) << schedule_name(k);
  }
}

// Table 2 with the default chunk times (F 1, B 2, W 1, F&B 3): every formula holds exactly on
// every rank, for PP 4, 8, 16 and every micro-batch count tried; activations are the largest
// rank's (1F1B/ZB1P: rank 0, rank r holds min(PP - r, m)); parameters per device 1x / 2x.
TEST(PipelineTable2, DefaultTimesEveryRankExact) {
  for (ScheduleKind k : all_schedules())
    for (int64_t pp : {4, 8, 16})
      for (int64_t m : counts(k, pp)) {
        const Params p = params(k, pp, m);
        const Sim x = run(p);
        const Table2 f = table2(p);
        const std::string at = p.to_string();
        ASSERT_EQ(x.r.ranks.size(), static_cast<size_t>(f.devices)) << at;
        for (size_t r = 0; r < x.r.ranks.size(); ++r) {
          EXPECT_EQ(x.r.ranks[r].bubble, f.bubble) << at << " rank " << r;
          const bool dual = k == ScheduleKind::dualpipe || k == ScheduleKind::dualpipev;
          const int want = dual ? f.activations : static_cast<int>(std::min<int64_t>(pp - static_cast<int64_t>(r), m));
          EXPECT_EQ(x.r.ranks[r].peak_activations, want) << at << " rank " << r;
        }
        if (m >= pp) {
          EXPECT_EQ(x.r.max_peak_activations(), f.activations) << at;
        }
        EXPECT_EQ(x.s.params_per_device, f.params_per_device) << at;
      }
}

// The regimes where the formulas hold (found with this simulator over F, B, W grids; the
// component's table2 variant uses the same conditions):
// ZB1P: m >= PP and W <= min(F, B - W), any F&B (unused). DualPipe/V: F = B - W and W <= F (the
// derivation's equal forward and input-grad chunks); then the largest rank bubble is the formula
// for any F&B in [max(F, B), F + B], every rank's only when F&B = F + B (with an overlap gain the
// formula is the centre ranks' bubble; the edge ranks run more separate F and B chunks, so in the
// same makespan they are busy longer and their bubble is smaller).
TEST(PipelineTable2, Zb1pRegimeEveryRankExact) {
  for (double f : {0.5, 1.0, 2.0, 3.0})
    for (double bi : {0.5, 1.0, 1.5, 3.0})
      for (double w : {0.0, 0.25, 0.5, 1.0, 2.0, 3.0}) {
        if (w > std::min(f, bi)) continue;
        for (int64_t pp : {4, 8, 16})
          for (int64_t m : {pp, pp + 3, 3 * pp}) {
            const Params p = params(ScheduleKind::zb1p, pp, m, ChunkTimes{f, bi + w, w, f + bi + w, 0});
            const double want = table2(p).bubble;
            for (const auto& st : run(p).r.ranks) EXPECT_NEAR(st.bubble, want, 1e-9) << p.to_string();
          }
      }
}

TEST(PipelineTable2, DualPipeRegimeLargestRankExact) {
  for (double f : {0.5, 1.0, 2.0, 3.0})
    for (double w : {0.0, 0.25, 0.5, 1.0, 2.0, 3.0}) {
      if (w > f) continue;
      const double b = f + w;
      for (double fb : {std::max(f, b), (std::max(f, b) + f + b) / 2, f + b})
        for (ScheduleKind k : {ScheduleKind::dualpipe, ScheduleKind::dualpipev})
          for (int64_t pp : {4, 8, 16}) {
            const Params p = params(k, pp, k == ScheduleKind::dualpipe ? 2 * pp + 4 : pp + 3, ChunkTimes{f, b, w, fb, 0});
            const Sim x = run(p);
            const double want = table2(p).bubble;
            EXPECT_NEAR(x.r.max_bubble(), want, 1e-9) << p.to_string();
            if (fb == f + b) {
              for (const auto& st : x.r.ranks) EXPECT_NEAR(st.bubble, want, 1e-9) << p.to_string();
            }
          }
    }
}

// Where the formulas do not hold, and why (docs/pipeline.md, "Where Table 2 does not hold").
TEST(PipelineTable2, DocumentedDifferences) {
  // ZB1P with W > B - W: the last rank idles (PP-1)F before its first forward, so no schedule has
  // a bubble below (PP-1)F; (PP-1)(F+B-2W) = 0 here while the simulator gives (PP-1)F = 7.
  {
    const Params p = params(ScheduleKind::zb1p, 8, 24, ChunkTimes{1, 2, 1.5, 3, 0});
    EXPECT_EQ(table2(p).bubble, 0.0);
    EXPECT_EQ(run(p).r.max_bubble(), 7.0);
  }
  // DualPipe with F != B - W (F 1, B 2, W 0.5): the formula gives 3 x 3.5 = 10.5, the phases give
  // 9.5 (B - W > F: less); with F 1, B 1.5, W 1, F&B 2.5 (B - W < F) 3 x 1 = 3 against 6: the
  // warm-up and cool-down waits are made of F and B - W chunks, and the formula counts them as equal.
  {
    const Params p = params(ScheduleKind::dualpipe, 8, 24, ChunkTimes{1, 2, 0.5, 3, 0});
    EXPECT_EQ(table2(p).bubble, 10.5);
    EXPECT_EQ(run(p).r.max_bubble(), 9.5);
  }
  // A P2P latency L (Table 2 has none): the first forward's chain to the last rank and the last
  // backward's chain back each cross PP-1 links, so 1F1B and ZB1P lose at least 2 (PP-1) L; 1F1B
  // loses more as m grows (its steady state waits for every round trip), ZB1P's W's absorb it.
  for (int64_t pp : {4, 8, 16}) {
    for (ScheduleKind k : {ScheduleKind::one_f_one_b, ScheduleKind::zb1p}) {
      const Params p = params(k, pp, 3 * pp, ChunkTimes{1, 2, 1, 3, 0.25});
      for (const auto& st : run(p).r.ranks) EXPECT_GE(st.bubble, table2(p).bubble + 2 * (pp - 1) * 0.25) << pp;
    }
    const double zb = run(params(ScheduleKind::zb1p, pp, 3 * pp, ChunkTimes{1, 2, 1, 3, 0.25})).r.max_bubble();
    EXPECT_EQ(zb, run(params(ScheduleKind::zb1p, pp, 5 * pp, ChunkTimes{1, 2, 1, 3, 0.25})).r.max_bubble()) << pp;
  }
}

// ZB-H1 keeps 1F1B's memory (Qi et al. §2.1: every stage has the same number of micro-batches in
// flight): counting a split micro-batch until its W, every rank holds exactly PP.
TEST(PipelineSim, Zb1pEveryRankHoldsPPUntilW) {
  for (int64_t pp : {4, 8, 16}) {
    const Sim x = run(params(ScheduleKind::zb1p, pp, 3 * pp));
    for (const auto& st : x.r.ranks) EXPECT_EQ(st.peak_until_w, pp) << pp;
  }
}

// DualPipe's phase counts on rank r (dualpipe.py, v3-facts §6): 2(n-h-1) + (h+1) forwards of
// phase 0 before the first backward; 2 x (m/2 - PP + h + 1) + (n-h-1) F&B chunks, less one on
// the two centre ranks (their first F0 and B1 are not overlapped); h + 1 trailing W's.
TEST(PipelineSim, DualPipePhaseCounts) {
  const int64_t pp = 8, m = 20, n = pp / 2;
  const Schedule s = make_schedule(params(ScheduleKind::dualpipe, pp, m));
  for (int64_t r = 0; r < pp; ++r) {
    const int64_t h = std::min(r, pp - 1 - r);
    const auto& list = s.per_rank[static_cast<size_t>(r)];
    int64_t lead_f = 0, fb = 0, trailing_w = 0;
    for (const Chunk& c : list) {
      if (c.kind != Kind::F) break;
      ++lead_f;
    }
    for (const Chunk& c : list) fb += c.kind == Kind::FB;
    for (auto it = list.rbegin(); it != list.rend() && it->kind == Kind::W; ++it) ++trailing_w;
    // phase 1, the F0 F1 pairs; the centre ranks' phase 4 starts with a lone F0 (no phase 3)
    EXPECT_EQ(lead_f, 2 * (n - h - 1) + 2 * (h + 1) + (h == n - 1 ? 1 : 0)) << r;
    EXPECT_EQ(fb, 2 * (m / 2 - pp + h + 1) + (n - h - 1) - (h == n - 1 ? 1 : 0)) << r;
    EXPECT_EQ(trailing_w, h + 1) << r;
  }
}

// DualPipeV is the cut-in-half DualPipe (DualPipe README): same stages, half the devices, the same
// bubble and activations; each device holds two distinct stages (no parameter held twice), where
// DualPipe's holds one stage of each of two model copies.
TEST(PipelineSim, DualPipeVMatchesDualPipe) {
  for (int64_t pp : {4, 8, 16}) {
    const Sim d = run(params(ScheduleKind::dualpipe, pp, 2 * pp));
    const Sim v = run(params(ScheduleKind::dualpipev, pp, 2 * pp));
    EXPECT_EQ(v.s.ranks, pp / 2);
    EXPECT_EQ(d.r.max_bubble(), v.r.max_bubble());
    EXPECT_EQ(d.r.max_peak_activations(), v.r.max_peak_activations());
    EXPECT_EQ(d.s.param_copies, 2);
    EXPECT_EQ(v.s.param_copies, 1);
    EXPECT_EQ(v.s.params_per_device, 2);
  }
}

TEST(PipelineSim, TimelineRows) {
  const Sim x = run(params(ScheduleKind::dualpipe, 4, 8));
  const auto rows = timeline_rows(x.s, x.r);
  ASSERT_EQ(rows.size(), x.r.events.size());
  bool saw_fb = false;
  for (const auto& r : rows) {
    for (const char* k : {"schedule", "rank", "start", "end", "kind", "mb", "dir", "stage"}) EXPECT_TRUE(r.contains(k)) << k;
    if (r["kind"] == "F&B") {
      saw_fb = true;
      EXPECT_TRUE(r.contains("mb_b") && r.contains("dir_b") && r.contains("stage_b"));
    }
  }
  EXPECT_TRUE(saw_fb);
  const auto sum = summary_row(x.s, x.r);
  EXPECT_EQ(sum["table2_formula"], "(PP/2-1)(F&B+B-3W)");
  EXPECT_EQ(sum["bubble_max"], sum["table2_bubble"]);
}

TEST(PipelineParams, BadInputNamesTheField) {
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::dualpipe, 7, 28)); }).find("pp must be even"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::dualpipev, 5, 10)); }).find("pp must be even"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::dualpipe, 8, 14)); }).find("micro_batches"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::dualpipe, 8, 17 + 4)); }).find("micro_batches must be even"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::dualpipev, 8, 7)); }).find("micro_batches must be >= pp"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::one_f_one_b, 1, 4)); }).find("pp must be"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::zb1p, 4, 0)); }).find("micro_batches"), std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::zb1p, 4, 8, ChunkTimes{1, 2, 2, 3, 0})); }).find("'w'"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::zb1p, 4, 8, ChunkTimes{-1, 2, 1, 3, 0})); }).find("'f'"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::zb1p, 4, 8, ChunkTimes{1, 2, 1, NAN, 0})); }).find("'fb'"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(params(ScheduleKind::zb1p, 4, 8, ChunkTimes{1, 2, 1, 3, -1})); }).find("'latency'"),
            std::string::npos);
  EXPECT_NE(error_of([] { schedule_from_name("gpipe"); }).find("schedule"), std::string::npos);
  // Odd PP is fine for the single-copy schedules.
  EXPECT_EQ(run(params(ScheduleKind::one_f_one_b, 7, 9)).r.max_bubble(), 6 * 3.0);
}

}  // namespace

namespace {

// The bundle studies (docs/bundle-schema.md): the timeline runs and the Table 2 rows agree.
TEST(PipelineStudy, TimelineAndSummaryRows) {
  const auto timeline = dsv3::pipeline::timeline_study(true);
  const auto summary = dsv3::pipeline::summary_study(false);
  std::set<std::string> seen;
  for (const auto& r : timeline) seen.insert(r["schedule"].get<std::string>());
  EXPECT_EQ(seen.size(), 4u);
  ASSERT_EQ(summary.size(), 4u + 4u * 3u);  // the four timeline runs, then PP 4, 8, 16 per schedule
  for (const auto& r : summary) {
    EXPECT_EQ(r["bubble_max"], r["table2_bubble"]) << r.dump();
    EXPECT_EQ(r["peak_activations_max"], r["table2_activations"]) << r.dump();
    EXPECT_EQ(r["params_per_device"], r["table2_params_per_device"]) << r.dump();
    EXPECT_EQ(r["devices"], r["table2_devices"]) << r.dump();
  }
  EXPECT_EQ(summary[3]["schedule"], "dualpipev");
  EXPECT_EQ(summary[3]["micro_batches"], 10);
  EXPECT_EQ(summary[3]["devices"], 4);
}

}  // namespace
