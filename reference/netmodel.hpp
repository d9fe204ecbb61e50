// The network and training-cost calculators as bundle studies (docs/netmodel.md,
// docs/bundle-schema.md): `dsv3 run` writes these rows into studies.decode_limit, studies.topology
// and studies.train_cost, and scripts/report.py shows them as tables. Arithmetic on the configs and
// hardware profiles only (no measurement), so the rows are the same on every machine.
#pragma once

#include <nlohmann/json.hpp>

namespace dsv3::netmodel {

// {"decode_limit": the paper's cases and every hardware profile with the paper's inputs,
//  "topology": ISCA Table 3 (radix 64, 8 planes, fitted prices),
//  "train_cost": GFLOPs per token of every model config and Table 4's two step setups (H800 peak)}.
nlohmann::json netmodel_study_rows();

}  // namespace dsv3::netmodel
