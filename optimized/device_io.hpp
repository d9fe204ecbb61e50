// Device copies of one case's tensors, for CUDA variants whose kernels read the inputs and write
// the outputs as they are laid out on the host (no repacking): inputs uploaded once, outputs
// poisoned (0xff bytes: NaN in BF16/FP32/FP16; 0x7f, a NaN code of both FP8 formats, for FP8),
// every buffer canary-guarded. fetch() waits for the device, downloads the outputs into io.out
// and checks the canaries, so a kernel that leaves an element unwritten or writes out of bounds
// fails the check.
#pragma once

#include <vector>

#include "core/registry.hpp"
#include "optimized/cuda_check.hpp"

namespace dsv3 {

class DeviceIo {
 public:
  DeviceIo(const Io& io);  // copies every input; allocates and poisons every output
  template <class T> const T* in(std::size_t i) const { return in_.at(i).as<T>(); }
  template <class T> T* out(std::size_t i) { return out_.at(i).as<T>(); }
  void fetch(Io& io);  // synchronizes, checks launch errors, downloads outputs, checks canaries

 private:
  std::vector<DeviceBuffer> in_, out_;
};

}  // namespace dsv3
