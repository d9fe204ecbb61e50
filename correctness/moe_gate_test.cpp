// The gate reference (reference/moe_gate.hpp) against hand-worked routings and the properties of
// its definition: group limits, bias that chooses without weighting, ties, NaN, V2's softmax gate
// and its group-max scoring, thread-count invariance, which configs have the router bias, and
// named errors for bad configs and shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/dtype.hpp"
#include "core/json_file.hpp"
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

TEST(MoeGate, V2GroupsAreScoredByTheirMaxWithoutRenormalisation) {
  // V2-236B: 160 experts in 8 groups of 20, top-3 groups, top-6, softmax scores, no bias, x16.
  const Routing r = Routing::from(find_model("deepseek-v2-236b"));
  ASSERT_EQ(r.experts, 160); ASSERT_EQ(r.groups, 8); ASSERT_EQ(r.topk_groups, 3); ASSERT_EQ(r.topk, 6);
  ASSERT_FALSE(r.sigmoid); ASSERT_FALSE(r.bias); ASSERT_EQ(r.route_scale, 16.0);
  // Scores (route_token takes them as given): 0.001 everywhere except
  //   group 0 (e0-19):    e3 0.10, e7 0.09, e11 0.08, e12 0.07   max 0.10  (top-2 sum 0.19)
  //   group 1 (e20-39):   e25 0.12                               max 0.12  (top-2 sum 0.121)
  //   group 3 (e60-79):   e60 0.11                               max 0.11  (top-2 sum 0.111)
  //   group 5 (e100-119): e100 0.075, e101 0.075                 max 0.075 (top-2 sum 0.15)
  // By their max the groups rank 1 (0.12), 3 (0.11), 0 (0.10), 5 (0.075): groups 1, 3, 0 stay.
  // (V3's top-2 sums would keep 0 (0.19), 5 (0.15), 1 (0.121) and route to e100, e101 instead of e60, e12.)
  // Top-6 of the kept experts: e25 0.12, e60 0.11, e3 0.10, e7 0.09, e11 0.08, e12 0.07; e100
  // (0.075) beats e12 but its group is out. Weights: the scores times 16, not renormalised:
  //   1.92, 1.76, 1.60, 1.44, 1.28, 1.12 (sum 9.12, not 16).
  std::vector<float> s(160, 0.001f);
  s[3] = 0.10f; s[7] = 0.09f; s[11] = 0.08f; s[12] = 0.07f; s[25] = 0.12f; s[60] = 0.11f; s[100] = 0.075f; s[101] = 0.075f;
  std::vector<double> w;
  EXPECT_EQ(route(r, s, nullptr, &w), (std::vector<int32_t>{25, 60, 3, 7, 11, 12}));
  const std::vector<float> expect = {0.12f, 0.11f, 0.10f, 0.09f, 0.08f, 0.07f};
  for (std::size_t j = 0; j < 6; ++j) EXPECT_EQ(w[j], static_cast<double>(expect[j]) * 16) << j;  // x16 is exact in FP64
  EXPECT_NEAR(w[0] + w[1] + w[2] + w[3] + w[4] + w[5], 9.12, 1e-6);
  // V2 has no bias: a bias passed anyway changes nothing (lifting group 5 would otherwise win it).
  std::vector<float> bias(160, 0.0f);
  bias[100] = 1.0f;
  EXPECT_EQ(route(r, s, &bias, nullptr), (std::vector<int32_t>{25, 60, 3, 7, 11, 12}));
}

// Loads `base` edited by `edit` from a temporary file.
ModelConfig load_edited(const std::string& base, const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = load_json_file(datasets_dir() / "models" / (base + ".json"));
  edit(j);
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / "dsv3_moe_gate";
  std::filesystem::create_directories(dir);
  write_json_atomic(dir / (name + ".json"), j);
  return load_model_config(dir / (name + ".json"));
}

std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MoeGate, RouterBiasFollowsScoringFuncAndTopkMethod) {
  // Hugging Face: the bias exists for scoring_func sigmoid with topk_method noaux_tc (V3).
  for (const char* id : {"deepseek-v3-671b", "tiny-test"}) {
    const ModelConfig c = find_model(id);
    EXPECT_EQ(c.topk_method, "noaux_tc") << id;
    EXPECT_TRUE(c.has_router_bias()) << id;
  }
  EXPECT_EQ(find_model("deepseek-v2-236b").topk_method, "group_limited_greedy");
  EXPECT_FALSE(find_model("deepseek-v2-236b").has_router_bias());
  EXPECT_EQ(find_model("deepseek-v2-lite-16b").topk_method, "greedy");
  EXPECT_FALSE(find_model("deepseek-v2-lite-16b").has_router_bias());
  // Sigmoid alone is not enough: a sigmoid gate with another method has no bias, and its groups
  // are scored by their max.
  const ModelConfig sig = load_edited("deepseek-v3-671b", "sigmoid_glg", [](nlohmann::json& j) { j["topk_method"] = "group_limited_greedy"; });
  EXPECT_EQ(sig.score_func, "sigmoid");
  EXPECT_FALSE(sig.has_router_bias());
  EXPECT_FALSE(Routing::from(sig).bias);
  // Absent means "greedy": fine for one group (V2-Lite), an error naming the field for V3's 8.
  const ModelConfig lite = load_edited("deepseek-v2-lite-16b", "lite_default", [](nlohmann::json& j) { j.erase("topk_method"); });
  EXPECT_EQ(lite.topk_method, "greedy");
  std::string e = input_error([] { (void)load_edited("deepseek-v3-671b", "v3_default", [](nlohmann::json& j) { j.erase("topk_method"); }); });
  EXPECT_NE(e.find("'topk_method'"), std::string::npos) << e;
  EXPECT_NE(e.find("n_expert_groups = 8"), std::string::npos) << e;
  e = input_error([] { (void)load_edited("deepseek-v3-671b", "v3_softmax", [](nlohmann::json& j) { j["score_func"] = "softmax"; }); });
  EXPECT_NE(e.find("score_func \"sigmoid\""), std::string::npos) << e;  // noaux_tc needs sigmoid
  e = input_error([] { (void)load_edited("deepseek-v3-671b", "v3_hash", [](nlohmann::json& j) { j["topk_method"] = "static_hash"; }); });
  EXPECT_NE(e.find("static_hash"), std::string::npos) << e;
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
