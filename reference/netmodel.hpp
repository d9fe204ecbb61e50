// The network and training-cost calculators as bundle studies (docs/netmodel.md,
// docs/bundle-schema.md): `dsv3 run` writes these rows into studies.decode_limit, studies.topology,
// studies.train_cost and studies.node_limit, and scripts/report.py shows them as tables. Arithmetic on the configs and
// hardware profiles only (no measurement), so the rows are the same on every machine.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace dsv3::netmodel {

// {"decode_limit": the paper's cases and every hardware profile with the paper's inputs,
//  "topology": ISCA Table 3 (radix 64, 8 planes, fitted prices),
//  "train_cost": GFLOPs per token of every model config and Table 4's two step setups (H800 peak),
//  "node_limit": V3's node-limited routing traffic at M = 1..8 on the seeded synthetic router
//  (netmodel_node_limit.hpp defaults: 4096 tokens, seed 0, skew 0.3; 64 GPUs in 8 nodes)}.
nlohmann::json netmodel_study_rows();

// The models that use a bundle's own benchmarks, written by `dsv3 run` after its bench phase:
// {"decode_limit_calibrated": decode_limit rows of the default cases with compute_us measured in
//  the bundle (netmodel_decode_calibrate.hpp), each with the "compute_terms" it came from,
//  "pipeline_overlap": pipeline::overlap_study_rows (pipeline_overlap_profile.hpp)}.
// A model the bundle lacks rows for gets [{"skipped": true, "reason": ...}] instead of its rows.
nlohmann::json calibrated_study_rows(const nlohmann::json& bundle, const std::string& path);

}  // namespace dsv3::netmodel
