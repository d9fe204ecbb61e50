// Device copies of one case's tensors, for CUDA variants whose kernels read the inputs and write
// the outputs as they are laid out on the host (no repacking): inputs uploaded once, outputs
// poisoned (0xff bytes: NaN in BF16/FP32/FP16; 0x7f, a NaN code of both FP8 formats, for FP8),
// every buffer canary-guarded. fetch() waits for the device, downloads the outputs into io.out
// and checks the canaries, so a kernel that leaves an element unwritten or writes out of bounds
// fails the check.
#pragma once

#include <functional>
#include <memory>
#include <string>
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

// The base of a CUDA variant's runner over a case's Params P: the params, the io and its device
// copies, the inputs and outputs checked against P's specs (input_specs / output_specs, found by
// argument-dependent lookup; ShapeError names `variant`); fetch() downloads and checks the
// canaries. Subclasses write run() (and extend fetch() for buffers of their own).
template <class P>
class DeviceRunner : public Runner {
 public:
  DeviceRunner(const P& p, Io& io, const std::string& variant) : p_(p), io_(io), dev_(io) {
    require_tensors(io.in, input_specs(p_), variant + " inputs");
    require_tensors(io.out, output_specs(p_), variant + " outputs");
  }
  void fetch() override { dev_.fetch(io_); }

 protected:
  P p_;
  Io& io_;
  DeviceIo dev_;
};

// A CUDA variant whose prepare() makes R(case params P, io); `unsupported(P)` says why a case is
// not run (empty: it is). The caller adds the tolerances and registers it.
template <class P, class R>
Variant cuda_variant(std::string component, std::string name, std::string description,
                     std::function<std::string(const P&)> unsupported) {
  Variant v;
  v.component = std::move(component);
  v.name = std::move(name);
  v.description = std::move(description);
  v.backend = Backend::cuda;
  v.unsupported = [unsupported = std::move(unsupported)](const Case& c) { return unsupported(c.as<P>()); };
  v.prepare = [](const Case& c, Io& io) -> std::unique_ptr<Runner> { return std::make_unique<R>(c.as<P>(), io); };
  return v;
}

}  // namespace dsv3
