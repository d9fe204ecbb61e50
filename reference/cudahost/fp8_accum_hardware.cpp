// GPU side of the FP8 accumulation calibration (CUDA builds only): runs the probes of
// reference/fp8_accum_calib.hpp through optimized/fp8_accum_probe.cu, trying the A-fragment
// packings until one passes the layout and sanity checks, and registers the study
// "fp8_accum_hardware" (Registry::add_study, Backend::cuda: `dsv3 run` skips it without a GPU).
#include <iostream>

#include "core/registry.hpp"
#include "optimized/fp8_accum_probe.cuh"
#include "reference/fp8_accum_calib.hpp"

namespace dsv3::fp8accum {

std::vector<InstrRun> run_hardware_probes(const std::vector<Probe>& probes, std::ostream& log) {
  std::vector<gpu::ProbeDesc> descs;
  std::vector<uint8_t> a_codes;
  for (const Probe& p : probes) {
    descs.push_back({p.c, p.b_code, p.steps(), static_cast<int32_t>(a_codes.size())});
    a_codes.insert(a_codes.end(), p.a_codes.begin(), p.a_codes.end());
  }
  std::vector<InstrRun> runs;
  // mma.sync first: if wgmma faults (a descriptor or layout mistake), the CUDA context is lost and
  // every later launch fails, so the simpler instruction's data point is taken before.
  for (gpu::Instr instr : {gpu::Instr::mma_sync, gpu::Instr::wgmma}) {
    InstrRun chosen{gpu::instr_name(instr), 0, "", {}};
    if (std::string why = gpu::unavailable_reason(instr); !why.empty()) {
      chosen.error = why;
      chosen.unavailable = true;
      runs.push_back(chosen);
      continue;
    }
    for (int packing = 0; packing < gpu::kPackings; ++packing) {
      InstrRun run{gpu::instr_name(instr), packing, "", {}};
      try {
        std::vector<float> values;
        gpu::run_probes(instr, packing, descs, a_codes, values);
        const std::size_t regs = static_cast<std::size_t>(gpu::regs_per_probe(instr));
        for (std::size_t i = 0; i < probes.size(); ++i)
          run.values.emplace_back(values.begin() + static_cast<std::ptrdiff_t>(i * regs),
                                  values.begin() + static_cast<std::ptrdiff_t>((i + 1) * regs));
      } catch (const std::exception& e) {
        run.error = e.what();
      }
      const RunCheck rc = check_run(probes, run);
      log << run.instr << " A packing " << packing << ": " << (run.error.empty() ? "ran" : "error: " + run.error)
          << ", layout " << (rc.layout_ok ? "ok" : "BROKEN") << ", sanity " << (rc.sanity_ok ? "ok" : "FAILED") << "\n";
      for (std::size_t i = 0; i < rc.problems.size() && i < 8; ++i) log << "  " << rc.problems[i] << "\n";
      if (packing == 0 || (rc.layout_ok && rc.sanity_ok)) chosen = run;
      if ((rc.layout_ok && rc.sanity_ok) || !run.error.empty()) break;  // a CUDA error poisons the context
    }
    runs.push_back(chosen);
  }
  return runs;
}

namespace {

nlohmann::json hardware_study(bool /*quick: the probe set is small either way*/) {
  const std::vector<Probe> probes = make_probes();
  return analyse(probes, run_hardware_probes(probes, std::cerr), std::cerr);
}

}  // namespace
}  // namespace dsv3::fp8accum

void dsv3_register_fp8_accum_cuda() {
  dsv3::Registry::instance().add_study({"fp8_accum", "fp8_accum_hardware", dsv3::Backend::cuda,
                                        dsv3::fp8accum::hardware_study});
}
