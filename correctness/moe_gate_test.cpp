// The gate reference (reference/moe_gate.hpp) against hand-worked routings and the properties of
// its definition: group limits, bias that chooses without weighting, ties, NaN, V2's softmax gate,
// thread-count invariance, and named errors for bad configs and shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/dtype.hpp"
#include "correctness/reference_run.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::moe_gate {
namespace {

// 16 experts in 4 groups of 4, top-2 groups, top-4 experts, sigmoid, bias, x2.5: tiny-test's
// routing. route() passes a null bias pointer for an all-zero bias.
Routing tiny() { return Routing::from(find_model("tiny-test")); }

std::vector<int32_t> route(const Routing& r, const std::vector<float>& s, const std::vector<float>* bias, std::vector<double>* w = nullptr) {
  std::vector<int32_t> idx(static_cast<std::size_t>(r.topk));
  std::vector<double> ww(static_cast<std::size_t>(r.topk));
  route_token(r, s.data(), bias ? bias->data() : nullptr, idx.data(), ww.data());
  if (w) *w = ww;
  return idx;
}

TEST(MoeGate, GroupsAreScoredByTheirTopTwo) {
  const Routing r = tiny();
  ASSERT_EQ(r.experts, 16); ASSERT_EQ(r.groups, 4); ASSERT_EQ(r.topk_groups, 2); ASSERT_EQ(r.topk, 4);
  // Group 0 holds the single best expert (0.99) but a weak second (0.10): top-2 sum 1.09.
  // Group 1: 0.80 + 0.70 = 1.50; group 2: 0.60 + 0.55 = 1.15; group 3: 0.50 + 0.50 = 1.00.
  // Kept: groups 1 and 2, so expert 0 is out despite the best score.
  const std::vector<float> s = {0.99f, 0.10f, 0.05f, 0.01f, 0.80f, 0.70f, 0.20f, 0.10f,
                                0.60f, 0.55f, 0.30f, 0.20f, 0.50f, 0.50f, 0.40f, 0.30f};
  std::vector<double> w;
  EXPECT_EQ(route(r, s, nullptr, &w), (std::vector<int32_t>{4, 5, 8, 9}));
  const double sum = 0.80 + 0.70 + 0.60 + 0.55;  // FP32 values summed in FP64; weights renormalised
  EXPECT_NEAR(w[0], static_cast<double>(0.80f) / (static_cast<double>(0.80f) + 0.70f + 0.60f + 0.55f) * 2.5, 1e-15);
  EXPECT_NEAR(w[0] + w[1] + w[2] + w[3], 2.5, 1e-12);
  EXPECT_NEAR(w[3], 0.55 / sum * 2.5, 1e-6);
}

TEST(MoeGate, BiasChoosesButDoesNotWeight) {
  const Routing r = tiny();
  const std::vector<float> s = {0.99f, 0.10f, 0.05f, 0.01f, 0.80f, 0.70f, 0.20f, 0.10f,
                                0.60f, 0.55f, 0.30f, 0.20f, 0.50f, 0.50f, 0.40f, 0.30f};
  // Lifting expert 12 by 0.35 makes group 3's top-2 sum 1.35 > group 2's 1.15 and expert 12 the
  // best of all: the choice changes to {12, 4, 5, 13}; the weights stay the unbiased scores.
  std::vector<float> bias(16, 0.0f);
  bias[12] = 0.35f;
  std::vector<double> w;
  EXPECT_EQ(route(r, s, &bias, &w), (std::vector<int32_t>{12, 4, 5, 13}));
  const double sum = static_cast<double>(0.50f) + 0.80f + 0.70f + 0.50f;
  EXPECT_DOUBLE_EQ(w[0], static_cast<double>(0.50f) / sum * 2.5);
  EXPECT_DOUBLE_EQ(w[3], w[0]);  // experts 12 and 13 have the same unbiased score
}

TEST(MoeGate, TiesGoToLowerIndicesAndNanIsLargest) {
  const Routing r = tiny();
  std::vector<double> w;
  // All equal: groups 0 and 1 kept (lowest of tied group scores), then the lowest kept experts.
  EXPECT_EQ(route(r, std::vector<float>(16, 0.5f), nullptr, &w), (std::vector<int32_t>{0, 1, 2, 3}));
  for (double x : w) EXPECT_DOUBLE_EQ(x, 2.5 / 4);
  std::vector<float> s(16, 0.5f);
  s[9] = std::nanf("");
  const std::vector<int32_t> idx = route(r, s, nullptr, &w);
  // NaN ranks first (torch.topk's order): group 2 (NaN sum) and group 0 kept, expert 9 first,
  // then the lowest equal ones; the weights become NaN.
  EXPECT_EQ(idx, (std::vector<int32_t>{9, 0, 1, 2}));
  for (double x : w) EXPECT_TRUE(std::isnan(x));
}

Params v3(int64_t tokens, Dist d = Dist::normal, BiasFill b = BiasFill::random) {
  Params p;
  p.tokens = tokens; p.dist = d; p.bias = b; p.dim = 512;
  return p;
}

TEST(MoeGate, V3RoutingRespectsGroupsAndWeightsSumToRouteScale) {
  const Params p = v3(200);
  const Routing r = p.routing();
  const auto in = make_inputs(p);
  const auto out = run_reference_poisoned(p, in);
  const auto w = out[0].span<const uint16_t>();
  const auto idx = out[1].span<const int32_t>();
  for (int64_t t = 0; t < p.tokens; ++t) {
    std::set<int32_t> experts, groups;
    double sum = 0;
    for (int64_t j = 0; j < r.topk; ++j) {
      const int32_t e = idx[static_cast<std::size_t>(t * r.topk + j)];
      ASSERT_GE(e, 0); ASSERT_LT(e, r.experts);
      experts.insert(e);
      groups.insert(static_cast<int32_t>(e / r.per_group()));
      sum += bf16_to_f32(w[static_cast<std::size_t>(t * r.topk + j)]);
    }
    EXPECT_EQ(static_cast<int64_t>(experts.size()), r.topk) << "token " << t;
    EXPECT_LE(static_cast<int64_t>(groups.size()), r.topk_groups) << "token " << t;
    // Each BF16 weight is within half an ulp (2^-9 relative) of its exact value.
    EXPECT_NEAR(sum, r.route_scale, r.route_scale * std::ldexp(1.0, -9)) << "token " << t;
  }
}

TEST(MoeGate, NanActivationGivesNanWeightsAndTheFirstExperts) {
  Params p = v3(3);
  auto in = make_inputs(p);
  in[0].span<uint16_t>()[p.routing().dim + 7] = 0x7FC0;  // token 1, one NaN element
  const auto out = run_reference_poisoned(p, in);
  const Routing r = p.routing();
  for (int64_t j = 0; j < r.topk; ++j) {
    EXPECT_TRUE(std::isnan(bf16_to_f32(out[0].span<const uint16_t>()[static_cast<std::size_t>(r.topk + j)])));
    EXPECT_EQ(out[1].span<const int32_t>()[static_cast<std::size_t>(r.topk + j)], j);  // group 0, in order
    EXPECT_FALSE(std::isnan(bf16_to_f32(out[0].span<const uint16_t>()[static_cast<std::size_t>(j)])));  // token 0 untouched
  }
}

TEST(MoeGate, V2SoftmaxGateIsNotRenormalised) {
  Params p;
  p.model = "deepseek-v2-lite-16b"; p.tokens = 50; p.dim = 256;
  const Routing r = p.routing();
  EXPECT_FALSE(r.sigmoid); EXPECT_FALSE(r.bias); EXPECT_EQ(r.groups, 1);
  EXPECT_EQ(input_specs(p).size(), 2u);  // no bias tensor
  const auto out = run_reference_poisoned(p, make_inputs(p));
  for (int64_t t = 0; t < p.tokens; ++t) {
    double sum = 0;
    for (int64_t j = 0; j < r.topk; ++j) sum += bf16_to_f32(out[0].span<const uint16_t>()[static_cast<std::size_t>(t * r.topk + j)]);
    // top-6 of 64 softmax probabilities times route_scale: below route_scale, not equal to it.
    EXPECT_GT(sum, 0);
    EXPECT_LT(sum, r.route_scale * (1 - 1e-3));
  }
}

TEST(MoeGate, OneAndFourThreadsGiveIdenticalOutputs) {
  const Params p = v3(300);
  EXPECT_EQ(first_thread_dependent_output(p, make_inputs(p)), "");
}

TEST(MoeGate, BadConfigsAndShapesAreNamed) {
  Routing r = tiny();
  r.groups = 3;  // 16 experts do not split into 3 groups
  EXPECT_THROW(r.validate(), std::invalid_argument);
  r = tiny();
  r.topk = 9;  // 2 groups of 4 allow at most 8
  try {
    r.validate();
    ADD_FAILURE() << "topk 9 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n_activated_experts"), std::string::npos) << e.what();
  }
  r = tiny();
  r.topk_groups = 5;
  EXPECT_THROW(r.validate(), std::invalid_argument);
  Params qwen;
  qwen.model = "qwen2.5-72b";
  EXPECT_THROW(qwen.routing(), std::invalid_argument);
  const Params p = v3(4);
  auto in = make_inputs(p);
  in[1] = Tensor("weight", DType::bf16, {255, 512});  // one expert short
  std::vector<Tensor> out = allocate(output_specs(p));
  EXPECT_THROW(run_reference(p, in, out), ShapeError);
}

}  // namespace
}  // namespace dsv3::moe_gate
