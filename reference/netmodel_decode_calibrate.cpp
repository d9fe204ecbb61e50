// Compute time per micro-batch from a bundle's benchmarks (reference/netmodel_decode_calibrate.hpp).
#include "reference/netmodel_decode_calibrate.hpp"

#include <cstdlib>
#include <map>
#include <regex>

#include "core/json_file.hpp"
#include "reference/netmodel_bundle_rows.hpp"

namespace dsv3::netmodel {

ComputeCalibration calibrate_compute(const nlohmann::json& bundle, const std::string& path, const DecodeLimitInputs& in,
                                     const ModelConfig& model) {
  if (!model.is_mla_moe()) throw InputError("decode-limit --bundle: model '" + model.id + "' has no MoE experts (family " + model.family + ")");
  ComputeCalibration cal;
  cal.bundle = path;
  cal.device = bundle_device(bundle);
  const std::vector<BenchRow> rows = bench_rows(bundle);

  // Attention: mla decode rows "decode b=B sq=1 h=128 bf16 len~L ..." per variant, by length.
  static const std::regex mla_re(R"(^decode b=(\d+) sq=1 h=128 bf16 len~(\d+)\b.*)");
  PointsByKey mla = points_by_key(rows, "mla", mla_re, 2, 1);  // variant -> len -> b
  if (mla.empty())
    throw InputError(path + ": no mla decode benchmark rows with s_q 1, 128 heads and the BF16 cache (\"decode b=B sq=1 h=128 bf16 "
                     "len~L\"); run `dsv3 bench mla` or `dsv3 run` first");
  std::string v_mla;
  for (const auto& [v, lens] : mla)
    if (v_mla.empty() || variant_rank(v, {}) < variant_rank(v_mla, {})) v_mla = v;
  int64_t len = 0;
  for (const auto& [l, pts] : mla[v_mla])
    if (len == 0 || std::llabs(l - 4096) < std::llabs(len - 4096)) len = l;
  cal.terms.push_back(term_from_points("attention (MLA decode, cache ~" + std::to_string(len) + " tokens)", v_mla, mla[v_mla][len],
                                  static_cast<double>(in.tokens_per_device), "b"));

  // Expert FFN: dense fp8_gemm rows "dense m=M n=N k=K f32 out=bf16 ..." (1x128 / 128x128 f32 scales).
  const GemmPoints gemm = fp8_gemm_dense_points(rows);
  const double rows_in = static_cast<double>(in.tokens_per_device * in.experts_per_token);
  const std::pair<int64_t, int64_t> up{2 * model.moe_inter_dim, model.dim}, down{model.dim, model.moe_inter_dim};
  for (const auto& [shape, what] : {std::pair{up, std::string("expert gate+up")}, std::pair{down, std::string("expert down")}}) {
    const auto [variant, pts] = pick_variant(gemm, fp8_gemm_prefer(), shape);
    if (variant.empty())
      throw InputError(path + ": no dense fp8_gemm benchmark rows of the " + what + " shape n=" + std::to_string(shape.first) +
                       " k=" + std::to_string(shape.second) + " (" + model.id + "); run `dsv3 bench fp8_gemm` or `dsv3 run` first");
    cal.terms.push_back(term_from_points(what + " (n=" + std::to_string(shape.first) + " k=" + std::to_string(shape.second) + ")", variant, pts,
                                    rows_in, "m"));
  }
  for (const ComputeTerm& t : cal.terms) cal.compute_us += t.us;
  return cal;
}

nlohmann::json calibrated_rows(const std::vector<DecodeLimitResult>& results, const ComputeCalibration& cal) {
  nlohmann::json terms = nlohmann::json::array();
  for (const ComputeTerm& t : cal.terms)
    terms.push_back({{"what", t.what}, {"variant", t.variant}, {"rows", t.rows}, {"wanted", t.wanted}, {"how", t.how}, {"us", t.us}});
  nlohmann::json rows = decode_limit_rows(results);
  for (auto& r : rows) {
    r["compute_device"] = cal.device;
    r["compute_terms"] = terms;
  }
  return rows;
}

}  // namespace dsv3::netmodel
