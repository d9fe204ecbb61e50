// Measured kernel times from a bundle's benchmarks (reference/netmodel_bundle_rows.hpp).
#include "reference/netmodel_bundle_rows.hpp"

#include <algorithm>
#include <cmath>
#include <regex>
#include <sstream>

namespace dsv3::netmodel {
namespace {

double unit_us(const std::string& unit) {
  if (unit == "ns") return 1e-3;
  if (unit == "us") return 1;
  if (unit == "ms") return 1e3;
  if (unit == "s") return 1e6;
  return NAN;
}

}  // namespace

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::vector<BenchRow> bench_rows(const nlohmann::json& bundle) {
  std::vector<BenchRow> out;
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
    BenchRow x{base.substr(0, a), base.substr(a + 1, b - a - 1), base.substr(b + 1), 0};
    for (const char* suffix : {"/manual_time", "/real_time"})
      if (const std::size_t at = x.kase.find(suffix); at != std::string::npos) x.kase.resize(at);
    if (const std::size_t at = x.kase.find("/min_time:"); at != std::string::npos) x.kase.resize(at);
    x.us = r["real_time"].get<double>() * unit_us(r.value("time_unit", "ns"));
    if (std::isfinite(x.us)) out.push_back(std::move(x));
  }
  return out;
}

std::string bundle_device(const nlohmann::json& bundle) {
  const auto dev = bundle.find("device");
  return dev != bundle.end() && dev->is_object() && dev->value("present", false) ? dev->value("name", "GPU") : "cpu-only";
}

int variant_rank(const std::string& v, const std::vector<std::string>& prefer) {
  const auto it = std::find(prefer.begin(), prefer.end(), v);
  if (it != prefer.end()) return static_cast<int>(it - prefer.begin());
  return v.rfind("ref", 0) == 0 ? 1000 + (v == "ref" ? 0 : 1) : 500;
}

ComputeTerm term_from_points(std::string what, const std::string& variant, const Points& pts, double wanted, const char* axis,
                             double exponent) {
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
    t.us = last.second.first * std::pow(wanted / last.first, exponent);
    t.rows = last.second.second;
    t.how = (exponent == 1 ? std::string("scaled in proportion") : "scaled as the power " + num(exponent)) + " from the largest measured " +
            at(last);
  } else {
    const auto& lo = *std::prev(hi);
    const double f = (wanted - lo.first) / (hi->first - lo.first);
    t.us = lo.second.first + f * (hi->second.first - lo.second.first);
    t.rows = lo.second.second + " | " + hi->second.second;
    t.how = "interpolated between " + at(lo) + " and " + at(*hi);
  }
  return t;
}

PointsByKey points_by_key(const std::vector<BenchRow>& rows, const std::string& component, const std::regex& re, int key_group,
                          int x_group) {
  PointsByKey out;
  for (const BenchRow& b : rows) {
    std::smatch m;
    if (b.component == component && std::regex_match(b.kase, m, re))
      out[b.variant][std::stoll(m[key_group])][std::stod(m[x_group])] = {b.us, component + "/" + b.variant + "/" + b.kase};
  }
  return out;
}

GemmPoints fp8_gemm_dense_points(const std::vector<BenchRow>& rows) {
  static const std::regex gemm_re(R"(^dense m=(\d+) n=(\d+) k=(\d+) f32 out=bf16\b.*)");
  GemmPoints gemm;
  for (const BenchRow& b : rows) {
    std::smatch m;
    if (b.component == "fp8_gemm" && b.kase.find("per_tensor") == std::string::npos && std::regex_match(b.kase, m, gemm_re))
      gemm[b.variant][{std::stoll(m[2]), std::stoll(m[3])}][std::stod(m[1])] = {b.us, "fp8_gemm/" + b.variant + "/" + b.kase};
  }
  return gemm;
}

const std::vector<std::string>& fp8_gemm_prefer() {
  static const std::vector<std::string> prefer = {"cublaslt_block", "wgmma"};
  return prefer;
}

}  // namespace dsv3::netmodel
