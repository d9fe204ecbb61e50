// MLA attention cores (reference/mla.hpp): params, seeded inputs, the FP64 reference.
#include "reference/mla.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "core/parallel.hpp"
#include "reference/mla_cache.hpp"
#include "reference/mla_softmax.hpp"
#include "reference/rope.hpp"

namespace dsv3::mla {

using detail::MatD;

std::string_view cache_fmt_name(CacheFmt f) { return f == CacheFmt::bf16 ? "bf16" : "fp8"; }
std::string_view op_name(Op o) { return o == Op::decode ? "decode" : "prefill"; }
double v3_softmax_scale() { return rope::softmax_scale(kHeadQk, rope::Yarn{}); }

Params decode_params(std::vector<int64_t> lens, int64_t s_q, int64_t heads, CacheFmt fmt, Dist dist) {
  Params p;
  p.op = Op::decode;
  p.batch = static_cast<int64_t>(lens.size());
  p.lens = std::move(lens);
  p.s_q = s_q;
  p.heads = heads;
  p.cache = fmt;
  p.dist = dist;
  return p;
}

std::string Params::to_string() const {
  std::ostringstream os;
  os << op_name(op) << " b=" << batch << (op == Op::decode ? " sq=" : " s=") << s_q << " h=" << heads;
  if (op == Op::decode) {
    os << ' ' << cache_fmt_name(cache);
    if (!lens.empty()) {
      os << " lens=";
      for (std::size_t i = 0; i < lens.size(); ++i) os << (i ? "," : "") << lens[i];
    } else {
      os << " len~" << mean_len << (varlen ? " varlen" : "");
    }
    if (spare_pages != 2) os << " spare=" << spare_pages;
  }
  os << ' ' << dist_name(dist);
  return os.str();
}

void Params::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("mla: " + what); };
  if (batch < 1) bad("batch must be >= 1, got " + std::to_string(batch));
  if (heads < 1) bad("heads must be >= 1, got " + std::to_string(heads));
  if (op == Op::decode) {
    if (s_q != 1 && s_q != 2) bad("decode s_q must be 1 or 2 (2 = MTP verification), got " + std::to_string(s_q));
    if (!lens.empty() && static_cast<int64_t>(lens.size()) != batch)
      bad("lens has " + std::to_string(lens.size()) + " entries for batch " + std::to_string(batch));
    for (int64_t l : lens)
      if (l < 0) bad("a sequence length is negative (" + std::to_string(l) + ")");
    if (lens.empty() && mean_len < 0) bad("mean_len must be >= 0");
    if (spare_pages < 0) bad("spare_pages must be >= 0");
  } else if (s_q < 1) {
    bad("prefill length s must be >= 1, got " + std::to_string(s_q));
  }
}

std::vector<int64_t> Params::seq_lens() const {
  if (!lens.empty()) return lens;
  std::vector<int64_t> out(static_cast<std::size_t>(batch), mean_len);
  if (varlen) {  // FlashMLA's test: max(N(mean, mean/2), s_q)
    Params same = *this;  // the same lengths for either cache format
    same.cache = CacheFmt::bf16;
    same.spare_pages = 2;
    Rng rng(seed_from(same.to_string() + " lens"));
    for (auto& l : out)
      l = std::max<int64_t>(std::llround(static_cast<double>(mean_len) + rng.normal() * static_cast<double>(mean_len) / 2), s_q);
  }
  return out;
}

int64_t Params::max_pages() const {
  int64_t m = 0;
  for (int64_t l : seq_lens()) m = std::max(m, (l + kPage - 1) / kPage);
  return m + 1;
}

std::vector<TensorSpec> input_specs(const Params& p) {
  if (p.op == Op::prefill)
    return {{"q", DType::bf16, {p.batch, p.s_q, p.heads, kHeadQk}},
            {"k", DType::bf16, {p.batch, p.s_q, p.heads, kHeadQk}},
            {"v", DType::bf16, {p.batch, p.s_q, p.heads, kHeadV}}};
  const std::vector<int64_t> lens = p.seq_lens();
  int64_t pages = std::max<int64_t>(p.spare_pages, 1);
  for (int64_t l : lens) pages += (l + kPage - 1) / kPage;
  const TensorSpec cache = p.cache == CacheFmt::bf16 ? TensorSpec{"kv_cache", DType::bf16, {pages, kPage, kQk}}
                                                     : TensorSpec{"kv_cache", DType::u8, {pages, kPage, kFp8TokenBytes}};
  return {{"q", DType::bf16, {p.batch, p.s_q, p.heads, kQk}}, cache,
          {"block_table", DType::i32, {p.batch, p.max_pages()}}, {"seqlens", DType::i32, {p.batch}}};
}

std::vector<TensorSpec> output_specs(const Params& p) {
  const int64_t dv = p.op == Op::decode ? kLatent : kHeadV;
  return {{"out", DType::bf16, {p.batch, p.s_q, p.heads, dv}}, {"lse", DType::f32, {p.batch, p.heads, p.s_q}}};
}

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  std::vector<Tensor> in = allocate(input_specs(p));
  Params same_values = p;  // cases differing only in cache format or page layout hold the same values
  same_values.cache = CacheFmt::bf16;
  same_values.spare_pages = 2;
  const std::string values_id = same_values.to_string();
  const uint64_t seed = seed_from(values_id);
  fill(in[0], p.dist, seed);
  if (p.op == Op::prefill) {
    fill(in[1], p.dist, seed + 1);
    fill(in[2], p.dist, seed + 2);
    return in;
  }
  const std::vector<int64_t> lens = p.seq_lens();
  const PagedLayout layout = plan_pages(lens, p.max_pages(), p.spare_pages, seed_from(p.to_string() + " pages"));
  std::copy(layout.block_table.begin(), layout.block_table.end(), in[2].span<int32_t>().begin());
  for (std::size_t b = 0; b < lens.size(); ++b) in[3].span<int32_t>()[b] = static_cast<int32_t>(lens[b]);
  const int64_t tb = token_bytes(p.cache);
  auto* cache = static_cast<uint8_t*>(in[1].raw());
  for (int64_t t = 0; t < layout.pages * kPage; ++t) poison_token(p.cache, cache + t * tb);
  for (std::size_t b = 0; b < lens.size(); ++b) {
    const std::vector<float> v = draw(p.dist, seed_from(values_id + " seq " + std::to_string(b)), lens[b] * kQk, kQk);
    for (int64_t j = 0; j < lens[b]; ++j) {
      float tok[kQk];
      for (int64_t e = 0; e < kQk; ++e) tok[e] = bf16_to_f32(f32_to_bf16(v[static_cast<std::size_t>(j * kQk + e)]));
      const int32_t page = layout.block_table[b * static_cast<std::size_t>(layout.table_width) + static_cast<std::size_t>(j / kPage)];
      store_token(p.cache, tok, cache + (page * kPage + j % kPage) * tb);
    }
  }
  return in;
}

namespace {
double round_up_f32(double x) {
  const auto f = static_cast<float>(x);
  return static_cast<double>(f) >= x ? f : std::nextafter(f, std::numeric_limits<float>::infinity());
}
}  // namespace

double out_error_scale(double magnitude, double score_magnitude, double visible) {
  return round_up_f32(magnitude * (1 + score_magnitude / 256 + visible / 131072));
}
double lse_error_scale(double score_magnitude, double visible) { return round_up_f32(score_magnitude + visible / 1024 + 1); }

std::map<std::string, Tolerance> fp32_score_decode_tolerances() {
  // out, per element against the FP64 reference, with mag = sum_j p_j |v_j| / sum_j p_j (the
  // magnitude), M = the row's score magnitude scale * sum_i |q_i k_i| and n its visible keys:
  //   2^-8 mag          P rounded to BF16 before P V (BF16's unit roundoff; the numerator only: l
  //                     sums the FP32 p)
  //   2.6e-5 M mag      scores from FP32 tensor-core accumulation of 576 products (36 steps of 16,
  //                     at most 3 truncations of 2^-23 each: |ds| <= 108 * 2^-23 M) move the
  //                     normalised weights by <= 2 |ds|
  //   n 2^-24.3 mag     P V accumulated in FP32: n / 16 steps, 3 truncations of 2^-23 each, and the
  //                     per-page rescales (n / 64 roundings of 2^-24)
  //   1e-6 mag          the split merge (exp, FMA) and 1 / l: a few roundings
  // eps 2^-7 on bound_fp32_scores:out = mag (1 + M / 256 + n / 131072) covers each term
  // (2^-7 >= 2^-8 + 1e-6; 2^-7 / 256 >= 2.6e-5; 2^-7 / 131072 = 2^-24 >= 2^-24.3). Both sides round
  // out to BF16 once, each by up to 2^-8 of the value: two adjacent BF16 values apart, 2^-7 |ref|
  // (with a margin for |ref| against the exact value).
  Tolerance out = Tolerance::bounded_by(
      0x1p-7, 0x1p-7 * 1.01, false,
      "P to BF16 (2^-8 mag), FP32 tensor-core scores (2 * 108 * 2^-23 * M mag), FP32 P V over n keys (n 2^-24.3 mag) "
      "within 2^-7 of mag (1 + M/256 + n/131072) (reference/mla.hpp out_error_scale); both sides round out to BF16 "
      "(2^-8 each: 2^-7 |ref|)");
  out.magnitude_aid = "bound_fp32_scores:out";
  out.max_cos_dist = 5e-6;  // FlashMLA's test threshold (v3-facts §9.2)
  // lse = max + log(l): |dlse| <= max |ds| + |dl| / l. Scores err by <= 108 * 2^-23 M (above); the
  // FP32 running sum of n visible exp(s - max) <= 1 terms by <= (9 n / 64 + 300) 2^-24 relative
  // (per lane 8 adds and a rescale per page, the quad, the warp pair, <= 132 splits). eps 2^-15 on
  // bound_fp32_scores:lse = M + n / 1024 + 1 (reference/mla.hpp lse_error_scale) covers both;
  // rtol 2^-22: both sides round lse to FP32, log in FP32.
  Tolerance lse = Tolerance::bounded_by(
      0x1p-15, 0x1p-22, false,
      "FP32 scores (108 * 2^-23 M) and the FP32 running sum of exp ((9n/64 + 300) 2^-24) within 2^-15 of M + n/1024 + 1 "
      "(reference/mla.hpp lse_error_scale); both sides round lse to FP32 (2^-22 |ref|)");
  lse.magnitude_aid = "bound_fp32_scores:lse";
  return {{"out", out}, {"lse", lse}};
}

void validate_decode_inputs(const Params& p, const std::vector<Tensor>& in) {
  const auto table = in[2].span<const int32_t>();
  const auto lens = in[3].span<const int32_t>();
  const int64_t width = in[2].dim(1), pages = in[1].dim(0);
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t len = lens[static_cast<std::size_t>(b)];
    if (len < 0) throw std::invalid_argument("mla decode: seqlens[" + std::to_string(b) + "] = " + std::to_string(len) + " is negative");
    if ((len + kPage - 1) / kPage > width)
      throw std::invalid_argument("mla decode: seqlens[" + std::to_string(b) + "] = " + std::to_string(len) + " needs " +
                                  std::to_string((len + kPage - 1) / kPage) + " pages, the block table has " + std::to_string(width));
    for (int64_t k = 0; k < (len + kPage - 1) / kPage; ++k) {
      const int32_t e = table[static_cast<std::size_t>(b * width + k)];
      if (e < 0 || e >= pages)
        throw std::invalid_argument("mla decode: block_table[" + std::to_string(b) + ", " + std::to_string(k) + "] = " +
                                    std::to_string(e) + " is outside the cache's " + std::to_string(pages) + " pages");
    }
  }
}

namespace {

// Writes row r of a finished softmax state: out (and magnitude when tracked) at element offset
// `at`, the LSE at `lse_at`; an empty row gives out 0 and lse +Inf.
void finish(const detail::Softmax& sm, Eigen::Index r, F64Outputs& o, std::size_t at, std::size_t lse_at) {
  o.lse[lse_at] = sm.lse(r);
  for (Eigen::Index j = 0; j < sm.acc.cols(); ++j) o.out[at + j] = sm.empty(r) ? 0.0 : sm.acc(r, j) / sm.sum(r);
  if (sm.acc_abs.size() && !sm.empty(r))
    for (Eigen::Index j = 0; j < sm.acc.cols(); ++j) o.magnitude[at + j] = sm.acc_abs(r, j) / sm.sum(r);
}

void decode_reference(const Params& p, const std::vector<Tensor>& in, F64Outputs& out) {
  const double scale = v3_softmax_scale();
  const auto* cache = static_cast<const uint8_t*>(in[1].raw());
  const auto table = in[2].span<const int32_t>();
  const auto lens = in[3].span<const int32_t>();
  const int64_t width = in[2].dim(1), tb = token_bytes(p.cache), rows = p.s_q * p.heads;
  const bool track = !out.magnitude.empty();
  parallel_for(p.batch, [&](int64_t b0, int64_t b1) {
    MatD q(rows, kQk), k(kPage, kQk);
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t i = 0; i < p.s_q; ++i)  // row i * H + h
        for (int64_t h = 0; h < p.heads; ++h)
          for (int64_t e = 0; e < kQk; ++e) q(i * p.heads + h, e) = in[0].get(((b * p.s_q + i) * p.heads + h) * kQk + e);
      const int64_t len = lens[static_cast<std::size_t>(b)];
      detail::Softmax sm(rows, kLatent, track);
      Eigen::VectorXd score_mag = Eigen::VectorXd::Zero(rows);
      for (int64_t page = 0; page * kPage < len; ++page) {
        const int64_t n = std::min(kPage, len - page * kPage);
        const uint8_t* base = cache + table[static_cast<std::size_t>(b * width + page)] * kPage * tb;
        for (int64_t j = 0; j < kPage; ++j) {
          if (j < n) decode_token(p.cache, base + j * tb, k.row(j).data());
          else k.row(j).setZero();  // never read: the page's tail is poisoned
        }
        MatD s = (q * k.transpose()) * scale;
        const MatD s_abs = track ? MatD((q.cwiseAbs() * k.cwiseAbs().transpose()) * scale) : MatD();
        for (int64_t i = 0; i < p.s_q; ++i) {
          const int64_t last = len - p.s_q + i;  // last visible position of query i
          for (int64_t j = 0; j < kPage; ++j)
            if (j >= n || page * kPage + j > last) {
              s.block(i * p.heads, j, p.heads, 1).setConstant(-std::numeric_limits<double>::infinity());
            } else if (track) {
              for (int64_t h = 0; h < p.heads; ++h)
                score_mag(i * p.heads + h) = std::max(score_mag(i * p.heads + h), s_abs(i * p.heads + h, j));
            }
        }
        sm.add(s, k.leftCols(kLatent));
      }
      for (int64_t i = 0; i < p.s_q; ++i)
        for (int64_t h = 0; h < p.heads; ++h) {
          const auto lse_at = static_cast<std::size_t>((b * p.heads + h) * p.s_q + i);
          finish(sm, i * p.heads + h, out, static_cast<std::size_t>(((b * p.s_q + i) * p.heads + h) * kLatent), lse_at);
          if (track) {
            out.score_magnitude[lse_at] = score_mag(i * p.heads + h);
            out.visible[lse_at] = static_cast<double>(std::max<int64_t>(len - p.s_q + i + 1, 0));
          }
        }
    }
  });
}

void prefill_reference(const Params& p, const std::vector<Tensor>& in, F64Outputs& out) {
  const double scale = v3_softmax_scale();
  const int64_t S = p.s_q, H = p.heads;
  parallel_for(p.batch * H, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / H, h = u % H;
      auto load = [&](const Tensor& t, int64_t width) {
        MatD m(S, width);
        for (int64_t i = 0; i < S; ++i)
          for (int64_t e = 0; e < width; ++e) m(i, e) = t.get(((b * S + i) * H + h) * width + e);
        return m;
      };
      const MatD q = load(in[0], kHeadQk), k = load(in[1], kHeadQk), v = load(in[2], kHeadV);
      detail::Softmax sm(S, kHeadV, !out.magnitude.empty());
      for (int64_t j0 = 0; j0 < S; j0 += kPage) {
        const int64_t n = std::min(kPage, S - j0);
        MatD s = (q * k.middleRows(j0, n).transpose()) * scale;
        for (int64_t i = 0; i < S; ++i)
          for (int64_t j = 0; j < n; ++j)
            if (j0 + j > i) s(i, j) = -std::numeric_limits<double>::infinity();
        sm.add(s, v.middleRows(j0, n));
      }
      for (int64_t i = 0; i < S; ++i)
        finish(sm, i, out, static_cast<std::size_t>(((b * S + i) * H + h) * kHeadV), static_cast<std::size_t>((b * H + h) * S + i));
    }
  });
}

}  // namespace

F64Outputs run_reference_f64(const Params& p, const std::vector<Tensor>& in, bool magnitude) {
  p.validate();
  const std::vector<TensorSpec> outs = output_specs(p);
  F64Outputs out;
  out.out.assign(static_cast<std::size_t>(shape_numel(outs[0].shape)), 0.0);
  out.lse.assign(static_cast<std::size_t>(shape_numel(outs[1].shape)), 0.0);
  if (magnitude) {
    out.magnitude.assign(out.out.size(), 0.0);
    if (p.op == Op::decode) {
      out.score_magnitude.assign(out.lse.size(), 0.0);
      out.visible.assign(out.lse.size(), 0.0);
    }
  }
  if (p.op == Op::prefill) {
    require_tensors(in, input_specs(p), "mla/ref inputs");
    prefill_reference(p, in, out);
    return out;
  }
  // The cache's page count and the table's width are the caller's: check ranks and widths only.
  if (in.size() != 4) throw ShapeError("mla/ref decode: expected 4 inputs (q, kv_cache, block_table, seqlens)");
  require_tensor(in[0], DType::bf16, {p.batch, p.s_q, p.heads, kQk}, "mla/ref decode q");
  const Shape cache_shape = {in[1].rank() == 3 ? in[1].dim(0) : -1, kPage, p.cache == CacheFmt::bf16 ? kQk : kFp8TokenBytes};
  require_tensor(in[1], p.cache == CacheFmt::bf16 ? DType::bf16 : DType::u8, cache_shape, "mla/ref decode kv_cache");
  require_tensor(in[2], DType::i32, {p.batch, in[2].rank() == 2 ? in[2].dim(1) : -1}, "mla/ref decode block_table");
  require_tensor(in[3], DType::i32, {p.batch}, "mla/ref decode seqlens");
  validate_decode_inputs(p, in);
  decode_reference(p, in, out);
  return out;
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  require_tensors(out, output_specs(p), "mla/ref outputs");
  const F64Outputs f = run_reference_f64(p, in);
  auto o = out[0].span<uint16_t>();
  for (std::size_t i = 0; i < o.size(); ++i) o[i] = bf16_from_f64(f.out[i]);
  auto l = out[1].span<float>();
  for (std::size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(f.lse[i]);
}

double flops(const Params& p) {
  const auto hq = static_cast<double>(p.heads), sq = static_cast<double>(p.s_q);
  if (p.op == Op::prefill)  // causal: S (S + 1) / 2 scores per head, QK^T 192 wide, PV 128 wide
    return static_cast<double>(p.batch) * hq * sq * (sq + 1) / 2 * 2 * static_cast<double>(kHeadQk + kHeadV);
  double total = 0;  // FlashMLA: b * h_q * s_q * (2 d L + 2 L dv), per sequence with its own L
  for (int64_t l : p.seq_lens()) total += hq * sq * 2 * static_cast<double>(l) * static_cast<double>(kQk + kLatent);
  return total;
}

double bytes_moved(const Params& p) {
  const auto hq = static_cast<double>(p.heads), sq = static_cast<double>(p.s_q), b = static_cast<double>(p.batch);
  if (p.op == Op::prefill)  // q, k, v read; out and lse written
    return b * sq * hq * (2.0 * kHeadQk * 2 + 2.0 * kHeadV) + b * sq * hq * (2.0 * kHeadV + 4);
  double cache = 0;  // FlashMLA: q + the cache once (one KV head) + out; plus lse here
  for (int64_t l : p.seq_lens()) cache += static_cast<double>(l) * static_cast<double>(token_bytes(p.cache));
  return b * sq * hq * kQk * 2 + cache + b * sq * hq * (kLatent * 2 + 4);
}

}  // namespace dsv3::mla
