// FP8 fine-grained quantization (V3-TR §3.3; v3-facts §4): the CPU reference.
//
// Shape symbols: M rows (tokens, or output features for weights), K columns (channels, the GEMM
// inner dimension), Kb = ceil(K/128), Mb = ceil(M/128).
//
// Ops (Params::op):
//   quant_1x128      x bf16 [M, K] -> codes [M, K], scales f32 [M, Kb]      activations
//   quant_128x128    w bf16 [M, K] -> codes [M, K], scales f32 [Mb, Kb]     weights
//   dequant_1x128    codes [M, K] + scales [M, Kb]  -> y bf16 [M, K]
//   dequant_128x128  codes [M, K] + scales [Mb, Kb] -> y bf16 [M, K]
//   retile_1x128_to_128x1  codes [M, K] + scales [M, Kb] (1x128) -> dequantize, transpose and
//                    requantize: codes_t [K, M], scales_t f32 [K, Mb] (1x128 tiles of x^T, i.e.
//                    128x1 tiles of x), as the backward pass needs for Wgrad (V3-TR §3.3.3)
//   logfmt           x bf16 [M, K] -> codes u16 [M, K], meta f32 [M, Kb, 2] (log2 amin, log2
//                    amax), fallback u8 [M, Kb], y bf16 [M, K] (decoded)
//
// Scales (`scales` is what the checkpoints call weight_scale_inv: dequant = code * scale):
//   amax = max |x| over the tile, NaN-propagating, floored at 1e-4; s = amax / fmax
//   (fmax = 448 for E4M3, 57344 for E5M2); with ScaleFmt::ue8m0 s = ceil_pow2(s).
// Partial tiles (K or M not a multiple of 128) behave as if zero padded: the padding never
// changes amax, and no padded element is stored (the checkpoint layout).
// The conventions (v3-facts §4.2) differ only in how x is scaled before the cast; each is named
// by its exact float32 arithmetic (RN = one IEEE round-to-nearest operation, a = floored amax):
//   divide       RN(x / s)                      inference/kernel.py act_quant (`y = x / s`)
//   reciprocal   RN(x * RN(1 / s))              DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp8
//                                               (`x * (1.0 / sf)`; torch's 1.0/t is an exact IEEE 1/t)
//   fused        RN(x * RN(fmax / a))           DeepEP's CUDA kernels (`scale = kFP8Amax / amax`,
//                                               source read, not run here)
//   fused_torch  RN(x * RN(RN(1 / a) * fmax))   DeepEP tests/utils.py per_token_cast_to_fp8 as torch
//                                               runs it: `448.0 / x_amax` is Tensor.__rtruediv__,
//                                               i.e. `x_amax.reciprocal() * 448.0`
// Measured with torch on the CPU (datasets/golden/fp8_quant_torch.json, e4m3, f32 scales, six
// random distributions, 196608 codes): divide vs reciprocal 0.038% of codes differ, divide vs
// fused 0.026%, reciprocal vs fused 0.012%, fused_torch vs the others 0.083-0.089%; on inputs
// whose x / s is an exact E4M3 midpoint (s = 448 m, m not a power of two), divide vs reciprocal
// or fused 8.3%, divide vs fused_torch 16.7%, fused_torch vs reciprocal or fused 25.0%,
// reciprocal vs fused 0. Never more than one code apart. With ue8m0 scales 1/s is exact, so every
// non-divide convention uses x * (1/s) there and all four agree (0 differences measured).
// Scales are s = RN(amax / fmax) for all four (kernel.py, DeepGEMM's and DeepEP's torch code on
// the CPU; DeepEP's CUDA kernels store amax * RN(1/448) instead, which this does not model).
// The cast is round-to-nearest-even with saturation to +-fmax (CUDA's cvt .satfinite); a NaN in a
// tile makes its scale and all its codes NaN, an Inf gives scale Inf, code NaN for the Inf and 0
// for the finite elements (IEEE arithmetic, as torch would compute it).
// LogFMT-n: see core/fp8_math.hpp; groups of 128 along K; fallback groups store the bf16 bits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fill.hpp"
#include "core/safetensors.hpp"
#include "core/tensor.hpp"

namespace dsv3::fp8 {

enum class Op : uint8_t { quant_1x128, quant_128x128, dequant_1x128, dequant_128x128, retile_1x128_to_128x1, logfmt };
enum class Convention : uint8_t { divide, reciprocal, fused, fused_torch };
enum class ScaleFmt : uint8_t { f32, ue8m0 };
enum class Elem : uint8_t { e4m3, e5m2 };

constexpr int64_t kTile = 128;

struct Params {
  Op op = Op::quant_1x128;
  int64_t m = 1;                           // rows
  int64_t k = 128;                         // columns
  Elem elem = Elem::e4m3;                  // FP8 element format (quant/dequant/retile)
  Convention conv = Convention::divide;    // how x is scaled before the cast
  ScaleFmt scale_fmt = ScaleFmt::f32;      // f32 scales, or powers of two (UE8M0)
  int logfmt_bits = 10;                    // LogFMT width n (8 or 10), op == logfmt
  Dist dist = Dist::normal;                // input distribution
  double scale = 1.0;                      // input distribution scale
  std::string to_string() const;           // the case identity
  void validate() const;                   // throws std::invalid_argument naming the field
};

std::string_view op_name(Op);
std::string_view conv_name(Convention);
std::string_view scale_fmt_name(ScaleFmt);
std::string_view elem_name(Elem);
Op op_from_name(std::string_view);
Convention conv_from_name(std::string_view);
ScaleFmt scale_fmt_from_name(std::string_view);
Elem elem_from_name(std::string_view);

DType elem_dtype(Elem e);
float elem_max(Elem e);
inline int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }

// Scale for one tile from its amax (NaN-propagating, floor applied inside).
float tile_scale(float amax, Elem e, ScaleFmt f);
// Encodes x for a tile with scale s (and amax, for the fused convention).
uint8_t quantize_element(float x, float s, float amax, const Params& p);

// Reference implementations. Inputs are checked with require_tensor (ShapeError on mismatch).
void quant_1x128(const Tensor& x, Tensor& codes, Tensor& scales, const Params& p);
void quant_128x128(const Tensor& w, Tensor& codes, Tensor& scales, const Params& p);
// A BF16 weight [N, K] as a DeepSeek-V3 checkpoint stores it in FP8: E4M3 codes named as `w` and
// "<name>_scale_inv" f32 [ceil(N/128), ceil(K/128)] (quant_128x128 with the default conventions).
Fp8Weight checkpoint_fp8_weight(const Tensor& w);
void dequant(const Tensor& codes, const Tensor& scales, Tensor& y, const Params& p);  // both tilings
void retile_1x128_to_128x1(const Tensor& codes, const Tensor& scales, Tensor& codes_t,
                           Tensor& scales_t, const Params& p);
void logfmt_encode(const Tensor& x, Tensor& codes, Tensor& meta, Tensor& fallback, const Params& p);
void logfmt_decode(const Tensor& codes, const Tensor& meta, const Tensor& fallback, Tensor& y,
                   const Params& p);

// Tensors a case consumes and produces (names, dtypes, shapes), and the seeded inputs.
std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_outputs(const Params& p);  // allocate(output_specs(p))
std::vector<Tensor> make_inputs(const Params& p);
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);
double bytes_moved(const Params& p);

// Numerics study for the bundle: {"fp8_scaling": rows, "fp8_equal_bits": rows}
// (docs/bundle-schema.md). Per-tensor vs 1x128 vs 128x128 scaling on activations with outlier
// channels, and LogFMT-8/10 vs E4M3/E5M2 (1x128 scales) vs BF16.
nlohmann::json numerics_study(bool quick);

}  // namespace dsv3::fp8
