// The mla component: cases (decode over the paged latent cache, naive prefill), the study rows
// (reference/mla_studies.cpp) and the CPU variants.
#include <sstream>

#include "core/json_file.hpp"
#include "core/kv_cache.hpp"
#include "core/parallel.hpp"
#include "core/registry.hpp"
#include "reference/mla.hpp"
#include "reference/mla_layer.hpp"

namespace dsv3::mla {
namespace {

Case decode_case(std::vector<int64_t> lens, int64_t s_q, int64_t heads, CacheFmt fmt, Dist d = Dist::normal) {
  return make_case(decode_params(std::move(lens), s_q, heads, fmt, d));
}

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // The decode cases a kernel is held to: single sequences at page edges (1, 63, 64, 65), empty,
  // several pages; a mixed batch with an empty sequence; every page of every case is placed in a
  // permuted order among NaN-poisoned pages, tails poisoned too (reference/mla_cache.hpp).
  const std::vector<int64_t> mixed = {0, 1, 63, 64, 65, 130, 200, 257};
  for (CacheFmt fmt : {CacheFmt::bf16, CacheFmt::fp8})
    for (int64_t s_q : {1, 2}) {
      for (int64_t len : {1, 63, 64, 65, 0, 300}) cases.push_back(decode_case({len}, s_q, 128, fmt));
      for (int64_t heads : {128, 64, 32, 16}) cases.push_back(decode_case(mixed, s_q, heads, fmt));
      cases.push_back(decode_case(mixed, s_q, 128, fmt, Dist::outlier_channels));
    }
  // Naive prefill: a page edge and ragged lengths, full and tensor-parallel head counts.
  for (int64_t s : {1, 63, 64, 65, 200})
    for (int64_t heads : {128, 16}) {
      Params p;
      p.op = Op::prefill; p.batch = s < 100 ? 2 : 1; p.s_q = s; p.heads = heads;
      cases.push_back(make_case(p));
    }
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("mla", [](const nlohmann::json& c, const std::string& at) {
    std::vector<Case> out;
    Params base;
    base.op = json_field<std::string>(c, "op", at) == "prefill" ? Op::prefill : Op::decode;
    if (base.op == Op::decode && json_field<std::string>(c, "op", at) != "decode")
      throw std::invalid_argument("op must be decode or prefill");
    base.batch = json_int(c, "batch", at);
    base.heads = json_field_or<int64_t>(c, "heads", 128, at);
    const std::vector<int64_t> sqs = json_one_or_list<int64_t>(c, "s_q", 1, at);
    const std::vector<int64_t> lens = json_one_or_list<int64_t>(c, "mean_len", 0, at);
    const std::vector<std::string> fmts = json_one_or_list<std::string>(c, "cache", "bf16", at);
    base.varlen = json_field_or<bool>(c, "varlen", false, at);
    for (int64_t sq : sqs)
      for (int64_t len : lens)
        for (const std::string& f : fmts) {
          if (f != "bf16" && f != "fp8") throw std::invalid_argument("cache must be bf16 or fp8, got '" + f + "'");
          Params p = base;
          p.s_q = sq; p.mean_len = len; p.cache = f == "fp8" ? CacheFmt::fp8 : CacheFmt::bf16;
          p.validate();
          out.push_back(make_case(p));
        }
    return out;
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "mla";
  c.description = "Multi-head Latent Attention cores: absorbed decode over the paged BF16/FP8 latent cache, naive causal prefill";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  c.flops = [](const Case& k) { return flops(k.as<Params>()); };
  c.check_aids = [](const Case& k, const std::vector<Tensor>& in, const std::vector<Tensor>&) {
    // sum_j p_j |v_j| per output element: the scale of what rounding p moves (reference/mla.hpp).
    const Params& p = k.as<Params>();
    const F64Outputs f = run_reference_f64(p, in, true);
    std::vector<Tensor> aids;
    const std::vector<TensorSpec> outs = output_specs(p);
    aids.emplace_back("magnitude:out", DType::f32, outs[0].shape);
    auto m = aids.back().span<float>();
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(f.magnitude[i]);
    if (p.op == Op::decode) {  // the error scales of a decode kernel with FP32 scores (reference/mla.hpp)
      aids.emplace_back("bound_fp32_scores:out", DType::f32, outs[0].shape);
      auto o = aids.back().span<float>();
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t i = 0; i < p.s_q; ++i)
          for (int64_t h = 0; h < p.heads; ++h) {
            const auto row = static_cast<std::size_t>((b * p.heads + h) * p.s_q + i);
            const auto at = static_cast<std::size_t>(((b * p.s_q + i) * p.heads + h) * kLatent);
            for (std::size_t e = 0; e < static_cast<std::size_t>(kLatent); ++e)
              o[at + e] = static_cast<float>(out_error_scale(f.magnitude[at + e], f.score_magnitude[row], f.visible[row]));
          }
      aids.emplace_back("bound_fp32_scores:lse", DType::f32, outs[1].shape);
      auto l = aids.back().span<float>();
      for (std::size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(lse_error_scale(f.score_magnitude[i], f.visible[i]));
    }
    return aids;
  };
  c.study = [](bool quick) {
    return nlohmann::json{{"kv_cache", kv_cache_study_rows(quick)}, {"mla_cache_error", cache_error_study(quick)},
                          {"mla_decode_forms", decode_forms_study(quick)}};
  };
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "mla", "CPU reference: FP64 online softmax over 64-token pages, Eigen products, threaded over sequences / heads (reference/mla.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "each thread writes only its own sequences' (or heads') outputs, in the same order");
}

}  // namespace dsv3::mla

void dsv3_register_mla_ref() { dsv3::mla::register_component(); }
