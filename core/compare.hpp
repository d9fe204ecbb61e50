// compare_tensors(): one checker for every variant. Never aborts; returns a report.
//
// Rules, in order:
//  1. dtype and shape must match (else the report fails and says both shapes);
//  2. NaN positions must match and Inf positions (with sign) must match;
//  3. per element, by tolerance kind:
//       exact   identical bit patterns (codes), the rule for quantizers and codecs;
//       ulps    |got - ref| <= n * ulp_fmt(ref), ulp in the output format `fmt`;
//       absrel  |got - ref| <= atol  or  |got - ref| <= rtol * |ref|;
//       bounded |got - ref| <= eps * mag[i] + rtol * |ref|, where mag is a per-element magnitude
//               the component derives for the case (e.g. an upper bound of sum_k |a_k b_k| for a
//               dot product: the classic bound |fl(a.b) - a.b| <= eps * sum |a_k b_k|); where the
//               component also proved an element exact (exact mask != 0) and the tolerance has
//               exact_where_proven, only identical bits pass;
//  4. optional whole-tensor bounds: cosine distance and NMSE.
// Kind by_component: rule 1 and the canary guards only; the component's extra_checks compare the
// output (an order-free or cross-output comparison, e.g. moe_gate's routing: index sets per token
// and each chosen expert's weight), and the tolerance's reason says how.
// The worst element (largest |got-ref| / allowed) is reported with its N-d coordinates.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace dsv3 {

struct Tolerance {
  enum class Kind : uint8_t { exact, ulps, absrel, bounded, by_component };
  Kind kind = Kind::exact;
  double ulps = 0;             // kind == ulps
  DType fmt = DType::f32;      // format the ulps are counted in
  double atol = 0, rtol = 0;   // kind == absrel (rtol also for bounded)
  double eps = 0;              // kind == bounded: factor on the magnitude
  std::string magnitude_aid;   // kind == bounded: the check aid it multiplies; empty = "magnitude:<output>";
                               // a trailing '*' stands for the output's name ("bound:*" -> "bound:y")
  std::string aid_for(const std::string& output) const;  // the aid's name for `output`
  bool exact_where_proven = false;  // kind == bounded: elements the exact mask marks must match bit for bit
  double max_cos_dist = -1;    // < 0: not checked
  double max_nmse = -1;        // < 0: not checked
  std::string reason;          // one line: why this bound is right

  static Tolerance bit_exact(std::string why);
  static Tolerance in_ulps(double n, DType fmt, std::string why);
  static Tolerance abs_rel(double atol, double rtol, std::string why);
  static Tolerance bounded_by(double eps, double rtol, bool exact_where_proven, std::string why);
  static Tolerance by_component_check(std::string why);
  std::string describe() const;  // "exact", "<= 1 ulp bf16", "atol 1e-5 | rtol 1e-3"
};

struct CompareReport {
  std::string name;            // output name
  std::string tolerance;       // Tolerance::describe()
  bool pass = false;
  std::string message;         // first reason for failure, empty on pass
  int64_t n = 0, mismatches = 0, nan_mismatches = 0, inf_mismatches = 0;
  double max_abs = 0, max_rel = 0, cos_dist = 0, nmse = 0;
  std::vector<int64_t> worst_index;
  double worst_got = 0, worst_ref = 0;
  std::string metric;          // a check's own whole-tensor metric (e.g. "calc_diff"), empty if none
  double metric_value = 0;
};

// `magnitude` (f32, ref's shape) is required by Tolerance::bounded and ignored otherwise;
// `exact_mask` (u8, ref's shape, optional) marks the elements the component proved exact.
CompareReport compare_tensors(const Tensor& got, const Tensor& ref, const Tolerance& tol,
                              const Tensor* magnitude = nullptr, const Tensor* exact_mask = nullptr);

// Running FP64 sums for whole-tensor agreement of `got` with `ref` (add finite pairs only):
// the one place these metrics are computed (compare_tensors, extra checks, studies).
struct Agreement {
  double gr = 0, gg = 0, rr = 0, err2 = 0, max_abs = 0;
  int64_t n = 0;
  void add(double got, double ref);
  double calc_diff() const;  // DeepGEMM: 1 - 2 sum(g r) / sum(g^2 + r^2); 0 when both are all zero
  double cos_dist() const;   // 1 - cos(got, ref); 0 when both are all zero, 1 when only one is
  double nmse() const;       // sum (g - r)^2 / sum r^2; Inf when ref is all zero and got is not
  double rel_l2() const { return std::sqrt(nmse()); }
  double rms_ref() const { return n ? std::sqrt(rr / static_cast<double>(n)) : 0.0; }
};

// Size of one unit in the last place of `ref` in format `fmt` (subnormal spacing below the
// normal range). For f32 the float32 ulp.
double ulp_in(DType fmt, double ref);

// Order-free comparison of top-k index sets per row, tie-aware: got[r] may differ from ref[r]
// only by indices whose score equals the k-th largest score of that row (within `score_eps`).
// got/ref: i32 [rows, k]; scores: f32 [rows, n].
CompareReport compare_index_sets(const Tensor& got, const Tensor& ref, const Tensor& scores,
                                 double score_eps = 0.0);

}  // namespace dsv3
