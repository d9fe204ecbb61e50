// The pipeline component: eval cases = (schedule, PP, micro-batches[, chunk times]); outputs =
// per-rank bubble (f32 [ranks]), per-rank peak in-flight activations (i32 [ranks]) and parameters
// per device (f32 [1], in stages). Variant "ref" runs the simulator (reference/pipeline_sim.cpp);
// variant "table2" writes V3-TR Table 2's closed forms (v3-facts §6) and is compared with it, so
// `dsv3 check pipeline` is the Table 2 reproduction. No perf cases: a simulator is not a kernel.
// Studies: pipeline_timeline (every chunk of PP-8 runs, for the timeline plots) and
// pipeline_summary (bubbles and peaks against Table 2 for PP 4, 8, 16).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/registry.hpp"
#include "reference/pipeline.hpp"

namespace dsv3::pipeline {
namespace {

Case make(ScheduleKind k, int64_t pp, int64_t m, ChunkTimes t = {}) {
  Params p;
  p.schedule = k;
  p.pp = pp;
  p.micro_batches = m;
  p.times = t;
  p.validate();
  return make_case(p);
}

// The fewest micro-batches each schedule takes, and a ragged count above it.
std::vector<int64_t> counts(ScheduleKind k, int64_t pp) {
  switch (k) {
    case ScheduleKind::dualpipe: return {2 * pp, 2 * pp + 2, 3 * pp, 4 * pp};
    case ScheduleKind::dualpipev: return {pp, pp + 1, 2 * pp, 3 * pp + 1};
    default: return {pp, pp + 1, 2 * pp, 3 * pp + 1};
  }
}

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  for (ScheduleKind k : all_schedules())
    for (int64_t pp : {4, 8, 16})
      for (int64_t m : counts(k, pp)) cases.push_back(make(k, pp, m));
  // Other chunk times: F = B - W and W <= F (every formula exact per rank); F&B < F + B (DualPipe's
  // overlap gain: the formula is the centre ranks' bubble, the edge ranks are busy longer: unsupported
  // for the per-rank table2 comparison); F != B - W (DualPipe/V: unsupported; ZB1P still exact);
  // a P2P latency (Table 2 has none); fewer micro-batches than stages for 1F1B.
  for (ScheduleKind k : all_schedules()) {
    cases.push_back(make(k, 8, 24, ChunkTimes{2, 3, 1, 5, 0}));
    cases.push_back(make(k, 8, 24, ChunkTimes{1, 2, 1, 2.5, 0}));
    cases.push_back(make(k, 8, 24, ChunkTimes{1, 2, 0.5, 3, 0}));
    cases.push_back(make(k, 8, 24, ChunkTimes{1, 2, 1, 3, 0.25}));
  }
  cases.push_back(make(ScheduleKind::one_f_one_b, 8, 3));
  cases.push_back(make(ScheduleKind::zb1p, 8, 5));
  cases.push_back(make(ScheduleKind::one_f_one_b, 7, 9));  // odd PP: fine without DualPipe
  return cases;
}

std::vector<TensorSpec> specs(const Params& p) {
  const int64_t r = p.ranks();
  return {{"bubble", DType::f32, {r}}, {"peak_activations", DType::i32, {r}}, {"params_per_device", DType::f32, {1}}};
}

void run_simulator(const Params& p, std::vector<Tensor>& out) {
  const Schedule s = make_schedule(p);
  const SimResult r = simulate(s);
  const auto bad = check_invariants(s, r);
  if (!bad.empty()) throw std::runtime_error(p.to_string() + ": simulator invariant broken: " + bad.front());
  for (size_t i = 0; i < r.ranks.size(); ++i) {
    out[0].span<float>()[i] = static_cast<float>(r.ranks[i].bubble);
    out[1].span<int32_t>()[i] = r.ranks[i].peak_activations;
  }
  out[2].span<float>()[0] = static_cast<float>(s.params_per_device);
}

// Where Table 2's closed forms give every rank's value exactly (v3-facts §6; docs/pipeline.md,
// established by the simulator over a grid of chunk times, PP 4/8/16, and tested):
//   1F1B      always (any m, also m < PP);
//   ZB1P      m >= PP and W <= min(F, B - W): below either bound the last rank's (PP-1)F start or
//             rank 0's (PP-1)(B-W) wait for its first backward exceeds (PP-1)(F+B-2W);
//   DualPipe, DualPipeV  F = B - W and W <= F (the derivation's equal forward and input-grad
//             chunks), and F&B = F + B for every rank (with an overlap gain only the centre ranks'
//             bubble is the formula; the edge ranks overlap fewer chunks, so are busy longer);
// and never with a P2P latency (Table 2 has none).
std::string table2_unsupported(const Params& p) {
  const ChunkTimes& t = p.times;
  if (t.latency != 0) return "Table 2 has no P2P latency term (a latency L adds at least 2 (PP-1) L: the first forward and the last backward each cross PP-1 links)";
  switch (p.schedule) {
    case ScheduleKind::one_f_one_b: return "";
    case ScheduleKind::zb1p:
      if (p.micro_batches < p.pp) return "ZB-H1's formula takes m >= PP (fewer micro-batches leave no W's to fill the cool-down)";
      if (t.w > std::min(t.f, t.b - t.w)) return "W > min(F, B - W): the bubble cannot fall below (PP-1) max(F, B-W) (docs/pipeline.md)";
      return "";
    case ScheduleKind::dualpipe:
    case ScheduleKind::dualpipev:
      if (t.f != t.b - t.w || t.w > t.f)
        return "outside the formula's regime F = B - W, W <= F the phases' waits differ from it (docs/pipeline.md)";
      if (t.fb != t.f + t.b) return "with F&B < F + B the formula is the centre ranks' bubble only; the edge ranks overlap fewer chunks, so are busy longer";
      return "";
  }
  return "";
}

void run_table2(const Params& p, std::vector<Tensor>& out) {
  const Table2 f = table2(p);
  const int64_t R = p.ranks();
  for (int64_t r = 0; r < R; ++r) {
    out[0].span<float>()[static_cast<size_t>(r)] = static_cast<float>(f.bubble);
    // Table 2's "activations per device" is the largest rank's; 1F1B and ZB1P's rank r holds
    // min(PP - r, m) (its PP - r - 1 warm-up forwards and one more) [derived]; DualPipe's ranks all PP + 1.
    const bool dual = p.schedule == ScheduleKind::dualpipe || p.schedule == ScheduleKind::dualpipev;
    out[1].span<int32_t>()[static_cast<size_t>(r)] =
        dual ? f.activations : static_cast<int32_t>(std::min<int64_t>(f.activations - r, p.micro_batches));
  }
  out[2].span<float>()[0] = static_cast<float>(f.params_per_device);
}

}  // namespace

// PP 8 as the DualPipe figure (8 ranks, 20 micro-batches); DualPipeV as its figure (8 stages on 4
// ranks, 10 micro-batches); 1F1B and ZB1P with 20. Default chunk times.
Params timeline_params(ScheduleKind k) {
  Params p;
  p.schedule = k;
  p.pp = 8;
  p.micro_batches = k == ScheduleKind::dualpipev ? 10 : 20;
  return p;
}

nlohmann::json timeline_study(bool /*quick*/) {
  nlohmann::json rows = nlohmann::json::array();
  for (ScheduleKind k : all_schedules()) {
    const Schedule s = make_schedule(timeline_params(k));
    for (auto& row : timeline_rows(s, simulate(s))) rows.push_back(std::move(row));
  }
  return rows;
}

nlohmann::json summary_study(bool quick) {
  nlohmann::json rows = nlohmann::json::array();
  for (ScheduleKind k : all_schedules()) {  // the timeline study's runs, then PP 4, 8, 16
    const Schedule s = make_schedule(timeline_params(k));
    rows.push_back(summary_row(s, simulate(s)));
  }
  for (ScheduleKind k : all_schedules())
    for (int64_t pp : quick ? std::vector<int64_t>{8} : std::vector<int64_t>{4, 8, 16}) {
      Params p;
      p.schedule = k;
      p.pp = pp;
      p.micro_batches = k == ScheduleKind::dualpipe ? 4 * pp : 3 * pp;
      const Schedule s = make_schedule(p);
      rows.push_back(summary_row(s, simulate(s)));
    }
  return rows;
}

void register_component() {
  Component c;
  c.name = "pipeline";
  c.description = "Pipeline schedules (1F1B, ZB1P, DualPipe, DualPipeV): discrete-event simulator vs V3-TR Table 2";
  c.eval_cases = eval_cases;
  c.perf_cases = [] { return std::vector<Case>{}; };
  c.make_inputs = [](const Case&) { return std::vector<Tensor>{}; };
  c.make_outputs = [](const Case& k) { return allocate(specs(k.as<Params>())); };
  c.bytes = [](const Case&) { return 0.0; };
  c.study = [](bool quick) {
    return nlohmann::json{{"pipeline_timeline", timeline_study(quick)}, {"pipeline_summary", summary_study(quick)}};
  };
  Registry::instance().add(std::move(c));

  Variant v;
  v.component = "pipeline";
  v.name = "ref";
  v.description = "discrete-event simulator of the per-rank chunk lists, invariants re-checked (reference/pipeline_sim.cpp)";
  v.prepare = [](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_simulator(p, io.out); });
  };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  Registry::instance().add(std::move(v));

  Variant t;
  t.component = "pipeline";
  t.name = "table2";
  t.description = "V3-TR Table 2's closed forms (bubble, activations, parameters per device; v3-facts §6)";
  t.unsupported = [](const Case& k) { return table2_unsupported(k.as<Params>()); };
  t.prepare = [](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_table2(p, io.out); });
  };
  t.tolerances["bubble"] = Tolerance::bit_exact(
      "the cases have integer or half-integer chunk times: makespan and busy time are sums of exact binary fractions < 2^24, the same value on both sides");
  t.tolerances["peak_activations"] = Tolerance::bit_exact("counts of micro-batches: integers");
  t.tolerances["params_per_device"] = Tolerance::bit_exact("stages per device: 1 or 2");
  Registry::instance().add(std::move(t));
}

}  // namespace dsv3::pipeline

void dsv3_register_pipeline_ref() { dsv3::pipeline::register_component(); }
