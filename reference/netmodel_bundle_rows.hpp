// Measured kernel times read from a result bundle's benchmarks, for the models that calibrate with
// them: the decode limit (netmodel_decode_calibrate.hpp) and the pipeline overlap view
// (pipeline_overlap_profile.hpp).
//
// Rows: Google Benchmark's, named "<component>/<variant>/<case>[/manual_time]"; the median
// aggregate where repetitions ran, else the first plain row per name; errored and skipped rows are
// left out. Variants: the GPU variants first (those named in `prefer` in that order, then any
// other non-reference one), the CPU reference ("ref", then "ref_*") when the bundle has nothing else.
// A time wanted at x between measured points: linear interpolation; below the smallest point:
// that point's time (a smaller problem is not slower); above the largest: scaled as
// (x / x_max)^exponent (1: proportional, as a GEMM's rows; 2: quadratic, as causal attention's
// sequence length). Each term says which rows it used and how.
#pragma once

#include <cstdint>
#include <map>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::netmodel {

struct BenchRow {
  std::string component, variant, kase;  // kase without Google Benchmark's suffixes
  double us = 0;
};
std::vector<BenchRow> bench_rows(const nlohmann::json& bundle);

// v as an ostream prints it (6 significant digits), for the terms' "how" texts.
std::string num(double v);

// "cpu-only", or the bundle's GPU name.
std::string bundle_device(const nlohmann::json& bundle);

// Lower is preferred (rule above).
int variant_rank(const std::string& variant, const std::vector<std::string>& prefer);

// Measured points of one variant: x (batch, m, sequence length) -> (us, the row's name).
using Points = std::map<double, std::pair<double, std::string>>;

struct ComputeTerm {
  std::string what;      // "attention (MLA decode)", "expert gate+up", ...
  std::string variant;   // the benchmark variant used
  std::string rows;      // the benchmark case(s) the time came from
  double wanted = 0;     // the x asked for
  std::string how;       // "measured", "interpolated between b=4 and b=128", "clamped ...", "scaled ..."
  double us = 0;
};
ComputeTerm term_from_points(std::string what, const std::string& variant, const Points& pts, double wanted, const char* axis,
                             double exponent = 1);

// Rows of `component` whose case matches `re`: variant -> the integer in capture group `key_group`
// -> points over the number in group `x_group` (e.g. mla decode rows by cache length, over batch).
using PointsByKey = std::map<std::string, std::map<int64_t, Points>>;
PointsByKey points_by_key(const std::vector<BenchRow>& rows, const std::string& component, const std::regex& re, int key_group,
                          int x_group);

// Dense block-scaled FP8 GEMM rows ("dense m=M n=N k=K f32 out=bf16 ...", per-tensor twins left
// out): variant -> (n, k) -> points over m; fp8_gemm_prefer: V3's recipe (cuBLASLt block-scaled),
// then the own kernel.
using GemmPoints = std::map<std::string, std::map<std::pair<int64_t, int64_t>, Points>>;
GemmPoints fp8_gemm_dense_points(const std::vector<BenchRow>& rows);
const std::vector<std::string>& fp8_gemm_prefer();

// Among the variants that have points for `key`, the best-ranked one's: {variant, points}, or
// {"", {}} when none has.
template <class Key>
std::pair<std::string, Points> pick_variant(const std::map<std::string, std::map<Key, Points>>& by_variant,
                                            const std::vector<std::string>& prefer, const Key& key) {
  std::string best;
  for (const auto& [v, groups] : by_variant)
    if (groups.count(key) && (best.empty() || variant_rank(v, prefer) < variant_rank(best, prefer))) best = v;
  if (best.empty()) return {};
  return {best, by_variant.at(best).at(key)};
}

}  // namespace dsv3::netmodel
