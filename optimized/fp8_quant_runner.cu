// The "cuda" variant of fp8_quant: device buffers with canaries for a case's tensors, runs the
// launchers of optimized/fp8_quant.cu on stream 0, and the registration of the CUDA-side variants.
// Host code only (compiled by nvcc with the other optimized/ sources).
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "optimized/fp8_quant.cuh"

// ---- the "cuda" variant -----------------------------------------------------------------------

namespace dsv3::fp8 {
namespace {

// Device copies of a case's tensors; run() only enqueues kernels on stream 0.
class CudaRunner final : public Runner {
 public:
  CudaRunner(const Params& p, Io& io) : p_(p), io_(io), dev_(io) {
    p_.validate();
    if (const std::string why = gpu::unsupported_reason(p_); !why.empty()) throw std::invalid_argument(why);
    check_io(p_, io_, "fp8_quant/cuda");
    cfg_ = gpu::query_launch_cfg();
  }

  void run() override {
    switch (p_.op) {
      case Op::quant_1x128:
        gpu::quant_1x128(dev_.in<uint16_t>(0), dev_.out<uint8_t>(0), dev_.out<float>(1), p_, cfg_, 0);
        break;
      case Op::quant_128x128:
        gpu::quant_128x128(dev_.in<uint16_t>(0), dev_.out<uint8_t>(0), dev_.out<float>(1), p_, cfg_, 0);
        break;
      case Op::dequant_1x128:
      case Op::dequant_128x128:
        gpu::dequant(dev_.in<uint8_t>(0), dev_.in<float>(1), dev_.out<uint16_t>(0), p_, cfg_, 0);
        break;
      case Op::retile_1x128_to_128x1:
        gpu::retile_1x128_to_128x1(dev_.in<uint8_t>(0), dev_.in<float>(1), dev_.out<uint8_t>(0),
                                   dev_.out<float>(1), p_, cfg_, 0);
        break;
      case Op::logfmt:
        gpu::logfmt_encode(dev_.in<uint16_t>(0), dev_.out<uint16_t>(0), dev_.out<float>(1),
                           dev_.out<uint8_t>(2), p_, cfg_, 0);
        gpu::logfmt_decode(dev_.out<uint16_t>(0), dev_.out<float>(1), dev_.out<uint8_t>(2),
                           dev_.out<uint16_t>(3), p_, cfg_, 0);
        break;
    }
  }

  void fetch() override { dev_.fetch(io_); }

 private:
  Params p_;
  Io& io_;
  gpu::LaunchCfg cfg_;
  DeviceIo dev_;
};

}  // namespace
}  // namespace dsv3::fp8

void dsv3_register_fp8_quant_cuda() {
  using namespace dsv3;
  using namespace dsv3::fp8;
  Variant v;
  v.component = "fp8_quant";
  v.name = "cuda";
  v.description = "CUDA kernels: warp-shuffle tile amax, hardware cvt.rn.satfinite casts (optimized/fp8_quant.cu)";
  v.backend = Backend::cuda;
  v.unsupported = [](const Case& c) { return gpu::unsupported_reason(c.as<Params>()); };
  v.prepare = [](const Case& c, Io& io) -> std::unique_ptr<Runner> {
    return std::make_unique<CudaRunner>(c.as<Params>(), io);
  };
  v.tolerances["*"] = Tolerance::bit_exact(
      "the CUDA kernels use the same scale math (core/fp8_math.hpp, no contraction) and RNE satfinite "
      "casts; codes and scales must be identical");
  Registry::instance().add(std::move(v));
  Registry::instance().add(cpu_cudafp8_variant());
}
