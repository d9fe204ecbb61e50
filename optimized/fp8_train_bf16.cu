// The BF16 recipe's training step on the GPU (reference/fp8_train.hpp, Recipe::bf16), variant
// "cublas_bf16": the baseline the FP8 step's speedup is measured against. Every GEMM is one
// cublasGemmEx on BF16 operands with FP32 accumulation (CUBLAS_COMPUTE_32F, default math: no
// reduced-precision reductions), BF16 outputs for Y, dX, H and dA, FP32 for the weight gradients
// (Wgrad accumulates into the gradient with beta = 1). SwiGLU caches H in BF16; the elementwise
// kernels and AdamW are the FP8 step's (fp8_train_kernels.cu).
// cuBLAS is column-major: a row-major [r, c] matrix is its [c, r]; so
//   Fprop  Y [M, N] = X W^T   is  Y^T = op_T(W) X^T        gemm(T, N, N, M, K)
//   Dgrad  dX [M, K] = dY W   is  dX^T = W^T dY^T           gemm(N, N, K, M, N)
//   Wgrad  dW [N, K] += dY^T X  is  dW^T = X^T op_T(dY^T)   gemm(N, T, K, N, M)
// Has compiled; has not run on a GPU.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "optimized/cublaslt.hpp"
#include "optimized/cuda_check.hpp"
#include "optimized/fp8_train_device.cuh"

namespace dsv3::fp8train {
namespace {

std::string unsupported(const Params& p) {
  if (p.recipe != Recipe::bf16) return "the BF16 recipe's step (the FP8 recipe is cuda_exact and cuda_fp8)";
  return index_limits(p);
}

class Bf16Step final : public DeviceRunner<Params> {
 public:
  Bf16Step(const Params& p, Io& io) : DeviceRunner(p, io, "fp8_train/cublas_bf16") {
    const std::string why = unsupported(p_);
    if (!why.empty()) throw std::invalid_argument("fp8_train/cublas_bf16: " + why);
    const auto m = static_cast<std::size_t>(p_.m), k = static_cast<std::size_t>(p_.k), n = static_cast<std::size_t>(p_.n),
               fp = static_cast<std::size_t>(pad128(p_.n));
    flag_ = DeviceBuffer(4, "skip flag");
    if (p_.layer == Layer::linear) {
      wb_ = DeviceBuffer(n * k * 2, "w bf16");
    } else {
      wb_ = DeviceBuffer(2 * fp * k * 2, "w13 bf16");
      w2b_ = DeviceBuffer(k * n * 2, "w2 bf16");
      h_ = DeviceBuffer(m * 2 * fp * 2, "H");
      a_ = DeviceBuffer(m * n * 2, "A");
      da_ = DeviceBuffer(m * n * 2, "dA");
      a2_ = DeviceBuffer(m * n * 2, "A'");
      dh_ = DeviceBuffer(m * 2 * fp * 2, "dH");
      g13_ = DeviceBuffer(2 * fp * k * 4, "dW13");
    }
    konst_ = adamw_const(p_.adamw(), p_.step);
  }

  void run() override { p_.layer == Layer::linear ? run_linear() : run_swiglu(); }

 private:
  using bf16 = __nv_bfloat16;
  static bf16* bfp(DeviceBuffer& b) { return b.as<bf16>(); }

  // Column-major C [rows, cols] (ld rows) = op(A) op(B) (+ C), inner `depth`; A and B BF16.
  void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t rows, int64_t cols, int64_t depth, const bf16* a, int64_t lda,
            const bf16* b, int64_t ldb, void* c, cudaDataType_t ctype, bool accumulate) {
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const auto i = [](int64_t v) { return static_cast<int>(v); };  // index_limits keeps every size below 2^31
    DSV3_LT_CHECK(cublasGemmEx(handle_, ta, tb, i(rows), i(cols), i(depth), &one, a, CUDA_R_16BF, i(lda), b, CUDA_R_16BF, i(ldb),
                               &beta, c, ctype, i(rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  // Y [m, n] (bf16) = X [m, k] W^T, W [n, k].
  void fprop(const bf16* x, const bf16* w, int64_t m, int64_t n, int64_t k, bf16* y) {
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, w, k, x, k, y, CUDA_R_16BF, false);
  }
  // dX [m, k] (bf16) = dY [m, n] W, W [n, k].
  void dgrad(const bf16* dy, const bf16* w, int64_t m, int64_t n, int64_t k, bf16* dx) {
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, k, m, n, w, k, dy, n, dx, CUDA_R_16BF, false);
  }
  // dW [n, k] (f32) (+)= dY^T [n, m] X [m, k].
  void wgrad(const bf16* dy, const bf16* x, int64_t m, int64_t n, int64_t k, float* dw, bool accumulate) {
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, x, k, dy, n, dw, CUDA_R_32F, accumulate);
  }
  void copy(void* dst, const void* src, std::size_t bytes) {
    DSV3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr));
  }

  void run_linear() {
    const int64_t m = p_.m, k = p_.k, n = p_.n;
    const bf16* x = dev_.in<bf16>(0);
    const bf16* dy = dev_.in<bf16>(1);
    cast_to_bf16(dev_.in<float>(2), n * k, bfp(wb_));
    fprop(x, bfp(wb_), m, n, k, dev_.out<bf16>(0));
    dgrad(dy, bfp(wb_), m, n, k, dev_.out<bf16>(1));
    copy(dev_.out<float>(2), dev_.in<float>(3), static_cast<std::size_t>(n * k) * 4);
    wgrad(dy, x, m, n, k, dev_.out<float>(2), true);
    optimizer_step(konst_, param_specs(p_), dev_, flag_.as<int>());
  }

  void run_swiglu() {
    const int64_t m = p_.m, d = p_.k, f = p_.n, fp = pad128(f);
    const bf16* x = dev_.in<bf16>(0);
    const bf16* dy = dev_.in<bf16>(1);
    // Weights: [W1; 0; W3; 0] as one BF16 [2 Fp, D] operand, W2 [D, F].
    DSV3_CUDA_CHECK(cudaMemsetAsync(wb_.data(), 0, wb_.size(), nullptr));
    cast_to_bf16(dev_.in<float>(2), f * d, bfp(wb_));
    cast_to_bf16(dev_.in<float>(6), f * d, bfp(wb_) + fp * d);
    cast_to_bf16(dev_.in<float>(10), d * f, bfp(w2b_));
    // Forward; H is the BF16 cache.
    fprop(x, bfp(wb_), m, 2 * fp, d, bfp(h_));
    swiglu_forward(bfp(h_), m, f, bfp(a_));
    fprop(bfp(a_), bfp(w2b_), m, d, f, dev_.out<bf16>(0));
    // Backward through W2: dA, and W2's gradient from the recomputed A'.
    dgrad(dy, bfp(w2b_), m, d, f, bfp(da_));
    DSV3_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, dh_.size(), nullptr));
    swiglu_backward(nullptr, nullptr, bfp(h_), bfp(da_), m, f, bfp(dh_), bfp(a2_));
    copy(dev_.out<float>(10), dev_.in<float>(11), static_cast<std::size_t>(d * f) * 4);
    wgrad(dy, bfp(a2_), m, d, f, dev_.out<float>(10), true);
    // Backward through [W1; W3]: dX and the stacked gradient, split into gate and up.
    dgrad(bfp(dh_), bfp(wb_), m, 2 * fp, d, dev_.out<bf16>(1));
    wgrad(bfp(dh_), x, m, 2 * fp, d, g13_.as<float>(), false);
    add_f32(dev_.in<float>(3), g13_.as<float>(), f * d, dev_.out<float>(2));
    add_f32(dev_.in<float>(7), g13_.as<float>() + fp * d, f * d, dev_.out<float>(6));
    optimizer_step(konst_, param_specs(p_), dev_, flag_.as<int>());
  }

  CublasHandle handle_;
  math::AdamWConst konst_{};
  DeviceBuffer flag_, wb_, w2b_, h_, a_, da_, a2_, dh_, g13_;
};

}  // namespace

void register_bf16_step() {
  Variant v = cuda_variant<Params, Bf16Step>(
      "fp8_train", "cublas_bf16",
      "the BF16 recipe's step: cublasGemmEx BF16 GEMMs with FP32 accumulation, BF16 SwiGLU cache, the FP8 step's "
      "SwiGLU and AdamW kernels: the baseline of the FP8 step's speedup (optimized/fp8_train_bf16.cu)",
      unsupported);
  set_tensor_core_tolerances(v, Recipe::bf16);
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::fp8train
