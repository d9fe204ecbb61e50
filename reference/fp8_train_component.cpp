// The fp8_train component: cases (Linear and SwiGLU steps, both recipes, ragged and adversarial),
// the CPU variants, the FP64-step checks, and the step-error study.
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/fp8_train_case.hpp"
#include "reference/fp8_train_lm.hpp"

namespace dsv3::fp8train {
namespace {

Case step_case(Layer l, Recipe r, int64_t m, int64_t k, int64_t n, Dist d = Dist::normal, Special s = Special::none,
               int64_t t = 10) {
  Params p;
  p.layer = l; p.recipe = r; p.m = m; p.k = k; p.n = n; p.dist = d; p.special = s; p.step = t;
  p.validate();
  return make_case(p);
}

std::vector<Case> eval_cases() {
  using L = Layer;
  using R = Recipe;
  std::vector<Case> c;
  for (R r : {R::fp8, R::bf16}) {
    c.push_back(step_case(L::linear, r, 128, 256, 128));
    c.push_back(step_case(L::swiglu, r, 64, 256, 128));
  }
  // Ragged: one token; K and N off the 128 grid (the padding rule); M off it (Wgrad's padding).
  c.push_back(step_case(L::linear, R::fp8, 1, 128, 128));
  c.push_back(step_case(L::linear, R::bf16, 1, 128, 128));
  c.push_back(step_case(L::swiglu, R::fp8, 1, 128, 128));
  c.push_back(step_case(L::linear, R::fp8, 7, 200, 136));
  c.push_back(step_case(L::linear, R::bf16, 7, 200, 136));
  c.push_back(step_case(L::swiglu, R::fp8, 5, 192, 96));
  c.push_back(step_case(L::linear, R::fp8, 130, 384, 256, Dist::normal, Special::none, 1));  // first AdamW step
  // Activation shapes that 1x128 tiles are for, and those they are not.
  c.push_back(step_case(L::linear, R::fp8, 128, 256, 128, Dist::token_scaled));
  c.push_back(step_case(L::linear, R::fp8, 128, 256, 128, Dist::outlier_channels));
  c.push_back(step_case(L::swiglu, R::fp8, 64, 256, 128, Dist::outliers));
  // Adversarial: zero gradients, a NaN in dY, an Inf in the accumulated gradient, a zero block.
  for (Special s : {Special::zero_grad, Special::nan_grad, Special::inf_grad, Special::zero_block})
    c.push_back(step_case(L::linear, R::fp8, 64, 256, 256, Dist::normal, s));
  c.push_back(step_case(L::swiglu, R::fp8, 32, 128, 128, Dist::normal, Special::nan_grad));
  c.push_back(step_case(L::swiglu, R::bf16, 32, 128, 128, Dist::normal, Special::zero_grad));
  return c;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("fp8_train", [](const nlohmann::json& e, const std::string& at) {
    std::vector<Case> out;
    const Layer l = layer_from_name(json_field<std::string>(e, "layer", at));
    const int64_t k = json_field<int64_t>(e, "k", at), n = json_field<int64_t>(e, "n", at);
    for (const std::string& r : json_one_or_list<std::string>(e, "recipe", "fp8", at))
      for (int64_t m : json_one_or_list<int64_t>(e, "m", 1, at)) out.push_back(step_case(l, recipe_from_name(r), m, k, n));
    return out;
  });
}

// The FP64 step costs as much as the step itself in Eigen's double GEMM; above this many FLOPs
// (a V3 expert FFN at 4096 tokens: 1.1e12) the aids and their checks are left out.
constexpr double kHighPrecisionMaxFlops = 2e11;

bool high_precision_applies(const Params& p) {
  // Outlier and token-scaled activations, and the NaN and Inf cases (where most gradients are
  // non-finite), are judged by the element-wise comparison with the reference alone: the
  // relative-L2 bounds assume normal-like values (fp8_train_case.cpp).
  return p.dist == Dist::normal && p.special != Special::nan_grad && p.special != Special::inf_grad &&
         flops(p) <= kHighPrecisionMaxFlops;
}

}  // namespace

void register_component() {
  Component c;
  c.name = "fp8_train";
  c.description = "FP8 training step (V3 recipe): Linear and SwiGLU MLP Fprop/Dgrad/Wgrad, FP32 gradients, AdamW with BF16 moments";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  c.flops = [](const Case& k) { return flops(k.as<Params>()); };
  c.check_aids = [](const Case& k, const std::vector<Tensor>& in, const std::vector<Tensor>& ref_out) {
    const Params& p = k.as<Params>();
    std::vector<Tensor> aids = tensor_core_bounds(p, in, ref_out);
    if (high_precision_applies(p))
      for (Tensor& t : high_precision_aids(p, in)) aids.push_back(std::move(t));
    return aids;
  };
  c.extra_checks = [](const Case& k, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
    const Params& p = k.as<Params>();
    return high_precision_applies(p) ? high_precision_checks(p, aids, got) : std::vector<CompareReport>{};
  };
  c.study = [](bool quick) { return nlohmann::json{{"fp8_train_step_error", step_error_study(quick)}}; };
  Registry::instance().add(std::move(c));
  // The tiny LM's training run needs the corpus package: registered as a study of its own so that a
  // missing corpus is an error row in the bundle, not the end of the run.
  Registry::instance().add_study({"fp8_train", "fp8_train_lm", Backend::cpu, lm_training_study});

  add_reference_variants(
      "fp8_train",
      "CPU reference: the step in the case's recipe, GEMMs in the FP8 GEMM reference's order (reference/fp8_train.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "fixed 128-row x 128-column GEMM tiles and per-row quantization: each element's arithmetic is the same on any thread",
      5e9);
}

}  // namespace dsv3::fp8train

void dsv3_register_fp8_train_ref() { dsv3::fp8train::register_component(); }
