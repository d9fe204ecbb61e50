// The mtp component: the batched verification step of speculative decoding (reference/mtp.hpp);
// cases and the CPU variants.
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/mtp.hpp"

namespace dsv3::mtp {
namespace {

Case accept_case(Rule rule, int64_t batch, int64_t drafts, int64_t vocab, Draw draw, double sharpness = 4) {
  Params p;
  p.rule = rule; p.batch = batch; p.drafts = drafts; p.vocab = vocab; p.draw = draw; p.sharpness = sharpness;
  p.validate();
  return make_case(p);
}

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  for (Rule r : {Rule::greedy, Rule::sample}) {
    // Depth 1 (V3's MTP) at V3's vocabulary; several drafts (the agreeing prefix, the first
    // rejection); a two-token vocabulary; drafts from a far, a close and an equal q.
    cases.push_back(accept_case(r, 3, 1, 129280, Draw::close));
    cases.push_back(accept_case(r, 16, 1, 1000, Draw::far));
    cases.push_back(accept_case(r, 9, 3, 257, Draw::close));
    cases.push_back(accept_case(r, 5, 2, 2, Draw::far));
    cases.push_back(accept_case(r, 4, 2, 300, Draw::equal));
    // Near one-hot rows (most weights below the 2^-46 grid) and near-uniform rows.
    cases.push_back(accept_case(r, 6, 1, 5000, Draw::close, 16));
    cases.push_back(accept_case(r, 6, 1, 5000, Draw::far, 0.25));
  }
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("mtp", [](const nlohmann::json& c, const std::string& at) {
    std::vector<Case> out;
    const Rule rule = rule_from_name(json_field<std::string>(c, "rule", at));
    const int64_t drafts = json_field_or<int64_t>(c, "drafts", 1, at), vocab = json_field_or<int64_t>(c, "vocab", 129280, at);
    const Draw draw = draw_from_name(json_field_or<std::string>(c, "draw", "close", at));
    for (int64_t b : json_one_or_list<int64_t>(c, "batch", 1, at)) out.push_back(accept_case(rule, b, drafts, vocab, draw));
    return out;
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "mtp";
  c.description = "speculative decoding with MTP drafts: batched greedy and rejection-sampling verification";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "mtp", "CPU reference: exact acceptance test (24-bit uniform x FP32 q in FP64), integer-grid sampling (reference/mtp_accept.cpp)",
      [](const Case& k, Io& io) { run_reference(k.as<Params>(), io.in, io.out); },
      "threads split sequences; each sequence is verified alone with integer sums");
}

}  // namespace dsv3::mtp

void dsv3_register_mtp_ref() { dsv3::mtp::register_component(); }
