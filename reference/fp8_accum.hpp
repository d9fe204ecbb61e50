// Bit-exact model of FP8 tensor-core accumulation (Hopper wgmma/mma, E4M3 x E4M3 -> FP32).
//
// V3-TR §3.3.2 / ISCA §3.1.1: the MMA aligns the products of a K chunk (32 for FP8 wgmma) to the
// largest exponent and keeps only ~13-14 fraction bits of each before adding them; DeepSeek's fix
// is to promote the partial sum into an FP32 register every N_C = 128 elements of K.
//
// One MMA step (mma_step) on an FP32 accumulator `acc` and n <= chunk products p_i = a_i * b_i:
//   1. p_i is exact (E4M3 significands have 4 bits, a product has at most 8 significant bits).
//   2. The alignment set is {p_i} (and acc when acc_in_alignment); zeros do not take part.
//      E = max over the set of each member's alignment exponent: floor(log2 |x|) (the leading bit),
//      or, with align_exponent = operands, ea + eb for a product (E4M3 exponents, subnormals -6:
//      what an adder that aligns before normalising the product would use; such a product may
//      then reach 2^(E + 2), and keeps up to frac_bits + 1 fraction bits).
//   3. Every member is rounded to an integer multiple of the grid 2^(E - frac_bits) with
//      `align_rounding` (truncate = toward zero on the magnitude, floor = two's-complement
//      truncation toward -inf, nearest_even); the largest member keeps frac_bits fraction bits.
//   4. The aligned integers are summed exactly (no rounding inside the adder tree).
//   5. acc_in_alignment: the exact sum is rounded once to FP32 with `writeback`.
//      otherwise: the exact value acc + sum is rounded once to FP32 with `writeback` (for
//      writeback = nearest_even and frac_bits <= 17 this equals the IEEE FP32 addition
//      acc + fp32(sum), because the chunk sum is then exactly representable).
//   6. flush_subnormals: an FP32 result below 2^-126 in magnitude becomes a signed zero.
// Between steps the accumulator is an FP32 value: the model renormalises at every chunk
// (assumption: the hardware keeps D in FP32 registers between instructions).
//
// dot(): steps of `chunk` along K (the last step may be shorter); with promote_every = N_C > 0,
// after every N_C elements (and at the end) the partial sum is added into a separate FP32
// accumulator with IEEE round-to-nearest-even and the partial sum restarts from +0 (DeepGEMM /
// kernel.py scheme, scale multiply outside the model: scale 1). promote_every = 0: never.
//
// Inputs are floats whose values are exactly E4M3-representable (not checked per element; any
// float whose product is exact in double works). Implementation: exact integer arithmetic on
// (significand, exponent) pairs with __int128, written for readability rather than speed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::fp8accum {

enum class ExpSource : uint8_t {
  value,     // a product's leading-bit exponent floor(log2 |a b|)
  operands,  // the sum of the operands' E4M3 exponents, max(floor(log2 |x|), -6) each
};

enum class Rounding : uint8_t {
  truncate,      // toward zero on the magnitude (sign-magnitude truncation)
  floor,         // toward -infinity (two's-complement truncation)
  nearest_even,  // round to nearest, ties to even
};
std::string_view rounding_name(Rounding r);

struct Model {
  int chunk = 32;                             // products aligned together per MMA step (wgmma K = 32 for FP8)
  int frac_bits = 13;                         // fraction bits kept below the largest exponent (ISCA: 13, FP22)
  Rounding align_rounding = Rounding::truncate;  // how aligned products (and acc) lose their low bits
  bool acc_in_alignment = true;               // acc shares the max-exponent alignment (else added exactly after)
  Rounding writeback = Rounding::nearest_even;   // chunk result -> FP32 accumulator (truncate or nearest_even)
  int promote_every = 0;                      // N_C: FP32 promotion every N_C elements of K; 0 = never
  bool flush_subnormals = false;              // FP32 results below 2^-126 flushed to signed zero
  ExpSource align_exponent = ExpSource::value;  // which exponent of a product sets E (see above)
  std::string to_string() const;              // e.g. "c32 f13 trunc accin wb=rne nc=128"
  void validate() const;                      // throws std::invalid_argument naming the field
};

// The model the V3 report describes (14 bits incl. the leading one: frac_bits 13, truncation,
// accumulator aligned with the products, RNE write-back), with the given promotion interval.
Model v3_report_model(int promote_every);

// One MMA step: acc + sum_{i<n} a_i b_i under the model (n <= m.chunk; promote_every ignored).
float mma_step(float acc, const float* a, const float* b, int n, const Model& m);
// Same, with the products given directly (each must be exact in double, e.g. a_i * b_i); for
// align_exponent = operands, `pexp` gives each product's alignment exponent (else may be null).
float mma_step_products(float acc, const double* p, const int* pexp, int n, const Model& m);
int e4m3_exponent(float x);  // max(floor(log2 |x|), -6), x != 0

// The dot product of length k under the model, including promotion.
float dot(const float* a, const float* b, int64_t k, const Model& m);

// Exact value s * 2^e rounded to FP32 with mode r (overflow: +-inf for nearest_even, the largest
// finite value toward zero for truncate, per direction for floor). Exposed for the tests.
float round_to_f32(__int128 s, int e, Rounding r, bool flush_subnormals = false);

}  // namespace dsv3::fp8accum
