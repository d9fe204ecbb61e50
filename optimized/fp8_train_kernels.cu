// The CUDA training steps' shared kernels (fp8_train_device.cuh): the exact FP8 GEMM, SwiGLU
// forward and backward, AdamW with its finite check, and small copies.
//
// gemm_exact: one thread per output, 16 x 16 outputs per block; per 128-group the block stages its
// A and B rows decoded to FP64 in shared memory and sums the 128 products in FP64 (exact: E4M3
// products are multiples of 2^-18 below 2^18, a sum of 128 needs 43 bits), then rounds once to FP32
// and applies RN32(sa sb) and the FP32 accumulation in ascending group order, as
// reference/fp8_gemm.hpp orders it. Operands are read through strides, so W^T (Dgrad) needs no
// transposed copy. SwiGLU and AdamW run fp8_train_math.hpp's scalar code, operation for operation.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "core/dtype.hpp"
#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/fp8_train_device.cuh"

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

class ExactGemm final : public Fp8Gemm {
 public:
  ExactGemm() { upload_e4m3_table(); }
  void run(const Operand& a, const Operand& b, int64_t inner, __nv_bfloat16* out_bf16, float* out_f32, int64_t ldo,
           bool accumulate) override {
    const dim3 grid(static_cast<unsigned>((b.rows + kT - 1) / kT), static_cast<unsigned>((a.rows + kT - 1) / kT));
    gemm_exact<<<grid, kThreads>>>(a, b, inner, out_bf16, out_f32, ldo, accumulate);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
};

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)); }

#define DSV3_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// One correct RNE rounding of an FP64 value to BF16 (gpu::bf16_from_f64).
__device__ __nv_bfloat16 bf16_rn_f64(double d) { return __ushort_as_bfloat16(dsv3::gpu::bf16_from_f64(d)); }

__device__ double bf(const __nv_bfloat16 v) { return static_cast<double>(__bfloat162float(v)); }

__global__ void cast_rows(const float* src, int64_t n, __nv_bfloat16* dst) {
  DSV3_GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void swiglu_forward_kernel(const __nv_bfloat16* h, int64_t m, int64_t f, int64_t fp, __nv_bfloat16* a) {
  DSV3_GRID_STRIDE(i, m * f) {
    const int64_t r = i / f, j = i % f;
    a[i] = bf16_rn_f64(dm::dmul(dm::silu_det(bf(h[r * 2 * fp + j])), bf(h[r * 2 * fp + fp + j])));
  }
}

// The SwiGLU input as the backward sees it: RN32(code * scale) of the FP8 cache, or the BF16 value.
__device__ double cached_h(const uint8_t* hc, const float* hs, const __nv_bfloat16* h16, int64_t at, int64_t group) {
  return hc ? static_cast<double>(__fmul_rn(c_e4m3[hc[at]], hs[group])) : bf(h16[at]);
}

__global__ void swiglu_backward_kernel(const uint8_t* hc, const float* hs, const __nv_bfloat16* h16, const __nv_bfloat16* da,
                                       int64_t m, int64_t f, int64_t fp, __nv_bfloat16* dh, __nv_bfloat16* a) {
  const int64_t groups = 2 * fp / kTile;
  DSV3_GRID_STRIDE(i, m * f) {
    const int64_t r = i / f, j = i % f;
    const double h1 = cached_h(hc, hs, h16, r * 2 * fp + j, r * groups + j / kTile);
    const double h3 = cached_h(hc, hs, h16, r * 2 * fp + fp + j, r * groups + (fp + j) / kTile);
    const double g = bf(da[i]);
    a[i] = bf16_rn_f64(dm::dmul(dm::silu_det(h1), h3));
    dh[r * 2 * fp + j] = bf16_rn_f64(dm::dmul(dm::dmul(g, h3), dm::silu_grad_det(h1)));
    dh[r * 2 * fp + fp + j] = bf16_rn_f64(dm::dmul(g, dm::silu_det(h1)));
  }
}

__global__ void transpose_kernel(const __nv_bfloat16* x, int64_t rows, int64_t cols, __nv_bfloat16* t) {
  DSV3_GRID_STRIDE(i, rows * cols) t[(i % cols) * rows + i / cols] = x[i];
}

__global__ void add_kernel(const float* base, const float* add, int64_t n, float* out) {
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

void check_launch() { DSV3_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

std::unique_ptr<Fp8Gemm> make_exact_gemm() { return std::make_unique<ExactGemm>(); }

void cast_to_bf16(const float* src, int64_t n, __nv_bfloat16* dst) {
  cast_rows<<<blocks_for(n), kThreads>>>(src, n, dst);
  check_launch();
}

void swiglu_forward(const __nv_bfloat16* h, int64_t m, int64_t f, __nv_bfloat16* a) {
  swiglu_forward_kernel<<<blocks_for(m * f), kThreads>>>(h, m, f, pad128(f), a);
  check_launch();
}

void swiglu_backward(const uint8_t* hc, const float* hs, const __nv_bfloat16* h16, const __nv_bfloat16* da, int64_t m,
                     int64_t f, __nv_bfloat16* dh, __nv_bfloat16* a) {
  if (hc) upload_e4m3_table();
  swiglu_backward_kernel<<<blocks_for(m * f), kThreads>>>(hc, hs, h16, da, m, f, pad128(f), dh, a);
  check_launch();
}

void transpose_bf16(const __nv_bfloat16* x, int64_t rows, int64_t cols, __nv_bfloat16* t) {
  transpose_kernel<<<blocks_for(rows * cols), kThreads>>>(x, rows, cols, t);
  check_launch();
}

void add_f32(const float* base, const float* add, int64_t n, float* out) {
  add_kernel<<<blocks_for(n), kThreads>>>(base, add, n, out);
  check_launch();
}

void optimizer_step(const math::AdamWConst& k, const std::vector<ParamSpec>& params, DeviceIo& dev, int* flag) {
  DSV3_CUDA_CHECK(cudaMemsetAsync(flag, 0, 4, nullptr));
  for (std::size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].rows * params[i].cols;
    flag_nonfinite<<<blocks_for(n), kThreads>>>(dev.out<float>(2 + 4 * i), n, flag);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].rows * params[i].cols;
    adamw<<<blocks_for(n), kThreads>>>(k, flag, dev.in<float>(2 + 4 * i), dev.out<float>(2 + 4 * i),
                                       dev.in<__nv_bfloat16>(4 + 4 * i), dev.in<__nv_bfloat16>(5 + 4 * i), n,
                                       dev.out<float>(3 + 4 * i), dev.out<__nv_bfloat16>(4 + 4 * i),
                                       dev.out<__nv_bfloat16>(5 + 4 * i));
  }
  store_flag<<<1, 1>>>(flag, dev.out<uint8_t>(2 + 4 * params.size()));
  check_launch();
}

std::string index_limits(const Params& p) {
  const int64_t fp = pad128(p.n);
  for (int64_t cols : {p.k, p.n, 2 * fp})
    if (p.m * cols >= (int64_t{1} << 31) || cols * p.k >= (int64_t{1} << 31))
      return "a tensor of 2^31 or more elements (the quantize kernels and cuBLAS index with 32 bits)";
  if ((p.m + kT - 1) / kT > 65535 || (std::max(p.k, 2 * fp) + kT - 1) / kT > 65535) return "more than 65535 x 16 rows (grid.y)";
  return {};
}

}  // namespace dsv3::fp8train
