// FP8 numerics study (bundle "studies"): how much error each scaling granularity and each 8/10-bit
// format adds, on the same seeded activations. Metrics against the bf16 input x:
//   rel_l2  ||q - x|| / ||x||;  sqnr_db  10 log10(sum x^2 / sum (q - x)^2);
//   max_rel max |q - x| / |x| over elements with |x| >= 0.01 * rms(x) (smaller ones are
//           legitimately flushed to zero by every 8-bit format and would always read 1.0);
//   row_rel_l2  mean over rows (tokens) of ||q_r - x_r|| / ||x_r||: energy-weighted metrics are
//           dominated by the largest rows, this one shows what happens to the small ones;
//   zero_frac   fraction of non-zero inputs quantized to zero (underflow).
#include <cmath>

#include "core/fp8_math.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {
namespace {

struct Metrics {
  double rel_l2, max_rel, sqnr_db, row_rel_l2, zero_frac;
};

Metrics measure(const Tensor& x, const std::vector<double>& q) {
  double sx = 0, se = 0, row_sum = 0;
  int64_t rows_counted = 0, nonzero = 0, flushed = 0;
  const int64_t k = x.dim(-1);
  for (int64_t r = 0; r < x.numel() / k; ++r) {
    double rx = 0, re = 0;
    for (int64_t i = r * k; i < (r + 1) * k; ++i) {
      const double v = x.get(i), qi = q[static_cast<std::size_t>(i)], e = qi - v;
      rx += v * v;
      re += e * e;
      nonzero += v != 0;
      flushed += v != 0 && qi == 0;
    }
    sx += rx;
    se += re;
    if (rx > 0) {
      row_sum += std::sqrt(re / rx);
      ++rows_counted;
    }
  }
  const double rms = std::sqrt(sx / static_cast<double>(x.numel()));
  double max_rel = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.get(i);
    if (std::fabs(v) >= 0.01 * rms) max_rel = std::max(max_rel, std::fabs(q[static_cast<std::size_t>(i)] - v) / std::fabs(v));
  }
  return {std::sqrt(se / sx), max_rel, se > 0 ? 10 * std::log10(sx / se) : INFINITY,
          rows_counted ? row_sum / static_cast<double>(rows_counted) : 0.0,
          nonzero ? static_cast<double>(flushed) / static_cast<double>(nonzero) : 0.0};
}

// Dequantized values of an FP8 quantization with the given scale layout.
std::vector<double> fp8_roundtrip(const Tensor& x, const Params& base, const std::string& scheme) {
  Params p = base;
  std::vector<double> q(static_cast<std::size_t>(x.numel()));
  if (scheme == "per_tensor") {
    float amax = 0;
    for (int64_t i = 0; i < x.numel(); ++i) amax = fp8math::amax_combine(amax, std::fabs(static_cast<float>(x.get(i))));
    const float s = tile_scale(amax, p.elem, p.scale_fmt);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const uint8_t c = quantize_element(static_cast<float>(x.get(i)), s, amax, p);
      q[static_cast<std::size_t>(i)] = decode_element(elem_dtype(p.elem), &c, 0) * s;
    }
    return q;
  }
  p.op = scheme == "1x128" ? Op::quant_1x128 : Op::quant_128x128;
  std::vector<Tensor> out = make_outputs(p);
  if (p.op == Op::quant_1x128) quant_1x128(x, out[0], out[1], p);
  else quant_128x128(x, out[0], out[1], p);
  for (int64_t r = 0; r < p.m; ++r)
    for (int64_t c = 0; c < p.k; ++c) {
      const int64_t si = p.op == Op::quant_1x128 ? r * tiles(p.k) + c / kTile : (r / kTile) * tiles(p.k) + c / kTile;
      q[static_cast<std::size_t>(r * p.k + c)] = out[0].get(r * p.k + c) * out[1].get(si);
    }
  return q;
}

std::vector<double> logfmt_roundtrip(const Tensor& x, const Params& base, int bits, double* fallback_frac) {
  Params p = base;
  p.op = Op::logfmt;
  p.logfmt_bits = bits;
  std::vector<Tensor> out = make_outputs(p);
  logfmt_encode(x, out[0], out[1], out[2], p);
  logfmt_decode(out[0], out[1], out[2], out[3], p);
  double fb = 0;
  for (int64_t i = 0; i < out[2].numel(); ++i) fb += out[2].get(i);
  *fallback_frac = fb / static_cast<double>(out[2].numel());
  std::vector<double> q(static_cast<std::size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) q[static_cast<std::size_t>(i)] = out[3].get(i);
  return q;
}

nlohmann::json row(const std::string& dist, Metrics m) {
  return {{"distribution", dist}, {"rel_l2", m.rel_l2}, {"max_rel", m.max_rel},
          {"sqnr_db", std::isfinite(m.sqnr_db) ? nlohmann::json(m.sqnr_db) : nlohmann::json(nullptr)},
          {"row_rel_l2", m.row_rel_l2}, {"zero_frac", m.zero_frac}};
}

}  // namespace

nlohmann::json numerics_study(bool quick) {
  Params base;
  base.m = quick ? 128 : 512;
  base.k = 7168;  // V3 hidden size
  nlohmann::json scaling = nlohmann::json::array(), equal_bits = nlohmann::json::array();
  for (Dist d : {Dist::normal, Dist::outliers, Dist::outlier_channels, Dist::token_scaled}) {
    Tensor x("x", DType::bf16, {base.m, base.k});
    fill(x, d, seed_from("fp8_study " + std::string(dist_name(d))));
    for (Elem e : {Elem::e4m3, Elem::e5m2})
      for (const char* scheme : {"per_tensor", "1x128", "128x128"}) {
        Params p = base;
        p.elem = e;
        nlohmann::json r = row(std::string(dist_name(d)), measure(x, fp8_roundtrip(x, p, scheme)));
        r["scheme"] = scheme;
        r["format"] = std::string(elem_name(e));
        scaling.push_back(r);
      }
  }
  // Equal bits: values below 1 in magnitude (scale 0.01), the MoE-combine payload LogFMT targets.
  // The inputs are bf16, so BF16 itself is the zero-error baseline and has no row.
  for (Dist d : {Dist::normal, Dist::uniform, Dist::outlier_channels}) {
    const std::string label = std::string(dist_name(d)) + " x0.01";
    Tensor x("x", DType::bf16, {base.m, base.k});
    fill(x, d, seed_from("fp8_study_bits " + label), 0.01);
    for (Elem e : {Elem::e4m3, Elem::e5m2}) {
      Params p = base;
      p.elem = e;
      nlohmann::json r = row(label, measure(x, fp8_roundtrip(x, p, "1x128")));
      r["format"] = std::string(elem_name(e)) + " (1x128 f32 scale)";
      r["bits"] = 8;
      equal_bits.push_back(r);
    }
    for (int bits : {8, 10}) {
      double fb = 0;
      nlohmann::json r = row(label, measure(x, logfmt_roundtrip(x, base, bits, &fb)));
      r["format"] = "logfmt" + std::to_string(bits);
      r["bits"] = bits;
      r["fallback_frac"] = fb;
      equal_bits.push_back(r);
    }
  }
  return {{"fp8_scaling", scaling}, {"fp8_equal_bits", equal_bits}};
}

}  // namespace dsv3::fp8
