// The ep component on one GPU (variant "cuda"): every rank's buffers on one device, the per-rank
// kernels of optimized/ep_device.hpp (the same ones the NCCL execution, tools/ep_nccl.cpp, runs
// one rank per process), and a device copy as the transport:
//   pack_dispatch (layout, counts, the FP8 quantization fused into the packing)
//   -> counts transposed (the count exchange) -> receive offsets -> rows copied per
//   (source, destination) -> unpack -> pack_combine (the experts' weighted partials, BF16 or
//   LogFMT-10) -> rows copied back -> finish (FP32 sums in ascending sender rank, BF16).
// Bit-identical to the simulated execution (reference/ep.cpp) by construction; not yet run on a GPU.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "optimized/device_io.hpp"
#include "optimized/ep_device.hpp"
#include "reference/ep.hpp"

namespace dsv3::ep {
namespace {

class CudaRunner : public DeviceRunner<Params> {
 public:
  CudaRunner(const Params& p, Io& io) : DeviceRunner<Params>(p, io, "ep/cuda"), ranks_(p, 0, p.ranks) {
    const std::size_t fp8 = p.wire == Wire::bf16 ? 0 : 1;  // recv_scales shifts y and link_sends by one
    io_.x = dev_.in<uint16_t>(0);
    io_.indices = dev_.in<int32_t>(1);
    io_.weights = dev_.in<float>(2);
    io_.recv_count = dev_.out<int32_t>(0);
    io_.recv_meta = dev_.out<int32_t>(1);
    io_.recv_experts = dev_.out<int32_t>(2);
    io_.recv_weights = dev_.out<float>(3);
    io_.recv_x = dev_.out<uint8_t>(4);
    io_.recv_scales = fp8 ? dev_.out<float>(5) : nullptr;
    io_.y = dev_.out<uint16_t>(5 + fp8);
    io_.link_sends = dev_.out<int32_t>(6 + fp8);
  }

  void run() override {
    cudaStream_t s = nullptr;  // the harness times the default stream
    ranks_.pack_dispatch(io_, s);
    ranks_.exchange_counts_locally(s);
    ranks_.receive_offsets(s);
    ranks_.transport_dispatch_locally(s);
    ranks_.unpack(io_, s);
    ranks_.pack_combine(s);
    ranks_.transport_combine_locally(s);
    ranks_.finish_combine(io_, s);
  }

  void fetch() override {
    DeviceRunner<Params>::fetch();
    ranks_.check_errors();
  }

 private:
  gpu::Ranks ranks_;
  gpu::Io io_;
};

}  // namespace
}  // namespace dsv3::ep

void dsv3_register_ep_cuda() {
  using namespace dsv3;
  using namespace dsv3::ep;
  Variant v = cuda_variant<Params, CudaRunner>(
      "ep", "cuda",
      "every rank on one GPU: layout scan, FP8 quantize fused into the packing, device-copy transport, unpack, "
      "FP64 expert partials (BF16 or LogFMT-10), FP32 combine in rank order (optimized/ep_kernels.cu)",
      [](const Params& p) { return gpu::unsupported_reason(p); });
  v.tolerances["*"] = Tolerance::bit_exact(
      "the same arithmetic as the simulated execution: quant_1x128's scale math and RN casts, FP64 partials with RN "
      "operations in choice order, one BF16 rounding, FP32 sums in ascending sender rank; routing is integer");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}
