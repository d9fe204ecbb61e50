// How a gate variant's routing is checked against the reference's (the issue's "routing equal to
// the reference as sets per token, order-free, tie-aware; weights within a stated tolerance"):
// the component's check aids and extra checks. A variant whose outputs are compared here
// declares Tolerance::by_component_check for them; the reference's own thread-count twin keeps
// its bit-exact tolerances (these checks then pass trivially as well).
//
// indices  per token, the set of experts must be the reference's, except that an expert may be
//          swapped for another whose selection score ties with the reference's k-th best within
//          kTieEps (core compare_index_sets on the "selection" aid below); every index in range,
//          none repeated, and the experts within n_limited_groups groups. Group ties: the aid
//          keeps every group whose score ties the n_limited_groups-th best within kGroupTieEps,
//          so a variant may break a group tie either way; its experts from the other group then
//          pass only where their scores tie too (as in the all-equal-score cases).
// weights  each chosen expert's weight: where the set is the reference's, the reference's weight
//          of the same expert (any order); where a tie swapped an expert, the reference's formula
//          (weights_of) on the variant's set from the reference's FP32 affinities, rounded once to
//          BF16. Within kWeightUlps BF16 ulps; NaN where the expectation is NaN.
// A token whose scores are NaN (NaN in its x) has no meaningful choice: any k distinct in-range
// experts within the group limit pass, and its weights must be NaN.
#pragma once

#include <vector>

#include "core/compare.hpp"
#include "core/tensor.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::moe_gate {

// Two selection scores (group scores) this close count as tied. A variant's FP32 score may differ
// from the reference's by one rounding: the device's FP64 exp one FP64 ulp off glibc's surviving
// the rounding to FP32 (one score ulp, <= 2^-24 below 1), or an FP32 logit rounded the other way
// after another summation order (one logit ulp, <= 2^-21 for |logit| < 8, times sigmoid' <= 1/4,
// then the score's own rounding): |ds| <= 2^-23 + 2^-24 < 2^-22. The biased sum (below 2 in the
// cases) rounds once on each side: < 2^-22 + 2^-23 < 2^-21. A group's top-2 sum of two such
// (below 4): < 2 * 2^-21 + 2^-22 < 2^-19. Each eps is twice its bound; both are far below the gaps
// of distinct random scores (256 of them in (0, 1): ~2^-8 apart).
constexpr double kTieEps = 0x1p-20;
constexpr double kGroupTieEps = 0x1p-18;
// Weights: the reference rounds the FP64 weight once to BF16; a variant that does the same from
// scores a rounding off (see kTieEps; relative error ~2^-22 or less) moves the exact weight by a
// few 2^-23 relative at most, which can carry it across a BF16 rounding boundary: one BF16 ulp. A variant computing the weights in FP32
// (model.py: FP32 divide and scale, then BF16) lands within one BF16 ulp as well (the FP32 steps
// err by ~3 * 2^-24 relative, far below half a BF16 ulp, 2^-9).
constexpr double kWeightUlps = 1;

// Check aids of a case (Component::check_aids):
//   "ref:indices" i32 [T, k], "ref:weights" bf16 [T, k]  the reference's outputs;
//   "affinity"  f32 [T, E]  the unbiased FP32 scores (gate_scores);
//   "selection" f32 [T, E]  the biased scores, -inf in every group whose score is below the
//                           n_limited_groups-th best by more than kGroupTieEps.
std::vector<Tensor> routing_aids(const Params& p, const std::vector<Tensor>& in, const std::vector<Tensor>& ref_out);

// The extra checks (Component::extra_checks) of a variant's outputs `got` (weights, indices):
// "indices (sets per token)" and "weights (by expert)", as above.
std::vector<CompareReport> routing_checks(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got);

}  // namespace dsv3::moe_gate
