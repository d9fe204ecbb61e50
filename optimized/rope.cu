// RoPE with YaRN on the GPU (variant "cuda"; the definition is reference/rope.hpp).
//
// prepare() builds the cos/sin table for positions 0..max_pos-1 on the host with the reference's
// own function (as model.py precomputes freqs_cis once) and uploads it; it also rejects a
// position outside the table before anything runs. The kernel gives each thread 4 adjacent pairs
// (one 16-byte load of 8 BF16 values), reads that token's table row (float4 x 2) and rotates with
// explicitly rounded FP32 operations (__fmul_rn, __fsub_rn, __fadd_rn; no FMA contraction), then
// RNE to BF16: the same operations as the reference, so the output must match bit for bit.
// Memory-bound; not yet run on a GPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "reference/rope.hpp"

namespace dsv3::rope {
namespace {


// One packed pair (x0 in the low half, x1 in the high half) rotated by (c, s).
__device__ __forceinline__ uint32_t rotate(uint32_t x, float c, float s) {
  const float x0 = gpu::bf16_lo(x), x1 = gpu::bf16_hi(x);
  const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  const float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  return gpu::pack_bf16x2(y0, y1);
}

// x, y: [T, H, 64] BF16; table [max_pos, 32, 2] FP32. A unit = 4 pairs = 16 bytes of x.
__global__ void rope_kernel(const uint16_t* __restrict__ x, const int32_t* __restrict__ pos,
                            const float* __restrict__ table, uint16_t* __restrict__ y, int64_t units, int heads) {
  constexpr int kUnitsPerVec = 64 / 8;
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t vec = u / kUnitsPerVec;  // (token, head)
    const int part = static_cast<int>(u % kUnitsPerVec);
    const int64_t token = vec / heads;
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(x) + u);
    const float* row = table + static_cast<int64_t>(__ldg(pos + token)) * 64 + part * 8;
    const float4 a = __ldg(reinterpret_cast<const float4*>(row));
    const float4 b = __ldg(reinterpret_cast<const float4*>(row) + 1);
    reinterpret_cast<uint4*>(y)[u] = make_uint4(rotate(v.x, a.x, a.y), rotate(v.y, a.z, a.w),
                                                rotate(v.z, b.x, b.y), rotate(v.w, b.z, b.w));
  }
}

class CudaRunner final : public DeviceRunner<Params> {
 public:
  CudaRunner(const Params& p, Io& io) : DeviceRunner(p, io, "rope/cuda") {
    p_.validate();
    check_positions(p_, io.in[1]);
    const std::vector<float> t = cos_sin_table(p_.settings(), p_.max_pos);
    table_ = DeviceBuffer(t.size() * sizeof(float), "cos/sin table");
    table_.upload(t.data(), t.size() * sizeof(float));
    int dev = 0;
    DSV3_CUDA_CHECK(cudaGetDevice(&dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
  }
  void run() override {
    const int64_t units = p_.tokens * p_.heads * 64 / 8;
    const int threads = 256;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((units + threads - 1) / threads, int64_t{sms_} * 16));
    rope_kernel<<<blocks, threads>>>(dev_.in<uint16_t>(0), dev_.in<int32_t>(1), table_.as<float>(),
                                     dev_.out<uint16_t>(0), units, static_cast<int>(p_.heads));
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
  void fetch() override {
    DeviceRunner::fetch();
    table_.check_canaries();
  }

 private:
  DeviceBuffer table_;
  int sms_ = 1;
};

}  // namespace
}  // namespace dsv3::rope

void dsv3_register_rope_cuda() {
  using namespace dsv3;
  using namespace dsv3::rope;
  Variant v = cuda_variant<Params, CudaRunner>(
      "rope", "cuda", "16-byte loads of 4 pairs, host-built cos/sin table, explicitly rounded FP32 rotation (optimized/rope.cu)",
      [](const Params& p) -> std::string { return p.heads > (1 << 30) ? "heads > 2^30" : ""; });
  v.tolerances["*"] = Tolerance::bit_exact(
      "the kernel reads the reference's own cos/sin table and performs the same IEEE FP32 operations "
      "(__fmul_rn/__fsub_rn/__fadd_rn, RNE to BF16)");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}
