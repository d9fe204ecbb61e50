// Tests of the communication-overlap view (reference/pipeline_overlap.hpp; V3-TR §3.2.1): chunk
// times from attention, dispatch, MLP, combine; F&B's two streams respect every data dependency and
// hide what the compute covers; a step's hidden all-to-all fraction comes from its F&B chunks only.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "reference/pipeline_overlap.hpp"

namespace {

using namespace dsv3::pipeline;

OverlapInputs inputs(double attn, double mlp, double d, double k, int64_t layers, int64_t comm_sms) {
  OverlapInputs in;
  in.attn = attn;
  in.mlp = mlp;
  in.dispatch = d;
  in.combine = k;
  in.layers = layers;
  in.comm_sms = comm_sms;
  return in;
}

TEST(PipelineOverlap, ChunkTimesFromTheSplit) {
  const ChunkOverlap c = chunk_overlap(inputs(1.5, 2.5, 0.75, 1.25, 4, 20));
  EXPECT_EQ(c.f, 4 * (1.5 + 2.5 + 0.75 + 1.25));
  EXPECT_EQ(c.b, 4 * (2 * (1.5 + 2.5) + 0.75 + 1.25));
  EXPECT_EQ(c.w, 4 * (1.5 + 2.5));
  EXPECT_EQ(c.fb_comm, 2 * 4 * (0.75 + 1.25));
  // F&B's compute runs on 112 of 132 SMs (V3-TR §3.5.1), 3 x (attn + mlp) per layer.
  EXPECT_NEAR(c.fb_compute, 4 * 3 * (1.5 + 2.5) * 132.0 / 112.0, 1e-9);
  EXPECT_GE(c.fb, c.fb_compute);
  EXPECT_GE(c.fb, c.fb_comm);
}

TEST(PipelineOverlap, StreamsAndDependencies) {
  for (const auto& in : {inputs(1, 1, 1, 1, 3, 20), inputs(0.2, 0.3, 2, 1, 2, 0), inputs(3, 1, 0.5, 4, 4, 40)}) {
    const ChunkOverlap c = chunk_overlap(in);
    std::map<std::string, OverlapPiece> by;
    for (const auto& p : c.pieces) by[p.name] = p;
    ASSERT_EQ(by.size(), static_cast<size_t>(8 * in.layers));
    // one piece at a time per stream
    for (const auto& a : c.pieces)
      for (const auto& b : c.pieces)
        if (a.name != b.name && a.comm == b.comm) {
          EXPECT_TRUE(a.end <= b.start + 1e-12 || b.end <= a.start + 1e-12) << a.name << " " << b.name;
        }
    auto after = [&](const std::string& x, const std::string& y) { EXPECT_GE(by[x].start, by[y].end - 1e-12) << x << " after " << y; };
    for (int64_t i = 0; i < in.layers; ++i) {
      std::string s = ".";
      s.append(std::to_string(i));
      after("dispatch_f" + s, "attn_f" + s);
      after("mlp_f" + s, "dispatch_f" + s);
      after("combine_f" + s, "mlp_f" + s);
      after("mlp_b" + s, "combine_b" + s);
      after("dispatch_b" + s, "mlp_b" + s);
      after("attn_b" + s, "dispatch_b" + s);
      if (i > 0) {
        std::string p = ".";
        p.append(std::to_string(i - 1));
        after("attn_f" + s, "combine_f" + p);
        after("combine_b" + s, "attn_b" + p);
      }
    }
  }
}

TEST(PipelineOverlap, HiddenTime) {
  // No communication: F&B is its compute, F + B's compute at full SMs when comm_sms = 0.
  ChunkOverlap c = chunk_overlap(inputs(1, 2, 0, 0, 2, 0));
  EXPECT_EQ(c.fb, 2 * 3 * 3.0);
  EXPECT_EQ(c.fb_hidden, 0);
  // Every all-to-all shorter than the compute beside it (V3's ~1:1 split evenly): all hidden, and
  // F&B is its compute alone, where F + B alone would take 10 per layer.
  c = chunk_overlap(inputs(1, 1, 1, 1, 4, 0));
  EXPECT_EQ(c.fb_hidden, c.fb_comm);
  EXPECT_EQ(c.fb, c.fb_compute);
  EXPECT_EQ(c.fb, 4 * 6.0);
  // Communication-bound: at most the compute time is hidden.
  c = chunk_overlap(inputs(0.1, 0.1, 5, 5, 2, 0));
  EXPECT_LE(c.fb_hidden, c.fb_compute + 1e-12);
  EXPECT_GE(c.fb, c.fb_comm);
}

TEST(PipelineOverlap, StepHidesOnlyInFandB) {
  const ChunkOverlap c = chunk_overlap(inputs(1, 1, 1, 1, 1, 0));
  for (ScheduleKind k : all_schedules()) {
    const int64_t pp = 8, m = 20;
    const StepOverlap s = step_overlap(c, k, pp, m);
    Params p;
    p.schedule = k;
    p.pp = pp;
    p.micro_batches = m;
    const Schedule sch = make_schedule(p);
    double fb = 0, alone = 0;
    for (const auto& list : sch.per_rank)
      for (const Chunk& x : list) {
        fb += x.kind == Kind::FB;
        alone += x.kind == Kind::F || x.kind == Kind::B || x.kind == Kind::Bi;
      }
    // Each micro-batch-stage has one forward and one backward, each with one dispatch + combine.
    EXPECT_EQ(s.a2a_total, 2.0 * m * pp * 2.0) << s.schedule;
    EXPECT_EQ(s.a2a_total, alone * 2.0 + fb * c.fb_comm) << s.schedule;
    EXPECT_EQ(s.a2a_hidden, fb * c.fb_hidden) << s.schedule;
    if (fb == 0) {
      EXPECT_EQ(s.hidden_fraction(), 0) << s.schedule;
    }
  }
}

TEST(PipelineOverlap, BadInputNamesTheField) {
  auto err = [](OverlapInputs in) {
    try {
      chunk_overlap(in);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(err(inputs(-1, 1, 1, 1, 1, 0)).find("attn"), std::string::npos);
  EXPECT_NE(err(inputs(1, 1, NAN, 1, 1, 0)).find("dispatch"), std::string::npos);
  EXPECT_NE(err(inputs(0, 0, 1, 1, 1, 0)).find("attn + mlp"), std::string::npos);
  EXPECT_NE(err(inputs(1, 1, 1, 1, 0, 0)).find("layers"), std::string::npos);
  EXPECT_NE(err(inputs(1, 1, 1, 1, 1, 132)).find("comm_sms"), std::string::npos);
}

}  // namespace
