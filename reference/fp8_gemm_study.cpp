// FP8 GEMM error budget (bundle studies "fp8_gemm_error_budget"): for each V3 (N, K) of
// datasets/shapes/fp8_gemm.json at one M, the three references of fp8_gemm.hpp against each other
// on the same seeded normal inputs:
//   kernel        FP8-emulating reference (f32 out) vs FP64 on the dequantized operands: the
//                 FP32 rounding of the group sums and scale steps alone
//   quantization  FP64 dequantized vs FP64 on the BF16 originals: what 1x128 / 128x128 E4M3
//                 quantization costs
//   total         FP8-emulating (f32 out) vs FP64 on the originals (DeepGEMM's test comparison)
//   output_bf16   the reference's bf16 output vs its f32 output: the output cast alone
// Metrics per pair (x against y): calc_diff = 1 - 2 sum(xy) / sum(x^2 + y^2) (DeepGEMM);
// rel_l2 = ||x - y|| / ||y||; max_err_rms = max |x - y| / rms(y).
#include <algorithm>
#include <cmath>

#include "core/compare.hpp"
#include "core/json_file.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

nlohmann::json pair_row(const Params& p, const std::string& pair, const std::vector<double>& x,
                        const std::vector<double>& y) {
  Agreement a;
  for (std::size_t i = 0; i < x.size(); ++i) a.add(x[i], y[i]);
  return {{"m", p.m}, {"n", p.n}, {"k", p.k}, {"pair", pair}, {"calc_diff", a.calc_diff()}, {"rel_l2", a.rel_l2()},
          {"max_err_rms", a.rms_ref() > 0 ? a.max_abs / a.rms_ref() : 0.0}};
}

std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = t.get(i);
  return v;
}

}  // namespace

nlohmann::json error_budget_study(bool quick) {
  // The distinct dense (N, K) of the perf shapes, in file order.
  const nlohmann::json j = load_json_file(datasets_dir() / "shapes" / "fp8_gemm.json");
  std::vector<std::pair<int64_t, int64_t>> nk;
  for (const auto& c : j.at("cases")) {
    if (c.value("layout", "dense") != "dense") continue;
    const std::pair<int64_t, int64_t> s{c.at("n").get<int64_t>(), c.at("k").get<int64_t>()};
    if (std::find(nk.begin(), nk.end(), s) == nk.end()) nk.push_back(s);
  }
  const int64_t m = quick ? 16 : 128;
  nlohmann::json rows = nlohmann::json::array();
  for (auto [n, k] : nk) {
    if (quick && n * k > 64 * 1024 * 1024) continue;  // the LM head: seconds per pass on a laptop
    Params p;
    p.m = m; p.n = n; p.k = k; p.out = DType::f32;
    const std::vector<Tensor> in = make_inputs(p);
    std::vector<Tensor> out = make_outputs(p);
    run_reference(p, in, out);
    const std::vector<double> emu = as_doubles(out[0]);
    std::vector<double> emu_bf16(emu.size());  // the reference's bf16 output is RN-bf16 of its f32 one
    for (std::size_t i = 0; i < emu.size(); ++i) emu_bf16[i] = bf16_to_f32(f32_to_bf16(static_cast<float>(emu[i])));
    const std::vector<double> deq = f64_dequant(p, in), orig = f64_original(p, make_originals(p));
    rows.push_back(pair_row(p, "kernel", emu, deq));
    rows.push_back(pair_row(p, "quantization", deq, orig));
    rows.push_back(pair_row(p, "total", emu, orig));
    rows.push_back(pair_row(p, "output_bf16", emu_bf16, emu));
  }
  return {{"fp8_gemm_error_budget", rows}};
}

}  // namespace dsv3::fp8gemm
