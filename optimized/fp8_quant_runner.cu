// The "cuda" variant of fp8_quant: device buffers with canaries for a case's tensors, runs the
// launchers of optimized/fp8_quant.cu on stream 0, and the registration of the CUDA-side variants.
// Host code only (compiled by nvcc with the other optimized/ sources).
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "optimized/cuda_check.hpp"
#include "optimized/fp8_quant.cuh"

// ---- the "cuda" variant -----------------------------------------------------------------------

namespace dsv3::fp8 {
namespace {

// Device copies of a case's tensors; run() only enqueues kernels on stream 0.
class CudaRunner final : public Runner {
 public:
  CudaRunner(const Params& p, Io& io) : p_(p), io_(io) {
    p_.validate();
    if (const std::string why = gpu::unsupported_reason(p_); !why.empty()) throw std::invalid_argument(why);
    check_io(p_, io_, "fp8_quant/cuda");
    cfg_ = gpu::query_launch_cfg();
    for (const Tensor& t : io_.in) {
      in_.emplace_back(t.nbytes(), "input " + t.name());
      in_.back().upload(t.raw(), t.nbytes());
    }
    for (const Tensor& t : io_.out) {  // NaN in every float format (0x7f is the fp8 NaN code)
      out_.emplace_back(t.nbytes(), "output " + t.name());
      out_.back().poison(t.dtype() == DType::e4m3 || t.dtype() == DType::e5m2 ? 0x7f : 0xff);
    }
  }

  void run() override {
    switch (p_.op) {
      case Op::quant_1x128:
        gpu::quant_1x128(in_[0].as<uint16_t>(), out_[0].as<uint8_t>(), out_[1].as<float>(), p_, cfg_, 0);
        break;
      case Op::quant_128x128:
        gpu::quant_128x128(in_[0].as<uint16_t>(), out_[0].as<uint8_t>(), out_[1].as<float>(), p_, cfg_, 0);
        break;
      case Op::dequant_1x128:
      case Op::dequant_128x128:
        gpu::dequant(in_[0].as<uint8_t>(), in_[1].as<float>(), out_[0].as<uint16_t>(), p_, cfg_, 0);
        break;
      case Op::retile_1x128_to_128x1:
        gpu::retile_1x128_to_128x1(in_[0].as<uint8_t>(), in_[1].as<float>(), out_[0].as<uint8_t>(),
                                   out_[1].as<float>(), p_, cfg_, 0);
        break;
      case Op::logfmt:
        gpu::logfmt_encode(in_[0].as<uint16_t>(), out_[0].as<uint16_t>(), out_[1].as<float>(),
                           out_[2].as<uint8_t>(), p_, cfg_, 0);
        gpu::logfmt_decode(out_[0].as<uint16_t>(), out_[1].as<float>(), out_[2].as<uint8_t>(),
                           out_[3].as<uint16_t>(), p_, cfg_, 0);
        break;
    }
  }

  void fetch() override {
    DSV3_CUDA_CHECK(cudaDeviceSynchronize());
    DSV3_CUDA_CHECK(cudaGetLastError());
    for (std::size_t i = 0; i < out_.size(); ++i) out_[i].download(io_.out[i].raw(), io_.out[i].nbytes());
    for (const DeviceBuffer& b : in_) b.check_canaries();
    for (const DeviceBuffer& b : out_) b.check_canaries();
  }

 private:
  Params p_;
  Io& io_;
  gpu::LaunchCfg cfg_;
  std::vector<DeviceBuffer> in_, out_;
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
