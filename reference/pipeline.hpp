// Pipeline-parallel schedules and a discrete-event simulator (V3-TR §3.2.1, Table 2; v3-facts §6).
//
// A schedule is an ordered list of chunks per rank. Chunks: F (forward of one micro-batch at one
// stage), B (full backward: input grad + weight grad), Bi (input-grad backward only, ZeroBubble's
// split), W (the weight-grad part of an earlier Bi) and FB (DualPipe's F&B: the forward of one
// micro-batch overlapped with the full backward of another, on the same rank). Each micro-batch
// flows along a path of stages (dir 0: stage 0 -> S-1; DualPipe's dir 1 runs the other way); each
// stage lives on one rank.
//
// The simulator runs every rank's list in order; a chunk starts at max(rank free, every input
// ready), where an input from another rank is ready at its producer's end + latency:
//   F(d, j, s)  <- F(d, j, s-1)                   (activation from the previous stage)
//   B/Bi(d,j,s) <- F(d, j, s) and B/Bi(d, j, s+1) (output grad from the next stage; the last stage
//                                                  needs only its own F: the loss is computed there)
//   W(d, j, s)  <- Bi(d, j, s)
//   FB          <- the inputs of its forward and of its backward; both outputs at its end.
// Durations: F, B (full), W, FB given; Bi = B - W (ChunkTimes).
//
// Schedules (S = stages, m = micro-batches):
//   one_f_one_b  PP ranks = PP stages, PP-r-1 warm-up forwards on rank r, then F,B pairs, then B's.
//   zb1p         ZeroBubble ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, §2.1):
//                the 1F1B order with B split into Bi + W, rank r running each W r micro-batches
//                after its Bi; the delayed W's fill the cool-down (pipeline_schedules.cpp).
//   dualpipe     PP ranks, two copies of the model: rank r holds stage r of dir 0 and stage PP-1-r
//                of dir 1; m/2 micro-batches enter at each end; the eight phases of DualPipe's
//                dualpipe.py (v3-facts §6). m even and >= 2 PP.
//   dualpipev    PP stages on PP/2 ranks in a V: rank r holds stages r and PP-1-r; one direction;
//                the same eight phases (dualpipev.py). m >= PP.
//
// Bubble of rank r = makespan - the time rank r computes (the makespan from 0 to the last chunk's
// end on any rank). Table 2 (V3-TR §3.2.1; DualPipe README adds DualPipeV; v3-facts §6):
//   1F1B       (PP-1)(F+B)            params 1x  activations PP     devices PP
//   ZB1P       (PP-1)(F+B-2W)         params 1x  activations PP     devices PP
//   DualPipe   (PP/2-1)(F&B+B-3W)     params 2x  activations PP+1   devices PP
//   DualPipeV  (PP/2-1)(F&B+B-3W)     params 2x  activations PP+1   devices PP/2
// "activations" = micro-batches whose forward has started and whose backward (B or Bi) has not
// ended, peak over time, counted on the rank where it is largest (both stages of a rank together).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::pipeline {

enum class ScheduleKind : uint8_t { one_f_one_b, zb1p, dualpipe, dualpipev };
std::string schedule_name(ScheduleKind k);           // "1f1b", "zb1p", "dualpipe", "dualpipev"
ScheduleKind schedule_from_name(const std::string& s);  // throws std::invalid_argument naming "schedule"
std::vector<ScheduleKind> all_schedules();

// Chunk times in arbitrary units (the same unit as the bubble). Defaults: F = 1, B = 2 (backward
// about twice the forward), W = 1 (half of B: the weight-grad GEMMs equal the input-grad GEMMs),
// F&B = F + B = 3 (no overlap gain); with these every Table 2 bubble formula is exact (docs/pipeline.md).
struct ChunkTimes {
  double f = 1;        // forward chunk, F
  double b = 2;        // full backward chunk (input grad + weight grad), B
  double w = 1;        // weight-grad chunk, W; the input-grad chunk Bi takes B - W
  double fb = 3;       // two mutually overlapped forward + backward chunks, F&B
  double latency = 0;  // pipeline send -> receive between two ranks (0: Table 2 ignores it)
  void validate() const;  // std::invalid_argument naming the field (negative, NaN, W > B, ...)
};

// Which micro-batches and how many stages; validate() names the field that is wrong.
struct Params {
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int64_t pp = 8;              // pipeline stages PP (even for DualPipe and DualPipeV, >= 2)
  int64_t micro_batches = 20;  // micro-batches per step m (DualPipe: both directions together)
  ChunkTimes times;
  std::string to_string() const;  // "dualpipe pp=8 mb=20" (+ times when not the defaults)
  void validate() const;
  int64_t ranks() const;  // devices: PP, or PP/2 for DualPipeV
};

enum class Kind : uint8_t { F, B, Bi, W, FB };
const char* kind_name(Kind k);  // "F", "B", "Bi", "W", "F&B"

// One unit of work of one micro-batch at one stage.
struct Work {
  int dir = 0;    // direction: 0, or 1 for DualPipe's reverse micro-batches
  int mb = 0;     // micro-batch index within its direction
  int stage = 0;  // stage index along the direction's path
  bool operator==(const Work&) const = default;
};

// One chunk of a rank's list. F, B, Bi, W use `a`; FB is forward `a` overlapped with backward `b`.
struct Chunk {
  Kind kind = Kind::F;
  Work a, b;
};

struct Schedule {
  Params params;
  int ranks = 0, stages = 0, dirs = 1;
  int mb_per_dir = 0;
  std::vector<std::vector<int>> stage_rank;   // [dir][stage] -> rank
  std::vector<std::vector<Chunk>> per_rank;   // [rank] ordered chunks
  double params_per_device = 1;  // stages' parameters held per device, in units of one stage
  double param_copies = 1;       // how many times the model's parameters exist in total per PP group
};

Schedule make_schedule(const Params& p);  // validates p

// One executed chunk.
struct Event {
  int rank = 0;
  double start = 0, end = 0;
  Chunk chunk;
};

struct RankStats {
  double busy = 0;          // sum of chunk durations
  double bubble = 0;        // makespan - busy
  int peak_activations = 0;  // peak of (F started) - (B or Bi ended) over both stages of the rank
  int peak_until_w = 0;      // the same, counting a split micro-batch until its W ends
};

struct SimResult {
  double makespan = 0;
  std::vector<Event> events;  // in execution order per rank, ranks interleaved by start time
  std::vector<RankStats> ranks;
  double max_bubble() const;
  int max_peak_activations() const;
};

// Runs the schedule; throws std::runtime_error on a deadlock (a chunk whose input is never made).
SimResult simulate(const Schedule& s);

// Independent re-check of a run: every dependency honoured (with its latency), each (dir, mb,
// stage) has one F, one B or Bi, a W exactly when split, in the order F < B/Bi < W; no rank runs
// two chunks at once; durations as given. Returns the violations (empty: all hold).
std::vector<std::string> check_invariants(const Schedule& s, const SimResult& r);

// V3-TR Table 2 closed forms (v3-facts §6), for p's schedule and chunk times.
struct Table2 {
  double bubble = 0;
  int activations = 0;         // per device (peak over devices)
  double params_per_device = 0;
  int64_t devices = 0;
  std::string bubble_formula;  // "(PP-1)(F+B)" ...
};
Table2 table2(const Params& p);

// JSON rows: one per chunk executed {rank, start, end, kind, mb, dir, stage[, mb_b, dir_b, stage_b]}.
nlohmann::json timeline_rows(const Schedule& s, const SimResult& r);
// One summary row per run (docs/pipeline.md "pipeline_summary").
nlohmann::json summary_row(const Schedule& s, const SimResult& r);
// Bundle study: timelines for PP 8 (DualPipeV: 8 stages on 4 ranks) and the Table 2 comparison.
nlohmann::json timeline_study(bool quick);
nlohmann::json summary_study(bool quick);

}  // namespace dsv3::pipeline
