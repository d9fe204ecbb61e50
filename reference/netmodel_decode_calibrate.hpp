// The decode limit calibrated with measured compute (issue: network co-design; ISCA §2.3.2 assumes
// computation hidden): the compute time of one micro-batch's layer on one device, taken from a
// result bundle's benchmarks, for `dsv3 model decode-limit --bundle` (DecodeLimitInputs::compute_us).
//
// One micro-batch on one device (one expert per device, ISCA §2.3.2's setting):
//   attention  the mla component's decode benchmark at batch b = tokens_per_device (s_q 1, 128
//              heads, BF16 cache, the mean length nearest 4096 tokens)
//   expert     its FFN over the rows it receives, m = tokens_per_device x experts_per_token (a
//              balanced EP step receives as many rows as it sends): the fp8_gemm component's dense
//              block-scaled GEMMs gate+up (n = 2 moe_inter_dim, k = dim) and down (n = dim,
//              k = moe_inter_dim), V3's shapes
//   compute_us = t_attention + t_gate_up + t_down
// Rows, variants (fp8_gemm: cublaslt_block, V3's recipe, first) and the interpolation between
// measured batches or m (above the largest: in proportion): reference/netmodel_bundle_rows.hpp.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model_config.hpp"
#include "reference/netmodel_bundle_rows.hpp"
#include "reference/netmodel_decode_limit.hpp"

namespace dsv3::netmodel {

struct ComputeCalibration {
  std::string bundle;  // path
  std::string device;  // the bundle's device name, or "cpu-only"
  std::vector<ComputeTerm> terms;
  double compute_us = 0;  // sum of the terms
};

// Reads the bundle's benchmark rows (Google Benchmark JSON: the median aggregate when repetitions
// ran) and derives the compute time for `in` and the model's expert shapes. InputError naming the
// bundle and what is missing (no MLA decode rows with s_q 1 and 128 heads, no dense fp8_gemm rows
// of the expert shapes).
// decode_limit_rows(results), each row with "compute_device" and the "compute_terms" of cal.
nlohmann::json calibrated_rows(const std::vector<DecodeLimitResult>& results, const ComputeCalibration& cal);

ComputeCalibration calibrate_compute(const nlohmann::json& bundle, const std::string& path, const DecodeLimitInputs& in,
                                     const ModelConfig& model);

}  // namespace dsv3::netmodel
