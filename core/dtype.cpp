// Bit-exact host codecs; the rules are documented in dtype.hpp.
#include "core/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace dsv3 {
namespace {

// A binary float format with a sign bit, `ebits` exponent bits and `mbits` mantissa bits.
struct MiniFloat {
  int ebits, mbits, bias;
  bool ieee_specials;  // max exponent field reserved for Inf (mantissa 0) and NaN
  double max;          // largest finite value
  uint32_t nan_code;   // canonical NaN, sign bit excluded
  bool nan_keeps_sign; // bf16/f16 keep the sign of a NaN input; CUDA's fp8 cvt does not
};

constexpr MiniFloat kBf16{8, 7, 127, true, 0x1.fep127, 0x7fc0, true};
constexpr MiniFloat kF16{5, 10, 15, true, 65504.0, 0x7e00, true};
constexpr MiniFloat kE4M3{4, 3, 7, false, 448.0, 0x7f, false};
constexpr MiniFloat kE5M2{5, 2, 15, true, 57344.0, 0x7f, false};

uint32_t field_max(int bits) { return (1u << bits) - 1u; }

uint32_t encode_magnitude(double r, const MiniFloat& f) {
  // r is exactly representable in f and finite, r > 0.
  const int emin = 1 - f.bias;
  int e2 = 0;
  std::frexp(r, &e2);
  const int exponent = e2 - 1;
  if (exponent < emin) {  // subnormal
    return static_cast<uint32_t>(std::ldexp(r, f.mbits - emin));
  }
  const auto mant = static_cast<uint32_t>(std::ldexp(r, f.mbits - exponent)) - (1u << f.mbits);
  return (static_cast<uint32_t>(exponent + f.bias) << f.mbits) | mant;
}

uint32_t encode(float x, const MiniFloat& f, Saturation sat) {
  const uint32_t sign_bit = 1u << (f.ebits + f.mbits);
  const uint32_t sign = std::signbit(x) ? sign_bit : 0u;
  if (std::isnan(x)) return f.nan_code | (f.nan_keeps_sign ? sign : 0u);
  const uint32_t max_code = encode_magnitude(f.max, f);
  const uint32_t overflow_code =
      sat == Saturation::finite ? max_code
      : f.ieee_specials         ? field_max(f.ebits) << f.mbits
                                : f.nan_code;
  if (std::isinf(x)) return sign | overflow_code;
  const double a = std::fabs(static_cast<double>(x));
  if (a == 0.0) return sign;
  int e2 = 0;
  std::frexp(a, &e2);
  const int exponent = std::max(e2 - 1, 1 - f.bias);
  // a / quantum is exact in double (float32 has 24 significant bits); rint rounds to nearest even.
  const double quantum = std::ldexp(1.0, exponent - f.mbits);
  const double r = std::rint(a / quantum) * quantum;
  if (r > f.max) return sign | overflow_code;
  if (r == 0.0) return sign;
  return sign | encode_magnitude(r, f);
}

float decode(uint32_t c, const MiniFloat& f) {
  const uint32_t mant = c & field_max(f.mbits);
  const uint32_t expf = (c >> f.mbits) & field_max(f.ebits);
  const bool neg = (c >> (f.ebits + f.mbits)) & 1u;
  double v = 0.0;
  if (f.ieee_specials && expf == field_max(f.ebits)) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else if (!f.ieee_specials && expf == field_max(f.ebits) && mant == field_max(f.mbits)) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (expf == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - f.bias - f.mbits);
  } else {
    v = std::ldexp(static_cast<double>(mant + (1u << f.mbits)),
                   static_cast<int>(expf) - f.bias - f.mbits);
  }
  return static_cast<float>(neg ? -v : v);
}

}  // namespace

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: case DType::u16: return 2;
    case DType::e4m3: case DType::e5m2: case DType::ue8m0: case DType::u8: return 1;
  }
  throw std::invalid_argument("dtype_size: unknown dtype");
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::e4m3: return "e4m3";
    case DType::e5m2: return "e5m2";
    case DType::ue8m0: return "ue8m0";
    case DType::u8: return "u8";
    case DType::u16: return "u16";
    case DType::i32: return "i32";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::e4m3, DType::e5m2, DType::ue8m0,
                  DType::u8, DType::u16, DType::i32}) {
    if (dtype_name(t) == name) return t;
  }
  throw std::invalid_argument("unknown dtype '" + std::string(name) +
                              "' (expected f32, bf16, f16, e4m3, e5m2, ue8m0, u8, u16, i32)");
}

bool dtype_is_float(DType t) {
  return t == DType::f32 || t == DType::bf16 || t == DType::f16 || t == DType::e4m3 ||
         t == DType::e5m2 || t == DType::ue8m0;
}

uint32_t f32_encode_generic(float x, DType dtype, Saturation sat) {
  switch (dtype) {
    case DType::bf16: return encode(x, kBf16, Saturation::none);
    case DType::f16: return encode(x, kF16, Saturation::none);
    case DType::e4m3: return encode(x, kE4M3, sat);
    case DType::e5m2: return encode(x, kE5M2, sat);
    default: throw std::invalid_argument("f32_encode_generic: not a float format with an encoder: " + std::string(dtype_name(dtype)));
  }
}

// The hot encoders work on the float's bits; f32_encode_generic is their specification.
uint16_t f32_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(0x7fc0u | ((u >> 16) & 0x8000u));  // NaN keeps its sign
  // Round to nearest even at bit 16; a carry walks into the exponent (up to Inf) as it should.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

uint16_t f32_to_f16(float x) { return static_cast<uint16_t>(encode(x, kF16, Saturation::none)); }

uint8_t f32_to_e4m3(float x, Saturation sat) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7f;  // NaN (CUDA's cvt drops the sign)
  if (a > 0x43e80000u)               // |x| > 464 (Inf included): 464 itself is a tie that rounds to 448
    return static_cast<uint8_t>(sign | (sat == Saturation::finite ? 0x7eu : 0x7fu));
  if (a < 0x3c800000u)  // |x| < 2^-6: subnormal codes, quantum 2^-9 (exact scaling, RNE)
    return static_cast<uint8_t>(sign | static_cast<uint32_t>(std::nearbyint(std::bit_cast<float>(a) * 512.0f)));
  const uint32_t r = a + 0x7ffffu + ((a >> 20) & 1u);  // RNE to 3 mantissa bits
  return static_cast<uint8_t>(sign | ((((r >> 23) - 120u) << 3) | ((r >> 20) & 7u)));
}
uint8_t f32_to_e5m2(float x, Saturation sat) { return static_cast<uint8_t>(encode(x, kE5M2, sat)); }

const std::array<double, 256>& e4m3_values_f64() {
  static const std::array<double, 256> t = [] {
    std::array<double, 256> v{};
    for (int c = 0; c < 256; ++c) v[static_cast<std::size_t>(c)] = e4m3_to_f32(static_cast<uint8_t>(c));
    return v;
  }();
  return t;
}

float bf16_to_f32(uint16_t c) { return std::bit_cast<float>(static_cast<uint32_t>(c) << 16); }
float f16_to_f32(uint16_t c) { return decode(c, kF16); }
float e4m3_to_f32(uint8_t c) { return decode(c, kE4M3); }
float e5m2_to_f32(uint8_t c) { return decode(c, kE5M2); }

uint8_t f32_to_ue8m0_ceil(float x) {
  if (!(x > 0.0f)) return 0xff;
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  uint32_t expf = (bits >> 23) & 0xffu;
  const uint32_t mant = bits & 0x7fffffu;
  if (expf == 0xffu) return 254;  // +Inf clamps to the largest exponent
  if (mant != 0 || expf == 0) ++expf;
  return static_cast<uint8_t>(std::clamp<uint32_t>(expf, 1, 254));
}

float ue8m0_to_f32(uint8_t c) {
  if (c == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(c) - 127);
}

double decode_element(DType t, const void* p, std::size_t i) {
  const auto* b = static_cast<const unsigned char*>(p);
  switch (t) {
    case DType::f32: { float v; std::memcpy(&v, b + 4 * i, 4); return v; }
    case DType::i32: { int32_t v; std::memcpy(&v, b + 4 * i, 4); return v; }
    case DType::bf16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return bf16_to_f32(v); }
    case DType::f16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return f16_to_f32(v); }
    case DType::u16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return v; }
    case DType::e4m3: return e4m3_to_f32(b[i]);
    case DType::e5m2: return e5m2_to_f32(b[i]);
    case DType::ue8m0: return ue8m0_to_f32(b[i]);
    case DType::u8: return b[i];
  }
  throw std::invalid_argument("decode_element: unknown dtype");
}

uint16_t bf16_from_f64(double d) {
  const uint64_t u = std::bit_cast<uint64_t>(d);
  const auto sign = static_cast<uint16_t>((u >> 48) & 0x8000u);
  const uint64_t a = u & 0x7fffffffffffffffull;
  if (a > 0x7ff0000000000000ull) return static_cast<uint16_t>(0x7fc0u | sign);  // NaN keeps its sign
  if (a >= 0x3810000000000000ull && a < 0x7ff0000000000000ull) {  // 2^-126 <= |d| < Inf: a normal BF16 or Inf
    const uint64_t r = a + ((1ull << 44) - 1) + ((a >> 45) & 1u);    // RNE at bit 45 (7 fraction bits kept)
    const int64_t e = static_cast<int64_t>(r >> 52) - 1023;
    if (e > 127) return static_cast<uint16_t>(sign | 0x7f80u);  // overflow: Inf
    return static_cast<uint16_t>(sign | ((e + 127) << 7) | ((r >> 45) & 0x7fu));
  }
  // Inf, zero and the subnormal range: round to odd into FP32 (truncate, then set the last bit when inexact), then RNE to BF16: one
  // correct rounding of d, as a format with 16 more bits than the target allows.
  float t = static_cast<float>(d);
  if (std::isfinite(d) && static_cast<double>(t) != d) {
    if (std::fabs(static_cast<double>(t)) > std::fabs(d)) t = std::nextafter(t, 0.0f);
    uint32_t u;
    std::memcpy(&u, &t, 4);
    u |= 1u;
    std::memcpy(&t, &u, 4);
  }
  return f32_to_bf16(t);
}

}  // namespace dsv3
