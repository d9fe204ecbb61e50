// GPU calibration of the FP8 accumulation model (label gpu; skips cleanly without a GPU or without
// CUDA in the build). Runs every probe of reference/fp8_accum_calib.hpp once through wgmma and
// mma.sync, prints the probe table and verdict, and asserts what must hold whatever the hardware's
// arithmetic: every accumulator register of a probe agrees (fragment layout) and the sanity probes,
// exact in every candidate model, come back exact.
#include <gtest/gtest.h>

#include <iostream>

#include "core/cuda_probe.hpp"
#include "reference/fp8_accum_calib.hpp"

namespace dsv3::fp8accum {
namespace {

#if DSV3_HAVE_CUDA
const std::vector<InstrRun>& hardware_runs() {
  static const std::vector<InstrRun> runs = [] {
    const std::vector<Probe> probes = make_probes();
    std::vector<InstrRun> r = run_hardware_probes(probes, std::cout);
    analyse(probes, r, std::cout);  // the probe table and the verdict, for the log
    return r;
  }();
  return runs;
}
#define DSV3_ACCUM_NEED_GPU()                                                          \
  if (!cuda_presence().available) GTEST_SKIP() << "no GPU: " << cuda_presence().reason
#else
const std::vector<InstrRun>& hardware_runs() {
  static const std::vector<InstrRun> none;
  return none;
}
#define DSV3_ACCUM_NEED_GPU() GTEST_SKIP() << "built without CUDA"
#endif

// Calls expect(run, check, problems) for every FP8 MMA instruction this GPU runs; skips when none.
template <class Expect>
void for_each_run(Expect expect) {
  const std::vector<Probe> probes = make_probes();
  ASSERT_EQ(hardware_runs().size(), 2u);
  int ran = 0;
  for (const InstrRun& run : hardware_runs()) {
    if (run.unavailable) continue;  // e.g. wgmma on a GPU other than sm_90
    ++ran;
    ASSERT_TRUE(run.error.empty()) << run.instr << ": " << run.error;
    const RunCheck rc = check_run(probes, run);
    std::string problems;
    for (const auto& p : rc.problems) problems += "\n  " + p;
    expect(run, rc, problems);
  }
  if (ran == 0) GTEST_SKIP() << "this GPU runs neither FP8 MMA instruction: " << hardware_runs().front().error;
}

TEST(GpuAccumProbe, SanityExact) {
  DSV3_ACCUM_NEED_GPU();
  for_each_run([](const InstrRun& run, const RunCheck& rc, const std::string& problems) {
    EXPECT_TRUE(rc.sanity_ok) << run.instr << " (A packing " << run.layout << ")" << problems;
  });
}

TEST(GpuAccumProbe, AllAccumulatorsEqual) {
  DSV3_ACCUM_NEED_GPU();
  for_each_run([](const InstrRun& run, const RunCheck& rc, const std::string& problems) {
    EXPECT_TRUE(rc.layout_ok) << run.instr << " (A packing " << run.layout << ")" << problems;
  });
}

}  // namespace
}  // namespace dsv3::fp8accum
