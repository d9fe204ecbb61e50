// FP8 accumulation study entry point (reference/fp8_accum_study.cpp): rows for the bundle's
// studies key "fp8_accum_model" (definitions in that file's header).
#pragma once

#include <nlohmann/json.hpp>

namespace dsv3::fp8accum {

nlohmann::json accumulation_study(bool quick);  // {"fp8_accum_model": rows}

}  // namespace dsv3::fp8accum
