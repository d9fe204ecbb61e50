// FP8 fine-grained quantization on the GPU (variant "cuda"): the host entry points every op shares.
// The kernels, what each computes and how, are described in optimized/fp8_quant_device.cuh; they
// live in optimized/fp8_quant_tiles.cu, fp8_quant_retile.cu and fp8_quant_logfmt.cu.
#include "optimized/fp8_quant_device.cuh"

namespace dsv3::fp8::gpu {

LaunchCfg query_launch_cfg() {
  LaunchCfg c;
  int dev = 0;
  DSV3_CUDA_CHECK(cudaGetDevice(&dev));
  DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev));
  return c;
}

std::string unsupported_reason(const Params& p) {
  auto what = [&] { return "fp8 " + std::string(op_name(p.op)) + " on the GPU: "; };
  if (p.m < 1 || p.k < 1) return what() + "m and k must be >= 1";
  if (p.m >= (int64_t{1} << 31) || p.k >= (int64_t{1} << 31) || p.m * p.k >= (int64_t{1} << 31))
    return what() + "m*k = " + std::to_string(p.m) + "*" + std::to_string(p.k) +
           " >= 2^31 elements (the kernels index with 32 bits)";
  if (tiles(p.m) > 65535) return what() + "ceil(m/128) = " + std::to_string(tiles(p.m)) + " > 65535 (grid.y limit)";
  return {};
}


}  // namespace dsv3::fp8::gpu
