// LogFMT-n encode / decode kernels (variant "cuda"; shared helpers and the full kernel notes in
// optimized/fp8_quant_device.cuh): x bf16 [M, K] -> codes u16 [M, K], meta f32 [M, Kb, 2],
// fallback u8 [M, Kb]; and back to bf16. A warp per 128-group, fp8math's LogFMT math per element,
// so the results equal reference/fp8_quant.cpp bit for bit.
#include "optimized/fp8_quant_device.cuh"

namespace dsv3::fp8::gpu {
namespace {

// ---- LogFMT -----------------------------------------------------------------------------------

// A warp per 128-group; lane l holds columns l, l+32, l+64, l+96 of it.
__global__ void __launch_bounds__(kThreads) logfmt_encode_kernel(const uint16_t* __restrict__ x, uint16_t* __restrict__ codes,
                                                                 float* __restrict__ meta, uint8_t* __restrict__ fallback,
                                                                 Dims d, int bits) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb;
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    uint16_t raw[4] = {};
    bool valid[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      valid[j] = c < d.k;
      if (valid[j]) raw[j] = x[base + c];
    }
    const fm::LogFmtGroup g = logfmt_warp_group(raw, valid, bits);
    if (lane == 0) {
      meta[2 * static_cast<uint64_t>(u)] = g.log_amin;
      meta[2 * static_cast<uint64_t>(u) + 1] = g.log_amax;
      fallback[u] = g.fallback ? 1 : 0;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (valid[j]) codes[base + c0 + lane + 32 * j] = logfmt_code(g, raw[j], bits);
  }
}

__global__ void __launch_bounds__(kThreads) logfmt_decode_kernel(const uint16_t* __restrict__ codes, const float* __restrict__ meta,
                                                                 const uint8_t* __restrict__ fallback, uint16_t* __restrict__ y,
                                                                 Dims d, int bits) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb;
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    const bool fb = fallback[u] != 0;
    const fm::LogFmtGroup g =
        fm::logfmt_group_from_meta(meta[2 * static_cast<uint64_t>(u)], meta[2 * static_cast<uint64_t>(u) + 1], bits);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      const uint16_t code = codes[base + c];
      if (fb) {
        y[base + c] = code;
      } else {
        y[base + c] = to_bf16(fm::logfmt_decode_code(g, code, bits));
      }
    }
  }
}


}  // namespace

void logfmt_encode(const uint16_t* x, uint16_t* codes, float* meta, uint8_t* fallback, const Params& p,
                   const LaunchCfg& cfg, cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  launch_strided<logfmt_encode_kernel>(static_cast<uint64_t>(d.m) * d.kb, kThreads / 32, cfg, stream, x, codes, meta,
                                       fallback, d, p.logfmt_bits);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void logfmt_decode(const uint16_t* codes, const float* meta, const uint8_t* fallback, uint16_t* y,
                   const Params& p, const LaunchCfg& cfg, cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  launch_strided<logfmt_decode_kernel>(static_cast<uint64_t>(d.m) * d.kb, kThreads / 32, cfg, stream, codes, meta,
                                       fallback, y, d, p.logfmt_bits);
  DSV3_CUDA_CHECK(cudaGetLastError());
}


}  // namespace dsv3::fp8::gpu
