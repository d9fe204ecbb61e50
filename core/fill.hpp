// Seeded, platform-independent fills. Every case derives its seed from its identity string
// (seed_from), so a failing case reproduces from its name alone. The generator is xoshiro256**
// with Box-Muller normals: std::normal_distribution differs between standard libraries.
//
// Distributions (scale s):
//   normal            N(0, s^2)
//   uniform           U(-s, s)
//   outliers          normal; 1 element in 256 (random positions) multiplied by 100
//   outlier_channels  normal; about 2% of the last-dim channels (at least one) scaled by 100,
//                     the activation-outlier pattern of LLMs
//   token_scaled      normal, each row (token: `channels` elements) times its own 2^U(-20, 8): rows
//                     28 octaves apart, beyond E4M3's 2^-9..448 range, so one scale per tensor or per
//                     128 rows cannot serve every row (what 1x128 scaling is for)
//   small_ints        integers in [-8, 8]: exact in every format here
//   adversarial       one element in 4 replaced by a special value: +-3e38, +-1e30, 65504, 57344,
//                     464, 448, 1e-30, 2^-9, 2^-10, 1e-40 (f32 subnormal), NaN, +-Inf, +-0
//   zeros             all zero
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"

namespace dsv3 {

enum class Dist : uint8_t { normal, uniform, outliers, outlier_channels, token_scaled, small_ints, adversarial, zeros };

std::string_view dist_name(Dist d);
Dist dist_from_name(std::string_view name);  // throws std::invalid_argument
const std::vector<Dist>& all_dists();

uint64_t seed_from(std::string_view identity);  // FNV-1a 64

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform01();  // [0, 1)
  double normal();     // N(0, 1)
 private:
  uint64_t s_[4];
};

// Fills `t` (any float dtype) with values drawn as float32 and encoded with round-to-nearest-even.
void fill(Tensor& t, Dist d, uint64_t seed, double scale = 1.0);

// Draws `n` float32 values; `channels` is the size of the last dimension (outlier_channels, token_scaled).
std::vector<float> draw(Dist d, uint64_t seed, int64_t n, int64_t channels, double scale = 1.0);

}  // namespace dsv3
