// The FP8 training step on the GPU (reference/fp8_train.hpp), variant "cuda_exact": the whole step
// of a Linear layer or a SwiGLU MLP in the FP8 recipe, computing the CPU reference's bits.
//
// Pieces (all asynchronous on the default stream; scratch allocated in prepare(), none in run()):
//   quantize   fp8_quant's GPU launchers (bit-exact with fp8_quant's reference on an H100):
//              quant_1x128 for X, dY, H, dH and A; quant_128x128 for the weights' BF16 copies;
//              retile_1x128_to_128x1 for Wgrad's 128x1 operands
//   GEMM       gemm_exact: one thread per output, 16 x 16 outputs per block; per 128-group the
//              block stages its A and B rows decoded to FP64 in shared memory and sums the 128
//              products in FP64 (exact: E4M3 products are multiples of 2^-18 below 2^18, a sum of
//              128 needs 43 bits), then rounds once to FP32 and applies RN32(sa sb) and the FP32
//              accumulation in ascending group order, as reference/fp8_gemm.hpp orders it. Operands
//              are read through strides, so W^T (Dgrad) needs no transposed copy.
//   SwiGLU     forward and backward elementwise kernels on fp8_train_math.hpp's deterministic exp
//   AdamW      a finite check of every gradient (one flag), then fp8_train_math.hpp's
//              adamw_element per element, or a copy when the step is skipped
// Every output is held to bit-exactness: the arithmetic is the reference's, operation for operation.
//
// What this variant is for: checking the step's logic (quantize, retile, padding, the SwiGLU cache,
// the skip) on the GPU at V3 sizes in seconds, against the CPU reference. It is not the fast path:
// its GEMMs run on FP64 CUDA cores. The tensor-core step (FP8 GEMMs with FP32 promotion) and the
// BF16 cuBLAS baseline are the next variants.
//
// Versions (measured on a GPU: none yet; this file has compiled but never run):
//   v1  2026-11-23  first version.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "optimized/fp8_quant.cuh"
#include "reference/fp8_train_case.hpp"
#include "reference/fp8_train_math.hpp"

namespace dsv3::fp8train {
namespace {

namespace dm = math;
constexpr int kT = 16;  // gemm_exact: 16 x 16 outputs per block of 256 threads
constexpr int kThreads = 256;

__constant__ float c_e4m3[256];

void upload_e4m3_table() {
  static bool done = false;
  if (done) return;
  float t[256];
  for (int c = 0; c < 256; ++c) t[c] = e4m3_to_f32(static_cast<uint8_t>(c));
  DSV3_CUDA_CHECK(cudaMemcpyToSymbol(c_e4m3, t, sizeof t));
  done = true;
}

// A GEMM operand of `rows` rows: code(r, c) = codes[r rs + c cs]; scale(r, g) = scales[(r / s_div) s_rs + g s_gs].
struct Operand {
  const uint8_t* codes;
  int64_t rs, cs;
  const float* scales;
  int64_t s_div, s_rs, s_gs;
  int64_t rows;
  __device__ float scale(int64_t r, int64_t g) const { return scales[(r / s_div) * s_rs + g * s_gs]; }
};

int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }

// [rows, cols] codes with 1x128 scales [rows, tiles(cols)].
Operand rows_1x128(const uint8_t* c, const float* s, int64_t rows, int64_t cols) { return {c, cols, 1, s, 1, tiles(cols), 1, rows}; }
// [rows, cols] codes with 128x128 scales [tiles(rows), tiles(cols)].
Operand blocks(const uint8_t* c, const float* s, int64_t rows, int64_t cols) { return {c, cols, 1, s, kTile, tiles(cols), 1, rows}; }
// W^T of a 128x128-quantized W [rows, cols]: an operand of `cols` rows whose inner index runs over W's rows.
Operand blocks_transposed(const uint8_t* c, const float* s, int64_t rows, int64_t cols) {
  return {c, 1, cols, s, kTile, 1, tiles(cols), cols};
}

// D [a.rows, b.rows] = A . B^T over `inner` columns (module comment); out_bf16 or out_f32 (accumulate: D += acc).
__global__ void __launch_bounds__(kThreads) gemm_exact(Operand a, Operand b, int64_t inner, __nv_bfloat16* out_bf16,
                                                       float* out_f32, int64_t ldo, bool accumulate) {
  __shared__ double sa[kT][kTile + 1], sb[kT][kTile + 1];
  const int tx = threadIdx.x % kT, ty = threadIdx.x / kT;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kT, col0 = static_cast<int64_t>(blockIdx.x) * kT;
  const int64_t row = row0 + ty, col = col0 + tx;
  const bool mine = row < a.rows && col < b.rows;
  float acc = 0.0f;
  for (int64_t g = 0; g * kTile < inner; ++g) {
    for (int i = threadIdx.x; i < kT * kTile; i += kThreads) {
      const int r = i / kTile, k = i % kTile;
      const int64_t kk = g * kTile + k;
      const int64_t ar = row0 + r, br = col0 + r;
      sa[r][k] = ar < a.rows && kk < inner ? static_cast<double>(c_e4m3[a.codes[ar * a.rs + kk * a.cs]]) : 0.0;
      sb[r][k] = br < b.rows && kk < inner ? static_cast<double>(c_e4m3[b.codes[br * b.rs + kk * b.cs]]) : 0.0;
    }
    __syncthreads();
    double p = 0.0;
    for (int k = 0; k < kTile; ++k) p += sa[ty][k] * sb[tx][k];  // exact in any order (module comment)
    __syncthreads();
    if (mine) acc = __fadd_rn(acc, __fmul_rn(__double2float_rn(p), __fmul_rn(a.scale(row, g), b.scale(col, g))));
  }
  if (!mine) return;
  if (out_bf16) {
    out_bf16[row * ldo + col] = __float2bfloat16_rn(acc);
  } else {
    float& o = out_f32[row * ldo + col];
    o = accumulate ? __fadd_rn(o, acc) : acc;
  }
}

void gemm(const Operand& a, const Operand& b, int64_t inner, __nv_bfloat16* out_bf16, float* out_f32, int64_t ldo, bool accumulate) {
  const dim3 grid(static_cast<unsigned>((b.rows + kT - 1) / kT), static_cast<unsigned>((a.rows + kT - 1) / kT));
  gemm_exact<<<grid, kThreads>>>(a, b, inner, out_bf16, out_f32, ldo, accumulate);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)); }

#define DSV3_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// One correct RNE rounding of an FP64 value to BF16 (gpu::bf16_from_f64).
__device__ __nv_bfloat16 bf16_rn_f64(double d) { return __ushort_as_bfloat16(dsv3::gpu::bf16_from_f64(d)); }

__device__ double bf(const __nv_bfloat16 v) { return static_cast<double>(__bfloat162float(v)); }

// dst = the BF16 rounding of n FP32 master weights.
__global__ void cast_rows(const float* src, int64_t n, __nv_bfloat16* dst) {
  DSV3_GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

// A = bf16(silu(H1) H3) from the BF16 SwiGLU input H [M, 2 Fp].
__global__ void swiglu_forward(const __nv_bfloat16* h, int64_t m, int64_t f, int64_t fp, __nv_bfloat16* a) {
  DSV3_GRID_STRIDE(i, m * f) {
    const int64_t r = i / f, j = i % f;
    a[i] = bf16_rn_f64(dm::dmul(dm::silu_det(bf(h[r * 2 * fp + j])), bf(h[r * 2 * fp + fp + j])));
  }
}

// From the FP8 cache of H (codes [M, 2 Fp], 1x128 scales) and dA [M, F]: dH [M, 2 Fp] (the padding
// columns are zeroed before) and the recomputed A' [M, F].
__global__ void swiglu_backward(const uint8_t* hc, const float* hs, const __nv_bfloat16* da, int64_t m, int64_t f, int64_t fp,
                                __nv_bfloat16* dh, __nv_bfloat16* a) {
  const int64_t groups = 2 * fp / kTile;
  DSV3_GRID_STRIDE(i, m * f) {
    const int64_t r = i / f, j = i % f;
    const double h1 = __fmul_rn(c_e4m3[hc[r * 2 * fp + j]], hs[r * groups + j / kTile]);
    const double h3 = __fmul_rn(c_e4m3[hc[r * 2 * fp + fp + j]], hs[r * groups + (fp + j) / kTile]);
    const double g = bf(da[i]);
    a[i] = bf16_rn_f64(dm::dmul(dm::silu_det(h1), h3));
    dh[r * 2 * fp + j] = bf16_rn_f64(dm::dmul(dm::dmul(g, h3), dm::silu_grad_det(h1)));
    dh[r * 2 * fp + fp + j] = bf16_rn_f64(dm::dmul(g, dm::silu_det(h1)));
  }
}

__global__ void transpose_bf16(const __nv_bfloat16* x, int64_t rows, int64_t cols, __nv_bfloat16* t) {
  DSV3_GRID_STRIDE(i, rows * cols) t[(i % cols) * rows + i / cols] = x[i];
}

// out[i] = RN32(base[i] + add[i]).
__global__ void add_f32(const float* base, const float* add, int64_t n, float* out) {
  DSV3_GRID_STRIDE(i, n) out[i] = __fadd_rn(base[i], add[i]);
}

__global__ void flag_nonfinite(const float* g, int64_t n, int* flag) {
  DSV3_GRID_STRIDE(i, n) if (!isfinite(g[i])) atomicOr(flag, 1);
}

__global__ void adamw(dm::AdamWConst k, const int* skip, const float* w_in, const float* g, const __nv_bfloat16* m_in,
                      const __nv_bfloat16* v_in, int64_t n, float* w_out, __nv_bfloat16* m_out, __nv_bfloat16* v_out) {
  const bool skipped = *skip != 0;
  DSV3_GRID_STRIDE(i, n) {
    float w = w_in[i], m = __bfloat162float(m_in[i]), v = __bfloat162float(v_in[i]);
    if (!skipped) dm::adamw_element(k, g[i], w, m, v);
    w_out[i] = w;
    m_out[i] = __float2bfloat16_rn(m);
    v_out[i] = __float2bfloat16_rn(v);
  }
}

__global__ void store_flag(const int* flag, uint8_t* out) { *out = *flag ? 1 : 0; }

std::string unsupported(const Params& p) {
  if (p.recipe != Recipe::fp8) return "the BF16 recipe's CUDA baseline (cuBLAS BF16 GEMMs) is not built yet";
  const int64_t fp = pad128(p.n);
  for (int64_t cols : {p.k, p.n, 2 * fp})
    if (p.m * cols >= (int64_t{1} << 31) || cols * p.k >= (int64_t{1} << 31))
      return "a tensor of 2^31 or more elements (the quantize kernels index with 32 bits)";
  if ((p.m + kT - 1) / kT > 65535 || (std::max(p.k, 2 * fp) + kT - 1) / kT > 65535) return "more than 65535 x 16 rows (grid.y)";
  return {};
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

class ExactStep final : public Runner {
 public:
  ExactStep(const Params& p, Io& io) : p_(p), io_(io), dev_(io), cfg_(fp8::gpu::query_launch_cfg()) {
    const std::string why = unsupported(p_);
    if (!why.empty()) throw std::invalid_argument("fp8_train/cuda_exact: " + why);
    upload_e4m3_table();
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
  }

  void run() override { p_.layer == Layer::linear ? run_linear() : run_swiglu(); }
  void fetch() override { dev_.fetch(io_); }

 private:
  template <class T> T* outp(std::size_t i) { return dev_.out<T>(i); }
  template <class T> const T* inp(std::size_t i) const { return dev_.in<T>(i); }

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
  __nv_bfloat16* bfp(DeviceBuffer& b) { return b.as<__nv_bfloat16>(); }

  // Gradients accumulated into the outputs; then the finite check and AdamW for every parameter.
  void optimizer(std::size_t params) {
    DSV3_CUDA_CHECK(cudaMemsetAsync(flag_.data(), 0, 4, nullptr));
    for (std::size_t i = 0; i < params; ++i) {
      const ParamSpec s = param_specs(p_)[i];
      flag_nonfinite<<<blocks_for(s.rows * s.cols), kThreads>>>(outp<float>(2 + 4 * i), s.rows * s.cols, flag_.as<int>());
    }
    for (std::size_t i = 0; i < params; ++i) {
      const ParamSpec s = param_specs(p_)[i];
      const int64_t n = s.rows * s.cols;
      adamw<<<blocks_for(n), kThreads>>>(konst_, flag_.as<int>(), inp<float>(2 + 4 * i), outp<float>(2 + 4 * i),
                                         inp<__nv_bfloat16>(4 + 4 * i), inp<__nv_bfloat16>(5 + 4 * i), n, outp<float>(3 + 4 * i),
                                         outp<__nv_bfloat16>(4 + 4 * i), outp<__nv_bfloat16>(5 + 4 * i));
    }
    store_flag<<<1, 1>>>(flag_.as<int>(), outp<uint8_t>(2 + 4 * params));
    DSV3_CUDA_CHECK(cudaGetLastError());
  }

  void run_linear() {
    const int64_t m = p_.m, k = p_.k, n = p_.n;
    cast_rows<<<blocks_for(n * k), kThreads>>>(inp<float>(2), n * k, bfp(wb_));
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
    optimizer(1);
  }

  void run_swiglu() {
    const int64_t m = p_.m, d = p_.k, f = p_.n, fp = pad128(f);
    // Weights: [W1; 0; W3; 0] as one BF16 [2 Fp, D] operand, W2 [D, F].
    DSV3_CUDA_CHECK(cudaMemsetAsync(wb_.data(), 0, wb_.size(), nullptr));
    cast_rows<<<blocks_for(f * d), kThreads>>>(inp<float>(2), f * d, bfp(wb_));
    cast_rows<<<blocks_for(f * d), kThreads>>>(inp<float>(6), f * d, bfp(wb_) + fp * d);
    cast_rows<<<blocks_for(d * f), kThreads>>>(inp<float>(10), d * f, bfp(w2b_));
    quant(wb_.data(), wq_, true);
    quant(w2b_.data(), w2q_, true);
    // Forward.
    quant(inp<uint16_t>(0), xq_, false);
    gemm(rows_1x128(xq_.c(), xq_.s(), m, d), blocks(wq_.c(), wq_.s(), 2 * fp, d), d, bfp(h_), nullptr, 2 * fp, false);
    swiglu_forward<<<blocks_for(m * f), kThreads>>>(bfp(h_), m, f, fp, bfp(a_));
    quant(h_.data(), hq_, false);  // the SwiGLU input, cached in FP8
    quant(a_.data(), aq_, false);
    gemm(rows_1x128(aq_.c(), aq_.s(), m, f), blocks(w2q_.c(), w2q_.s(), d, f), f, outp<__nv_bfloat16>(0), nullptr, d, false);
    // Backward through W2: dA, and W2's gradient from the recomputed A'.
    quant(inp<uint16_t>(1), dyq_, false);
    gemm(rows_1x128(dyq_.c(), dyq_.s(), m, d), blocks_transposed(w2q_.c(), w2q_.s(), d, f), d, bfp(da_), nullptr, f, false);
    DSV3_CUDA_CHECK(cudaMemsetAsync(dh_.data(), 0, dh_.size(), nullptr));
    swiglu_backward<<<blocks_for(m * f), kThreads>>>(hq_.c(), hq_.s(), bfp(da_), m, f, fp, bfp(dh_), bfp(a2_));
    transpose_bf16<<<blocks_for(m * f), kThreads>>>(bfp(a2_), m, f, bfp(a2t_));
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
    add_f32<<<blocks_for(f * d), kThreads>>>(inp<float>(3), g13_.as<float>(), f * d, outp<float>(2));
    add_f32<<<blocks_for(f * d), kThreads>>>(inp<float>(7), g13_.as<float>() + fp * d, f * d, outp<float>(6));
    optimizer(3);
  }

  Params p_;
  Io& io_;
  DeviceIo dev_;
  fp8::gpu::LaunchCfg cfg_;
  dm::AdamWConst konst_{};
  DeviceBuffer flag_, wb_, w2b_, h_, a_, da_, a2_, a2t_, dh_, g13_;
  Quantized xq_, xt_, wq_, w2q_, hq_, aq_, dyq_, dyt_, a2tq_, dhq_, dht_;
};

}  // namespace
}  // namespace dsv3::fp8train

void dsv3_register_fp8_train_cuda() {
  using namespace dsv3;
  using namespace dsv3::fp8train;
  Variant v = cuda_variant<Params, ExactStep>(
      "fp8_train", "cuda_exact",
      "the FP8 step on the GPU with the reference's arithmetic: fp8_quant's kernels, FP64-exact group sums "
      "with FP32 promotion, SwiGLU and AdamW on shared scalar code (optimized/fp8_train.cu; not the fast path)",
      unsupported);
  v.tolerances["*"] = Tolerance::bit_exact(
      "the reference's operations in its order: exact FP64 group sums, FP32 promotion, fp8_quant's bit-exact kernels, "
      "fp8_train_math.hpp's exp and AdamW");
  Registry::instance().add(std::move(v));
}
