// dsv3 model pipeline: runs the pipeline-schedule simulator (reference/pipeline.hpp;
// docs/pipeline.md) for one or more schedules and prints a per-rank table (busy, bubble, peak
// in-flight activations) and a V3-TR Table 2-style summary with the closed forms beside the
// simulated figures; --json writes the summary rows, --timeline every executed chunk.
// dsv3 model pipeline-overlap: the communication-overlap view (reference/pipeline_overlap.hpp).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/json_file.hpp"
#include "reference/pipeline.hpp"
#include "reference/pipeline_overlap.hpp"
#include "reference/pipeline_overlap_profile.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

using namespace dsv3::pipeline;

void print_run(const Schedule& s, const SimResult& r) {
  const Params& p = s.params;
  std::printf("%s: PP %lld stages on %d devices, %lld micro-batches%s; makespan %g\n", schedule_name(p.schedule).c_str(),
              static_cast<long long>(p.pp), s.ranks, static_cast<long long>(p.micro_batches),
              p.schedule == ScheduleKind::dualpipe ? " (half from each end)" : "", r.makespan);
  std::printf("  %4s %-18s %10s %10s %9s %9s\n", "rank", "stages", "busy", "bubble", "peak act", "until W");
  for (int i = 0; i < s.ranks; ++i) {
    std::string stages;
    for (int d = 0; d < s.dirs; ++d)
      for (int st = 0; st < s.stages; ++st)
        if (s.stage_rank[static_cast<size_t>(d)][static_cast<size_t>(st)] == i)
        {
          if (!stages.empty()) stages.append(",");
          if (s.dirs == 2) stages.append(d == 0 ? "d0:" : "d1:");
          stages.append(std::to_string(st));
        }
    const RankStats& st = r.ranks[static_cast<size_t>(i)];
    std::printf("  %4d %-18s %10g %10g %9d %9d\n", i, stages.c_str(), st.busy, st.bubble, st.peak_activations,
                st.peak_until_w);
  }
  std::printf("\n");
}

void print_summary(const std::vector<std::pair<Schedule, SimResult>>& runs) {
  const ChunkTimes& t = runs.front().first.params.times;
  std::printf("Table 2 (V3-TR §3.2.1; DualPipe README for DualPipeV; v3-facts §6), chunk times F %g, B %g, W %g, "
              "F&B %g, latency %g:\n\n", t.f, t.b, t.w, t.fb, t.latency);
  std::printf("%-10s %4s %5s %7s %-20s %10s %10s %9s %9s %8s %8s\n", "schedule", "PP", "m", "devices", "bubble formula",
              "formula", "sim max", "sim min", "act T2", "act sim", "params");
  for (const auto& [s, r] : runs) {
    const Table2 f = table2(s.params);
    double lo = r.ranks.front().bubble;
    for (const auto& st : r.ranks) lo = std::min(lo, st.bubble);
    std::printf("%-10s %4lld %5lld %7d %-20s %10g %10g %9g %9d %8d %6gx%s\n", schedule_name(s.params.schedule).c_str(),
                static_cast<long long>(s.params.pp), static_cast<long long>(s.params.micro_batches), s.ranks,
                f.bubble_formula.c_str(), f.bubble, r.max_bubble(), lo, f.activations, r.max_peak_activations(),
                s.params_per_device, s.param_copies == 2 ? " (2 copies)" : "");
  }
  std::printf(
      "\nbubble = makespan - the rank's busy time; \"sim max\"/\"sim min\" over ranks. act = peak micro-batches whose\n"
      "forward has started and backward (B, or Bi when split) not ended, on the fullest device. params = stages'\n"
      "parameters per device (DualPipe: one stage of each of two model copies; DualPipeV: two distinct stages).\n"
      "The formulas hold exactly for: 1F1B always; ZB1P m >= PP, W <= min(F, B-W); DualPipe/V F = B-W, W <= F\n"
      "(every rank when F&B = F+B, else the centre ranks); no latency (docs/pipeline.md).\n");
}

void add_pipeline(CLI::App& model) {
  auto* cmd = model.add_subcommand("pipeline", "Pipeline schedules (1F1B, ZB1P, DualPipe, DualPipeV) simulated vs V3-TR Table 2");
  cmd->footer(
      "Simulates each schedule's per-rank chunk lists (F, B, Bi = B - W, W, F&B) with pipeline send/receive\n"
      "dependencies and a latency, and prints per rank the busy time, the bubble (makespan - busy), the peak\n"
      "in-flight activations, then a Table 2-style summary with the closed forms beside the simulated figures.\n"
      "DualPipe takes even PP and an even m >= 2 PP; DualPipeV even PP (stages; PP/2 devices) and m >= PP.\n"
      "Default chunk times (F 1, B 2, W 1, F&B 3) make every Table 2 formula exact.\n"
      "Formulas and sources: reference/pipeline.hpp, docs/pipeline.md.\n\n"
      "Examples:\n"
      "  dsv3 model pipeline                                     all four, PP 8, 20 micro-batches\n"
      "  dsv3 model pipeline --schedule dualpipe --pp 16 --micro-batches 64 --fb 2.5\n"
      "  dsv3 model pipeline --pp 4 --latency 0.1 --json pipe.json --timeline events.json");
  struct Opts {
    std::vector<std::string> schedules;
    int64_t pp = 8, m = 0;
    ChunkTimes t;
    std::string json, timeline;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--schedule", o->schedules, "1f1b, zb1p, dualpipe, dualpipev (default: all four)");
  cmd->add_option("--pp", o->pp, "Pipeline stages PP (even for dualpipe, dualpipev)")->capture_default_str();
  cmd->add_option("--micro-batches", o->m, "Micro-batches per step (default: max(20, 2 PP))");
  cmd->add_option("--f", o->t.f, "Forward chunk time F")->capture_default_str();
  cmd->add_option("--b", o->t.b, "Full backward chunk time B (input grad + weight grad)")->capture_default_str();
  cmd->add_option("--w", o->t.w, "Weight-grad chunk time W (< B; the input-grad chunk takes B - W)")->capture_default_str();
  cmd->add_option("--fb", o->t.fb, "Overlapped forward + backward chunk time F&B (DualPipe)")->capture_default_str();
  cmd->add_option("--latency", o->t.latency, "Pipeline send -> receive latency between ranks")->capture_default_str();
  cmd->add_flag("--summary-only", o->quiet, "Print only the Table 2 summary, not the per-rank tables");
  cmd->add_option("--json", o->json, "Also write the summary rows (docs/pipeline.md \"pipeline_summary\") to this file");
  cmd->add_option("--timeline", o->timeline, "Also write every executed chunk (\"pipeline_timeline\" rows) to this file");
  cmd->callback([=] {
    std::vector<ScheduleKind> kinds;
    for (const auto& n : o->schedules) kinds.push_back(schedule_from_name(n));
    if (kinds.empty()) kinds = all_schedules();
    std::vector<std::pair<Schedule, SimResult>> runs;  // all run first: a bad input fails before any output
    for (ScheduleKind k : kinds) {
      Params p;
      p.schedule = k;
      p.pp = o->pp;
      p.micro_batches = o->m > 0 ? o->m : std::max<int64_t>(20, 2 * o->pp);
      p.times = o->t;
      Schedule s = make_schedule(p);
      SimResult r = simulate(s);
      runs.emplace_back(std::move(s), std::move(r));
    }
    if (!o->quiet)
      for (const auto& [s, r] : runs) print_run(s, r);
    print_summary(runs);
    nlohmann::json rows = nlohmann::json::array(), events = nlohmann::json::array();
    for (const auto& [s, r] : runs) {
      rows.push_back(summary_row(s, r));
      for (auto& e : timeline_rows(s, r)) events.push_back(std::move(e));
    }
    if (!o->json.empty()) {
      write_json_atomic(o->json, rows);
      std::cerr << "model pipeline: wrote " << o->json << "\n";
    }
    if (!o->timeline.empty()) {
      write_json_atomic(o->timeline, events);
      std::cerr << "model pipeline: wrote " << o->timeline << "\n";
    }
  });
}

void print_overlap(const ChunkOverlap& c, const std::vector<StepOverlap>& steps) {
  const OverlapInputs& in = c.in;
  std::printf("Communication overlap, V3-TR §3.2.1 (Figure 4): per layer attention %g, dispatch %g, MLP %g, combine %g\n"
              "(forward; the backward doubles the compute and repeats both all-to-alls), %lld layers per stage,\n"
              "F&B's compute on %lld of %lld SMs while communication holds %lld.\n\n",
              in.attn, in.dispatch, in.mlp, in.combine, static_cast<long long>(in.layers),
              static_cast<long long>(in.sms - in.comm_sms), static_cast<long long>(in.sms),
              static_cast<long long>(in.comm_sms));
  std::printf("Chunk times: F %g, B %g, W %g (alone: all-to-alls exposed); F&B %g on two streams (F + B alone %g)\n",
              c.f, c.b, c.w, c.fb, c.f + c.b);
  std::printf("F&B: compute %g, all-to-all %g, hidden %g (%.1f %%)\n\n", c.fb_compute, c.fb_comm, c.fb_hidden,
              c.fb_comm > 0 ? 100 * c.fb_hidden / c.fb_comm : 0.0);
  std::printf("First layer of an F&B:\n  %-14s %-7s %9s %9s\n", "piece", "stream", "start", "end");
  for (const auto& p : c.pieces)
    if (p.name.size() > 2 && p.name.substr(p.name.size() - 2) == ".0")
      std::printf("  %-14s %-7s %9.3f %9.3f\n", p.name.c_str(), p.comm ? "comm" : "compute", p.start, p.end);
  std::printf("\n%-10s %4s %5s %7s %10s %12s %12s %9s\n", "schedule", "PP", "m", "devices", "makespan", "a2a total",
              "a2a hidden", "hidden %");
  for (const auto& s : steps)
    std::printf("%-10s %4lld %5lld %7lld %10g %12g %12g %8.1f%%\n", s.schedule.c_str(), static_cast<long long>(s.pp),
                static_cast<long long>(s.micro_batches), static_cast<long long>(s.devices), s.makespan, s.a2a_total,
                s.a2a_hidden, 100 * s.hidden_fraction());
  std::printf("\nOnly F&B chunks overlap: 1F1B and ZB1P run every chunk alone, DualPipe hides the all-to-alls of\n"
              "its F&B chunks (the more micro-batches, the larger their share). Not modelled: the PP sends, kernel\n"
              "launch gaps, the SM split's effect on communication bandwidth (docs/pipeline.md).\n");
}

void print_terms(const OverlapProfile& p) {
  const OverlapWorkload& w = p.work;
  std::printf("%s on %s, compute from the %s; per layer and micro-batch of %lld tokens (sequences of %lld), forward.\n"
              "PP %lld, %lld micro-batches per step (%lld sequences / (%lld GPUs / PP) / sequences per micro-batch);\n"
              "EP %lld ranks, %lld per node:\n\n",
              p.model.c_str(), p.hardware.c_str(), p.compute.c_str(), static_cast<long long>(w.tokens),
              static_cast<long long>(w.seq_len), static_cast<long long>(w.pp), static_cast<long long>(w.micro_batches()),
              static_cast<long long>(w.seqs_per_step), static_cast<long long>(w.gpus), static_cast<long long>(w.ranks),
              static_cast<long long>(w.ranks_per_node));
  std::printf("  %-9s %-40s %12s %12s  %s\n", "piece", "term", "FLOPs/bytes", "us", "how");
  for (const auto& t : p.terms)
    std::printf("  %-9s %-40s %12.4g %12.3f  %s\n", t.piece.c_str(), t.what.c_str(), t.amount, t.us, t.how.c_str());
  std::printf("  dispatch and combine: the longer of IB and NVLink (DeepEP forwards over NVLink while IB receives)\n\n");
}

void add_pipeline_overlap(CLI::App& model) {
  auto* cmd = model.add_subcommand("pipeline-overlap", "All-to-all time hidden by DualPipe's F&B chunks (V3-TR §3.2.1)");
  cmd->footer(
      "Splits a chunk into attention, all-to-all dispatch, MLP and all-to-all combine per layer (V3-TR §3.2.1),\n"
      "derives F, B, W (all-to-alls exposed) and F&B (a forward and a backward on a compute and a\n"
      "communication stream, Figure 4's order), runs each schedule with them and reports how much of the\n"
      "step's all-to-all time is hidden. Times per layer and micro-batch in any unit; the defaults are\n"
      "V3-TR's computation : communication ~ 1 : 1. Formulas: reference/pipeline_overlap.hpp, docs/pipeline.md.\n\n"
      "--hardware ID derives the times in us from a hardware profile and the model's training step (FLOPs of\n"
      "attention and experts at a fraction of the peaks, dispatch/combine bytes of the node-limited path over\n"
      "IB and NVLink; V3's setup: 4096 tokens per micro-batch, PP 16, 120 micro-batches); --bundle takes the\n"
      "compute from a result bundle's MLA prefill and FP8 GEMM benchmarks instead.\n\n"
      "Examples:\n"
      "  dsv3 model pipeline-overlap\n"
      "  dsv3 model pipeline-overlap --hardware h800-sxm\n"
      "  dsv3 model pipeline-overlap --hardware h100-sxm --bundle results/<run>/bundle.json\n"
      "  dsv3 model pipeline-overlap --attn 0.8 --mlp 1.2 --dispatch 0.7 --combine 1.4 --layers 4 --pp 16 --micro-batches 64");
  struct Opts {
    OverlapInputs in;
    int64_t pp = 8, m = 20;
    std::string json, hardware, bundle;
    OverlapWorkload work;
  };
  auto o = std::make_shared<Opts>();
  std::vector<CLI::Option*> by_hand = {
      cmd->add_option("--attn", o->in.attn, "Attention forward compute per layer")->capture_default_str(),
      cmd->add_option("--mlp", o->in.mlp, "MLP (MoE) forward compute per layer")->capture_default_str(),
      cmd->add_option("--dispatch", o->in.dispatch, "All-to-all dispatch per layer")->capture_default_str(),
      cmd->add_option("--combine", o->in.combine, "All-to-all combine per layer")->capture_default_str(),
      cmd->add_option("--layers", o->in.layers, "Layers per stage")->capture_default_str(),
      cmd->add_option("--sms", o->in.sms, "SMs per GPU")->capture_default_str(),
      cmd->add_option("--micro-batches", o->m, "Micro-batches per step")->capture_default_str()};
  cmd->add_option("--comm-sms", o->in.comm_sms, "SMs held by communication during F&B (V3: 20)")->capture_default_str();
  auto* pp = cmd->add_option("--pp", o->pp, "Pipeline stages (with --hardware: 16, V3's, unless given)")->capture_default_str();
  auto* hw = cmd->add_option("--hardware", o->hardware,
                             "Derive the four times (us) from this hardware profile (id in datasets/hardware or a JSON file) and the "
                             "model's training step: reference/pipeline_overlap_profile.hpp");
  for (auto* opt : by_hand) hw->excludes(opt);
  cmd->add_option("--bundle", o->bundle, "With --hardware: attention and MLP compute measured in this result bundle")->needs(hw);
  cmd->add_option("--model", o->work.model, "With --hardware: model config id")->capture_default_str()->needs(hw);
  cmd->add_option("--tokens", o->work.tokens, "With --hardware: tokens per micro-batch and device")->capture_default_str()->needs(hw);
  cmd->add_option("--ranks-per-node", o->work.ranks_per_node, "With --hardware: EP ranks per node (0: the profile's NVLink domain)")
      ->capture_default_str()
      ->needs(hw);
  cmd->add_option("--seq-len", o->work.seq_len, "With --hardware: sequence length (causal attention)")->capture_default_str()->needs(hw);
  cmd->add_option("--efficiency", o->work.compute_efficiency, "With --hardware: fraction of the profile's peak FLOPs reached")
      ->capture_default_str()
      ->needs(hw);
  cmd->add_option("--json", o->json, "Also write the rows (docs/pipeline.md \"pipeline_overlap\") to this file");
  cmd->callback([=] {
    nlohmann::json rows;
    if (!o->hardware.empty()) {
      OverlapWorkload w = o->work;
      if (pp->count() > 0) w.pp = o->pp;
      w.comm_sms = o->in.comm_sms;
      const ModelConfig m = find_model(w.model);
      const HardwareProfile h = hardware_by_id_or_file(o->hardware);
      const OverlapProfile modelled = overlap_from_profile(m, h, w);
      const OverlapProfile p = o->bundle.empty() ? modelled : with_measured_compute(modelled, m, load_json_file(o->bundle), o->bundle);
      print_terms(p);
      const OverlapRun run = run_overlap(p);
      print_overlap(run.chunk, run.steps);
      rows = overlap_profile_rows(p, run);
    } else {
      const ChunkOverlap c = chunk_overlap(o->in);
      const std::vector<StepOverlap> steps = step_overlaps(c, o->pp, o->m);
      print_overlap(c, steps);
      rows = overlap_rows(c, steps);
    }
    if (!o->json.empty()) {
      write_json_atomic(o->json, rows);
      std::cerr << "model pipeline-overlap: wrote " << o->json << "\n";
    }
  });
}

}  // namespace

void add_model_pipeline(CLI::App& model) {
  add_pipeline(model);
  add_pipeline_overlap(model);
}

}  // namespace dsv3::cli
