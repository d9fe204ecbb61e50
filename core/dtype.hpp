// dtypes and bit-exact host codecs.
//
// Every float format here is encoded from float32 with round-to-nearest-even, computed exactly
// (the float32 value is scaled by a power of two in double, rounded with rint, and rebuilt), so a
// code is a pure function of the input bits. Rules per format:
//   bf16   1-8-7,  bias 127, IEEE Inf/NaN. NaN -> 0x7fc0 | sign (quiet). Overflow -> Inf.
//   f16    1-5-10, bias 15,  IEEE Inf/NaN. NaN -> 0x7e00 | sign. Overflow -> Inf.
//   e4m3   1-4-3,  bias 7,   "fn": no Inf, NaN = S.1111.111 only, max 448, min subnormal 2^-9.
//   e5m2   1-5-2,  bias 15,  IEEE-like Inf (S.11111.00) and NaN, max 57344, min subnormal 2^-16.
//   ue8m0  8-bit unsigned exponent, value 2^(code-127), code 0xff = NaN, no zero.
// Overflow: a value overflows when its rounding (as if the exponent range were unbounded) is
// larger than the format's max. Saturation::finite clamps overflow and +-Inf to +-max;
// Saturation::none gives NaN (e4m3) or Inf (e5m2, f16, bf16). NaN input always gives NaN; for
// e4m3/e5m2 the NaN code is 0x7f regardless of the input sign, as CUDA's cvt does.
// These rules are cross-checked against cuda_fp8.hpp (host) and ml_dtypes (tests/golden).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t { f32, bf16, f16, e4m3, e5m2, ue8m0, u8, u16, i32 };

enum class Saturation : uint8_t { none, finite };

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
DType dtype_from_name(std::string_view name);  // throws std::invalid_argument naming the input
bool dtype_is_float(DType t);

// Encoders (float32 -> code). Round-to-nearest-even.
uint16_t f32_to_bf16(float x);
// One correct RNE rounding of an FP64 value to BF16 (no double rounding through FP32).
uint16_t bf16_from_f64(double d);
uint16_t f32_to_f16(float x);
uint8_t f32_to_e4m3(float x, Saturation sat = Saturation::finite);
uint8_t f32_to_e5m2(float x, Saturation sat = Saturation::finite);
// The format-generic encoder behind the four above (exact rounding in double arithmetic, slow):
// the specification that the bit-manipulating fast paths of f32_to_bf16 and f32_to_e4m3 are
// tested against (Dtype.FastEncodersEqualTheGenericOne). dtype: bf16, f16, e4m3 or e5m2.
uint32_t f32_encode_generic(float x, DType dtype, Saturation sat);

// UE8M0 scale codes. `ceil` rounds a positive finite scale up to the next power of two (exact
// powers of two are kept), as DeepGEMM's ceil_to_ue8m0 does; the exponent field is clamped to
// [1, 254]. Non-positive or NaN input gives 0xff (NaN).
uint8_t f32_to_ue8m0_ceil(float x);

// Decoders (code -> float32); exact.
float bf16_to_f32(uint16_t c);
float f16_to_f32(uint16_t c);
float e4m3_to_f32(uint8_t c);
float e5m2_to_f32(uint8_t c);
float ue8m0_to_f32(uint8_t c);
// Every E4M3 code's value as double (NaN for the two NaN codes): the GEMM references' decode table.
const std::array<double, 256>& e4m3_values_f64();

// Decodes one element of `t` stored at `p` to double (f32/u8/u16/i32 included).
double decode_element(DType t, const void* p, std::size_t index);

// Largest finite value of an 8-bit float format.
constexpr float kE4M3Max = 448.0f;
constexpr float kE5M2Max = 57344.0f;

}  // namespace dsv3
