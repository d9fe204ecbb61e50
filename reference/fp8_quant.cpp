// FP8 fine-grained quantization: CPU reference. Semantics are documented in fp8_quant.hpp.
// Written for clarity, one tile at a time; this is the specification the CUDA variants match
// bit for bit. Threaded over rows (or 128-row blocks, or channels for the retile) with
// parallel_for: each chunk writes only its own tiles, so results are identical for any thread count.
#include "reference/fp8_quant.hpp"

#include <cmath>
#include <stdexcept>

#include "core/fp8_math.hpp"
#include "core/parallel.hpp"

namespace dsv3::fp8 {
namespace fm = fp8math;

DType elem_dtype(Elem e) { return e == Elem::e4m3 ? DType::e4m3 : DType::e5m2; }
float elem_max(Elem e) { return e == Elem::e4m3 ? kE4M3Max : kE5M2Max; }

float tile_scale(float amax, Elem e, ScaleFmt f) {
  const float a = amax < fm::kAmaxFloor ? fm::kAmaxFloor : amax;  // NaN stays NaN
  const float s = fm::fdiv(a, elem_max(e));
  return f == ScaleFmt::ue8m0 ? fm::ceil_pow2(s) : s;
}

uint8_t quantize_element(float x, float s, float amax, const Params& p) {
  float y = 0.0f;
  if (p.conv == Convention::divide) {
    y = fm::fdiv(x, s);
  } else if (p.conv == Convention::reciprocal || p.scale_fmt == ScaleFmt::ue8m0) {
    y = fm::fmul(x, fm::fdiv(1.0f, s));
  } else {  // fused / fused_torch: x * (fmax / amax), amax floored as for the scale
    const float a = amax < fm::kAmaxFloor ? fm::kAmaxFloor : amax;
    y = fm::fmul(x, p.conv == Convention::fused_torch ? fm::fused_torch_multiplier(a, elem_max(p.elem))
                                                      : fm::fused_multiplier(a, elem_max(p.elem)));
  }
  return p.elem == Elem::e4m3 ? f32_to_e4m3(y, Saturation::finite) : f32_to_e5m2(y, Saturation::finite);
}

namespace {

float as_f32(const Tensor& t, int64_t i) { return static_cast<float>(t.get(i)); }

// Quantizes the rectangle rows [r0, r1) x cols [c0, c1) of a [rows, cols] float source with one
// scale; `value(i)` returns the source element at flat index i, `store(i, code)` writes it.
template <class Value, class Store>
float quantize_tile(int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t ld, const Params& p,
                    Value value, Store store) {
  float amax = 0.0f;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) amax = fm::amax_combine(amax, fm::abs_f(value(r * ld + c)));
  const float s = tile_scale(amax, p.elem, p.scale_fmt);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) store(r * ld + c, quantize_element(value(r * ld + c), s, amax, p));
  return s;
}

void check_float_input(const Tensor& x, const Params& p, const char* what) {
  require_tensor(x, DType::bf16, {p.m, p.k}, what);
}

}  // namespace

void quant_1x128(const Tensor& x, Tensor& codes, Tensor& scales, const Params& p) {
  check_float_input(x, p, "fp8 quant_1x128 input x");
  require_tensor(codes, elem_dtype(p.elem), {p.m, p.k}, "fp8 quant_1x128 output codes");
  require_tensor(scales, DType::f32, {p.m, tiles(p.k)}, "fp8 quant_1x128 output scales");
  auto c = codes.span<uint8_t>();
  auto s = scales.span<float>();
  parallel_for(p.m, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)             // token
      for (int64_t kb = 0; kb < tiles(p.k); ++kb)  // 1x128 tile
        s[r * tiles(p.k) + kb] = quantize_tile(
            r, r + 1, kb * kTile, std::min(p.k, (kb + 1) * kTile), p.k, p,
            [&](int64_t i) { return as_f32(x, i); }, [&](int64_t i, uint8_t v) { c[i] = v; });
  }, 16);
}

void quant_128x128(const Tensor& w, Tensor& codes, Tensor& scales, const Params& p) {
  check_float_input(w, p, "fp8 quant_128x128 input w");
  require_tensor(codes, elem_dtype(p.elem), {p.m, p.k}, "fp8 quant_128x128 output codes");
  require_tensor(scales, DType::f32, {tiles(p.m), tiles(p.k)}, "fp8 quant_128x128 output scales");
  auto c = codes.span<uint8_t>();
  auto s = scales.span<float>();
  parallel_for(tiles(p.m), [&](int64_t b0, int64_t b1) {
    for (int64_t mb = b0; mb < b1; ++mb)            // 128x128 block row
      for (int64_t kb = 0; kb < tiles(p.k); ++kb)  // block column
        s[mb * tiles(p.k) + kb] = quantize_tile(
            mb * kTile, std::min(p.m, (mb + 1) * kTile), kb * kTile, std::min(p.k, (kb + 1) * kTile),
            p.k, p, [&](int64_t i) { return as_f32(w, i); }, [&](int64_t i, uint8_t v) { c[i] = v; });
  });
}

Fp8Weight checkpoint_fp8_weight(const Tensor& w) {
  Params q;
  q.op = Op::quant_128x128; q.m = w.dim(0); q.k = w.dim(1);
  Fp8Weight f{Tensor(w.name(), DType::e4m3, {q.m, q.k}), Tensor(w.name() + "_scale_inv", DType::f32, {tiles(q.m), tiles(q.k)})};
  quant_128x128(w, f.weight, f.scale_inv, q);
  return f;
}

void dequant(const Tensor& codes, const Tensor& scales, Tensor& y, const Params& p) {
  const bool block = p.op == Op::dequant_128x128;
  require_tensor(codes, elem_dtype(p.elem), {p.m, p.k}, "fp8 dequant input codes");
  require_tensor(scales, DType::f32, {block ? tiles(p.m) : p.m, tiles(p.k)}, "fp8 dequant input scales");
  require_tensor(y, DType::bf16, {p.m, p.k}, "fp8 dequant output y");
  auto out = y.span<uint16_t>();
  auto s = scales.span<const float>();
  parallel_for(p.m, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < p.k; ++c) {
        const float scale = s[(block ? r / kTile : r) * tiles(p.k) + c / kTile];
        out[r * p.k + c] = f32_to_bf16(fm::fmul(as_f32(codes, r * p.k + c), scale));  // [M, K]
      }
  }, 16);
}

void retile_1x128_to_128x1(const Tensor& codes, const Tensor& scales, Tensor& codes_t,
                           Tensor& scales_t, const Params& p) {
  require_tensor(codes, elem_dtype(p.elem), {p.m, p.k}, "fp8 retile input codes");
  require_tensor(scales, DType::f32, {p.m, tiles(p.k)}, "fp8 retile input scales");
  require_tensor(codes_t, elem_dtype(p.elem), {p.k, p.m}, "fp8 retile output codes_t");
  require_tensor(scales_t, DType::f32, {p.k, tiles(p.m)}, "fp8 retile output scales_t");
  auto s_in = scales.span<const float>();
  auto ct = codes_t.span<uint8_t>();
  auto st = scales_t.span<float>();
  // x^T[c, r] = code[r, c] * scale[r, c / 128]   (dequantized, [K, M])
  auto xt = [&](int64_t i) {
    const int64_t c = i / p.m, r = i % p.m;
    return fm::fmul(as_f32(codes, r * p.k + c), s_in[r * tiles(p.k) + c / kTile]);
  };
  parallel_for(p.k, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)               // channel = row of x^T
      for (int64_t mb = 0; mb < tiles(p.m); ++mb)   // 128 tokens
        st[c * tiles(p.m) + mb] = quantize_tile(c, c + 1, mb * kTile, std::min(p.m, (mb + 1) * kTile), p.m,
                                                p, xt, [&](int64_t i, uint8_t v) { ct[i] = v; });
  }, 16);
}

void logfmt_encode(const Tensor& x, Tensor& codes, Tensor& meta, Tensor& fallback, const Params& p) {
  check_float_input(x, p, "logfmt input x");
  require_tensor(codes, DType::u16, {p.m, p.k}, "logfmt output codes");
  require_tensor(meta, DType::f32, {p.m, tiles(p.k), 2}, "logfmt output meta");
  require_tensor(fallback, DType::u8, {p.m, tiles(p.k)}, "logfmt output fallback");
  const auto xs = x.span<const uint16_t>();
  auto c = codes.span<uint16_t>();
  auto mt = meta.span<float>();
  auto fb = fallback.span<uint8_t>();
  const uint32_t sign_bit = 1u << (p.logfmt_bits - 1);
  for (int64_t r = 0; r < p.m; ++r)
    for (int64_t kb = 0; kb < tiles(p.k); ++kb) {
      const int64_t c0 = r * p.k + kb * kTile, c1 = r * p.k + std::min(p.k, (kb + 1) * kTile);
      float amax = 0.0f, amin = fm::pos_inf();
      bool nonfinite = false;
      for (int64_t i = c0; i < c1; ++i) {
        const float a = fm::abs_f(bf16_to_f32(xs[i]));
        nonfinite |= !(a < fm::pos_inf());
        if (a > amax) amax = a;
        if (a > 0.0f && a < amin) amin = a;
      }
      const fm::LogFmtGroup g = fm::logfmt_group(amax, amax > 0.0f ? amin : 0.0f, nonfinite, p.logfmt_bits);
      const int64_t gi = r * tiles(p.k) + kb;
      mt[2 * gi] = g.log_amin;
      mt[2 * gi + 1] = g.log_amax;
      fb[gi] = g.fallback ? 1 : 0;
      for (int64_t i = c0; i < c1; ++i) {
        if (g.fallback) { c[i] = xs[i]; continue; }  // BF16 bits, as DeepEP sends them
        const float v = bf16_to_f32(xs[i]);
        const uint32_t mag = fm::logfmt_encode_mag(g, fm::abs_f(v), p.logfmt_bits);
        c[i] = static_cast<uint16_t>(mag | (std::signbit(v) && mag ? sign_bit : 0u));
      }
    }
}

void logfmt_decode(const Tensor& codes, const Tensor& meta, const Tensor& fallback, Tensor& y,
                   const Params& p) {
  require_tensor(codes, DType::u16, {p.m, p.k}, "logfmt input codes");
  require_tensor(meta, DType::f32, {p.m, tiles(p.k), 2}, "logfmt input meta");
  require_tensor(fallback, DType::u8, {p.m, tiles(p.k)}, "logfmt input fallback");
  require_tensor(y, DType::bf16, {p.m, p.k}, "logfmt output y");
  const auto c = codes.span<const uint16_t>();
  const auto mt = meta.span<const float>();
  const auto fb = fallback.span<const uint8_t>();
  auto out = y.span<uint16_t>();
  for (int64_t r = 0; r < p.m; ++r)
    for (int64_t col = 0; col < p.k; ++col) {
      const int64_t i = r * p.k + col, gi = r * tiles(p.k) + col / kTile;
      if (fb[gi]) { out[i] = c[i]; continue; }
      const fm::LogFmtGroup g = fm::logfmt_group_from_meta(mt[2 * gi], mt[2 * gi + 1], p.logfmt_bits);
      out[i] = f32_to_bf16(fm::logfmt_decode_code(g, c[i], p.logfmt_bits));
    }
}

}  // namespace dsv3::fp8
