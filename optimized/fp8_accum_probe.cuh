// Kernels of the FP8 accumulation calibration (optimized/fp8_accum_probe.cu); the probes, the
// candidate models and the verdict are host code in reference/fp8_accum_calib.hpp.
//
// Every probe: D (all accumulator registers) starts at the FP32 value c; `steps` MMAs of K = 32
// follow without promotion; every row of A holds the same 32 E4M3 codes per step; every element of
// B is the same code. Results: every accumulator register of every thread, so the host can check
// that they all agree (they must: every output element has the same exact value).
//
// A-fragment packing (the 16 codes a thread holds in 4 .b32 registers, t = lane % 4, codes of
// lower K in lower bytes). PTX ISA for .e4m3 m16n8k32 / wgmma m64nNk32 A in registers: a0..a3 and
// a4..a7 (registers 0 and 1) are K = 4t..4t+3 of rows g and g+8, a8..a15 (registers 2 and 3) are
// K = 16+4t..16+4t+3 of the same rows. Rows are identical here, so only K matters:
//   packing 0: reg0 = reg1 = K[4t..4t+3], reg2 = reg3 = K[16+4t..16+4t+3]   (the PTX ISA layout)
//   packing 1: reg0 = reg2 = K[4t..4t+3], reg1 = reg3 = K[16+4t..16+4t+3]   (fallback if 0 fails)
// A packing that reads a K position twice or never fails the one-hot sanity probes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::fp8accum::gpu {

struct ProbeDesc {
  float c;          // initial accumulator
  uint32_t b_code;  // E4M3 code of every B element
  int32_t steps;    // MMAs (K = 32 each)
  int32_t a_offset; // first of steps * 32 codes in the A code array
};

enum class Instr { wgmma, mma_sync };
constexpr int kPackings = 2;

int regs_per_probe(Instr i);  // wgmma m64n8k32: 128 threads x 4; mma.sync m16n8k32: 32 x 4
const char* instr_name(Instr i);

// Empty when the instruction can run on device 0, else why not (no GPU, compute capability).
std::string unavailable_reason(Instr i);

// Runs every probe; values gets n_probes * regs_per_probe(i) floats, probe-major. Throws
// dsv3::CudaError on any CUDA error. A kernel compiled without the instruction (wrong target)
// writes the NaN 0x7fc0dead everywhere, which the sanity probes then reject.
void run_probes(Instr i, int packing, const std::vector<ProbeDesc>& probes, const std::vector<uint8_t>& a_codes,
                std::vector<float>& values);

}  // namespace dsv3::fp8accum::gpu
