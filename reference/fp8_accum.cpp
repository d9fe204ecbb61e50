// FP8 accumulation model (see fp8_accum.hpp): exact integer arithmetic on (significand, exponent)
// pairs. A finite double x is split as x = M * 2^e with |M| < 2^53 an integer; every quantity the
// model forms is such a pair or a small sum of them, so nothing is rounded except where the model
// says so.
#include "reference/fp8_accum.hpp"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <climits>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace dsv3::fp8accum {
namespace {

using u128 = unsigned __int128;

struct Exact {
  int64_t m = 0;  // signed significand, |m| < 2^53
  int e = 0;      // value = m * 2^e
  int lead() const { return e + static_cast<int>(std::bit_width(static_cast<uint64_t>(m < 0 ? -m : m))) - 1; }
};

Exact split(double x) {
  if (x == 0) return {};
  int ex = 0;
  const double f = std::frexp(x, &ex);  // x = f * 2^ex, 0.5 <= |f| < 1
  return {static_cast<int64_t>(std::ldexp(f, 53)), ex - 53};
}

// Divides the signed magnitude-sign integer v by 2^shift (shift >= 0) with rounding r.
__int128 shift_round(__int128 v, int shift, Rounding r) {
  if (shift <= 0) return v;
  const bool neg = v < 0;
  const u128 mag = neg ? static_cast<u128>(-v) : static_cast<u128>(v);
  u128 keep, rem, half;
  if (shift >= 127) {  // everything is below the grid: rem = mag < half
    keep = 0;
    rem = mag;
    half = static_cast<u128>(1) << 126;
  } else {
    keep = mag >> shift;
    rem = mag & ((static_cast<u128>(1) << shift) - 1);
    half = static_cast<u128>(1) << (shift - 1);
  }
  switch (r) {
    case Rounding::truncate: break;
    case Rounding::floor: if (neg && rem != 0) ++keep; break;  // magnitude rounds up for negatives
    case Rounding::nearest_even: if (rem > half || (rem == half && (keep & 1))) ++keep; break;
  }
  return neg ? -static_cast<__int128>(keep) : static_cast<__int128>(keep);
}

int bit_width128(u128 v) {
  const uint64_t hi = static_cast<uint64_t>(v >> 64);
  return hi ? 64 + static_cast<int>(std::bit_width(hi)) : static_cast<int>(std::bit_width(static_cast<uint64_t>(v)));
}

}  // namespace

std::string_view rounding_name(Rounding r) {
  switch (r) {
    case Rounding::truncate: return "trunc";
    case Rounding::floor: return "floor";
    case Rounding::nearest_even: return "rne";
  }
  return "?";
}

std::string Model::to_string() const {
  std::ostringstream os;
  os << 'c' << chunk << " f" << frac_bits << ' ' << rounding_name(align_rounding) << ' '
     << (acc_in_alignment ? "accin" : "accout") << " wb=" << rounding_name(writeback) << " nc=";
  if (promote_every) os << promote_every;
  else os << "never";
  if (flush_subnormals) os << " ftz";
  if (align_exponent == ExpSource::operands) os << " opexp";
  return os.str();
}

void Model::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("fp8_accum model: " + what); };
  if (chunk < 1 || chunk > 256) bad("chunk must be in [1, 256], got " + std::to_string(chunk));
  if (frac_bits < 1 || frac_bits > 40) bad("frac_bits must be in [1, 40], got " + std::to_string(frac_bits));
  if (writeback == Rounding::floor) bad("writeback must be truncate or nearest_even");
  if (promote_every < 0 || (promote_every > 0 && promote_every % chunk != 0))
    bad("promote_every must be 0 or a positive multiple of chunk (" + std::to_string(chunk) + "), got " +
        std::to_string(promote_every));
}

Model v3_report_model(int promote_every) {
  Model m;
  m.promote_every = promote_every;
  return m;
}

float round_to_f32(__int128 s, int e, Rounding r, bool flush_subnormals) {
  if (s == 0) return 0.0f;
  const bool neg = s < 0;
  const u128 mag = neg ? static_cast<u128>(-s) : static_cast<u128>(s);
  const int lead = e + bit_width128(mag) - 1;
  const int q = std::max(lead - 23, -149);  // FP32 quantum: 24 significant bits, subnormal floor 2^-149
  __int128 kept = q > e ? shift_round(s, q - e, r) : s;  // |kept| <= 2^24 when rounded
  const int qe = q > e ? q : e;
  if (kept == 0) return neg ? -0.0f : 0.0f;
  const u128 kmag = kept < 0 ? static_cast<u128>(-kept) : static_cast<u128>(kept);
  const int klead = qe + bit_width128(kmag) - 1;
  if (klead > 127) {  // overflow: RNE goes to inf; truncation stops at FLT_MAX; floor per sign
    const bool to_inf = r == Rounding::nearest_even || (r == Rounding::floor && neg);
    const float big = to_inf ? INFINITY : FLT_MAX;
    return neg ? -big : big;
  }
  const double v = std::ldexp(static_cast<double>(static_cast<int64_t>(kmag)), qe);  // kmag <= 2^24 here
  float f = static_cast<float>(v);  // exact: v has <= 24 significant bits within FP32 range
  if (flush_subnormals && std::fabs(f) < FLT_MIN) f = 0.0f;
  return neg ? -f : f;
}

int e4m3_exponent(float x) { return std::max(std::ilogb(x), -6); }

float mma_step_products(float acc, const double* p, const int* pexp, int n, const Model& m) {
  if (n < 0 || n > 256) throw std::invalid_argument("fp8_accum: a step has at most 256 products");
  const bool opexp = m.align_exponent == ExpSource::operands;
  if (opexp && pexp == nullptr) throw std::invalid_argument("fp8_accum: align_exponent = operands needs the exponents");
  Exact terms[257];
  int nt = 0, emax = INT_MIN;
  for (int i = 0; i < n; ++i)
    if (p[i] != 0) {
      terms[nt] = split(p[i]);
      emax = std::max(emax, opexp ? pexp[i] : terms[nt].lead());
      ++nt;
    }
  const Exact a = split(acc);
  if (m.acc_in_alignment && acc != 0) {
    terms[nt++] = a;
    emax = std::max(emax, a.lead());
  }
  if (nt == 0)  // nothing to add: acc (with its sign of zero), flushed like any written-back result
    return m.flush_subnormals && std::fabs(acc) < FLT_MIN ? std::copysign(0.0f, acc) : acc;
  const int grid = emax - m.frac_bits;  // aligned values are integers times 2^grid
  __int128 sum = 0;
  for (int i = 0; i < nt; ++i)  // terms[i].e < grid always (53-bit significands, frac_bits <= 40)
    sum += shift_round(terms[i].m, grid - terms[i].e, m.align_rounding);
  if (m.acc_in_alignment || acc == 0) {
    const float r = round_to_f32(sum, grid, m.writeback, m.flush_subnormals);
    // An exact zero sum keeps IEEE's +0 (x + (-x) = +0 under round-to-nearest).
    return r;
  }
  // Accumulator added after the alignment: exact acc + sum * 2^grid, rounded once. A member more
  // than 40 binades below the other is replaced by a same-sign sticky value 2^(lead_big - 40): it
  // is below half an FP32 ulp of the result either way, so every rounding mode sees the same side.
  Exact s{0, grid};
  if (sum != 0) {
    // |sum| < 257 * 2^(frac_bits + 1) < 2^50 for frac_bits <= 40, chunk <= 256: the check below never fires
    const u128 smag = sum < 0 ? static_cast<u128>(-sum) : static_cast<u128>(sum);
    int drop = std::max(0, bit_width128(smag) - 53);
    s = {static_cast<int64_t>(shift_round(sum, drop, Rounding::truncate)), grid + drop};
    if (drop > 0 && (smag & ((static_cast<u128>(1) << drop) - 1)) != 0)
      throw std::logic_error("fp8_accum: chunk sum wider than 53 bits (frac_bits too large)");
  }
  if (s.m == 0) return round_to_f32(a.m, a.e, m.writeback, m.flush_subnormals);
  Exact big = a, small = s;
  if (small.lead() > big.lead()) std::swap(big, small);
  if (big.lead() - small.lead() > 40) small = {small.m < 0 ? -1 : 1, big.lead() - 41};
  const int lo = std::min(big.e, small.e);
  const __int128 total = (static_cast<__int128>(big.m) << (big.e - lo)) + (static_cast<__int128>(small.m) << (small.e - lo));
  return round_to_f32(total, lo, m.writeback, m.flush_subnormals);
}

float mma_step(float acc, const float* a, const float* b, int n, const Model& m) {
  double p[256];
  int e[256];
  if (n < 0 || n > m.chunk || n > 256) throw std::invalid_argument("fp8_accum: mma_step n must be in [0, chunk]");
  for (int i = 0; i < n; ++i) {
    p[i] = static_cast<double>(a[i]) * static_cast<double>(b[i]);  // exact
    e[i] = p[i] != 0 ? e4m3_exponent(a[i]) + e4m3_exponent(b[i]) : 0;
  }
  return mma_step_products(acc, p, e, n, m);
}

float dot(const float* a, const float* b, int64_t k, const Model& m) {
  m.validate();
  const int64_t nc = m.promote_every > 0 ? m.promote_every : k;
  float promoted = 0.0f, part = 0.0f;
  int64_t since = 0;  // elements accumulated into `part` since the last promotion
  for (int64_t s = 0; s < k; s += m.chunk) {
    const int n = static_cast<int>(std::min<int64_t>(m.chunk, k - s));
    part = mma_step(part, a + s, b + s, n, m);
    since += n;
    if (m.promote_every > 0 && (since == nc || s + n == k)) {
      promoted = promoted + part;  // IEEE FP32 round-to-nearest-even (-ffp-contract=off)
      part = 0.0f;
      since = 0;
    }
  }
  return m.promote_every > 0 ? promoted : part;
}

}  // namespace dsv3::fp8accum
