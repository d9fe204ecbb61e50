// RMSNorm as DeepSeek-V3 uses it (v3-facts §1.2): every norm of the model (attn_norm, ffn_norm,
// the final norm, and MLA's q_norm on the 1536-wide query latent and kv_norm on the 512-wide KV
// latent), eps 1e-6, BF16 activations and BF16 weights.
//
//   y[r, j] = RN_bf16( RN_bf16( x[r, j] * rinv[r] ) * w[j] )
//   rinv[r] = RN_f32( 1 / sqrt( sum_j x[r, j]^2 / D + eps ) )
//
// The two roundings to BF16 are PyTorch's composite rms_norm and Hugging Face's
// DeepseekV3RMSNorm: x is normalized in FP32, cast to the input dtype, then multiplied by the BF16
// weight (a BF16 x BF16 product is exact in FP32, so the second step is one rounding). model.py
// calls F.rms_norm on BF16 tensors; whether a fused PyTorch kernel rounds once instead was not
// checked (v3-facts §12 item 11). x * rinv is one FP32 multiply (RN), then RNE to BF16.
//
// The reference sums the squares in FP64 (each square of a BF16 value is exact in FP64), so
// rinv is the correctly rounded FP32 value up to the FP64 sum's relative error (~1e-16 * D). A GPU
// kernel reduces in FP32 in another order: its rinv may differ in the last bits of FP32, which can
// move x * rinv across a BF16 rounding boundary. That is the only source of difference; the CUDA
// variant's tolerance (optimized/rmsnorm.cu) is derived from it.
// Special values: a NaN in a row makes the whole row NaN; an Inf makes rinv 0 (its square
// overflows the sum), so the row is 0 except the Inf elements, which give NaN (Inf * 0); an
// all-zero row gives 0. The FP32 mean overflows to Inf (rinv 0) exactly when the FP64 sum / D
// exceeds FLT_MAX.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fill.hpp"
#include "core/tensor.hpp"

namespace dsv3::rmsnorm {

constexpr double kEps = 1e-6;  // model.py RMSNorm default, used by every norm (v3-facts §1.2)

struct Params {
  int64_t rows = 1;         // tokens
  int64_t dim = 7168;       // D, the normalized width (7168 hidden, 1536 q_norm, 512 kv_norm)
  double eps = kEps;        // added to the mean square
  Dist dist = Dist::normal; // distribution of x; w is 1 + N(0, 0.25^2), seeded separately
  double scale = 1.0;       // scale of x's distribution
  std::string to_string() const;  // the case identity, e.g. "rows=4096 dim=7168 normal"
  void validate() const;          // throws std::invalid_argument naming the field
};

// Inputs x bf16 [rows, dim], w bf16 [dim]; output y bf16 [rows, dim].
std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);

// The reference, threaded over rows (identical output for any thread count).
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);
// rinv of one row of BF16 codes (exposed for the tests).
float row_rinv(const uint16_t* x, int64_t dim, double eps);
// One row: y = RN_bf16(RN_bf16(x * rinv) * w), BF16 codes (the model's norms use it too).
void normalize_row(const uint16_t* x, const uint16_t* w, int64_t dim, double eps, uint16_t* y);

}  // namespace dsv3::rmsnorm
