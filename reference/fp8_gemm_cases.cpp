// FP8 GEMM component: eval cases (small, ragged, adversarial), perf cases (datasets/shapes/
// fp8_gemm.json: DeepGEMM's V3 shapes), check aids and the second-reference check, and the
// registration of "ref" and "ref_1thread".
#include <cmath>
#include <stdexcept>

#include "core/json_file.hpp"
#include "core/parallel.hpp"
#include "core/registry.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

// The BF16-input FP64 reference costs a full FP64 GEMM; above this many FLOPs the bench
// validation leaves it out (the error-budget study covers the V3 shapes at smaller M).
constexpr double kOriginalCheckMaxFlops = 1e12;
constexpr double kCalcDiffBound = 1e-3;  // DeepGEMM's tests: calc_diff(out, ref) < 0.001
constexpr double kRefBenchMaxFlops = 3e11;

Params dense(int64_t m, int64_t n, int64_t k, ScaleFmt f = ScaleFmt::f32, DType out = DType::bf16,
             Dist d = Dist::normal) {
  Params p;
  p.m = m; p.n = n; p.k = k; p.scale_fmt = f; p.out = out; p.dist = d;
  return p;
}

Params grouped(Layout l, int64_t cap, std::vector<int64_t> rows, int64_t n, int64_t k, ScaleFmt f = ScaleFmt::f32,
               Dist d = Dist::normal) {
  Params p;
  p.layout = l; p.m = cap; p.rows = std::move(rows); p.n = n; p.k = k; p.scale_fmt = f; p.dist = d;
  return p;
}

std::vector<Case> eval_cases() {
  std::vector<Params> ps;
  // Shapes: M = 1 and M not a multiple of 64, N = 576 / 2112 (not multiples of 256), K = 128,
  // K = 7168 (V3's hidden size) at M = 1.
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 576, 7168}, {1, 2112, 512}, {7, 128, 128},
                                                      {65, 576, 256}, {130, 2112, 384}, {64, 256, 1024}};
  for (auto [m, n, k] : shapes) {
    ps.push_back(dense(m, n, k));
    ps.push_back(dense(m, n, k, ScaleFmt::ue8m0));
    ps.push_back(dense(m, n, k, ScaleFmt::f32, DType::f32));
  }
  for (Dist d : {Dist::outliers, Dist::outlier_channels, Dist::token_scaled, Dist::small_ints, Dist::adversarial,
                 Dist::zeros})
    for (ScaleFmt f : {ScaleFmt::f32, ScaleFmt::ue8m0}) ps.push_back(dense(65, 576, 256, f, DType::bf16, d));
  ps.push_back(dense(130, 2112, 1024, ScaleFmt::f32, DType::bf16, Dist::small_ints));
  ps.push_back(dense(64, 256, 7168, ScaleFmt::ue8m0, DType::f32, Dist::small_ints));
  for (Dist d : {Dist::normal, Dist::small_ints}) {  // D = C + A.B^T
    Params p = dense(65, 576, 256, ScaleFmt::f32, DType::f32, d);
    p.accumulate = true;
    ps.push_back(p);
    p.out = DType::bf16;
    ps.push_back(p);
  }
  for (auto [m, n, k, d] : std::vector<std::tuple<int64_t, int64_t, int64_t, Dist>>{
           {65, 576, 256, Dist::normal}, {128, 2112, 1024, Dist::normal}, {65, 576, 256, Dist::small_ints}}) {
    Params p = dense(m, n, k, ScaleFmt::f32, DType::bf16, d);
    p.per_tensor = true;
    ps.push_back(p);
  }
  // Grouped: empty groups, groups of one row, ragged segments, several blocks per group.
  ps.push_back(grouped(Layout::contiguous, 0, {1, 0, 130, 128}, 576, 256));
  ps.push_back(grouped(Layout::contiguous, 0, {200, 57}, 256, 384, ScaleFmt::ue8m0));
  ps.push_back(grouped(Layout::contiguous, 0, {5, 130}, 2112, 512, ScaleFmt::f32, Dist::small_ints));
  ps.push_back(grouped(Layout::contiguous, 0, {3, 64}, 576, 256, ScaleFmt::f32, Dist::adversarial));
  ps.push_back(grouped(Layout::masked, 64, {64, 0, 1, 33}, 576, 256));
  ps.push_back(grouped(Layout::masked, 130, {130, 7}, 256, 384, ScaleFmt::ue8m0));
  ps.push_back(grouped(Layout::masked, 96, {5, 96}, 2112, 512, ScaleFmt::f32, Dist::small_ints));
  {
    Params p = grouped(Layout::masked, 64, {64, 17}, 576, 256);
    p.out = DType::f32;
    p.accumulate = true;
    ps.push_back(p);
  }
  std::vector<Case> cases;
  for (const Params& p : ps) cases.push_back(make_case(p));
  return cases;
}

// Entries: {"layout", "n", "k", "m": int or list (dense), "rows": list (grouped), "cap" (masked),
// "scale_fmt", "out", "per_tensor": bool or list}; list fields expand into one case per value.
std::vector<Case> perf_cases() {
  return load_shape_cases("fp8_gemm", [](const nlohmann::json& c, const std::string& at) {
    Params base;
    base.layout = layout_from_name(json_field_or<std::string>(c, "layout", "dense", at));
    base.n = json_field<int64_t>(c, "n", at);
    base.k = json_field<int64_t>(c, "k", at);
    base.scale_fmt = fp8::scale_fmt_from_name(json_field_or<std::string>(c, "scale_fmt", "f32", at));
    base.out = dtype_from_name(json_field_or<std::string>(c, "out", "bf16", at));
    std::vector<int64_t> ms = {0};
    if (base.layout == Layout::dense) {
      if (!c.contains("m")) throw InputError(at + ": missing field 'm'");
      ms = json_one_or_list<int64_t>(c, "m", -1, at);
    } else {
      base.rows = json_field<std::vector<int64_t>>(c, "rows", at);
      if (base.layout == Layout::masked) ms = {json_field<int64_t>(c, "cap", at)};
    }
    std::vector<Case> cases;
    for (int64_t m : ms)
      for (bool pt : json_one_or_list<bool>(c, "per_tensor", false, at)) {
        Params p = base;
        p.m = m;
        p.per_tensor = pt;
        p.validate();
        cases.push_back(make_case(p));
      }
    return cases;
  });
}

bool original_check_applies(const Params& p) {
  // Non-finite inputs have no calc_diff; zeros and small_ints are exact anyway (checked by the
  // exact mask); token_scaled rows 2^28 apart are mostly flushed by per-tensor scales on purpose.
  if (p.dist == Dist::adversarial || p.dist == Dist::zeros || p.dist == Dist::small_ints) return false;
  if (p.per_tensor && p.dist == Dist::token_scaled) return false;
  return flops(p) <= kOriginalCheckMaxFlops;
}

std::vector<Tensor> aids(const Case& c, const std::vector<Tensor>& in, const std::vector<Tensor>&) {
  const Params& p = c.as<Params>();
  std::vector<Tensor> t = check_aids(p, in);
  if (original_check_applies(p)) {
    const std::vector<double> ref = f64_original(p, make_originals(p));
    Tensor o("f64_original:d", DType::f32, output_specs(p).at(0).shape);
    auto os = o.span<float>();
    for (std::size_t i = 0; i < ref.size(); ++i) os[i] = static_cast<float>(ref[i]);
    if (p.accumulate) {
      const auto cc = in.back().span<const float>();
      for (std::size_t i = 0; i < ref.size(); ++i) os[i] = static_cast<float>(ref[i] + cc[i]);
    }
    t.push_back(std::move(o));
  }
  return t;
}

// calc_diff of the variant's token rows against the FP64 product of the BF16 originals.
std::vector<CompareReport> extra_checks(const Case&, const std::vector<Tensor>& aid, const std::vector<Tensor>& got) {
  const Tensor* ref = find_tensor(aid, "f64_original:d");
  if (!ref) return {};
  const Tensor& d = got.at(0);
  CompareReport r;
  r.name = "d vs f64_original";
  r.tolerance = "calc_diff <= 1e-3 (DeepGEMM's tests; quantization error included)";
  r.metric = "calc_diff";
  Agreement a;
  for (int64_t i = 0; i < ref->numel(); ++i) {
    const double e = ref->get(i);
    if (std::isnan(e)) continue;  // not a token row
    a.add(d.get(i), e);          // a non-finite output makes calc_diff NaN, which fails below
  }
  r.n = a.n;
  r.max_abs = a.max_abs;
  r.metric_value = a.calc_diff();
  r.cos_dist = a.cos_dist();
  r.nmse = a.nmse();
  r.pass = r.metric_value <= kCalcDiffBound;  // NaN fails
  if (!r.pass) r.message = "calc_diff " + std::to_string(r.metric_value) + " > 1e-3 against the FP64 BF16-input product";
  return {r};
}

Variant ref_variant(const std::string& name, int threads, const std::string& description) {
  Variant v;
  v.component = "fp8_gemm";
  v.name = name;
  v.description = description;
  v.prepare = [threads](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_reference(p, io.in, io.out); }, threads);
  };
  return v;
}

}  // namespace

void register_component() {
  Component c;
  c.name = "fp8_gemm";
  c.description = "FP8 block-scaled GEMMs (1x128 x 128x128 scales): dense, MoE-grouped contiguous and masked";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  c.make_inputs = [](const Case& k) { return make_inputs(k.as<Params>()); };
  c.make_outputs = [](const Case& k) { return make_outputs(k.as<Params>()); };
  c.bytes = [](const Case& k) { return bytes_moved(k.as<Params>()); };
  c.flops = [](const Case& k) { return flops(k.as<Params>()); };
  c.check_aids = aids;
  c.extra_checks = extra_checks;
  c.study = error_budget_study;
  Registry::instance().add(std::move(c));

  Variant ref = ref_variant("ref", 0, "CPU reference: exact group sums (Eigen FP64), FP32 scale steps, threaded (reference/fp8_gemm.cpp)");
  ref.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  // Benchmarks only (the checker calls the reference directly): its rate is measured on the block-scaled
  // cases up to kRefBenchMaxFlops; larger ones take minutes on a small CPU and add no information.
  ref.unsupported = [](const Case& k) -> std::string {
    const Params& p = k.as<Params>();
    if (p.per_tensor && flops(p) > 1e9) return "the reference's rate is measured on the block-scaled twin";
    if (flops(p) > kRefBenchMaxFlops) return "CPU reference timed on cases up to 3e11 FLOPs";
    return "";
  };
  Registry::instance().add(std::move(ref));
  Variant one = ref_variant("ref_1thread", 1, "the reference on one thread: proves results do not depend on the thread count");
  one.unsupported = [](const Case& k) -> std::string {
    return flops(k.as<Params>()) > 1e9 ? "the one-thread proof runs on cases up to 1 GFLOP (the eval cases)" : "";
  };
  one.tolerances["*"] = Tolerance::bit_exact("same operations in the same order per element; only the task split differs");
  Registry::instance().add(std::move(one));
}

}  // namespace dsv3::fp8gemm

void dsv3_register_fp8_gemm_ref() { dsv3::fp8gemm::register_component(); }
