// The fp8_train component's cases: one training step of a Linear layer or a SwiGLU MLP as tensors
// (semantics in fp8_train.hpp), its FP64 counterpart as check aids, and the agreement study.
//
// Inputs (HF/torch names; P = weight for Linear, gate_proj, up_proj, down_proj for SwiGLU):
//   x bf16 [M, K], dy bf16 [M, out] (out = N for Linear, K for SwiGLU), and per P:
//   P f32 (master weight), P.grad f32 (gradient accumulated so far), P.exp_avg bf16, P.exp_avg_sq bf16
//   (Linear: weight [N, K]; SwiGLU: gate_proj and up_proj [N, K], down_proj [K, N]; N = F there).
// Outputs: y bf16 [M, out], dx bf16 [M, K], per P: P.grad (accumulated), P, P.exp_avg, P.exp_avg_sq
// after AdamW at step t; skipped u8 [1] (1 when a non-finite gradient skipped the update).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compare.hpp"
#include "core/fill.hpp"
#include "core/registry.hpp"
#include "core/tensor.hpp"
#include "reference/fp8_train.hpp"

namespace dsv3::fp8train {

enum class Layer : uint8_t { linear, swiglu };
// Adversarial inputs: dy and the accumulated gradient all zero; a NaN in dy; an Inf in the
// accumulated gradient; the first 128x128 block of the (first) weight all zero.
enum class Special : uint8_t { none, zero_grad, nan_grad, inf_grad, zero_block };
std::string_view layer_name(Layer l);
std::string_view special_name(Special s);
Layer layer_from_name(std::string_view s);
Special special_from_name(std::string_view s);

struct Params {
  Layer layer = Layer::linear;
  Recipe recipe = Recipe::fp8;
  int64_t m = 128;                  // tokens
  int64_t k = 128;                  // input features (SwiGLU: the model width D, also its output)
  int64_t n = 128;                  // output features (SwiGLU: the intermediate F)
  Dist dist = Dist::normal;         // x's values
  Special special = Special::none;
  int64_t step = 10;                // AdamW step t (bias corrections)
  double lr = 1e-3;                 // AdamW learning rate (the rest: V3-TR §4.2's, fp8_train.hpp)
  std::string to_string() const;    // "swiglu fp8 m=128 k=256 n=128 normal t=10" (+ " lr=..", special)
  void validate() const;            // throws std::invalid_argument naming the field
  int64_t out_features() const { return layer == Layer::linear ? n : k; }
  AdamW adamw() const;
};

// The layer's parameter names and shapes, in order.
struct ParamSpec {
  std::string name;
  int64_t rows, cols;
};
std::vector<ParamSpec> param_specs(const Params& p);

std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
// The step in the case's recipe: forward, backward (gradients accumulated), AdamW. Checks every
// tensor against the case's shapes (ShapeError naming it).
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);

// A tensor's values as floats, and back (f32 copied, bf16 rounded); the case's parameters with
// their state, from the inputs (after x, dy).
std::vector<float> load_values(const Tensor& t);
void store_values(Tensor& t, const std::vector<float>& v);
std::vector<Param> load_params(const Params& p, const std::vector<Tensor>& in);

double flops(const Params& p);        // the GEMMs: 6 M N K (Linear), 18 M N K (SwiGLU)
double bytes_moved(const Params& p);  // every input read once, every output written once

// Check aids (f32): "hp:y", "hp:dx", "hp:P.dgrad" (the step's gradient), "hp:P.update" (the
// change of P) from the FP64 step, and the inputs "in:P", "in:P.grad" to difference against.
std::vector<Tensor> high_precision_aids(const Params& p, const std::vector<Tensor>& in);
// Relative L2 distance and calc_diff of y, dx, each gradient increment and each update from the
// FP64 step: two reports per quantity (relative L2, then calc_diff), each against its bound
// (fp8_train_case.cpp says why each holds).
std::vector<CompareReport> high_precision_checks(const Params& p, const std::vector<Tensor>& aids,
                                                 const std::vector<Tensor>& got);
// The relative L2 bound of one quantity ("y", "dx", "gradient", "update"; param: its index in
// param_specs) that high_precision_checks applies.
double high_precision_rel_l2_bound(const Params& p, const std::string& quantity, std::size_t param = 0);

// The tensor-core steps' checks (reference/fp8_train_bounds.cpp derives them): check aids
// "bound:<output>" (f32, the output's shape; all outputs but `skipped`), per element the largest
// |got - ref| a step with tensor-core GEMMs of the case's recipe may show (+inf where no
// element-wise bound holds: SwiGLU), and the tolerances that read them (with a whole-tensor NMSE
// limit). tensor_core_gemm_eps: the GEMM error factor on the Cauchy-Schwarz magnitude.
double tensor_core_gemm_eps(Recipe r, int64_t inner);
std::vector<Tensor> tensor_core_bounds(const Params& p, const std::vector<Tensor>& in, const std::vector<Tensor>& ref_out);
void set_tensor_core_tolerances(Variant& v, Recipe r);

// Bundle study "fp8_train_step_error": per shape and recipe, the relative L2 and calc_diff of
// every output against the FP64 step (docs/bundle-schema.md).
nlohmann::json step_error_study(bool quick);

}  // namespace dsv3::fp8train
