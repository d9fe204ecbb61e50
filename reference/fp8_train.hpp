// The FP8 training step (V3-TR §3.3; v3-facts §4.1): a Linear layer and a SwiGLU MLP (the expert
// FFN) trained in the V3 recipe, and the BF16 recipe beside it. The CPU references.
//
// Shape symbols: M tokens, K input features, N output features (Linear: W [N, K], Y = X W^T);
// SwiGLU: D model width, F intermediate, gate_proj W1 [F, D], up_proj W3 [F, D], down_proj W2 [D, F],
// Y = (silu(X W1^T) * (X W3^T)) W2^T.
//
// Recipe::fp8, every GEMM through gemm_fp8 (below):
//   Fprop  Y  = X W^T    A = X, 1x128 tiles along K;  B = W, 128x128 blocks                -> BF16
//   Dgrad  dX = dY W     A = dY, 1x128 tiles along N; B = W^T: the same blocks, transposed   -> BF16
//   Wgrad  dW = dY^T X   A = dY^T, B = X^T, both 1x128 tiles along M (128x1 tiles of dY and X),
//                        made by the retile of the foundation (fp8 retile_1x128_to_128x1:
//                        dequantize the 1x128 codes, transpose, requantize)               -> + FP32 grad
// Quantization is fp8_quant's: E4M3, f32 scales, the divide convention, amax floored at 1e-4;
// activations and gradients from their BF16 values, the weight from the BF16 rounding of its FP32
// master (the BF16 copy a mixed-precision step keeps; fp8_quant's quant_128x128 takes BF16).
// SwiGLU: H = X [W1; W3]^T is one Fprop (the two halves stacked, each padded to a multiple of 128
// rows so that no weight block mixes them); A = silu(H1) * H3 in FP64 from the BF16 H, rounded once
// to BF16; Y = A W2^T. The SwiGLU input H is cached in FP8 (1x128 tiles) and SwiGLU is recomputed
// in the backward from its dequantized values (V3-TR §3.3.3): A' = silu(h1) * h3, dH1 = dA * h3 *
// silu'(h1), dH3 = dA * silu(h1), each in FP64 rounded once to BF16; W2's Wgrad takes A'^T,
// quantized in 1x128 tiles along M directly (it is computed, not cached, so there is nothing to
// retile); X is cached as its Fprop codes and retiled for the Wgrad of W1 and W3.
// Recipe::bf16 (the baseline): the same GEMMs on BF16 operands (W rounded from its master), each
// output the FP64 sum of the exact products rounded once to FP32 (gemm_bf16): BF16 outputs, FP32
// gradients. SwiGLU caches H in BF16.
// Padding rule: a GEMM whose inner dimension (K for Fprop, N for Dgrad, M for Wgrad) is not a
// multiple of 128 sees it zero padded to the next multiple; zero codes add nothing and a partial
// tile's scale comes from its real elements only (fp8_quant's rule), so this is exactly the
// unpadded product of the quantized operands. Outputs are never padded; M = 1 is allowed.
//
// AdamW (V3-TR §4.2: beta1 0.9, beta2 0.95, eps 1e-8, weight decay 0.1) on the FP32 master weight
// with BF16 first and second moments, in FP32 with every operation rounded (RN), in this order:
//   m  = bf16(RN(RN(b1 m) + RN(c1 g)))        c1 = RN32(1 - b1), m the stored BF16 value
//   v  = bf16(RN(RN(b2 v) + RN(RN(c2 g) g)))  c2 = RN32(1 - b2)
//   w  = RN(w RN32(1 - lr wd))                decoupled weight decay, before the step (torch's order)
//   d  = RN(RN(sqrt(v) / RN32(sqrt(1 - b2^t))) + eps)
//   w  = RN(w - RN(RN32(lr / (1 - b1^t)) RN(m / d)))
// with the bias corrections and the scalar products computed in FP64 and rounded once to FP32
// (adamw_const), sqrt correctly rounded (reference/fp8_train_math.hpp holds the per-element code
// the CUDA step shares).
// A non-finite gradient anywhere in the step skips the whole update (weights and moments keep
// their values, `skipped` is 1), as mixed-precision training skips an overflowed step; the
// accumulated gradient is returned as it is, NaN included, for the caller to inspect and zero.
//
// The high-precision step (step_f64) runs the same layer in FP64 on the unquantized tensors: the
// BF16 X and dY, the FP32 master weights, FP64 moments never rounded. It is what the bundle
// measures the FP8 step's gradients and updates against.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/fp8_train_math.hpp"

namespace dsv3::fp8train {

enum class Recipe : uint8_t { fp8, bf16 };
std::string_view recipe_name(Recipe r);
Recipe recipe_from_name(std::string_view s);  // throws std::invalid_argument naming the known ones

constexpr int64_t kTile = 128;
inline int64_t pad128(int64_t n) { return (n + kTile - 1) / kTile * kTile; }

// One operand of an FP8 GEMM: `rows` rows of `cols` E4M3 codes (cols a multiple of 128, zero codes
// past the real columns), one f32 scale per row and 128-column group. A 128x128-block operand
// stores its block's scale on each of the block's rows, so both tilings multiply the same way.
struct Fp8Rows {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;  // [rows, cols]
  std::vector<float> scales;   // [rows, cols / 128]
  int64_t groups() const { return cols / kTile; }
};

// x row-major [rows, cols] (ld = cols). 1x128 tiles along the row; 128x128 blocks.
Fp8Rows quantize_1x128(const float* x, int64_t rows, int64_t cols);
Fp8Rows quantize_128x128(const float* w, int64_t rows, int64_t cols);
// W^T of a 128x128-quantized W [N = real_rows, K] as an operand [pad128(K), pad128(N)]: the codes
// transposed, each block's scale unchanged (exact). Its rows past K are zero codes.
Fp8Rows transpose_blocks(const Fp8Rows& w, int64_t real_rows);
// x^T of a 1x128-quantized x [M, K] (`real_cols` = K) as an operand [K, pad128(M)]: 1x128 tiles
// along M, computed by the foundation's retile (dequantize RN32(code * scale), transpose, requantize).
Fp8Rows retile_to_columns(const Fp8Rows& x, int64_t real_cols);
// Dequantized values RN32(code * scale), [rows, real_cols].
std::vector<float> dequantize(const Fp8Rows& x, int64_t real_cols);

// D [M, N] (f32, row-major) = A . B^T in the FP8 GEMM reference's order (reference/fp8_gemm.hpp):
// per 128-group the exact product sum rounded once to FP32, times RN32(sa * sb), accumulated from
// +0 in FP32 in ascending group order; with `accumulate`, D = RN32(D + acc). A.cols == B.cols.
// Threaded over fixed 64-row blocks: identical results for any thread count.
void gemm_fp8(const Fp8Rows& a, const Fp8Rows& b, float* d, bool accumulate);
// D [M, N] = A [M, K] . B [N, K]^T, each the FP64 sum of the products rounded once to FP32 (with
// `accumulate`, D = RN32(D + that)): the BF16 recipe's GEMM on BF16-valued operands.
void gemm_bf16(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* d, bool accumulate);

// A row-major [rows, cols] matrix transposed to [cols, rows].
template <class T> std::vector<T> transposed(const T* x, int64_t rows, int64_t cols) {
  std::vector<T> t(static_cast<std::size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<std::size_t>(c * rows + r)] = x[r * cols + c];
  return t;
}

// Rounds every value to BF16 (returned as floats holding BF16 values).
void round_bf16(std::vector<float>& v);
// One correct rounding of an FP64 value to BF16, as a float.
float bf16_value(double v);

// One parameter tensor and its optimizer state.
struct Param {
  std::string name;          // Hugging Face name ("gate_proj", "weight", ...)
  int64_t rows = 0, cols = 0;
  std::vector<float> w;      // FP32 master
  std::vector<float> grad;   // FP32 accumulated gradient
  std::vector<float> m, v;   // AdamW moments, BF16 values
};

struct AdamW {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// True when every gradient element of every parameter is finite.
bool grads_finite(const std::vector<Param*>& ps);
// One AdamW update of every parameter at step t >= 1 (the order above); returns false (nothing
// changed) when a gradient is not finite.
bool adamw_step(const std::vector<Param*>& ps, int64_t t, const AdamW& h);

// A Linear layer's forward cache: the Fprop operands (FP8 codes, or BF16 values).
struct LinearCache {
  Recipe recipe = Recipe::fp8;
  int64_t m = 0, k = 0, n = 0;
  Fp8Rows xq, wq;                 // fp8
  std::vector<float> x, w;        // bf16 recipe: X and the BF16-rounded W
};
// y [M, N] (BF16 values) = X W^T with X [M, K] BF16 values and the master W [N, K].
void linear_forward(Recipe r, const float* x, int64_t m, const Param& w, float* y, LinearCache& c);
// dx [M, K] (BF16 values; may be null) = dY W; w.grad += dY^T X. With `x_fresh` (the layer input
// recomputed in the backward, BF16 values [M, K]) the Wgrad quantizes it instead of retiling the
// cached codes.
void linear_backward(const LinearCache& c, const float* dy, float* dx, Param& w, const float* x_fresh = nullptr);

// The SwiGLU MLP's step pieces. The parameters are gate_proj [F, D], up_proj [F, D], down_proj [D, F].
struct SwigluCache {
  Recipe recipe = Recipe::fp8;
  int64_t m = 0, d = 0, f = 0;
  Param w13;              // [2 pad128(F), D]: gate rows, then up rows (zero rows between)
  LinearCache up, down;   // Fprop of [W1; W3] and of W2
  Fp8Rows hq;             // fp8: the SwiGLU input H, [M, 2 pad128(F)]
  std::vector<float> h;   // bf16: the SwiGLU input H
};
void swiglu_forward(Recipe r, const float* x, int64_t m, const Param& gate, const Param& up, const Param& down,
                    float* y, SwigluCache& c);
// dx [M, D] may be null; the three gradients are accumulated.
void swiglu_backward(SwigluCache& c, const float* dy, float* dx, Param& gate, Param& up, Param& down);

// SwiGLU's elementwise pieces in FP64 on the deterministic exp of fp8_train_math.hpp (the CUDA
// step computes the same bits).
double silu(double h);
double silu_grad(double h);  // d silu / dh

// The FP32 scalars of AdamW step t >= 1 (std::invalid_argument otherwise).
math::AdamWConst adamw_const(const AdamW& h, int64_t t);

// The high-precision step in FP64 (Recipe-free): y, dx, the gradient increment of each weight and
// each weight's updated value and moments after AdamW at step t from the inputs' state.
struct StepF64 {
  std::vector<double> y, dx;
  struct ParamOut {
    std::vector<double> dgrad, w, m, v;  // dgrad: the step's own gradient (no accumulated part)
  };
  std::vector<ParamOut> params;  // in the order given
  bool skipped = false;
};
// `layer_params` = {weight} (Linear) or {gate, up, down} (SwiGLU), with their state.
StepF64 step_f64(bool swiglu, const std::vector<float>& x, const std::vector<float>& dy, int64_t m,
                 const std::vector<const Param*>& layer_params, int64_t t, const AdamW& h);

}  // namespace dsv3::fp8train
