// FP8 block-scaled GEMMs (V3-TR §3.3; v3-facts §4.1-4.2; DeepGEMM's layouts): the CPU references.
//
// Shape symbols: M rows of A (tokens), N output features (rows of B: DeepSeek's layout, the
// weight is [N, K]), K the inner dimension, Kb = K/128 scale groups, Nb = ceil(N/128), G groups
// (experts), Mc the per-group capacity of the masked layout.
//
//   D[M, N] = A[M, K] . B[N, K]^T   A E4M3 with 1x128 scales sa [M, Kb]   (activations)
//                                   B E4M3 with 128x128 scales sb [Nb, Kb] (weights)
// Scales are what checkpoints call weight_scale_inv (value = code * scale): f32 tensors, or with
// ScaleFmt::ue8m0 one UE8M0 code per scale (value 2^(code - 127), 0xff = NaN).
//
// Summation order of the reference "ref" (what "exact" means for it), for each output (m, n):
//   acc = +0.0f
//   for g = 0 .. Kb-1, ascending:
//     p = RN32( sum over the 128 k of group g of a[m, k] * b[n, k] )   exact sum, rounded once
//     s = RN32( sa[m, g] * sb[n / 128, g] )
//     acc = RN32( acc + RN32(p * s) )                                   two roundings, no FMA
//   D = out(acc), or with accumulate D = out(RN32(C + acc))            out: RN to bf16, or f32 as is
// p is exact before its one rounding: E4M3 values are integer multiples of 2^-9 below 2^9, so a
// product is a multiple of 2^-18 below 2^18 and a sum of 128 products needs at most 43 bits,
// which double holds whatever the order; the code computes it with Eigen's double GEMM.
// This is the best a kernel that promotes every 128 of K (kernel.py's fp8_gemm, DeepGEMM) can do
// per group; tensor cores sum each group with fewer bits (reference/fp8_accum) and may fuse the
// scale multiply-add, so GPU variants are checked against a bound, not bit for bit.
// Non-finite values follow IEEE arithmetic: a NaN code in a group makes p NaN (also against a
// zero), an Inf or NaN scale makes p * s Inf or NaN (Inf * 0 = NaN), and both propagate to D.
// E4M3 has no Inf code. K must be a multiple of 128 (kernel.py's act_quant asserts it; DeepGEMM
// requires it): other K are rejected with an error; zero-pad A and B along K to call these.
//
// Two higher-precision references share the same inputs (the error budget, docs/fp8-gemm.md):
//   f64_dequant   sum over k of (a sa)(b sb) in FP64 on the dequantized operands: the kernel's
//                 rounding error alone;
//   f64_original  X . W^T in FP64 on the BF16 tensors A and B were quantized from: quantization
//                 error included (what DeepGEMM's tests compare against, by calc_diff).
//
// Layouts (Layout):
//   dense        a [M, K], sa [M, Kb], b [N, K], sb [Nb, Kb]; d (and c) [M, N]
//   contiguous   MoE experts, prefill/training (DeepGEMM m_grouped contiguous): a [M, K] holds
//                every group's rows, each group's segment padded to a multiple of 128 rows
//                (kMAlign); group_index i32 [M] gives each row's group, -1 for padding rows;
//                b [G, N, K], sb [G, Nb, Kb]; d [M, N]. Padding rows are never read and their
//                rows of d are left untouched. Within each aligned block of 128 rows the
//                non-negative indices are one group and -1 only follows them.
//   masked       MoE decode (DeepGEMM m_grouped masked): a [G, Mc, K], sa [G, Mc, Kb],
//                b [G, N, K], sb [G, Nb, Kb], counts i32 [G] (valid rows per group, 0..Mc);
//                d [G, Mc, N]; rows at or past counts[g] are never read nor written.
// The references are threaded with parallel_for over (row tile, 128-column block) pairs; every
// output element is computed by one task in the order above, so results are identical for any
// thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fill.hpp"
#include "core/tensor.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8gemm {

using fp8::ScaleFmt;

enum class Layout : uint8_t { dense, contiguous, masked };
std::string_view layout_name(Layout);
Layout layout_from_name(std::string_view);  // throws std::invalid_argument naming the known ones

constexpr int64_t kGroup = 128;   // K per scale group, rows/cols per weight block
constexpr int64_t kMAlign = 128;  // contiguous layout: segment alignment in rows

struct Params {
  Layout layout = Layout::dense;
  int64_t m = 1;                     // dense: rows of A; masked: capacity Mc per group; contiguous: unused (rows)
  int64_t n = 128;                   // output features (rows of B)
  int64_t k = 128;                   // inner dimension, a multiple of 128
  std::vector<int64_t> rows;         // grouped: valid rows per group (contiguous: before padding); size G
  ScaleFmt scale_fmt = ScaleFmt::f32;
  DType out = DType::bf16;           // bf16 or f32
  bool accumulate = false;           // D = C + A.B^T with C f32, the shape of D
  bool per_tensor = false;           // one scale for all of A and one for all of B (the per-tensor
                                     // FP8 recipe; stored in the same scale tensors)
  Dist dist = Dist::normal;          // A's values (B: normal, except small_ints/adversarial/zeros: the same)
  double scale = 1.0;                // A's distribution scale
  std::string to_string() const;     // the case identity
  void validate() const;             // throws std::invalid_argument naming the field

  int64_t groups() const { return layout == Layout::dense ? 1 : static_cast<int64_t>(rows.size()); }
  int64_t kb() const { return k / kGroup; }
  int64_t nb() const { return (n + kGroup - 1) / kGroup; }
  int64_t a_rows() const;            // rows of A (and D): dense m, contiguous sum of padded segments, masked G*Mc
  int64_t valid_rows() const;        // rows that are tokens (FLOPs count these)
};

// Names, dtypes and shapes of a case's tensors (inputs: a, sa, b, sb, [group_index | counts], [c]).
std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);  // d

// The BF16 tensors A and B are quantized from (seeded from the case identity): x [a_rows, K],
// w [G, N, K] (dense: [N, K]).
struct Originals {
  Tensor x, w;
};
Originals make_originals(const Params& p);
// Inputs of the case: quantized originals (small_ints: integer codes and power-of-two scales,
// built directly so that every result is exact in FP32; see docs/fp8-gemm.md).
std::vector<Tensor> make_inputs(const Params& p);
std::vector<Tensor> make_outputs(const Params& p);

// The FP8-emulating reference (the order above). Checks every tensor (ShapeError naming it) and
// the layout's index tensor (std::invalid_argument naming it and the offending rows).
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);

// A scale tensor's values as float: f32 as stored, UE8M0 codes decoded exactly.
std::vector<float> scale_values(const Tensor& s);

// Token rows of the case, validated (invalid index tensors throw std::invalid_argument naming the
// tensor and rows): contiguous runs of A's rows that multiply group g's B, one per group segment
// (dense: one range; masked: one per group with a non-zero count; empty groups have none).
struct RowRange {
  int64_t row0, rows, g;
};
std::vector<RowRange> token_rows(const Params& p, const std::vector<Tensor>& in);

// FP64 results, row-major [a_rows, N]; rows that are not tokens hold NaN.
std::vector<double> f64_dequant(const Params& p, const std::vector<Tensor>& in);
std::vector<double> f64_original(const Params& p, const Originals& o);

// Per output element, an upper bound of sum_g sa sb sum_k |a_k b_k| (Cauchy-Schwarz per group:
// sum_k |a_k b_k| <= ||a_g|| ||b_g||), f32 [a_rows, N] named "magnitude:d"; and the elements
// the case's construction proves exact in FP32 for any accumulation that keeps 13 fraction bits
// per group (u8 mask "exact:d"; small_ints cases only).
std::vector<Tensor> check_aids(const Params& p, const std::vector<Tensor>& in);

// Tolerance terms of the tensor-core variants (docs/fp8-gemm.md derives them), shared by the
// cuBLASLt baselines and the own kernel.
// The two outputs' bf16 roundings: |bf16(x) - bf16(y)| <= |x - y| + 2^-8 (|x| + |y|) (BF16's unit
// roundoff 2^-8 on each side: two adjacent BF16 values apart), so 2^-7 |ref| with |x| ~ |y|.
constexpr double kRtolOut = 0x1p-7;
// Tensor cores sum each 128-wide group in 4 steps of 32 products; each step aligns at most 33
// terms (the running sum included) to the largest and keeps >= 13 fraction bits (ISCA §3.1.1), so
// a group's error is below 4 * 33 * 2^-13 of its sum of |a_k b_k|; the FP32 scale steps add
// (Kb + 2) * 2^-24 <= 2^-16 of it.
constexpr double kEpsFp8 = 132.0 / 8192.0 + 0x1p-16;

// Multiplies the rate counters: 2 * valid_rows * N * K.
double flops(const Params& p);
// Fewest bytes: A and its scales (valid rows), B and its scales (every group), D (and C) once.
double bytes_moved(const Params& p);

// Error budget study (bundle "fp8_gemm_error_budget"): per shape, the three references against
// each other; rows documented in docs/bundle-schema.md.
nlohmann::json error_budget_study(bool quick);

}  // namespace dsv3::fp8gemm
