// The DeepSeekMoE layer on the GPU, the BF16 cuBLAS baseline (variant "cublas_bf16"; the definition
// is reference/moe.hpp "layer"):
//   1. gate       the fused gate kernel (optimized/moe_gate.cu): indices and BF16 weights g, the
//                 reference's bit for bit
//   2. permute    the deterministic permutation of optimized/moe.cu into the contiguous layout; the
//                 segment starts are copied to the host (one synchronisation) to size the buffers
//                 and the GEMMs
//   3. experts    per non-empty expert e, over its padded segment (padding rows are zero, so their
//                 outputs are zero): h1 = xp w1_e^T and h3 = xp w3_e^T (cublasGemmEx, BF16 in,
//                 FP32 out and accumulation), a = RN_bf16(silu(h1) * h3) in FP32 (silu(h) =
//                 h / (1 + expf(-h))), o = RN_bf16(a w2_e^T)
//   4. shared     the same three GEMMs over all T tokens with ws1, ws3, ws2
//   5. combine    y = RN_bf16(sum_j fmaf(g_j, o[row_of[t, j]]) + o_shared[t]) in FP32, j in order
//                 (the combine op's kernel, launch_combine)
// model.py's order of operations (BF16 expert outputs, weighted sum) with FP32 accumulation; the
// tolerance is a first-order bound of these roundings computed per output element from the
// reference's exact intermediates (reference/moe.cpp layer_error_bound, the "magnitude:y" aid).
// The per-expert GEMM loop launches 3 GEMMs per non-empty expert from the host: the baseline the
// FP8 grouped GEMM (one launch for every expert) is to beat. Not yet run on a GPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "optimized/bf16_device.cuh"
#include "optimized/cublaslt.hpp"
#include "optimized/device_io.hpp"
#include "optimized/moe_device.hpp"
#include "reference/moe.hpp"

namespace dsv3::moe {
namespace {

__global__ void swiglu_kernel(const float* __restrict__ h1, const float* __restrict__ h3, int64_t n, uint16_t* __restrict__ a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float h = h1[i];
    const float silu = __fdiv_rn(h, __fadd_rn(1.0f, expf(-h)));
    a[i] = gpu::to_bf16(__fmul_rn(silu, h3[i]));
  }
}

std::string unsupported(const Params& p) {
  if (p.op != Op::layer) return "permute and combine are variant cuda";
  const moe_gate::Routing r = p.routing();
  if (std::string why = moe_gate::gate_unsupported(r, p.tokens); !why.empty()) return "gate: " + why;
  if (std::string why = DevicePermute::unsupported(p.tokens, r); !why.empty()) return why;
  const int64_t big = int64_t{1} << 31;
  if (p.tokens * r.topk >= big / 2 || r.dim >= big || p.inter_dim() >= big || p.shared_inter() >= big)
    return "sizes beyond cuBLAS's 32-bit dimensions";
  if (r.topk > 8) return "the layer's combine bound is derived for k <= 8 choices";
  return {};
}

// A growable device buffer (the permuted rows are known only after the gate has run).
void ensure(DeviceBuffer& b, std::size_t bytes, const char* name) {
  if (b.size() < bytes) b = DeviceBuffer(bytes, name);
}

class LayerRunner final : public DeviceRunner<Params> {
 public:
  LayerRunner(const Params& p, Io& io)
      : DeviceRunner(p, io, "moe/cublas_bf16"), r_(p.routing()), perm_(p.tokens, r_.experts) {
    const std::string why = unsupported(p_);
    if (!why.empty()) throw std::invalid_argument("moe/cublas_bf16: " + why);
    const auto T = static_cast<std::size_t>(p_.tokens), k = static_cast<std::size_t>(r_.topk), d = static_cast<std::size_t>(r_.dim),
               is = static_cast<std::size_t>(p_.shared_inter());
    g_ = DeviceBuffer(T * k * 2, "moe layer gate weights");
    idx_ = DeviceBuffer(T * k * 4, "moe layer indices");
    row_of_ = DeviceBuffer(T * k * 4, "moe layer row_of");
    hs1_ = DeviceBuffer(T * is * 4, "moe layer shared h1");
    hs3_ = DeviceBuffer(T * is * 4, "moe layer shared h3");
    as_ = DeviceBuffer(T * is * 2, "moe layer shared a");
    os_ = DeviceBuffer(T * d * 2, "moe layer shared out");
  }

  void run() override {
    const int T = static_cast<int>(p_.tokens), k = static_cast<int>(r_.topk), d = static_cast<int>(r_.dim),
              E = static_cast<int>(r_.experts), I = static_cast<int>(p_.inter_dim()), Is = static_cast<int>(p_.shared_inter());
    const std::size_t w0 = r_.bias ? 3 : 2;  // first expert weight input
    const auto* x = dev_.in<uint16_t>(0);
    moe_gate::launch_gate(r_, T, x, dev_.in<uint16_t>(1), r_.bias ? dev_.in<float>(2) : nullptr, g_.as<uint16_t>(), idx_.as<int32_t>());
    perm_.plan(idx_.as<int32_t>(), T, k, E, static_cast<int>(p_.align));
    const std::vector<int64_t> starts = perm_.starts_on_host();
    const auto R = static_cast<std::size_t>(starts.back());
    ensure(xp_, R * static_cast<std::size_t>(d) * 2, "moe layer xp");
    ensure(group_, R * 4, "moe layer group_index");
    ensure(h1_, R * static_cast<std::size_t>(I) * 4, "moe layer h1");
    ensure(h3_, R * static_cast<std::size_t>(I) * 4, "moe layer h3");
    ensure(a_, R * static_cast<std::size_t>(I) * 2, "moe layer a");
    ensure(o_, R * static_cast<std::size_t>(d) * 2, "moe layer o");
    perm_.scatter(x, idx_.as<int32_t>(), T, k, d, E, xp_.as<uint16_t>(), group_.as<int32_t>(), row_of_.as<int32_t>());
    const uint16_t* w1 = dev_.in<uint16_t>(w0);
    const uint16_t* w3 = dev_.in<uint16_t>(w0 + 1);
    const uint16_t* w2 = dev_.in<uint16_t>(w0 + 2);
    for (int e = 0; e < E; ++e) {
      const int64_t s0 = starts[static_cast<std::size_t>(e)], rows = starts[static_cast<std::size_t>(e) + 1] - s0;
      if (rows == 0) continue;  // an empty expert takes no rows
      const int64_t we = static_cast<int64_t>(e) * I * d;
      ffn_up(xp_.as<uint16_t>() + s0 * d, static_cast<int>(rows), d, w1 + we, w3 + we, I, h1_.as<float>() + s0 * I,
             h3_.as<float>() + s0 * I, a_.as<uint16_t>() + s0 * I);
      ffn_down(a_.as<uint16_t>() + s0 * I, static_cast<int>(rows), I, w2 + we, d, o_.as<uint16_t>() + s0 * d);
    }
    if (Is > 0) {
      ffn_up(x, T, d, dev_.in<uint16_t>(w0 + 3), dev_.in<uint16_t>(w0 + 4), Is, hs1_.as<float>(), hs3_.as<float>(), as_.as<uint16_t>());
      ffn_down(as_.as<uint16_t>(), T, Is, dev_.in<uint16_t>(w0 + 5), d, os_.as<uint16_t>());
    } else {  // no shared expert: its output is zero
      DSV3_CUDA_CHECK(cudaMemsetAsync(os_.data(), 0, os_.size()));
    }
    launch_combine(o_.as<uint16_t>(), row_of_.as<int32_t>(), g_.as<uint16_t>(), os_.as<uint16_t>(), T, k, d, dev_.out<uint16_t>(0));
  }

 private:
  // Row-major [rows, n] = [rows, kdim] . W^T with W row-major [n, kdim]: in cuBLAS's column-major
  // terms C^T (n x rows) = op_T(W) (n x kdim) . X^T (kdim x rows).
  void gemm(const uint16_t* xin, int rows, int kdim, const uint16_t* w, int n, void* c, cudaDataType_t ctype) {
    const float one = 1.0f, zero = 0.0f;
    DSV3_LT_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, kdim, &one, w, CUDA_R_16BF, kdim, xin, CUDA_R_16BF, kdim,
                               &zero, c, ctype, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  void ffn_up(const uint16_t* xin, int rows, int dim, const uint16_t* w1, const uint16_t* w3, int inter, float* h1, float* h3,
              uint16_t* a) {
    gemm(xin, rows, dim, w1, inter, h1, CUDA_R_32F);
    gemm(xin, rows, dim, w3, inter, h3, CUDA_R_32F);
    const int64_t n = static_cast<int64_t>(rows) * inter;
    swiglu_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096)), 256>>>(h1, h3, n, a);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
  void ffn_down(const uint16_t* a, int rows, int inter, const uint16_t* w2, int dim, uint16_t* out) {
    gemm(a, rows, inter, w2, dim, out, CUDA_R_16BF);
  }

  moe_gate::Routing r_;
  DevicePermute perm_;
  CublasHandle handle_;
  DeviceBuffer g_, idx_, row_of_, xp_, group_, h1_, h3_, a_, o_, hs1_, hs3_, as_, os_;
};

}  // namespace

void register_cublas_layer_variant() {
  Variant v = cuda_variant<Params, LayerRunner>(
      "moe", "cublas_bf16",
      "layer: fused gate, deterministic permutation, per-expert cuBLAS BF16 GEMMs (FP32 accumulation), SwiGLU, shared "
      "expert, FP32 weighted combine (optimized/moe_layer.cu)",
      unsupported);
  // |y - ref| <= 1.01 B + 1.01 2^-7 |ref|: B the first-order bound of this path's roundings
  // (reference/moe.cpp layer_error_bound); the output's BF16 rounding on each side (2^-8 each, BF16's
  // unit roundoff: two adjacent BF16 values apart) is the 2^-7 |ref|.
  v.tolerances["y"] = Tolerance::bounded_by(1.01, 0x1p-7 * 1.01, false,
                                            "first-order bound B of FP32 GEMM accumulation, the BF16 roundings of the SwiGLU "
                                            "and expert outputs and the FP32 combine (the magnitude aid, reference/moe.cpp layer_error_bound), "
                                            "plus one BF16 rounding of y on each side (2 * 2^-8 of |ref|)");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::moe
