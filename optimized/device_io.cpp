// DeviceIo (optimized/device_io.hpp).
#include "optimized/device_io.hpp"

#include <cuda_runtime.h>

namespace dsv3 {

DeviceIo::DeviceIo(const Io& io) {
  for (const Tensor& t : io.in) {
    in_.emplace_back(t.nbytes(), "input " + t.name());
    in_.back().upload(t.raw(), t.nbytes());
  }
  for (const Tensor& t : io.out) {
    out_.emplace_back(t.nbytes(), "output " + t.name());
    out_.back().poison(t.dtype() == DType::e4m3 || t.dtype() == DType::e5m2 ? 0x7f : 0xff);
  }
}

void DeviceIo::fetch(Io& io) {
  DSV3_CUDA_CHECK(cudaDeviceSynchronize());
  DSV3_CUDA_CHECK(cudaGetLastError());
  for (std::size_t i = 0; i < out_.size(); ++i) out_[i].download(io.out[i].raw(), io.out[i].nbytes());
  for (const DeviceBuffer& b : in_) b.check_canaries();
  for (const DeviceBuffer& b : out_) b.check_canaries();
}

}  // namespace dsv3
