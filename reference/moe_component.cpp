// The moe component: permute, combine and the whole layer; cases and the CPU variants.
#include <cmath>

#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/moe.hpp"

namespace dsv3::moe {
namespace {

Case moe_case(Op op, const std::string& model, int64_t tokens, Draw draw = Draw::uniform, int64_t dim = 0, int64_t inter = 0) {
  Params p;
  p.op = op; p.model = model; p.tokens = tokens; p.draw = draw; p.dim = dim; p.inter = inter;
  p.routing();  // validates
  return make_case(p);
}

Draw draw_from_name(const std::string& s) {
  if (s == "uniform") return Draw::uniform;
  if (s == "skewed") return Draw::skewed;
  if (s == "same_experts") return Draw::same_experts;
  throw std::invalid_argument("draw must be uniform, skewed or same_experts, got '" + s + "'");
}

Op op_from_name(const std::string& s) {
  if (s == "permute") return Op::permute;
  if (s == "combine") return Op::combine;
  if (s == "layer") return Op::layer;
  throw std::invalid_argument("op must be permute, combine or layer, got '" + s + "'");
}

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // Data movement with V3's routing (256 experts, top-8) at a 512-wide row (V3's 7168 pads a
  // decode batch to 256 x 128 rows: 470 MB per case): one token (248 empty experts), a count that
  // fills no 128-row block, a decode batch; skewed routing (hot and empty experts) and every token
  // to the same 8 experts (segments of 300 rows: two full blocks and a partial one).
  for (Op op : {Op::permute, Op::combine}) {
    for (int64_t t : {1, 7, 128}) cases.push_back(moe_case(op, "deepseek-v3-671b", t, Draw::uniform, 512));
    cases.push_back(moe_case(op, "deepseek-v3-671b", 300, Draw::skewed, 512));
    cases.push_back(moe_case(op, "deepseek-v3-671b", 300, Draw::same_experts, 512));
    cases.push_back(moe_case(op, "tiny-test", 100));
  }
  // The layer: the tiny config at its own sizes; V3's routing (256 experts, groups, bias) with
  // the hidden and expert sizes cut so the CPU check stays fast; V2-Lite (softmax gate, 2 shared).
  for (int64_t t : {1, 33}) cases.push_back(moe_case(Op::layer, "tiny-test", t));
  cases.push_back(moe_case(Op::layer, "deepseek-v3-671b", 16, Draw::uniform, 256, 64));
  cases.push_back(moe_case(Op::layer, "deepseek-v2-lite-16b", 16, Draw::uniform, 256, 64));
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("moe", [](const nlohmann::json& c, const std::string& at) {
    std::vector<Case> out;
    const Op op = op_from_name(json_field<std::string>(c, "op", at));
    const std::string model = json_field<std::string>(c, "model", at);
    const Draw draw = draw_from_name(json_field_or<std::string>(c, "draw", "uniform", at));
    const int64_t dim = json_field_or<int64_t>(c, "dim", 0, at), inter = json_field_or<int64_t>(c, "inter", 0, at);
    for (int64_t t : json_one_or_list<int64_t>(c, "tokens", 1, at)) out.push_back(moe_case(op, model, t, draw, dim, inter));
    return out;
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "moe";
  c.description = "DeepSeekMoE layer: permute to the grouped GEMM's contiguous layout, weighted combine, routed + shared SwiGLU experts";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  c.flops = [](const Case& k) { return flops(k.as<Params>()); };
  c.check_aids = [](const Case& k, const std::vector<Tensor>& in, const std::vector<Tensor>&) {
    // combine: sum_j |w_j v_j| per output element, the scale of a kernel's accumulation error.
    const Params& p = k.as<Params>();
    if (p.op == Op::layer) {  // the first-order error bound of moe/cublas_bf16 (moe.hpp)
      std::vector<Tensor> aids;
      aids.push_back(layer_error_bound(p, in));
      return aids;
    }
    if (p.op != Op::combine) return std::vector<Tensor>{};
    const int64_t kk = in[1].dim(1), d = in[0].dim(1);
    Tensor mag("magnitude:y", DType::f32, {p.tokens, d});
    auto m = mag.span<float>();
    const auto row_of = in[1].span<const int32_t>();
    for (int64_t t = 0; t < p.tokens; ++t)
      for (int64_t c = 0; c < d; ++c) {
        double s = 0;
        for (int64_t j = 0; j < kk; ++j) s += std::fabs(in[2].get(t * kk + j) * in[0].get(row_of[static_cast<std::size_t>(t * kk + j)] * d + c));
        m[static_cast<std::size_t>(t * d + c)] = static_cast<float>(s);
      }
    return std::vector<Tensor>{std::move(mag)};
  };
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "moe", "CPU reference: exact permutation; combine and layer in FP64 from the BF16 values, rounded once (reference/moe.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "threads split tokens or experts; each writes only its own rows, sums in a fixed order");
}

}  // namespace dsv3::moe

void dsv3_register_moe_ref() { dsv3::moe::register_component(); }
