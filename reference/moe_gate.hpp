// The DeepSeekMoE gate (v3-facts §3.1, §3.2; model.py Gate.forward): which experts each token goes
// to and with what weight.
//
//   x       bf16 [T, dim]   hidden states
//   weight  bf16 [E, dim]   expert centroids (the gate is not FP8)
//   bias    f32  [E]        V3's e_score_correction_bias (only when the config has one)
// -> weights bf16 [T, k], indices i32 [T, k] (k = n_activated_experts, by descending biased score)
//
// Per token, as model.py computes it in FP32 (the spec; v3-facts §3.2 describes an older
// BF16 gate):
//   1. logits = x W^T, each the FP64 sum of the exact BF16 products rounded once to FP32;
//   2. scores s = sigmoid(logits) (V3) or softmax over the E logits (V2), computed in FP64 and
//      rounded once to FP32: the unbiased affinities;
//   3. biased = RN_f32(s + bias) when the config has a bias (it only chooses experts), else s;
//   4. groups (n_expert_groups > 1): E/G consecutive experts per group; a group's score is
//      RN_f32(top1 + top2) of its biased scores with a bias, its max without (V2); the
//      n_limited_groups best groups are kept, every other expert is out;
//   5. indices = the k best biased scores among the kept experts;
//   6. weights = s at those indices; sigmoid: divided by their sum (renormalised); times
//      route_scale; computed in FP64 from the FP32 scores and rounded once to BF16 (model.py rounds
//      each FP32 step and then to BF16: at most one BF16 ulp apart, the tolerance a kernel gets).
// Order: "best" is the larger score; equal scores go to the lower index (torch.topk leaves ties
// unspecified, so checks of other variants compare index sets, tie-aware); NaN counts as larger
// than any number (torch's topk order), so a token with a NaN in x gets NaN weights and the first
// experts of the first groups (tested).
// Whether a config has a bias follows Hugging Face's fields (scoring_func sigmoid with topk_method
// noaux_tc), not model.py's dim == 7168 shortcut: ModelConfig::has_router_bias().
// Other variants are checked against this reference as expert sets per token, tie-aware, and
// weights by expert: reference/moe_gate_check.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fill.hpp"
#include "core/model_config.hpp"
#include "core/tensor.hpp"

namespace dsv3::moe_gate {

// The routing numbers of a config, checked: experts divisible into groups, top-k reachable.
struct Routing {
  int64_t dim = 0, experts = 0, groups = 1, topk_groups = 1, topk = 0;
  double route_scale = 1;
  bool sigmoid = true, bias = true;
  static Routing from(const ModelConfig& m);  // throws std::invalid_argument naming the field
  void validate() const;
  int64_t per_group() const { return experts / groups; }
};

enum class BiasFill : uint8_t { zero, random, skewed };  // skewed: a few experts strongly favoured
std::string_view bias_fill_name(BiasFill b);

struct Params {
  std::string model = "deepseek-v3-671b";
  int64_t tokens = 1;
  int64_t dim = 0;                // 0 = the config's dim (a smaller one keeps CPU cases fast)
  Dist dist = Dist::normal;       // x contents
  BiasFill bias = BiasFill::random;
  std::string to_string() const;  // "deepseek-v3-671b t=128 normal bias=random" (+ " dim=512")
  Routing routing() const;        // the config's, with dim overridden
};

std::vector<TensorSpec> input_specs(const Params& p);  // x, weight (+ bias when the config has one)
std::vector<TensorSpec> output_specs(const Params& p);  // weights, indices
std::vector<Tensor> make_inputs(const Params& p);
// Checks shapes (ShapeError naming the tensor), then routes every token; threaded over fixed
// blocks of tokens: identical results for any thread count.
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);

// One token's FP32 scores from its FP32 logits (step 2): sigmoid, or softmax over the E logits,
// in FP64 and rounded once to FP32.
void scores_from_logits(const Routing& r, const float* logits, float* scores);
// Steps 1-2 for every token: the unbiased FP32 scores [T, E], as run_reference computes them
// (the same fixed token blocks: identical for any thread count). Checks the input shapes.
std::vector<float> gate_scores(const Params& p, const std::vector<Tensor>& in);

// One token's routing from its FP32 scores (steps 3-6 above): indices into `idx` (k), weights in
// FP64 into `w` (k). With r.bias, `bias` (E values) may be null for an all-zero bias; without,
// it is ignored and groups are scored by their maximum.
void route_token(const Routing& r, const float* scores, const float* bias, int32_t* idx, double* w);

// The pieces of route_token, for checks that need its intermediate values:
// step 3, the selection scores (E values into `biased`; `bias` as in route_token);
void biased_scores(const Routing& r, const float* scores, const float* bias, float* biased);
// step 4, each group's score from the selection scores (r.groups values);
std::vector<float> group_scores(const Routing& r, const float* biased);
// step 6, the weights of the k experts `idx` from the unbiased scores, in FP64 (summed in idx's order).
void weights_of(const Routing& r, const float* scores, const int32_t* idx, double* w);
// "a ranks before b" in the gate's order: larger first, NaN before any number, equal values by
// lower index (ia, ib).
bool ranks_before(float a, int64_t ia, float b, int64_t ib);
// The indices of the k best of vals[0..n) in that order.
std::vector<int64_t> top_k(const float* vals, int64_t n, int64_t k);

double flops(const Params& p);        // 2 T E dim (the gate GEMM)
double bytes_moved(const Params& p);  // x, weight, bias read once; weights and indices written

}  // namespace dsv3::moe_gate
