// FP8 fine-grained quantization on the GPU: launchers for every op of reference/fp8_quant.hpp.
//
// Shape symbols as in fp8_quant.hpp: M rows, K columns, Kb = ceil(K/128), Mb = ceil(M/128).
// Every pointer is a device pointer to a contiguous row-major tensor with the dtype and shape
// the reference declares (cudaMalloc alignment gives the fast paths); launches are asynchronous on `stream`, with no allocation and no
// synchronization. Results equal the CPU reference bit for bit (same scale math through
// core/fp8_math.hpp, hardware RNE satfinite casts for the elements).
//
// Host-only header (no device code), so the g++-compiled CPU variant
// (reference/cudahost/fp8_quant_cudafp8.cpp) can include it too.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "core/registry.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {

namespace gpu {

// Device facts a launcher needs, queried once in prepare() (run() makes no device queries).
struct LaunchCfg {
  int sms = 132;  // multiprocessors: the grid-stride kernels launch a few resident waves
};
LaunchCfg query_launch_cfg();  // device 0; throws CudaError

// Why these kernels cannot run `p` (32-bit indexing and grid limits), or empty.
std::string unsupported_reason(const Params& p);

void quant_1x128(const uint16_t* x, uint8_t* codes, float* scales, const Params& p, const LaunchCfg& cfg,
                 cudaStream_t stream);
void quant_128x128(const uint16_t* w, uint8_t* codes, float* scales, const Params& p, const LaunchCfg& cfg,
                   cudaStream_t stream);
// p.op selects the scale tiling (dequant_1x128: scales [M, Kb]; dequant_128x128: [Mb, Kb]).
void dequant(const uint8_t* codes, const float* scales, uint16_t* y, const Params& p, const LaunchCfg& cfg,
             cudaStream_t stream);
void retile_1x128_to_128x1(const uint8_t* codes, const float* scales, uint8_t* codes_t, float* scales_t,
                           const Params& p, const LaunchCfg& cfg, cudaStream_t stream);
void logfmt_encode(const uint16_t* x, uint16_t* codes, float* meta, uint8_t* fallback, const Params& p,
                   const LaunchCfg& cfg, cudaStream_t stream);
void logfmt_decode(const uint16_t* codes, const float* meta, const uint8_t* fallback, uint16_t* y,
                   const Params& p, const LaunchCfg& cfg, cudaStream_t stream);

}  // namespace gpu

// Checks io's tensors against input_specs / output_specs (names, dtypes, shapes); throws
// ShapeError (a std::invalid_argument) naming the variant, the op and the first mismatch.
void check_io(const Params& p, const Io& io, const std::string& variant);

// The "cpu_cudafp8" variant (reference/cudahost/fp8_quant_cudafp8.cpp).
Variant cpu_cudafp8_variant();

}  // namespace dsv3::fp8

// Registers "cuda" and "cpu_cudafp8"; called by the generated register_all_components().
void dsv3_register_fp8_quant_cuda();
