// The calculators' bundle rows; see netmodel.hpp.
#include "reference/netmodel.hpp"

#include "core/hardware_profile.hpp"
#include "core/json_file.hpp"
#include "core/model_config.hpp"
#include "reference/netmodel_decode_calibrate.hpp"
#include "reference/netmodel_decode_limit.hpp"
#include "reference/netmodel_node_limit.hpp"
#include "reference/netmodel_topology.hpp"
#include "reference/netmodel_train_cost.hpp"
#include "reference/pipeline_overlap_profile.hpp"

namespace dsv3::netmodel {

nlohmann::json netmodel_study_rows() {
  std::vector<TrainFlopsPerToken> flops;
  for (const auto& id : list_models()) flops.push_back(train_flops_per_token(find_model(id)));
  // Table 4's setups with V3's F and the H800 peak (datasets/hardware/h800-sxm.json), as the paper.
  const TrainFlopsPerToken v3 = train_flops_per_token(find_model("deepseek-v3-671b"));
  std::vector<TrainStepFigures> steps;
  for (const auto& c : isca_table4_cases(find_hardware("h800-sxm").dense_bf16_tflops))
    steps.push_back(train_step_figures(c, v3.total_gflops, v3.noncausal_gflops));
  const PriceModel fit = isca_table3_price_fit();
  return {{"decode_limit", decode_limit_rows(decode_limit_default_results())},
          {"topology", topology_rows(topology_table(kIscaSwitchRadix, kIscaPlanes, fit), fit)},
          {"train_cost", train_cost_rows(flops, steps)},
          {"node_limit", node_limit_rows(node_limit_table(NodeLimitInputs{}))}};  // V3, 4096 tokens, seed 0
}

nlohmann::json calibrated_study_rows(const nlohmann::json& bundle, const std::string& path) {
  nlohmann::json out = nlohmann::json::object();
  try {
    DecodeLimitInputs in = decode_limit_inputs_for(find_model("deepseek-v3-671b"));
    const ComputeCalibration cal = calibrate_compute(bundle, path, in, find_model("deepseek-v3-671b"));
    in.compute_us = cal.compute_us;
    out["decode_limit_calibrated"] = calibrated_rows(decode_limit_default_results(in), cal);
  } catch (const InputError& e) {
    out["decode_limit_calibrated"] = nlohmann::json::array({{{"skipped", true}, {"reason", e.what()}}});
  }
  out["pipeline_overlap"] = pipeline::overlap_study_rows(bundle, path);
  return out;
}

}  // namespace dsv3::netmodel
