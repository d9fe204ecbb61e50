// Compute time per micro-batch from a bundle's benchmarks (reference/netmodel_decode_calibrate.hpp).
#include "reference/netmodel_decode_calibrate.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>

#include "core/json_file.hpp"

namespace dsv3::netmodel {
namespace {

// One benchmark: component, variant, case (without Google Benchmark's suffixes) and time in us.
struct Bench {
  std::string component, variant, kase;
  double us = 0;
};

double unit_us(const std::string& unit) {
  if (unit == "ns") return 1e-3;
  if (unit == "us") return 1;
  if (unit == "ms") return 1e3;
  if (unit == "s") return 1e6;
  return NAN;
}

// Median aggregates where repetitions ran, else the plain rows (the first per name); errored and
// skipped rows are left out.
std::vector<Bench> bench_rows(const nlohmann::json& bundle) {
  std::vector<Bench> out;
  const auto it = bundle.find("benchmarks");
  if (it == bundle.end() || !it->is_array()) return out;
  std::map<std::string, bool> has_median;
  for (const auto& r : *it)
    if (r.is_object() && r.value("aggregate_name", "") == "median") has_median[r.value("run_name", r.value("name", ""))] = true;
  std::map<std::string, bool> seen;
  for (const auto& r : *it) {
    if (!r.is_object() || !r.contains("real_time") || !r["real_time"].is_number()) continue;
    if (r.contains("error_occurred") && (!r["error_occurred"].is_boolean() || r["error_occurred"].get<bool>())) continue;
    if (r.contains("skipped") && (!r["skipped"].is_boolean() || r["skipped"].get<bool>())) continue;  // true or a reason
    const std::string base = r.value("run_name", r.value("name", ""));
    if (has_median.count(base) ? r.value("aggregate_name", "") != "median" : r.contains("aggregate_name")) continue;
    if (seen[base]) continue;
    seen[base] = true;
    const std::size_t a = base.find('/'), b = a == std::string::npos ? a : base.find('/', a + 1);
    if (b == std::string::npos) continue;
    Bench x{base.substr(0, a), base.substr(a + 1, b - a - 1), base.substr(b + 1), 0};
    for (const char* suffix : {"/manual_time", "/real_time"})
      if (const std::size_t at = x.kase.find(suffix); at != std::string::npos) x.kase.resize(at);
    if (const std::size_t at = x.kase.find("/min_time:"); at != std::string::npos) x.kase.resize(at);
    x.us = r["real_time"].get<double>() * unit_us(r.value("time_unit", "ns"));
    if (std::isfinite(x.us)) out.push_back(std::move(x));
  }
  return out;
}

// Variant order: GPU variants (named first in `prefer`, then any other non-reference), then "ref".
int rank_of(const std::string& v, const std::vector<std::string>& prefer) {
  const auto it = std::find(prefer.begin(), prefer.end(), v);
  if (it != prefer.end()) return static_cast<int>(it - prefer.begin());
  return v.rfind("ref", 0) == 0 ? 1000 + (v == "ref" ? 0 : 1) : 500;
}

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// t(wanted) from measured points (x -> us) of one variant, with how it was obtained.
ComputeTerm from_points(std::string what, const std::string& variant, const std::map<double, std::pair<double, std::string>>& pts,
                        double wanted, const char* axis) {
  ComputeTerm t;
  t.what = std::move(what);
  t.variant = variant;
  t.wanted = wanted;
  const auto hi = pts.lower_bound(wanted);
  auto at = [&](const auto& p) { return std::string(axis) + "=" + num(p.first); };
  if (hi != pts.end() && hi->first == wanted) {
    t.us = hi->second.first;
    t.rows = hi->second.second;
    t.how = "measured at " + at(*hi);
  } else if (hi == pts.begin()) {
    t.us = hi->second.first;
    t.rows = hi->second.second;
    t.how = "clamped to the smallest measured " + at(*hi) + " (a smaller problem is not slower)";
  } else if (hi == pts.end()) {
    const auto& last = *std::prev(pts.end());
    t.us = last.second.first * wanted / last.first;
    t.rows = last.second.second;
    t.how = "scaled in proportion from the largest measured " + at(last);
  } else {
    const auto& lo = *std::prev(hi);
    const double f = (wanted - lo.first) / (hi->first - lo.first);
    t.us = lo.second.first + f * (hi->second.first - lo.second.first);
    t.rows = lo.second.second + " | " + hi->second.second;
    t.how = "interpolated between " + at(lo) + " and " + at(*hi);
  }
  return t;
}

// Among variants that have points, the best-ranked one's points.
template <class Key>
std::pair<std::string, std::map<double, std::pair<double, std::string>>> pick(
    const std::map<std::string, std::map<Key, std::map<double, std::pair<double, std::string>>>>& by_variant,
    const std::vector<std::string>& prefer, const Key& key) {
  std::string best;
  for (const auto& [v, groups] : by_variant)
    if (groups.count(key) && (best.empty() || rank_of(v, prefer) < rank_of(best, prefer))) best = v;
  if (best.empty()) return {};
  return {best, by_variant.at(best).at(key)};
}

}  // namespace

ComputeCalibration calibrate_compute(const nlohmann::json& bundle, const std::string& path, const DecodeLimitInputs& in,
                                     const ModelConfig& model) {
  if (!model.is_mla_moe()) throw InputError("decode-limit --bundle: model '" + model.id + "' has no MoE experts (family " + model.family + ")");
  ComputeCalibration cal;
  cal.bundle = path;
  const auto dev = bundle.find("device");
  cal.device = dev != bundle.end() && dev->is_object() && dev->value("present", false) ? dev->value("name", "GPU") : "cpu-only";
  const std::vector<Bench> rows = bench_rows(bundle);

  // Attention: mla decode rows "decode b=B sq=1 h=128 bf16 len~L ..." per variant, by length.
  static const std::regex mla_re(R"(^decode b=(\d+) sq=1 h=128 bf16 len~(\d+)\b.*)");
  std::map<std::string, std::map<int64_t, std::map<double, std::pair<double, std::string>>>> mla;  // variant -> len -> b
  for (const Bench& b : rows) {
    std::smatch m;
    if (b.component == "mla" && std::regex_match(b.kase, m, mla_re))
      mla[b.variant][std::stoll(m[2])][std::stod(m[1])] = {b.us, "mla/" + b.variant + "/" + b.kase};
  }
  if (mla.empty())
    throw InputError(path + ": no mla decode benchmark rows with s_q 1, 128 heads and the BF16 cache (\"decode b=B sq=1 h=128 bf16 "
                     "len~L\"); run `dsv3 bench mla` or `dsv3 run` first");
  std::string v_mla;
  for (const auto& [v, lens] : mla)
    if (v_mla.empty() || rank_of(v, {}) < rank_of(v_mla, {})) v_mla = v;
  int64_t len = 0;
  for (const auto& [l, pts] : mla[v_mla])
    if (len == 0 || std::llabs(l - 4096) < std::llabs(len - 4096)) len = l;
  cal.terms.push_back(from_points("attention (MLA decode, cache ~" + std::to_string(len) + " tokens)", v_mla, mla[v_mla][len],
                                  static_cast<double>(in.tokens_per_device), "b"));

  // Expert FFN: dense fp8_gemm rows "dense m=M n=N k=K f32 out=bf16 ..." (1x128 / 128x128 f32 scales).
  static const std::regex gemm_re(R"(^dense m=(\d+) n=(\d+) k=(\d+) f32 out=bf16\b.*)");
  std::map<std::string, std::map<std::pair<int64_t, int64_t>, std::map<double, std::pair<double, std::string>>>> gemm;
  for (const Bench& b : rows) {
    std::smatch m;
    if (b.component == "fp8_gemm" && b.kase.find("per_tensor") == std::string::npos && std::regex_match(b.kase, m, gemm_re))
      gemm[b.variant][{std::stoll(m[2]), std::stoll(m[3])}][std::stod(m[1])] = {b.us, "fp8_gemm/" + b.variant + "/" + b.kase};
  }
  const double rows_in = static_cast<double>(in.tokens_per_device * in.experts_per_token);
  const std::vector<std::string> prefer = {"cublaslt_block", "cuda_wgmma"};
  const std::pair<int64_t, int64_t> up{2 * model.moe_inter_dim, model.dim}, down{model.dim, model.moe_inter_dim};
  for (const auto& [shape, what] : {std::pair{up, std::string("expert gate+up")}, std::pair{down, std::string("expert down")}}) {
    const auto [variant, pts] = pick(gemm, prefer, shape);
    if (variant.empty())
      throw InputError(path + ": no dense fp8_gemm benchmark rows of the " + what + " shape n=" + std::to_string(shape.first) +
                       " k=" + std::to_string(shape.second) + " (" + model.id + "); run `dsv3 bench fp8_gemm` or `dsv3 run` first");
    cal.terms.push_back(from_points(what + " (n=" + std::to_string(shape.first) + " k=" + std::to_string(shape.second) + ")", variant, pts,
                                    rows_in, "m"));
  }
  for (const ComputeTerm& t : cal.terms) cal.compute_us += t.us;
  return cal;
}

}  // namespace dsv3::netmodel
