// Helpers shared by the full model's tests (correctness/model_test.cpp, model_layers_test.cpp):
// the tiny config, in-memory checkpoints, seeded prompts, BF16 ulp distances.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "reference/model.hpp"

namespace dsv3::model::test {

inline ModelConfig tiny(bool mtp = false) {
  ModelConfig c = find_model("tiny-test");
  if (mtp) c.mtp_depth = 1;
  return c;
}

inline Checkpoint in_memory(std::vector<Tensor> tensors) {
  Checkpoint ck;
  ck.add(SafetensorsFile{"(test)", {}, std::move(tensors)});
  return ck;
}

inline std::vector<int32_t> prompt(const ModelConfig& c, int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<std::size_t>(n));
  for (auto& v : t) v = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(c.vocab_size));
  return t;
}

// Largest distance in BF16 ulps (of the larger magnitude) between two code vectors.
inline double max_ulps(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = bf16_to_f32(a[i]), y = bf16_to_f32(b[i]);
    if (!std::isfinite(x) || !std::isfinite(y)) return INFINITY;
    const double ulp = std::ldexp(1.0, std::ilogb(std::max(std::fabs(x), std::fabs(y))) - 7);
    if (x != y) worst = std::max(worst, std::fabs(x - y) / ulp);
  }
  return worst;
}

}  // namespace dsv3::model::test
