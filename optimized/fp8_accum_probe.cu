// FP8 accumulation calibration kernels (interface and probe layout: optimized/fp8_accum_probe.cuh).
//   wgmma_probe: one warpgroup (128 threads) per probe; wgmma.mma_async m64n8k32 f32.e4m3.e4m3,
//     A from registers, B from a 4 KiB shared buffer (1024-byte aligned) filled with the probe's b
//     code, read through a no-swizzle matrix descriptor: every descriptor stride reads b. Per step:
//     wgmma.fence, mma_async (scale-d = 1: D = A*B + D, D initialised to c), commit, wait_group 0.
//   mma_probe: one warp per probe; mma.sync m16n8k32 row.col f32.e4m3.e4m3.f32, D fed back as C.
// Assumptions: descriptor bits (PTX ISA "matrix descriptor"): [0,14) start address >> 4,
// [16,30) leading-dimension byte offset >> 4, [32,46) stride byte offset >> 4, [49,52) base
// offset 0, [62,64) swizzle 0 = none. LBO = 128 and SBO = 256 keep every read inside the buffer
// (N = 8 is one core matrix of 8 x 16 bytes, K = 32 bytes two of them: at most ~400 bytes read).
// ptxas (CUDA 13.0, sm_90a, -Xptxas -v): wgmma_probe 48 registers, mma_probe 51, no stack, no spills.
// Ran on an H100 (2026-11-23): packing 0 and this descriptor passed the layout and sanity checks
// for both instructions (docs/fp8-accumulation.md has the verdicts).
#include <cuda_runtime.h>

#include <stdexcept>

#include "optimized/cuda_check.hpp"
#include "optimized/fp8_accum_probe.cuh"

namespace dsv3::fp8accum::gpu {
namespace {

constexpr int kBBytes = 4096;
#define DSV3_ACCUM_NOT_BUILT 0x7fc0deadu  // NaN payload: instruction not compiled for this target

__device__ __forceinline__ uint32_t pack4(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

__device__ __forceinline__ void load_a(const uint8_t* step, int lane, int packing, uint32_t (&r)[4]) {
  const int t = lane & 3;
  const uint32_t lo = pack4(step + 4 * t), hi = pack4(step + 16 + 4 * t);
  r[0] = lo;
  r[1] = packing == 0 ? lo : hi;
  r[2] = packing == 0 ? hi : lo;
  r[3] = hi;
}

__device__ __forceinline__ void store4(float* out, int tid, float d0, float d1, float d2, float d3) {
  out[tid * 4 + 0] = d0;
  out[tid * 4 + 1] = d1;
  out[tid * 4 + 2] = d2;
  out[tid * 4 + 3] = d3;
}

// Keeps the compiler from moving accumulator reads/writes across the asynchronous wgmma.
__device__ __forceinline__ void fence_operand(float& x) { asm volatile("" : "+f"(x)::"memory"); }

__global__ void __launch_bounds__(128, 1)
    wgmma_probe(const ProbeDesc* probes, const uint8_t* a_codes, int packing, float* out) {
  __shared__ __align__(1024) uint32_t b_smem[kBBytes / 4];
  const ProbeDesc pd = probes[blockIdx.x];
  for (int i = threadIdx.x; i < kBBytes / 4; i += blockDim.x) b_smem[i] = pd.b_code * 0x01010101u;
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // generic writes -> async proxy
  __syncthreads();
  float d0 = pd.c, d1 = pd.c, d2 = pd.c, d3 = pd.c;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(b_smem));
  const uint64_t desc = uint64_t((addr & 0x3FFFF) >> 4) | uint64_t(128 >> 4) << 16 | uint64_t(256 >> 4) << 32;
  for (int s = 0; s < pd.steps; ++s) {
    uint32_t a[4];
    load_a(a_codes + pd.a_offset + s * 32, threadIdx.x & 31, packing, a);
    fence_operand(d0), fence_operand(d1), fence_operand(d2), fence_operand(d3);
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1;\n}\n"
        : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fence_operand(d0), fence_operand(d1), fence_operand(d2), fence_operand(d3);
  }
#else
  (void)a_codes, (void)packing;
  d0 = d1 = d2 = d3 = __uint_as_float(DSV3_ACCUM_NOT_BUILT);
#endif
  store4(out + size_t(blockIdx.x) * 512, threadIdx.x, d0, d1, d2, d3);
}

__global__ void __launch_bounds__(32) mma_probe(const ProbeDesc* probes, const uint8_t* a_codes, int packing, float* out) {
  const ProbeDesc pd = probes[blockIdx.x];
  float d0 = pd.c, d1 = pd.c, d2 = pd.c, d3 = pd.c;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const uint32_t b = pd.b_code * 0x01010101u;
  for (int s = 0; s < pd.steps; ++s) {
    uint32_t a[4];
    load_a(a_codes + pd.a_offset + s * 32, threadIdx.x & 31, packing, a);
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b), "r"(b));
  }
#else
  (void)a_codes, (void)packing;
  d0 = d1 = d2 = d3 = __uint_as_float(DSV3_ACCUM_NOT_BUILT);
#endif
  store4(out + size_t(blockIdx.x) * 128, threadIdx.x, d0, d1, d2, d3);
}

}  // namespace

int regs_per_probe(Instr i) { return i == Instr::wgmma ? 128 * 4 : 32 * 4; }
const char* instr_name(Instr i) { return i == Instr::wgmma ? "wgmma.m64n8k32" : "mma.sync.m16n8k32"; }

std::string unavailable_reason(Instr i) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return std::string("no CUDA device (") + cudaGetErrorString(e) + ")";
  }
  cudaDeviceProp prop{};
  DSV3_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int cc = prop.major * 10 + prop.minor;
  if (i == Instr::wgmma && cc != 90) return "wgmma needs compute capability 9.0 (sm_90a), device is " + std::to_string(cc);
  if (i == Instr::mma_sync && cc < 89) return "FP8 mma.sync needs compute capability >= 8.9, device is " + std::to_string(cc);
  return {};
}

void run_probes(Instr i, int packing, const std::vector<ProbeDesc>& probes, const std::vector<uint8_t>& a_codes,
                std::vector<float>& values) {
  if (probes.empty()) throw std::invalid_argument("fp8_accum probe: no probes");
  if (packing < 0 || packing >= kPackings) throw std::invalid_argument("fp8_accum probe: bad packing");
  for (const ProbeDesc& p : probes)
    if (p.steps < 1 || p.a_offset < 0 || size_t(p.a_offset) + size_t(p.steps) * 32 > a_codes.size())
      throw std::invalid_argument("fp8_accum probe: A codes out of range");
  const int regs = regs_per_probe(i);
  const int n = static_cast<int>(probes.size());
  DeviceBuffer d_probes(probes.size() * sizeof(ProbeDesc), "probes"), d_a(a_codes.size(), "a_codes"),
      d_out(size_t(n) * regs * sizeof(float), "values");
  d_probes.upload(probes.data(), d_probes.size());
  d_a.upload(a_codes.data(), a_codes.size());
  d_out.poison(0xff);  // NaN: a register never written shows up as a layout failure
  if (i == Instr::wgmma)
    wgmma_probe<<<n, 128>>>(d_probes.as<ProbeDesc>(), d_a.as<uint8_t>(), packing, d_out.as<float>());
  else
    mma_probe<<<n, 32>>>(d_probes.as<ProbeDesc>(), d_a.as<uint8_t>(), packing, d_out.as<float>());
  DSV3_CUDA_CHECK(cudaGetLastError());
  DSV3_CUDA_CHECK(cudaDeviceSynchronize());
  d_out.check_canaries();
  values.resize(size_t(n) * regs);
  d_out.download(values.data(), values.size() * sizeof(float));
}

}  // namespace dsv3::fp8accum::gpu
