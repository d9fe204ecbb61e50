// Device pieces of the MoE component shared between its CUDA files: the fused gate launched on
// device buffers (optimized/moe_gate.cu), the permutation (optimized/moe.cu) and the layer runner
// (optimized/moe_layer.cu). Not yet run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/registry.hpp"
#include "optimized/cuda_check.hpp"
#include "reference/moe.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::moe_gate {

// Why the fused gate kernel cannot route this config (empty: it can).
std::string gate_unsupported(const Routing& r, int64_t tokens);
// x bf16 [T, dim], w bf16 [E, dim], bias f32 [E] (used when r.bias) -> out_w bf16 [T, k] (the
// reference's weights, bit for bit), out_i i32 [T, k].
void launch_gate(const Routing& r, int64_t tokens, const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* out_w,
                 int32_t* out_i, cudaStream_t stream = 0);

}  // namespace dsv3::moe_gate

namespace dsv3::moe {

// The deterministic permutation into the contiguous layout (reference/moe.hpp "permute") in two
// steps, so that a caller can learn the segment sizes before it sizes the permuted buffers:
// plan() counts and scans (count[E], starts[E + 1] on the device), scatter() writes the rows.
class DevicePermute {
 public:
  DevicePermute(int64_t tokens, int64_t experts);
  // Why the permutation cannot take this routing (empty: it can): the experts' shared-memory
  // histogram and 32-bit (token, choice) indices.
  static std::string unsupported(int64_t tokens, const moe_gate::Routing& r);
  void plan(const int32_t* idx, int tokens, int k, int experts, int align);
  // starts[E + 1] on the host (synchronous copy): segment e is rows [starts[e], starts[e + 1]).
  std::vector<int64_t> starts_on_host() const;
  void scatter(const uint16_t* x, const int32_t* idx, int tokens, int k, int dim, int experts, uint16_t* xp, int32_t* group_index,
               int32_t* row_of);

 private:
  int tiles_ = 0;
  int64_t experts_ = 0;
  DeviceBuffer tile_counts_, tile_base_, count_, starts_;
};

// y [T, dim] = RN_bf16(sum_j fmaf(w_j, expert_out[row_of[t, j]]) (+ shared[t] when not null)),
// FP32, j in order: the combine op, and the layer's combine with its shared expert.
void launch_combine(const uint16_t* expert_out, const int32_t* row_of, const uint16_t* w, const uint16_t* shared, int tokens, int k,
                    int dim, uint16_t* y);

// Registers moe/cublas_bf16, the layer on the GPU (optimized/moe_layer.cu); called by
// dsv3_register_moe_cuda.
void register_cublas_layer_variant();

}  // namespace dsv3::moe
