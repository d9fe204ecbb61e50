// Hardware calibration of the FP8 accumulation model: crafted probes, candidate models, verdict.
//
// A probe is one dot-product chain the tensor cores compute: D starts at the FP32 value c, then
// `steps` MMA instructions of K = 32 each add sum_k A[k] * b without any promotion. Every row of A
// holds the same 32 E4M3 codes per step and every element of B is the same code b, so every output
// element has the same exact value and a wrong register-fragment layout can only permute K within a
// step (the models are permutation-insensitive within a step), unless it duplicates or drops
// positions, which the one-hot sanity probes catch.
//
// The host predicts every probe under every candidate model (product exponent from value or
// operands x chunk 32, 16 or 8 x frac_bits 10..24 x alignment rounding x accumulator-in-alignment x
// write-back rounding x FP32 subnormal flush: 2160 models) and
// reports the models that match every probe bit for bit, or the closest one and its mismatches.
// The kernels live in optimized/fp8_accum_probe.cu; run_hardware_probes() (CUDA builds only,
// reference/cudahost/fp8_accum_hardware.cpp) runs them.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/fp8_accum.hpp"

namespace dsv3::fp8accum {

constexpr int kProbeK = 32;  // K per MMA instruction (wgmma m64n8k32, mma m16n8k32)

struct Probe {
  std::string id;                // unique, e.g. "sanity_onehot_5", "bigc_14"
  std::string purpose;           // what the probe discriminates
  bool sanity = false;           // exact in every candidate: a mismatch means the probe is broken
  float c = 0.0f;                // initial FP32 accumulator (every D register)
  uint8_t b_code = 0x38;         // the E4M3 code filling all of B (0x38 = 1.0)
  std::vector<uint8_t> a_codes;  // steps * 32 E4M3 codes, the same for every row of A
  int steps() const { return static_cast<int>(a_codes.size()) / kProbeK; }
};

uint8_t e4m3_code(double v);  // the E4M3 code of v; throws std::invalid_argument if not exact
double e4m3_value(uint8_t code);

std::vector<Probe> make_probes();
std::vector<Model> candidate_models();
float predict(const Probe& p, const Model& m);  // chained mma_step, no promotion
double exact_value(const Probe& p);             // exact in double for the sanity probes

// Raw results of one instruction over all probes: the values of every accumulator register of
// every thread (wgmma: 128 x 4, mma.sync: 32 x 4), probe-major.
struct InstrRun {
  std::string instr;   // "wgmma.m64n8k32" or "mma.sync.m16n8k32"
  int layout = 0;      // A-fragment packing used (see optimized/fp8_accum_probe.cuh)
  std::string error;   // non-empty when the run failed or could not run (then values is empty)
  std::vector<std::vector<float>> values;  // [probe][register]
  bool unavailable = false;  // the device cannot run this instruction (error says why): not a failure
};

// Per-instruction check of a run: layout (all registers equal per probe) and sanity (exact).
struct RunCheck {
  bool layout_ok = false, sanity_ok = false;
  std::vector<std::string> problems;  // probe ids with what went wrong
};
RunCheck check_run(const std::vector<Probe>& probes, const InstrRun& run);

// Rows for the bundle (studies key "fp8_accum_hardware") and the printed probe table + verdict.
nlohmann::json analyse(const std::vector<Probe>& probes, const std::vector<InstrRun>& runs, std::ostream& log);

// Runs every probe through both instructions, trying A-fragment packings until one passes
// check_run (CUDA builds only; throws std::runtime_error on CUDA errors or without a GPU).
std::vector<InstrRun> run_hardware_probes(const std::vector<Probe>& probes, std::ostream& log);

std::string hex(float v);  // "%a" of the value, e.g. 0x1.0002p+10

}  // namespace dsv3::fp8accum
