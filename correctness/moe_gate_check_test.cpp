// The routing checks that gate variants are held to (reference/moe_gate_check.hpp), on outputs
// edited by hand: any order passes, a tie may fall either way (with its weights recomputed), and
// a wrong expert, a repeated one, one from a dropped group, too many groups or a weight two BF16
// ulps off fail. Also Tolerance::by_component_check (core/compare.hpp) and the CUDA variant's use of it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.hpp"
#include "core/registry.hpp"
#include "correctness/reference_run.hpp"
#include "reference/moe_gate.hpp"
#include "reference/moe_gate_check.hpp"

namespace dsv3::moe_gate {
namespace {

// tiny-test (16 experts, 4 groups of 4, top-2 groups, top-4, sigmoid with a bias), one token
// whose logits are set exactly: x = e_0 (1.0 in channel 0), weight[e][0] = logit_e.
//   group 0: e0 3.0, e1 2.0, e2 0.0, e3 0.0     group 1: e4 2.5, e5 1.0, e6 0.5, e7 0.0
//   groups 2, 3: -2.0 everywhere
// The bias is zero except b6 = s5 - s6 (an FP32 subtraction, exact: s6 <= s5 <= 2 s6), so e5 and
// e6 tie exactly in selection score (s6 + b6 = s5) while their affinities differ (0.731 vs 0.622).
// Groups 0 and 1 are kept; by selection score e0 (0.953), e4 (0.924), e1 (0.881), then the tie
// e5 = e6 (0.731): the reference takes e5 (lower index). Either is a correct routing.
struct TiedCase {
  Params p;
  std::vector<Tensor> in, ref, aids;
};

TiedCase tied_case() {
  TiedCase c;
  c.p.model = "tiny-test";
  c.p.tokens = 1;
  const Routing r = c.p.routing();
  c.in = make_inputs(c.p);
  const std::vector<float> logit = {3.0f, 2.0f, 0.0f, 0.0f, 2.5f, 1.0f, 0.5f, 0.0f,
                                    -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f, -2.0f};
  std::vector<float> s(16);
  scores_from_logits(r, logit.data(), s.data());
  auto x = c.in[0].span<uint16_t>();
  std::fill(x.begin(), x.end(), uint16_t{0});
  x[0] = f32_to_bf16(1.0f);
  auto w = c.in[1].span<uint16_t>();
  std::fill(w.begin(), w.end(), uint16_t{0});
  for (int64_t e = 0; e < 16; ++e) w[static_cast<std::size_t>(e * r.dim)] = f32_to_bf16(logit[static_cast<std::size_t>(e)]);
  auto b = c.in[2].span<float>();
  std::fill(b.begin(), b.end(), 0.0f);
  b[6] = s[5] - s[6];
  EXPECT_EQ(s[6] + b[6], s[5]);  // the exact tie in selection score
  c.ref = run_reference_poisoned(c.p, c.in);
  c.aids = routing_aids(c.p, c.in, c.ref);
  return c;
}

// A variant's outputs: these experts with these weights (BF16 from FP64).
std::vector<Tensor> outputs(const Params& p, const std::vector<int32_t>& idx, const std::vector<double>& w) {
  std::vector<Tensor> out = allocate(output_specs(p));
  for (std::size_t j = 0; j < idx.size(); ++j) {
    out[0].span<uint16_t>()[j] = bf16_from_f64(w[j]);
    out[1].span<int32_t>()[j] = idx[j];
  }
  return out;
}

// The weights the gate gives a set of experts (its own formula, weights_of).
std::vector<double> weights_for(const TiedCase& c, const std::vector<int32_t>& idx) {
  std::vector<double> w(idx.size());
  weights_of(c.p.routing(), c.aids[2].span<const float>().data(), idx.data(), w.data());
  return w;
}

std::vector<double> ref_weights(const TiedCase& c) {
  std::vector<double> w;
  for (uint16_t v : c.ref[0].span<const uint16_t>()) w.push_back(bf16_to_f32(v));
  return w;
}

// {indices report passes, weights report passes}
std::pair<bool, bool> check(const TiedCase& c, const std::vector<Tensor>& got) {
  const std::vector<CompareReport> reps = routing_checks(c.p, c.aids, got);
  EXPECT_EQ(reps.size(), 2u);
  return {reps.at(0).pass, reps.at(1).pass};
}

TEST(MoeGateCheck, ATiedExpertMaySwapAndAnyOrderPasses) {
  const TiedCase c = tied_case();
  ASSERT_EQ(std::vector<int32_t>(c.ref[1].span<const int32_t>().begin(), c.ref[1].span<const int32_t>().end()),
            (std::vector<int32_t>{0, 4, 1, 5}));
  EXPECT_EQ(check(c, c.ref), std::make_pair(true, true));
  // Another order, the weights moved with their experts.
  const std::vector<double> rw = ref_weights(c);
  EXPECT_EQ(check(c, outputs(c.p, {5, 1, 4, 0}, {rw[3], rw[2], rw[1], rw[0]})), std::make_pair(true, true));
  // The tie broken the other way: e6 for e5, with the weights of that set (e6's smaller affinity
  // renormalised with the other three: every weight changes).
  const std::vector<double> w6 = weights_for(c, {0, 4, 1, 6});
  EXPECT_NE(bf16_from_f64(w6[0]), c.ref[0].span<const uint16_t>()[0]);
  EXPECT_EQ(check(c, outputs(c.p, {0, 4, 1, 6}, w6)), std::make_pair(true, true));
}

TEST(MoeGateCheck, AWrongExpertOrWeightFails) {
  const TiedCase c = tied_case();
  const std::vector<double> rw = ref_weights(c);
  // e6 for e5 but the reference's weights kept: the set passes, the weights do not.
  EXPECT_EQ(check(c, outputs(c.p, {0, 4, 1, 6}, rw)), std::make_pair(true, false));
  // e2 (selection 0.5, not tied with the k-th 0.731) for e5.
  EXPECT_FALSE(check(c, outputs(c.p, {0, 4, 1, 2}, weights_for(c, {0, 4, 1, 2}))).first);
  // e8 from dropped group 2; e1 twice; an index out of range.
  EXPECT_FALSE(check(c, outputs(c.p, {0, 4, 1, 8}, weights_for(c, {0, 4, 1, 8}))).first);
  EXPECT_FALSE(check(c, outputs(c.p, {0, 4, 1, 1}, rw)).first);
  EXPECT_FALSE(check(c, outputs(c.p, {0, 4, 1, 16}, rw)).first);
  // Weights: one BF16 ulp above the reference's passes, two fail.
  for (int ulps : {1, 2}) {
    std::vector<Tensor> got = outputs(c.p, {0, 4, 1, 5}, rw);
    got[0].span<uint16_t>()[1] = static_cast<uint16_t>(got[0].span<uint16_t>()[1] + ulps);
    EXPECT_EQ(check(c, got), std::make_pair(true, ulps == 1)) << ulps << " ulps";
  }
}

TEST(MoeGateCheck, TiedGroupsMayBeChosenEitherWayButNotMoreOfThem) {
  // All-zero x and bias: every score 0.5, every group tied. The reference keeps groups 0 and 1
  // and takes experts 0-3; experts 12-15 (group 3 alone) are as correct; 0, 4, 8, 12 spans four
  // groups where two are allowed.
  Params p;
  p.model = "tiny-test"; p.tokens = 1; p.dist = Dist::zeros; p.bias = BiasFill::zero;
  const auto in = make_inputs(p);
  const auto ref = run_reference_poisoned(p, in);
  const auto aids = routing_aids(p, in, ref);
  const std::vector<double> quarter(4, 2.5 / 4);
  EXPECT_TRUE(routing_checks(p, aids, outputs(p, {12, 13, 14, 15}, quarter)).at(0).pass);
  const CompareReport spread = routing_checks(p, aids, outputs(p, {0, 4, 8, 12}, quarter)).at(0);
  EXPECT_FALSE(spread.pass);
  EXPECT_NE(spread.message.find("n_limited_groups"), std::string::npos) << spread.message;
}

TEST(MoeGateCheck, NanTokenNeedsNanWeightsOnly) {
  // A NaN in x makes every score NaN: no choice is meaningful, so any k distinct experts within the
  // group limit pass; finite weights fail.
  Params p;
  p.model = "tiny-test"; p.tokens = 2;
  auto in = make_inputs(p);
  in[0].span<uint16_t>()[256 + 3] = 0x7FC0;  // token 1
  const auto ref = run_reference_poisoned(p, in);
  const auto aids = routing_aids(p, in, ref);
  std::vector<Tensor> got = allocate(output_specs(p));
  std::memcpy(got[0].raw(), ref[0].raw(), ref[0].nbytes());
  std::memcpy(got[1].raw(), ref[1].raw(), ref[1].nbytes());
  const std::vector<int32_t> other = {12, 13, 14, 15};
  std::copy(other.begin(), other.end(), got[1].span<int32_t>().begin() + 4);
  std::vector<CompareReport> reps = routing_checks(p, aids, got);
  EXPECT_TRUE(reps.at(0).pass && reps.at(1).pass) << reps.at(0).message << reps.at(1).message;
  got[0].span<uint16_t>()[4] = f32_to_bf16(0.5f);
  reps = routing_checks(p, aids, got);
  EXPECT_FALSE(reps.at(1).pass);
  EXPECT_EQ(reps.at(1).nan_mismatches, 1);
}

TEST(MoeGateCheck, ByComponentToleranceChecksOnlyDtypeAndShape) {
  Tensor ref("w", DType::bf16, {2, 3}), got("w", DType::bf16, {2, 3}), wrong("w", DType::bf16, {3, 2});
  got.poison();  // any values: the component's own check compares them
  const Tolerance t = Tolerance::by_component_check("compared elsewhere");
  EXPECT_TRUE(compare_tensors(got, ref, t).pass);
  EXPECT_FALSE(compare_tensors(wrong, ref, t).pass);
  EXPECT_EQ(t.describe(), "by the component's check");
#if DSV3_HAVE_CUDA
  register_all_components();
  const Variant& cuda = Registry::instance().variant("moe_gate", "cuda");
  EXPECT_EQ(cuda.tolerance_for("indices").kind, Tolerance::Kind::by_component);
  EXPECT_EQ(cuda.tolerance_for("weights").kind, Tolerance::Kind::by_component);
  EXPECT_EQ(Registry::instance().variant("moe_gate", "ref_1thread").tolerance_for("weights").kind, Tolerance::Kind::exact);
#endif
}

}  // namespace
}  // namespace dsv3::moe_gate
