// Checks of an ep case's outputs that do not depend on the order an execution delivers in
// (reference/ep.hpp): any variant (simulated, MPI, NCCL) is held to them besides the element-wise
// comparison with the reference.
//   delivery   every rank received exactly the tokens that have an expert on it, once each, with
//              the sender's wire payload (codes and scales, or BF16 bits) bit for bit, its choices
//              (global ids of the rank's own experts, -1 elsewhere) and weights; unused rows zero
//   combine    |y - y64| <= 1.01 (2^-8 sum_k |w_k s_e x^| + 2^-8 |y64|): y64 the FP64 weighted sum of
//              the experts' outputs; each rank's partial is rounded once to BF16 (2^-8 of at most
//              that sum), the FP32 additions add far less (1% allowance), and y is rounded once more.
//              LogFMT-10 combine: each BF16 partial is then decoded to the nearest of levels 2^step
//              apart in linear space, step <= 32 / 510 (the 2^32 range clamp over 510 steps), so
//              within tanh(step ln2 / 2) <= 0.0218 of it (kLogFmt10Rel, added to the 2^-8); a value
//              below the clamp (< 2^-32 amax, amax < 1) decodes to 0 or the lowest level, off by
//              less than 2^-32 per partial: 2^-29 covers 8 of them. Fallback groups are BF16.
#pragma once

#include <vector>

#include "core/compare.hpp"
#include "reference/ep.hpp"

namespace dsv3::ep {

inline constexpr double kLogFmt10Rel = 0.0218;  // >= tanh((32 / 510) ln 2 / 2) = 0.021743

// Aids: "wire:x" (the senders' encoded rows [R, T, row bytes] u8), "wire:scales" (FP8 wires,
// [R, T, D / 128]), "in:indices", "in:weights", "fp64:y" and "magnitude:y" (f32 [R, T, D]).
std::vector<Tensor> combine_aids(const Params& p, const std::vector<Tensor>& in);
CompareReport delivery_check(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got);
CompareReport combine_check(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got);

}  // namespace dsv3::ep
