// The pieces the CUDA training steps share (optimized/fp8_train*.cu; semantics in
// reference/fp8_train.hpp): the elementwise kernels' launchers, the optimizer launch, and the FP8
// GEMM interface with its two implementations.
//   Fp8Gemm       D [a.rows, b.rows] = A . B^T over `inner` columns with the reference's 128-group
//                 scales, BF16 output or FP32 output (accumulate: D = RN32(D + acc)).
//     make_exact_gemm()   FP64-exact group sums on CUDA cores, FP32 promotion in the reference's
//                         order: the reference's bits (optimized/fp8_train_kernels.cu)
//     make_lt_gemm()      cuBLASLt's block-scaled FP8 tensor-core GEMM (optimized/fp8_train_lt.cu)
// Every launch is asynchronous on the default stream.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "optimized/device_io.hpp"
#include "reference/fp8_train_case.hpp"
#include "reference/fp8_train_math.hpp"

namespace dsv3::fp8train {

// A GEMM operand of `rows` rows: code(r, c) = codes[r rs + c cs]; scale(r, g) = scales[(r / s_div) s_rs + g s_gs].
struct Operand {
  const uint8_t* codes;
  int64_t rs, cs;
  const float* scales;
  int64_t s_div, s_rs, s_gs;
  int64_t rows;
  __device__ float scale(int64_t r, int64_t g) const { return scales[(r / s_div) * s_rs + g * s_gs]; }
  bool block_scaled() const { return s_div == kTile; }  // 128x128 blocks (else 1x128 tiles)
};

inline int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }
// [rows, cols] codes with 1x128 scales [rows, tiles(cols)].
inline Operand rows_1x128(const uint8_t* c, const float* s, int64_t rows, int64_t cols) {
  return {c, cols, 1, s, 1, tiles(cols), 1, rows};
}
// [rows, cols] codes with 128x128 scales [tiles(rows), tiles(cols)].
inline Operand blocks(const uint8_t* c, const float* s, int64_t rows, int64_t cols) {
  return {c, cols, 1, s, kTile, tiles(cols), 1, rows};
}
// W^T of a 128x128-quantized W [rows, cols]: an operand of `cols` rows whose inner index runs over W's rows.
inline Operand blocks_transposed(const uint8_t* c, const float* s, int64_t rows, int64_t cols) {
  return {c, 1, cols, s, kTile, 1, tiles(cols), cols};
}

class Fp8Gemm {
 public:
  virtual ~Fp8Gemm() = default;
  virtual void begin_step() {}  // the step's GEMM calls follow, in the same order every step
  // Exactly one of out_bf16 / out_f32; ldo is the output's row stride in elements.
  virtual void run(const Operand& a, const Operand& b, int64_t inner, __nv_bfloat16* out_bf16, float* out_f32,
                   int64_t ldo, bool accumulate) = 0;
};
std::unique_ptr<Fp8Gemm> make_exact_gemm();
// Plans (cuBLASLt descriptors, heuristics, staging) are made on a call's first use and reused by
// the calls in the same order after it: run the step once at prepare. Throws VariantUnsupported
// with the library's answer when it offers no algorithm.
std::unique_ptr<Fp8Gemm> make_lt_gemm();

// Elementwise launchers (optimized/fp8_train_kernels.cu).
void cast_to_bf16(const float* src, int64_t n, __nv_bfloat16* dst);                // dst = bf16(src)
// A [M, F] = bf16(silu(H1) H3) from the BF16 SwiGLU input H [M, 2 Fp] (gate columns, then up at Fp).
void swiglu_forward(const __nv_bfloat16* h, int64_t m, int64_t f, __nv_bfloat16* a);
// From the SwiGLU input (FP8 cache: codes and 1x128 scales; or BF16 values when hc is null) and
// dA [M, F]: dH [M, 2 Fp] (its padding columns are left as they are) and the recomputed A' [M, F].
void swiglu_backward(const uint8_t* hc, const float* hs, const __nv_bfloat16* h16, const __nv_bfloat16* da, int64_t m,
                     int64_t f, __nv_bfloat16* dh, __nv_bfloat16* a);
void transpose_bf16(const __nv_bfloat16* x, int64_t rows, int64_t cols, __nv_bfloat16* t);  // [rows, cols] -> [cols, rows]
void add_f32(const float* base, const float* add, int64_t n, float* out);                  // out = RN32(base + add)
// The gradients are in the outputs (P.grad at 2 + 4 i); the finite check over all of them, then
// AdamW per parameter (or a copy when skipped), and the `skipped` output.
void optimizer_step(const math::AdamWConst& k, const std::vector<ParamSpec>& params, DeviceIo& dev, int* flag);

// Why a case is beyond the 32-bit indexing of the step's kernels (empty when it is not).
std::string index_limits(const Params& p);

}  // namespace dsv3::fp8train
