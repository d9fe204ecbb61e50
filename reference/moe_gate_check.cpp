// Routing checks of gate variants (reference/moe_gate_check.hpp).
#include "reference/moe_gate_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <string>

#include "core/dtype.hpp"
#include "core/parallel.hpp"

namespace dsv3::moe_gate {
namespace {

Tensor copy_as(const Tensor& t, const std::string& name) {
  Tensor c(name, t.dtype(), t.shape());
  std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

const Tensor& aid(const std::vector<Tensor>& aids, const std::string& name) {
  const Tensor* t = find_tensor(aids, name);
  if (!t) throw std::invalid_argument("moe_gate check: check aid '" + name + "' missing");
  return *t;
}

std::string num(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

// Experts of the variant's row `t`: all in [0, E) and distinct.
bool valid_row(const int32_t* idx, int64_t k, int64_t experts) {
  std::set<int32_t> seen;
  for (int64_t j = 0; j < k; ++j)
    if (idx[j] < 0 || idx[j] >= experts || !seen.insert(idx[j]).second) return false;
  return true;
}

CompareReport check_indices(const Routing& r, const Tensor& got, const Tensor& ref, const Tensor& selection) {
  CompareReport rep = compare_index_sets(got, ref, selection, kTieEps);
  rep.name = "indices (sets per token)";
  rep.tolerance = "same set per token; ties within 2^-20 may swap (groups 2^-18); <= n_limited_groups groups";
  if (!rep.pass) return rep;
  const auto gi = got.span<const int32_t>();
  for (int64_t t = 0; t < got.dim(0); ++t) {
    std::set<int64_t> groups;
    for (int64_t j = 0; j < r.topk; ++j) groups.insert(gi[static_cast<std::size_t>(t * r.topk + j)] / r.per_group());
    if (static_cast<int64_t>(groups.size()) > r.topk_groups) {
      ++rep.mismatches;
      if (rep.worst_index.empty()) rep.worst_index = {t, 0};
    }
  }
  if (rep.mismatches) {
    rep.pass = false;
    rep.message = std::to_string(rep.mismatches) + " tokens route to more than n_limited_groups = " +
                  std::to_string(r.topk_groups) + " groups; first at token " + std::to_string(rep.worst_index[0]);
  }
  return rep;
}

CompareReport check_weights(const Routing& r, const Tensor& got_w, const Tensor& got_i, const Tensor& ref_w,
                            const Tensor& ref_i, const Tensor& affinity) {
  CompareReport rep;
  rep.name = "weights (by expert)";
  rep.tolerance = "<= 1 ulp bf16 per expert (a tie-swapped set: recomputed)";
  const int64_t T = ref_i.dim(0), k = r.topk;
  rep.n = T * k;
  if (got_w.dtype() != DType::bf16 || got_i.dtype() != DType::i32 || got_w.shape() != ref_w.shape() ||
      got_i.shape() != ref_i.shape()) {
    rep.message = "expected bf16 weights and i32 indices " + shape_to_string(ref_i.shape()) + ", got " +
                  got_w.describe() + " and " + got_i.describe();
    return rep;
  }
  const auto gw = got_w.span<const uint16_t>(), rw = ref_w.span<const uint16_t>();
  const auto gi = got_i.span<const int32_t>(), ri = ref_i.span<const int32_t>();
  const auto aff = affinity.span<const float>();
  double worst_ratio = -1;
  std::vector<double> w(static_cast<std::size_t>(k));
  for (int64_t t = 0; t < T; ++t) {
    const int32_t* g = &gi[static_cast<std::size_t>(t * k)];
    const int32_t* e = &ri[static_cast<std::size_t>(t * k)];
    if (!valid_row(g, k, r.experts)) continue;  // the indices check names it
    const bool same_set = std::set<int32_t>(g, g + k) == std::set<int32_t>(e, e + k);
    if (!same_set) weights_of(r, &aff[static_cast<std::size_t>(t * r.experts)], g, w.data());
    for (int64_t j = 0; j < k; ++j) {
      double expect = 0;
      if (same_set) {
        const auto pos = std::find(e, e + k, g[j]) - e;
        expect = bf16_to_f32(rw[static_cast<std::size_t>(t * k + pos)]);
      } else {
        expect = bf16_to_f32(bf16_from_f64(w[static_cast<std::size_t>(j)]));
      }
      const double v = bf16_to_f32(gw[static_cast<std::size_t>(t * k + j)]);
      double ratio = 0;
      bool bad = false;
      if (std::isnan(v) || std::isnan(expect)) {
        bad = std::isnan(v) != std::isnan(expect);
        rep.nan_mismatches += bad;
        ratio = bad ? INFINITY : 0;
      } else {
        const double d = std::fabs(v - expect), allowed = kWeightUlps * ulp_in(DType::bf16, expect);
        rep.max_abs = std::max(rep.max_abs, d);
        bad = d > allowed;
        ratio = d / allowed;
      }
      rep.mismatches += bad;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        rep.worst_index = {t, j};
        rep.worst_got = v;
        rep.worst_ref = expect;
      }
    }
  }
  if (rep.mismatches)
    rep.message = std::to_string(rep.mismatches) + " of " + std::to_string(rep.n) + " weights out of tolerance (" +
                  std::to_string(rep.nan_mismatches) + " NaN mismatches); worst at token " +
                  std::to_string(rep.worst_index[0]) + " choice " + std::to_string(rep.worst_index[1]) + ": got " +
                  num(rep.worst_got) + ", expected " + num(rep.worst_ref);
  rep.pass = rep.message.empty();
  return rep;
}

}  // namespace

std::vector<Tensor> routing_aids(const Params& p, const std::vector<Tensor>& in, const std::vector<Tensor>& ref_out) {
  const Routing r = p.routing();
  require_tensors(ref_out, output_specs(p), "moe_gate check: reference outputs");
  const std::vector<float> scores = gate_scores(p, in);
  const float* bias = r.bias ? in[2].span<const float>().data() : nullptr;
  Tensor affinity("affinity", DType::f32, {p.tokens, r.experts}), selection("selection", DType::f32, {p.tokens, r.experts});
  std::copy(scores.begin(), scores.end(), affinity.span<float>().begin());
  auto sel = selection.span<float>();
  parallel_for(p.tokens, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* s = &sel[static_cast<std::size_t>(t * r.experts)];
      biased_scores(r, &scores[static_cast<std::size_t>(t * r.experts)], bias, s);
      if (r.groups == 1) continue;
      const std::vector<float> gs = group_scores(r, s);
      const double last_kept = gs[static_cast<std::size_t>(top_k(gs.data(), r.groups, r.topk_groups).back())];
      for (int64_t e = 0; e < r.experts; ++e)  // NaN group scores compare false: kept (no meaningful choice)
        if (gs[static_cast<std::size_t>(e / r.per_group())] < last_kept - kGroupTieEps)
          s[e] = -std::numeric_limits<float>::infinity();
    }
  });
  std::vector<Tensor> aids;
  aids.push_back(copy_as(ref_out[1], "ref:indices"));
  aids.push_back(copy_as(ref_out[0], "ref:weights"));
  aids.push_back(std::move(affinity));
  aids.push_back(std::move(selection));
  return aids;
}

std::vector<CompareReport> routing_checks(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
  const Routing r = p.routing();
  const Tensor &ref_i = aid(aids, "ref:indices"), &ref_w = aid(aids, "ref:weights");
  const Tensor &got_w = got.at(0), &got_i = got.at(1);
  std::vector<CompareReport> reps = {check_indices(r, got_i, ref_i, aid(aids, "selection"))};
  reps.push_back(check_weights(r, got_w, got_i, ref_w, ref_i, aid(aids, "affinity")));
  return reps;
}

}  // namespace dsv3::moe_gate
