// The moe_gate component: cases (V3's biased sigmoid gate, V2's softmax gate, the tiny config)
// and the CPU variants.
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/moe_gate.hpp"
#include "reference/moe_gate_balance.hpp"
#include "reference/moe_gate_check.hpp"

namespace dsv3::moe_gate {
namespace {

Case gate_case(const std::string& model, int64_t tokens, Dist d = Dist::normal, BiasFill b = BiasFill::random, int64_t dim = 0) {
  Params p;
  p.model = model; p.tokens = tokens; p.dist = d; p.bias = b; p.dim = dim;
  p.routing();  // validates
  return make_case(p);
}

BiasFill bias_from_name(const std::string& s) {
  if (s == "zero") return BiasFill::zero;
  if (s == "random") return BiasFill::random;
  if (s == "skewed") return BiasFill::skewed;
  throw std::invalid_argument("bias must be zero, random or skewed, got '" + s + "'");
}

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // V3 at full width: one token, a ragged count, a decode batch; the bias off, random, skewed.
  for (int64_t t : {1, 7, 128}) cases.push_back(gate_case("deepseek-v3-671b", t));
  for (BiasFill b : {BiasFill::zero, BiasFill::skewed}) cases.push_back(gate_case("deepseek-v3-671b", 128, Dist::normal, b));
  // Value shapes: heavy tails, one strong channel per tile, per-token scales; all-zero x makes
  // every score 0.5 (exact ties everywhere: the choice falls to the lowest indices).
  for (Dist d : {Dist::outliers, Dist::outlier_channels, Dist::token_scaled, Dist::zeros})
    cases.push_back(gate_case("deepseek-v3-671b", 64, d));
  cases.push_back(gate_case("deepseek-v3-671b", 16, Dist::zeros, BiasFill::zero));  // every score and group tied
  // V2's softmax gate (no bias, group max, no renormalisation; x16), V2-Lite (one group, top-6),
  // the tiny config; hidden sizes cut to 512 to keep the CPU check fast (routing unchanged).
  cases.push_back(gate_case("deepseek-v2-236b", 128, Dist::normal, BiasFill::random, 512));
  cases.push_back(gate_case("deepseek-v2-lite-16b", 128, Dist::normal, BiasFill::random, 512));
  for (int64_t t : {1, 100}) cases.push_back(gate_case("tiny-test", t));
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("moe_gate", [](const nlohmann::json& c, const std::string& at) {
    std::vector<Case> out;
    const std::string model = json_field<std::string>(c, "model", at);
    const Dist d = dist_from_name(json_field_or<std::string>(c, "dist", "normal", at));
    const BiasFill b = bias_from_name(json_field_or<std::string>(c, "bias", "random", at));
    for (int64_t t : json_one_or_list<int64_t>(c, "tokens", 1, at)) out.push_back(gate_case(model, t, d, b));
    return out;
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "moe_gate";
  c.description = "DeepSeekMoE gate: sigmoid/softmax affinities, selection bias, group-limited top-k, renormalised weights";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  c.flops = [](const Case& k) { return flops(k.as<Params>()); };
  // Routing is compared as sets per token, tie-aware, and weights by expert (moe_gate_check.hpp).
  c.check_aids = [](const Case& k, const std::vector<Tensor>& in, const std::vector<Tensor>& ref_out) {
    return routing_aids(k.as<Params>(), in, ref_out);
  };
  c.extra_checks = [](const Case& k, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
    return routing_checks(k.as<Params>(), aids, got);
  };
  c.study = [](bool quick) { return nlohmann::json{{"moe_balance", balance_study(quick)}}; };
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "moe_gate", "CPU reference: FP64 logits from the BF16 values rounded once to FP32, FP32 scores, model.py's selection (reference/moe_gate.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "fixed 64-token GEMM blocks: each token's sums are the same on any thread");
}

}  // namespace dsv3::moe_gate

void dsv3_register_moe_gate_ref() { dsv3::moe_gate::register_component(); }
