// FP8 GEMM component: params identity, tensors, seeded inputs, cases, check aids, registration of
// "ref" and "ref_1thread" (the reference on one thread: must equal the threaded run bit for bit).
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "core/fp8_math.hpp"
#include "core/json_file.hpp"
#include "core/parallel.hpp"
#include "core/registry.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

int64_t align_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

std::string rows_string(const std::vector<int64_t>& rows) {
  bool uniform = !rows.empty();
  for (int64_t r : rows) uniform &= r == rows.front();
  if (uniform && rows.size() > 1) return std::to_string(rows.front()) + "x" + std::to_string(rows.size());
  std::string s;
  for (int64_t r : rows) {
    if (!s.empty()) s += ',';
    s += std::to_string(r);
  }
  return s;
}

}  // namespace

std::string_view layout_name(Layout l) {
  return l == Layout::dense ? "dense" : l == Layout::contiguous ? "contiguous" : "masked";
}

Layout layout_from_name(std::string_view n) {
  for (Layout l : {Layout::dense, Layout::contiguous, Layout::masked})
    if (layout_name(l) == n) return l;
  throw std::invalid_argument("unknown fp8_gemm layout '" + std::string(n) + "' (expected dense, contiguous, masked)");
}

std::string Params::to_string() const {
  std::ostringstream os;
  os << layout_name(layout);
  if (layout == Layout::dense) os << " m=" << m;
  else if (layout == Layout::masked) os << " cap=" << m << " rows=" << rows_string(rows);
  else os << " rows=" << rows_string(rows);
  os << " n=" << n << " k=" << k << ' ' << fp8::scale_fmt_name(scale_fmt) << (per_tensor ? " per_tensor" : "")
     << " out=" << dtype_name(out) << (accumulate ? " +c" : "") << ' ' << dist_name(dist);
  if (scale != 1.0) os << " x" << scale;
  return os.str();
}

void Params::validate() const {
  const std::string what = "fp8_gemm " + std::string(layout_name(layout)) + ": ";
  if (n < 1) throw std::invalid_argument(what + "n must be >= 1, got " + std::to_string(n));
  if (k < kGroup || k % kGroup != 0)
    throw std::invalid_argument(what + "k = " + std::to_string(k) +
                                " is not a positive multiple of 128 (zero-pad A and B along K; see fp8_gemm.hpp)");
  if (out != DType::bf16 && out != DType::f32)
    throw std::invalid_argument(what + "out must be bf16 or f32, got " + std::string(dtype_name(out)));
  if (!(scale > 0)) throw std::invalid_argument(what + "distribution scale must be > 0");
  if (layout == Layout::dense) {
    if (m < 1) throw std::invalid_argument(what + "m must be >= 1, got " + std::to_string(m));
    if (!rows.empty()) throw std::invalid_argument(what + "rows is for the grouped layouts");
    return;
  }
  if (rows.empty()) throw std::invalid_argument(what + "rows (one count per group) must not be empty");
  for (std::size_t g = 0; g < rows.size(); ++g) {
    if (rows[g] < 0) throw std::invalid_argument(what + "rows[" + std::to_string(g) + "] < 0");
    if (layout == Layout::masked && rows[g] > m)
      throw std::invalid_argument(what + "rows[" + std::to_string(g) + "] = " + std::to_string(rows[g]) +
                                  " exceeds the capacity m = " + std::to_string(m));
  }
  if (layout == Layout::masked && m < 1) throw std::invalid_argument(what + "capacity m must be >= 1");
}

int64_t Params::a_rows() const {
  if (layout == Layout::dense) return m;
  if (layout == Layout::masked) return groups() * m;
  int64_t total = 0;
  for (int64_t r : rows) total += align_up(r, kMAlign);
  return total;
}

int64_t Params::valid_rows() const {
  if (layout == Layout::dense) return m;
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  return total;
}

std::vector<TensorSpec> input_specs(const Params& p) {
  const DType sd = p.scale_fmt == ScaleFmt::f32 ? DType::f32 : DType::ue8m0;
  const int64_t g = p.groups(), kb = p.kb(), nb = p.nb();
  std::vector<TensorSpec> s;
  if (p.layout == Layout::masked) {
    s = {{"a", DType::e4m3, {g, p.m, p.k}}, {"sa", sd, {g, p.m, kb}}};
  } else {
    s = {{"a", DType::e4m3, {p.a_rows(), p.k}}, {"sa", sd, {p.a_rows(), kb}}};
  }
  if (p.layout == Layout::dense) {
    s.push_back({"b", DType::e4m3, {p.n, p.k}});
    s.push_back({"sb", sd, {nb, kb}});
  } else {
    s.push_back({"b", DType::e4m3, {g, p.n, p.k}});
    s.push_back({"sb", sd, {g, nb, kb}});
  }
  if (p.layout == Layout::contiguous) s.push_back({"group_index", DType::i32, {p.a_rows()}});
  if (p.layout == Layout::masked) s.push_back({"counts", DType::i32, {g}});
  if (p.accumulate) s.push_back({"c", DType::f32, output_specs(p).at(0).shape});
  return s;
}

std::vector<TensorSpec> output_specs(const Params& p) {
  if (p.layout == Layout::masked) return {{"d", p.out, {p.groups(), p.m, p.n}}};
  return {{"d", p.out, {p.a_rows(), p.n}}};
}

std::vector<Tensor> make_outputs(const Params& p) { return allocate(output_specs(p)); }

namespace {

// Rows filled in parallel, each block of 64 rows from its own seed (results do not depend on the
// thread count). outlier_channels needs one draw over the whole tensor (shared channels).
void fill_rows(Tensor& t, Dist d, uint64_t seed, double scale) {
  const int64_t cols = t.dim(-1), rows = t.numel() / cols;
  if (d == Dist::outlier_channels) return fill(t, d, seed, scale);
  constexpr int64_t kBlock = 64;
  auto out = t.span<uint16_t>();
  parallel_for((rows + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kBlock, r1 = std::min(rows, r0 + kBlock);
      const std::vector<float> v = draw(d, seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(b + 1)),
                                        (r1 - r0) * cols, cols, scale);
      for (std::size_t i = 0; i < v.size(); ++i) out[static_cast<std::size_t>(r0 * cols) + i] = f32_to_bf16(v[i]);
    }
  });
}

Dist weight_dist(Dist d) {
  return d == Dist::small_ints || d == Dist::adversarial || d == Dist::zeros ? d : Dist::normal;
}

// Quantizes rows x cols of bf16 values into codes and f32 scales: 1x128 tiles (activations),
// 128x128 blocks (weights), or one scale for everything (per_tensor).
void quantize(const Tensor& src, int64_t row0, int64_t rows, int64_t cols, bool weight, const Params& p,
              uint8_t* codes, float* scales) {
  fp8::Params q;
  q.m = rows;
  q.k = cols;
  q.scale_fmt = p.scale_fmt;
  q.op = weight ? fp8::Op::quant_128x128 : fp8::Op::quant_1x128;
  Tensor x("x", DType::bf16, {rows, cols});
  std::copy_n(src.span<const uint16_t>().data() + row0 * cols, rows * cols, x.span<uint16_t>().data());
  std::vector<Tensor> out = fp8::make_outputs(q);
  if (p.per_tensor) {
    float amax = 0;  // NaN-propagating, as the tile quantizers
    for (int64_t i = 0; i < x.numel(); ++i) amax = fp8math::amax_combine(amax, std::fabs(static_cast<float>(x.get(i))));
    const float s = fp8::tile_scale(amax, q.elem, q.scale_fmt);
    parallel_for(rows * cols, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) codes[i] = fp8::quantize_element(static_cast<float>(x.get(i)), s, amax, q);
    }, 4096);
    std::fill_n(scales, out[1].numel(), s);
    return;
  }
  if (weight) fp8::quant_128x128(x, out[0], out[1], q);
  else fp8::quant_1x128(x, out[0], out[1], q);
  std::copy_n(out[0].span<const uint8_t>().data(), out[0].numel(), codes);
  std::copy_n(out[1].span<const float>().data(), out[1].numel(), scales);
}

// small_ints: integer codes in [-8, 8] and power-of-two scales in [2^-2, 2^2]; the originals are
// code * scale, exact in bf16. Every group sum is an integer below 2^13 in magnitude.
void small_int_operand(uint64_t seed, int64_t n_codes, uint8_t* codes, int64_t n_scales, float* scales) {
  Rng rng(seed);
  for (int64_t i = 0; i < n_codes; ++i)
    codes[i] = f32_to_e4m3(static_cast<float>(static_cast<int64_t>(rng.next() % 17) - 8));
  for (int64_t i = 0; i < n_scales; ++i) scales[i] = std::ldexp(1.0f, static_cast<int>(rng.next() % 5) - 2);
}

void store_scales(const std::vector<float>& s, Tensor& t) {
  if (t.dtype() == DType::f32) {
    std::copy(s.begin(), s.end(), t.span<float>().begin());
    return;
  }
  auto codes = t.span<uint8_t>();
  for (std::size_t i = 0; i < s.size(); ++i) codes[i] = f32_to_ue8m0_ceil(s[i]);  // exact: powers of two
}

}  // namespace

Originals make_originals(const Params& p) {
  p.validate();
  const uint64_t seed = seed_from(p.to_string());
  Originals o{Tensor("x", DType::bf16, {p.a_rows(), p.k}), Tensor("w", DType::bf16, {p.groups() * p.n, p.k})};
  fill_rows(o.x, p.dist, seed, p.scale);
  fill_rows(o.w, weight_dist(p.dist), seed + 1, 1.0);
  return o;
}

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  std::vector<Tensor> in = allocate(input_specs(p));
  const int64_t rows = p.a_rows(), kb = p.kb(), nb = p.nb(), g = p.groups();
  std::vector<float> sa(static_cast<std::size_t>(rows * kb)), sb(static_cast<std::size_t>(g * nb * kb));
  uint8_t* a = in[0].span<uint8_t>().data();
  uint8_t* b = in[2].span<uint8_t>().data();
  const uint64_t seed = seed_from(p.to_string());
  if (p.dist == Dist::small_ints) {
    small_int_operand(seed, rows * p.k, a, p.per_tensor ? 1 : rows * kb, sa.data());
    small_int_operand(seed + 1, g * p.n * p.k, b, p.per_tensor ? 1 : g * nb * kb, sb.data());
    if (p.per_tensor) {
      std::fill(sa.begin(), sa.end(), sa[0]);
      std::fill(sb.begin(), sb.end(), sb[0]);
    }
  } else {
    const Originals o = make_originals(p);
    quantize(o.x, 0, rows, p.k, false, p, a, sa.data());
    for (int64_t gi = 0; gi < g; ++gi)  // one weight per group, each with its own scales
      quantize(o.w, gi * p.n, p.n, p.k, true, p, b + gi * p.n * p.k, sb.data() + gi * nb * kb);
  }
  store_scales(sa, in[1]);
  store_scales(sb, in[3]);
  if (p.layout == Layout::contiguous) {
    auto gi = in[4].span<int32_t>();
    int64_t r = 0;
    for (int64_t grp = 0; grp < g; ++grp) {
      const int64_t valid = p.rows[static_cast<std::size_t>(grp)], padded = align_up(valid, kMAlign);
      for (int64_t i = 0; i < padded; ++i) gi[static_cast<std::size_t>(r + i)] = i < valid ? static_cast<int32_t>(grp) : -1;
      r += padded;
    }
  }
  if (p.layout == Layout::masked) {
    auto counts = in[4].span<int32_t>();
    for (int64_t grp = 0; grp < g; ++grp) counts[static_cast<std::size_t>(grp)] = static_cast<int32_t>(p.rows[static_cast<std::size_t>(grp)]);
  }
  if (p.accumulate) {
    Tensor& c = in.back();
    const std::vector<float> v = draw(p.dist == Dist::small_ints ? Dist::small_ints : Dist::normal, seed + 2, c.numel(), p.n);
    std::copy(v.begin(), v.end(), c.span<float>().begin());
  }
  return in;
}

double flops(const Params& p) {
  return 2.0 * static_cast<double>(p.valid_rows()) * static_cast<double>(p.n) * static_cast<double>(p.k);
}

double bytes_moved(const Params& p) {
  const double v = static_cast<double>(p.valid_rows()), n = static_cast<double>(p.n), k = static_cast<double>(p.k);
  const double g = static_cast<double>(p.groups()), kb = static_cast<double>(p.kb()), nb = static_cast<double>(p.nb());
  const double ss = p.scale_fmt == ScaleFmt::f32 ? 4 : 1;
  double bytes = v * k + v * kb * ss + g * n * k + g * nb * kb * ss + v * n * static_cast<double>(dtype_size(p.out));
  if (p.accumulate) bytes += v * n * 4;
  if (p.layout == Layout::contiguous) bytes += 4 * static_cast<double>(p.a_rows());
  if (p.layout == Layout::masked) bytes += 4 * g;
  return bytes;
}

}  // namespace dsv3::fp8gemm
