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
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb, sign_bit = 1u << (bits - 1);
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    uint16_t raw[4] = {};
    float amax = 0.0f, amin = fm::pos_inf();  // as the reference: NaN never replaces either
    bool nonfinite = false;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      raw[j] = x[base + c];
      const float a = fm::abs_f(bf16_f32(raw[j]));
      nonfinite |= !(a < fm::pos_inf());
      if (a > amax) amax = a;
      if (a > 0.0f && a < amin) amin = a;
    }
    for (int o = 16; o > 0; o /= 2) {  // partials are never NaN: plain max/min combine them
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      amin = fminf(amin, __shfl_xor_sync(0xffffffffu, amin, o));
    }
    nonfinite = __any_sync(0xffffffffu, nonfinite);
    const fm::LogFmtGroup g = fm::logfmt_group(amax, amax > 0.0f ? amin : 0.0f, nonfinite, bits);
    if (lane == 0) {
      meta[2 * static_cast<uint64_t>(u)] = g.log_amin;
      meta[2 * static_cast<uint64_t>(u) + 1] = g.log_amax;
      fallback[u] = g.fallback ? 1 : 0;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c >= d.k) continue;
      uint16_t out = raw[j];  // fallback groups carry the bf16 bits
      if (!g.fallback) {
        const uint32_t mag = fm::logfmt_encode_mag(g, fm::abs_f(bf16_f32(raw[j])), bits);
        out = static_cast<uint16_t>(mag | ((raw[j] & 0x8000u) && mag ? sign_bit : 0u));
      }
      codes[base + c] = out;
    }
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
