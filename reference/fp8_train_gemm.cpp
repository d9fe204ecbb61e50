// The FP8 training step's operands and GEMMs (semantics in fp8_train.hpp): quantizers built on
// fp8_quant's tile scale and element cast, the retile, and the two GEMMs. The FP8 GEMM follows
// reference/fp8_gemm.cpp's engine (row tiles x 128-column blocks, Eigen's double GEMM for the exact
// group sums, then the FP32 scale step); its operands carry per-row scales for both tilings, which
// the FP8 GEMM component does not (its B has 128x128 blocks only, and Wgrad needs 1x128 on both).
#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fp8_math.hpp"
#include "core/parallel.hpp"
#include "reference/fp8_quant.hpp"
#include "reference/fp8_train.hpp"

namespace dsv3::fp8train {
namespace fm = fp8math;
namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kRowTile = 128;

const std::array<double, 256>& e4m3_table() { return e4m3_values_f64(); }

// Quantizes rows [r0, r1) x columns [c0, c1) of x (ld columns) with one scale into `out`
// (out.cols columns), fp8_quant's default convention (E4M3, f32 scale, divide).
float quantize_tile(const float* x, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1, Fp8Rows& out) {
  static const fp8::Params kConv;  // e4m3, divide, f32 scales
  float amax = 0.0f;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) amax = fm::amax_combine(amax, fm::abs_f(x[r * ld + c]));
  const float s = fp8::tile_scale(amax, fp8::Elem::e4m3, fp8::ScaleFmt::f32);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c)
      out.codes[static_cast<std::size_t>(r * out.cols + c)] = fp8::quantize_element(x[r * ld + c], s, amax, kConv);
  return s;
}

Fp8Rows empty_operand(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("fp8_train: negative operand shape");
  Fp8Rows o;
  o.rows = rows;
  o.cols = pad128(cols);
  o.codes.assign(static_cast<std::size_t>(o.rows * o.cols), 0);  // padding: zero codes
  o.scales.assign(static_cast<std::size_t>(o.rows * o.groups()), 1.0f);
  return o;
}

}  // namespace

Fp8Rows quantize_1x128(const float* x, int64_t rows, int64_t cols) {
  Fp8Rows o = empty_operand(rows, cols);
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g * kTile < cols; ++g)
        o.scales[static_cast<std::size_t>(r * o.groups() + g)] =
            quantize_tile(x, cols, r, r + 1, g * kTile, std::min(cols, (g + 1) * kTile), o);
  }, 16);
  return o;
}

Fp8Rows quantize_128x128(const float* w, int64_t rows, int64_t cols) {
  Fp8Rows o = empty_operand(rows, cols);
  parallel_for((rows + kTile - 1) / kTile, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t g = 0; g * kTile < cols; ++g) {
        const int64_t r0 = b * kTile, r1 = std::min(rows, r0 + kTile);
        const float s = quantize_tile(w, cols, r0, r1, g * kTile, std::min(cols, (g + 1) * kTile), o);
        for (int64_t r = r0; r < r1; ++r) o.scales[static_cast<std::size_t>(r * o.groups() + g)] = s;
      }
  });
  return o;
}

Fp8Rows transpose_blocks(const Fp8Rows& w, int64_t real_rows) {
  // Result [cols, pad128(rows)]: row c of W^T holds column c of W; block (b, g) of W becomes block
  // (g, b), so row c's scale for group b is W's scale of row 128 b, group c / 128.
  Fp8Rows t = empty_operand(w.cols, real_rows);
  for (int64_t r = 0; r < real_rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c)
      t.codes[static_cast<std::size_t>(c * t.cols + r)] = w.codes[static_cast<std::size_t>(r * w.cols + c)];
  for (int64_t c = 0; c < t.rows; ++c)
    for (int64_t b = 0; b * kTile < real_rows; ++b)
      t.scales[static_cast<std::size_t>(c * t.groups() + b)] = w.scales[static_cast<std::size_t>(b * kTile * w.groups() + c / kTile)];
  return t;
}

std::vector<float> dequantize(const Fp8Rows& x, int64_t real_cols) {
  std::vector<float> y(static_cast<std::size_t>(x.rows * real_cols));
  const auto& tab = e4m3_table();
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < real_cols; ++c)
      y[static_cast<std::size_t>(r * real_cols + c)] =
          fm::fmul(static_cast<float>(tab[x.codes[static_cast<std::size_t>(r * x.cols + c)]]),
                   x.scales[static_cast<std::size_t>(r * x.groups() + c / kTile)]);
  return y;
}

Fp8Rows retile_to_columns(const Fp8Rows& x, int64_t real_cols) {
  const std::vector<float> v = dequantize(x, real_cols);  // [M, K]
  std::vector<float> t(v.size());
  const int64_t m = x.rows;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < real_cols; ++c) t[static_cast<std::size_t>(c * m + r)] = v[static_cast<std::size_t>(r * real_cols + c)];
  return quantize_1x128(t.data(), real_cols, m);
}

namespace {

// The output tiles of an [m, n] GEMM, kRowTile rows x kTile columns, spread over the threads:
// tile(r0, rows, n0, cols, acc) fills acc [rows x cols] (row-major, FP32), which is stored into d
// (added to it, rounded once, when accumulate). Each tile's arithmetic is the same on any thread.
template <class Tile>
void for_each_tile(int64_t m, int64_t n, float* d, bool accumulate, Tile tile) {
  const int64_t row_tiles = (m + kRowTile - 1) / kRowTile, col_blocks = (n + kTile - 1) / kTile;
  parallel_for(row_tiles * col_blocks, [&](int64_t t0, int64_t t1) {
    std::vector<float> acc;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t / col_blocks * kRowTile, rows = std::min(kRowTile, m - r0);
      const int64_t n0 = t % col_blocks * kTile, cols = std::min(kTile, n - n0);
      acc.assign(static_cast<std::size_t>(rows * cols), 0.0f);
      tile(r0, rows, n0, cols, acc);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          float& o = d[(r0 + i) * n + n0 + j];
          const float v = acc[static_cast<std::size_t>(i * cols + j)];
          o = accumulate ? fm::fadd(o, v) : v;
        }
    }
  });
}

}  // namespace

void gemm_fp8(const Fp8Rows& a, const Fp8Rows& b, float* d, bool accumulate) {
  if (a.cols != b.cols)
    throw std::invalid_argument("fp8_train gemm_fp8: A has " + std::to_string(a.cols) + " columns, B " + std::to_string(b.cols));
  const int64_t k = a.cols, groups = a.groups();
  const auto& tab = e4m3_table();
  auto decode = [&](const Fp8Rows& o, int64_t r0, int64_t rows, MatD& out) {
    out.resize(rows, k);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k; ++c) out(r, c) = tab[o.codes[static_cast<std::size_t>((r0 + r) * k + c)]];
  };
  for_each_tile(a.rows, b.rows, d, accumulate, [&](int64_t r0, int64_t rows, int64_t n0, int64_t cols, std::vector<float>& acc) {
    thread_local MatD ad, bd, prod;  // scratch reused across tiles
    decode(a, r0, rows, ad);
    decode(b, n0, cols, bd);
    for (int64_t g = 0; g < groups; ++g) {
      prod.noalias() = ad.middleCols(g * kTile, kTile) * bd.middleCols(g * kTile, kTile).transpose();
      for (int64_t i = 0; i < rows; ++i) {
        const float sa = a.scales[static_cast<std::size_t>((r0 + i) * groups + g)];
        for (int64_t j = 0; j < cols; ++j) {
          const float sc = fm::fmul(sa, b.scales[static_cast<std::size_t>((n0 + j) * groups + g)]);
          float& e = acc[static_cast<std::size_t>(i * cols + j)];
          e = fm::fadd(e, fm::fmul(static_cast<float>(prod(i, j)), sc));
        }
      }
    }
  });
}

void gemm_bf16(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* d, bool accumulate) {
  for_each_tile(m, n, d, accumulate, [&](int64_t r0, int64_t rows, int64_t n0, int64_t cols, std::vector<float>& acc) {
    thread_local MatD ad, bd, prod;  // scratch reused across tiles
    ad.resize(rows, k);
    bd.resize(cols, k);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k; ++c) ad(r, c) = a[(r0 + r) * k + c];
    for (int64_t r = 0; r < cols; ++r)
      for (int64_t c = 0; c < k; ++c) bd(r, c) = b[(n0 + r) * k + c];
    prod.noalias() = ad * bd.transpose();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) acc[static_cast<std::size_t>(i * cols + j)] = static_cast<float>(prod(i, j));
  });
}

float bf16_value(double v) { return bf16_to_f32(bf16_from_f64(v)); }

void round_bf16(std::vector<float>& v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

}  // namespace dsv3::fp8train
