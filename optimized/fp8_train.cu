// The FP8 training step on the GPU (reference/fp8_train.hpp): the whole step of a Linear layer or
// a SwiGLU MLP in the FP8 recipe, with one of two GEMMs (fp8_train_device.cuh). Variants:
//   cuda_exact  gemm_exact: FP64-exact group sums on CUDA cores with the reference's FP32 promotion,
//               so every output is the reference's bits. For checking the step's logic (quantize,
//               retile, padding, the SwiGLU cache, the skip) at V3 sizes in seconds; not fast.
//   cuda_fp8    cuBLASLt's block-scaled FP8 tensor-core GEMM (fp8_train_lt.cu): the fast path, whose
//               GEMMs round differently from the reference (tolerances below).
// Pieces (all asynchronous on the default stream; scratch allocated in prepare(), none in run()):
//   quantize   fp8_quant's GPU launchers (bit-exact with fp8_quant's reference on an H100):
//              quant_1x128 for X, dY, H, dH and A; quant_128x128 for the weights' BF16 copies;
//              retile_1x128_to_128x1 for Wgrad's 128x1 operands
//   SwiGLU     forward and backward elementwise kernels on fp8_train_math.hpp's deterministic exp
//   AdamW      a finite check of every gradient (one flag), then fp8_train_math.hpp's
//              adamw_element per element, or a copy when the step is skipped
// The BF16 recipe's cuBLAS step is fp8_train_bf16.cu.
//
// Versions (measured on a GPU: none yet; these files have compiled but never run):
//   v1  2026-11-23  cuda_exact.
//   v2  2026-11-24  the GEMM behind an interface; cuda_fp8 on cuBLASLt. Its operands take a gather
//                   (W^T transposed, padding) and a scale re-layout per call: a fused quantizer
//                   writing cuBLASLt's layouts would save those copies.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "optimized/fp8_quant.cuh"
#include "optimized/fp8_train_device.cuh"
#include "reference/fp8_train_case.hpp"

namespace dsv3::fp8train {
namespace {

enum class GemmKind { exact, tensor_core };

std::string unsupported(const Params& p) {
  if (p.recipe != Recipe::fp8) return "the FP8 recipe's step (the BF16 recipe is cublas_bf16)";
  return index_limits(p);
}

// Scratch of one quantized tensor: codes [rows, cols] and 1x128 ([rows, tiles(cols)]) or
// 128x128 ([tiles(rows), tiles(cols)]) scales.
struct Quantized {
  DeviceBuffer codes, scales;
  int64_t rows = 0, cols = 0;
  Quantized() = default;
  Quantized(int64_t r, int64_t c, bool block, const std::string& name)
      : codes(static_cast<std::size_t>(r * c), name + " codes"),
        scales(static_cast<std::size_t>((block ? tiles(r) : r) * tiles(c)) * 4, name + " scales"), rows(r), cols(c) {}
  const uint8_t* c() const { return codes.as<uint8_t>(); }
  const float* s() const { return scales.as<float>(); }
};

class Fp8Step : public DeviceRunner<Params> {
 public:
  Fp8Step(const Params& p, Io& io, GemmKind kind)
      : DeviceRunner(p, io, kind == GemmKind::exact ? "fp8_train/cuda_exact" : "fp8_train/cuda_fp8"),
        cfg_(fp8::gpu::query_launch_cfg()),
        gemm_(kind == GemmKind::exact ? make_exact_gemm() : make_lt_gemm()) {
    const std::string why = unsupported(p_);
    if (!why.empty()) throw std::invalid_argument("fp8_train/cuda: " + why);
    const int64_t m = p_.m, k = p_.k, n = p_.n, fp = pad128(n);
    flag_ = DeviceBuffer(4, "skip flag");
    xq_ = Quantized(m, k, false, "xq");
    xt_ = Quantized(k, m, false, "x^T");
    if (p_.layer == Layer::linear) {
      wb_ = DeviceBuffer(static_cast<std::size_t>(n * k) * 2, "w bf16");
      wq_ = Quantized(n, k, true, "wq");
      dyq_ = Quantized(m, n, false, "dyq");
      dyt_ = Quantized(n, m, false, "dy^T");
    } else {
      wb_ = DeviceBuffer(static_cast<std::size_t>(2 * fp * k) * 2, "w13 bf16");
      wq_ = Quantized(2 * fp, k, true, "w13q");
      w2b_ = DeviceBuffer(static_cast<std::size_t>(k * n) * 2, "w2 bf16");
      w2q_ = Quantized(k, n, true, "w2q");
      h_ = DeviceBuffer(static_cast<std::size_t>(m * 2 * fp) * 2, "H");
      hq_ = Quantized(m, 2 * fp, false, "hq");
      a_ = DeviceBuffer(static_cast<std::size_t>(m * n) * 2, "A");
      aq_ = Quantized(m, n, false, "aq");
      dyq_ = Quantized(m, k, false, "dyq");
      dyt_ = Quantized(k, m, false, "dy^T");
      da_ = DeviceBuffer(static_cast<std::size_t>(m * n) * 2, "dA");
      a2_ = DeviceBuffer(static_cast<std::size_t>(m * n) * 2, "A'");
      a2t_ = DeviceBuffer(static_cast<std::size_t>(m * n) * 2, "A'^T");
      a2tq_ = Quantized(n, m, false, "A'^T q");
      dh_ = DeviceBuffer(static_cast<std::size_t>(m * 2 * fp) * 2, "dH");
      dhq_ = Quantized(m, 2 * fp, false, "dHq");
      dht_ = Quantized(2 * fp, m, false, "dH^T");
      g13_ = DeviceBuffer(static_cast<std::size_t>(2 * fp * k) * 4, "dW13");
    }
    konst_ = adamw_const(p_.adamw(), p_.step);
    if (kind == GemmKind::tensor_core) {  // the first step makes the GEMM's plans and staging: run() allocates nothing
      Fp8Step::run();
      DSV3_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }

  void run() final {
    gemm_->begin_step();
    p_.layer == Layer::linear ? run_linear() : run_swiglu();
  }

 private:
  fp8::Params qparams(fp8::Op op, int64_t rows, int64_t cols) const {
    fp8::Params q;
    q.op = op;
    q.m = rows;
    q.k = cols;
    return q;
  }
  void quant(const void* x, Quantized& q, bool block) {
    const fp8::Params qp = qparams(block ? fp8::Op::quant_128x128 : fp8::Op::quant_1x128, q.rows, q.cols);
    if (block)
      fp8::gpu::quant_128x128(static_cast<const uint16_t*>(x), q.codes.as<uint8_t>(), q.scales.as<float>(), qp, cfg_, nullptr);
    else
      fp8::gpu::quant_1x128(static_cast<const uint16_t*>(x), q.codes.as<uint8_t>(), q.scales.as<float>(), qp, cfg_, nullptr);
  }
  // t = the retile of q ([rows, cols] 1x128) into [cols, rows] 1x128 along rows.
  void retile(const Quantized& q, Quantized& t) {
    fp8::gpu::retile_1x128_to_128x1(q.c(), q.s(), t.codes.as<uint8_t>(), t.scales.as<float>(),
                                    qparams(fp8::Op::retile_1x128_to_128x1, q.rows, q.cols), cfg_, nullptr);
  }
  void copy(void* dst, const void* src, std::size_t bytes) { DSV3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr)); }
  static __nv_bfloat16* bfp(DeviceBuffer& b) { return b.as<__nv_bfloat16>(); }
  template <class T> T* outp(std::size_t i) { return dev_.out<T>(i); }
  template <class T> const T* inp(std::size_t i) const { return dev_.in<T>(i); }
  void gemm(const Operand& a, const Operand& b, int64_t inner, __nv_bfloat16* out_bf16, float* out_f32, int64_t ldo, bool acc) {
    gemm_->run(a, b, inner, out_bf16, out_f32, ldo, acc);
  }

  void run_linear() {
    const int64_t m = p_.m, k = p_.k, n = p_.n;
    cast_to_bf16(inp<float>(2), n * k, bfp(wb_));
    quant(inp<uint16_t>(0), xq_, false);
    quant(wb_.data(), wq_, true);
    const Operand x = rows_1x128(xq_.c(), xq_.s(), m, k), w = blocks(wq_.c(), wq_.s(), n, k);
    gemm(x, w, k, outp<__nv_bfloat16>(0), nullptr, n, false);                                  // Fprop
    quant(inp<uint16_t>(1), dyq_, false);
    gemm(rows_1x128(dyq_.c(), dyq_.s(), m, n), blocks_transposed(wq_.c(), wq_.s(), n, k), n, outp<__nv_bfloat16>(1), nullptr, k,
         false);                                                                                // Dgrad
    retile(dyq_, dyt_);
    retile(xq_, xt_);
    copy(outp<float>(2), inp<float>(3), static_cast<std::size_t>(n * k) * 4);
    gemm(rows_1x128(dyt_.c(), dyt_.s(), n, m), rows_1x128(xt_.c(), xt_.s(), k, m), m, nullptr, outp<float>(2), k, true);  // Wgrad
    optimizer_step(konst_, param_specs(p_), dev_, flag_.as<int>());
  }

  void run_swiglu() {
    const int64_t m = p_.m, d = p_.k, f = p_.n, fp = pad128(f);
    // Weights: [W1; 0; W3; 0] as one BF16 [2 Fp, D] operand, W2 [D, F].
    DSV3_CUDA_CHECK(cudaMemsetAsync(wb_.data(), 0, wb_.size(), nullptr));
    cast_to_bf16(inp<float>(2), f * d, bfp(wb_));
    cast_to_bf16(inp<float>(6), f * d, bfp(wb_) + fp * d);
    cast_to_bf16(inp<float>(10), d * f, bfp(w2b_));
    quant(wb_.data(), wq_, true);
    quant(w2b_.data(), w2q_, true);
    // Forward.
    quant(inp<uint16_t>(0), xq_, false);
    gemm(rows_1x128(xq_.c(), xq_.s(), m, d), blocks(wq_.c(), wq_.s(), 2 * fp, d), d, bfp(h_), nullptr, 2 * fp, false);
    swiglu_forward(bfp(h_), m, f, bfp(a_));
    quant(h_.data(), hq_, false);  // the SwiGLU input, cached in FP8
    quant(a_.data(), aq_, false);
    gemm(rows_1x128(aq_.c(), aq_.s(), m, f), blocks(w2q_.c(), w2q_.s(), d, f), f, outp<__nv_bfloat16>(0), nullptr, d, false);
    // Backward through W2: dA, and W2's gradient from the recomputed A'.
    quant(inp<uint16_t>(1), dyq_, false);
    gemm(rows_1x128(dyq_.c(), dyq_.s(), m, d), blocks_transposed(w2q_.c(), w2q_.s(), d, f), d, bfp(da_), nullptr, f, false);
    DSV3_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, dh_.size(), nullptr));
    swiglu_backward(hq_.c(), hq_.s(), nullptr, bfp(da_), m, f, bfp(dh_), bfp(a2_));
    transpose_bf16(bfp(a2_), m, f, bfp(a2t_));
    quant(a2t_.data(), a2tq_, false);
    retile(dyq_, dyt_);
    copy(outp<float>(10), inp<float>(11), static_cast<std::size_t>(d * f) * 4);
    gemm(rows_1x128(dyt_.c(), dyt_.s(), d, m), rows_1x128(a2tq_.c(), a2tq_.s(), f, m), m, nullptr, outp<float>(10), f, true);
    // Backward through [W1; W3]: dX and the stacked gradient, split into gate and up.
    quant(dh_.data(), dhq_, false);
    gemm(rows_1x128(dhq_.c(), dhq_.s(), m, 2 * fp), blocks_transposed(wq_.c(), wq_.s(), 2 * fp, d), 2 * fp,
         outp<__nv_bfloat16>(1), nullptr, d, false);
    retile(dhq_, dht_);
    retile(xq_, xt_);
    DSV3_CUDA_CHECK(cudaMemsetAsync(g13_.data(), 0, g13_.size(), nullptr));
    gemm(rows_1x128(dht_.c(), dht_.s(), 2 * fp, m), rows_1x128(xt_.c(), xt_.s(), d, m), m, nullptr, g13_.as<float>(), d, true);
    add_f32(inp<float>(3), g13_.as<float>(), f * d, outp<float>(2));
    add_f32(inp<float>(7), g13_.as<float>() + fp * d, f * d, outp<float>(6));
    optimizer_step(konst_, param_specs(p_), dev_, flag_.as<int>());
  }

  fp8::gpu::LaunchCfg cfg_;
  std::unique_ptr<Fp8Gemm> gemm_;
  math::AdamWConst konst_{};
  DeviceBuffer flag_, wb_, w2b_, h_, a_, da_, a2_, a2t_, dh_, g13_;
  Quantized xq_, xt_, wq_, w2q_, hq_, aq_, dyq_, dyt_, a2tq_, dhq_, dht_;
};

template <GemmKind K> class StepOf final : public Fp8Step {
 public:
  StepOf(const Params& p, Io& io) : Fp8Step(p, io, K) {}
};

}  // namespace

void register_bf16_step();  // optimized/fp8_train_bf16.cu

}  // namespace dsv3::fp8train

void dsv3_register_fp8_train_cuda() {
  using namespace dsv3;
  using namespace dsv3::fp8train;
  Variant exact = cuda_variant<Params, StepOf<GemmKind::exact>>(
      "fp8_train", "cuda_exact",
      "the FP8 step on the GPU with the reference's arithmetic: fp8_quant's kernels, FP64-exact group sums "
      "with FP32 promotion, SwiGLU and AdamW on shared scalar code (optimized/fp8_train.cu; not the fast path)",
      unsupported);
  exact.tolerances["*"] = Tolerance::bit_exact(
      "the reference's operations in its order: exact FP64 group sums, FP32 promotion, fp8_quant's bit-exact kernels, "
      "fp8_train_math.hpp's exp and AdamW");
  exact.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(exact));

  Variant tc = cuda_variant<Params, StepOf<GemmKind::tensor_core>>(
      "fp8_train", "cuda_fp8",
      "the FP8 step with cuBLASLt's block-scaled FP8 tensor-core GEMMs (1x128 x 128x128 and 1x128 x 1x128 scales), "
      "fp8_quant's kernels, SwiGLU and AdamW as cuda_exact (optimized/fp8_train.cu, fp8_train_lt.cu)",
      unsupported);
  set_tensor_core_tolerances(tc, Recipe::fp8);
  tc.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(tc));
  register_bf16_step();
}
