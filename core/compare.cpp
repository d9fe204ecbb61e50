#include "core/compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

namespace dsv3 {
namespace {

struct FormatBits { int mbits, emin; };

FormatBits format_bits(DType fmt) {
  switch (fmt) {
    case DType::bf16: return {7, -126};
    case DType::f16: return {10, -14};
    case DType::e4m3: return {3, -6};
    case DType::e5m2: return {2, -14};
    default: return {23, -126};
  }
}

std::string fmt_num(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

}  // namespace

Tolerance Tolerance::bit_exact(std::string why) {
  Tolerance t;
  t.kind = Kind::exact;
  t.reason = std::move(why);
  return t;
}

Tolerance Tolerance::in_ulps(double n, DType fmt, std::string why) {
  Tolerance t;
  t.kind = Kind::ulps;
  t.ulps = n;
  t.fmt = fmt;
  t.reason = std::move(why);
  return t;
}

Tolerance Tolerance::abs_rel(double atol, double rtol, std::string why) {
  Tolerance t;
  t.kind = Kind::absrel;
  t.atol = atol;
  t.rtol = rtol;
  t.reason = std::move(why);
  return t;
}

Tolerance Tolerance::bounded_by(double eps, double rtol, bool exact_where_proven, std::string why) {
  Tolerance t;
  t.kind = Kind::bounded;
  t.eps = eps;
  t.rtol = rtol;
  t.exact_where_proven = exact_where_proven;
  t.reason = std::move(why);
  return t;
}

Tolerance Tolerance::by_component_check(std::string why) {
  Tolerance t;
  t.kind = Kind::by_component;
  t.reason = std::move(why);
  return t;
}

std::string Tolerance::describe() const {
  std::string s;
  switch (kind) {
    case Kind::exact: s = "exact"; break;
    case Kind::ulps: s = "<= " + fmt_num(ulps) + " ulp " + std::string(dtype_name(fmt)); break;
    case Kind::absrel: s = "atol " + fmt_num(atol) + " | rtol " + fmt_num(rtol); break;
    case Kind::by_component: s = "by the component's check"; break;
    case Kind::bounded: s = fmt_num(eps) + " * " + (magnitude_aid.empty() ? std::string("magnitude") : magnitude_aid) + " + " + fmt_num(rtol) + " * |ref|" + (exact_where_proven ? " (exact where proven)" : ""); break;
  }
  if (max_cos_dist >= 0) s += ", cos_dist <= " + fmt_num(max_cos_dist);
  if (max_nmse >= 0) s += ", nmse <= " + fmt_num(max_nmse);
  return s;
}

double ulp_in(DType fmt, double ref) {
  const FormatBits f = format_bits(fmt);
  const double a = std::fabs(ref);
  int e2 = 0;
  std::frexp(a, &e2);
  const int exponent = (a == 0.0) ? f.emin : std::max(e2 - 1, f.emin);
  return std::ldexp(1.0, exponent - f.mbits);
}

std::string Tolerance::aid_for(const std::string& output) const {
  if (magnitude_aid.empty()) return "magnitude:" + output;
  if (magnitude_aid.back() == '*') return magnitude_aid.substr(0, magnitude_aid.size() - 1) + output;
  return magnitude_aid;
}

CompareReport compare_tensors(const Tensor& got, const Tensor& ref, const Tolerance& tol, const Tensor* magnitude,
                              const Tensor* exact_mask) {
  CompareReport r;
  r.name = ref.name();
  r.tolerance = tol.describe();
  r.n = ref.numel();
  if (tol.kind == Tolerance::Kind::bounded &&
      (!magnitude || magnitude->dtype() != DType::f32 || magnitude->shape() != ref.shape())) {
    r.message = "tolerance 'bounded' needs an f32 magnitude tensor of shape " + shape_to_string(ref.shape()) +
                (magnitude ? ", got " + magnitude->describe() : std::string(", and the component gave none"));
    return r;
  }
  if (exact_mask && (exact_mask->dtype() != DType::u8 || exact_mask->shape() != ref.shape())) {
    r.message = "exact mask must be u8 " + shape_to_string(ref.shape()) + ", got " + exact_mask->describe();
    return r;
  }
  const bool use_mask = tol.kind == Tolerance::Kind::bounded && tol.exact_where_proven && exact_mask;
  if (got.dtype() != ref.dtype() || got.shape() != ref.shape()) {
    r.message = "expected " + std::string(dtype_name(ref.dtype())) + " " +
                shape_to_string(ref.shape()) + ", got " + std::string(dtype_name(got.dtype())) +
                " " + shape_to_string(got.shape());
    return r;
  }
  if (!got.guards_intact()) r.message = "canary guard overwritten: out-of-bounds write";
  if (tol.kind == Tolerance::Kind::by_component) {  // compared by the component's extra_checks
    r.pass = r.message.empty();
    return r;
  }
  const std::size_t esize = dtype_size(ref.dtype());
  const auto* gb = static_cast<const unsigned char*>(got.raw());
  const auto* rb = static_cast<const unsigned char*>(ref.raw());
  Agreement agree;
  double worst_ratio = -1;
  for (int64_t i = 0; i < r.n; ++i) {
    const double g = got.get(i), e = ref.get(i);
    const bool gnan = std::isnan(g), enan = std::isnan(e);
    bool bad = false;
    double ratio = 0;
    if (gnan || enan) {
      bad = gnan != enan;
      r.nan_mismatches += bad;
      ratio = bad ? INFINITY : 0;
    } else if (std::isinf(g) || std::isinf(e)) {
      bad = g != e;
      r.inf_mismatches += bad;
      ratio = bad ? INFINITY : 0;
    } else {
      const double d = std::fabs(g - e);
      if (e != 0) r.max_rel = std::max(r.max_rel, d / std::fabs(e));
      agree.add(g, e);
      auto exact_bits = [&] {  // identical bit patterns; any difference ranks far above every bound
        bad = std::memcmp(gb + i * esize, rb + i * esize, esize) != 0;
        ratio = bad ? std::max(d, 1e-300) * 1e300 : 0;
      };
      switch (tol.kind) {
        case Tolerance::Kind::exact:
          exact_bits();
          break;
        case Tolerance::Kind::ulps: {
          const double allowed = tol.ulps * ulp_in(tol.fmt, e);
          bad = d > allowed;
          ratio = allowed > 0 ? d / allowed : (d > 0 ? INFINITY : 0);
          break;
        }
        case Tolerance::Kind::absrel: {
          const double allowed = std::max(tol.atol, tol.rtol * std::fabs(e));
          bad = d > allowed;
          ratio = allowed > 0 ? d / allowed : (d > 0 ? INFINITY : 0);
          break;
        }
        case Tolerance::Kind::by_component:  // returned above
          break;
        case Tolerance::Kind::bounded: {
          const double mag = magnitude->get(i);
          if (use_mask && exact_mask->get(i) != 0) {  // proved exact by the component: identical bits only
            exact_bits();
            break;
          }
          const double allowed = tol.eps * mag + tol.rtol * std::fabs(e);
          bad = d > allowed;
          ratio = allowed > 0 ? d / allowed : (d > 0 ? INFINITY : 0);
          break;
        }
      }
    }
    r.mismatches += bad;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      r.worst_index = unravel_index(i, ref.shape());
      r.worst_got = g;
      r.worst_ref = e;
    }
  }
  r.max_abs = agree.max_abs;
  r.cos_dist = agree.cos_dist();
  r.nmse = agree.nmse();
  if (r.message.empty() && r.mismatches > 0) {
    r.message = std::to_string(r.mismatches) + " of " + std::to_string(r.n) +
                " elements out of tolerance (" + std::to_string(r.nan_mismatches) + " NaN, " +
                std::to_string(r.inf_mismatches) + " Inf position mismatches); worst at " +
                shape_to_string(r.worst_index) + ": got " + fmt_num(r.worst_got) + ", ref " +
                fmt_num(r.worst_ref);
  }
  if (r.message.empty() && tol.max_cos_dist >= 0 && r.cos_dist > tol.max_cos_dist)
    r.message = "cosine distance " + fmt_num(r.cos_dist) + " > " + fmt_num(tol.max_cos_dist);
  if (r.message.empty() && tol.max_nmse >= 0 && r.nmse > tol.max_nmse)
    r.message = "NMSE " + fmt_num(r.nmse) + " > " + fmt_num(tol.max_nmse);
  r.pass = r.message.empty();
  return r;
}

void Agreement::add(double got, double ref) {
  const double d = got - ref;
  gr += got * ref;
  gg += got * got;
  rr += ref * ref;
  err2 += d * d;
  max_abs = std::max(max_abs, std::fabs(d));
  ++n;
}

double Agreement::calc_diff() const { return gg + rr > 0 ? 1.0 - 2.0 * gr / (gg + rr) : 0.0; }

double Agreement::cos_dist() const {
  return (gg > 0 && rr > 0) ? 1.0 - gr / std::sqrt(gg * rr) : (gg == rr ? 0.0 : 1.0);
}

double Agreement::nmse() const { return rr > 0 ? err2 / rr : (err2 > 0 ? INFINITY : 0.0); }

CompareReport compare_index_sets(const Tensor& got, const Tensor& ref, const Tensor& scores,
                                 double score_eps) {
  CompareReport r;
  r.name = ref.name();
  r.tolerance = "same index set per row; ties at the k-th score may swap";
  r.n = ref.numel();
  if (got.dtype() != DType::i32 || ref.dtype() != DType::i32 || got.shape() != ref.shape() ||
      ref.rank() != 2 || scores.rank() != 2 || scores.dim(0) != ref.dim(0)) {
    r.message = "index sets: expected i32 [rows, k] pairs and f32 scores [rows, n]; got " +
                got.describe() + ", " + ref.describe() + ", " + scores.describe();
    return r;
  }
  const int64_t rows = ref.dim(0), k = ref.dim(1), n = scores.dim(1);
  const auto gi = got.span<int32_t>(), ei = ref.span<int32_t>();
  for (int64_t row = 0; row < rows; ++row) {
    std::set<int32_t> gs(gi.begin() + row * k, gi.begin() + (row + 1) * k);
    std::set<int32_t> es(ei.begin() + row * k, ei.begin() + (row + 1) * k);
    if (gs == es) continue;
    double kth = INFINITY;
    for (int32_t e : es) kth = std::min(kth, scores.get(row * n + e));
    bool ok = static_cast<int64_t>(gs.size()) == k;
    for (int32_t g : gs) {
      if (es.count(g)) continue;
      if (g < 0 || g >= n || std::fabs(scores.get(row * n + g) - kth) > score_eps) ok = false;
    }
    if (!ok) {
      ++r.mismatches;
      if (r.worst_index.empty()) r.worst_index = {row, 0};
    }
  }
  if (r.mismatches)
    r.message = std::to_string(r.mismatches) + " of " + std::to_string(rows) +
                " rows select a different expert set; first at row " +
                std::to_string(r.worst_index[0]);
  r.pass = r.message.empty();
  return r;
}

}  // namespace dsv3
