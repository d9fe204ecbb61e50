// The communication-overlap view of a pipeline chunk (V3-TR §3.2.1, Figure 4; v3-facts §6).
//
// A chunk of one micro-batch on one stage runs `layers` layers; each layer is split as V3-TR §3.2.1
// splits it: attention (compute), all-to-all dispatch (communication), MLP (compute), all-to-all
// combine (communication). The backward has the same two all-to-alls (the gradients of combine and
// of dispatch) and twice the compute, half of it input grads and half weight grads (the ZeroBubble
// split; with these defaults Bi = W = F's compute, the regime where Table 2 holds, docs/pipeline.md).
//
// A chunk alone runs its pieces one after the other, so its all-to-alls are exposed:
//   F  = layers x (attn + dispatch + mlp + combine)
//   B  = layers x (2 attn + 2 mlp + dispatch + combine)      W = layers x (attn + mlp)
// F&B (DualPipe) runs one forward and one full backward on two streams, compute and communication,
// in the order of V3-TR Figure 4 per layer pair: compute attn_f, mlp_b, mlp_f, attn_b; communication
// combine_b, dispatch_f, dispatch_b, combine_f; each piece after its data (attn_f -> dispatch_f ->
// mlp_f -> combine_f -> next layer's attn_f; combine_b -> mlp_b -> dispatch_b -> attn_b -> next
// layer's combine_b). While both streams run, communication kernels hold comm_sms of the GPU's sms
// (V3-TR §3.5.1: 20 of 132 on H800), so F&B's compute is slowed by sms / (sms - comm_sms).
// Hidden all-to-all time of an F&B = its communication time - the time only communication runs.
// Over a step: hidden fraction = sum of hidden time / all all-to-all time of every chunk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/pipeline.hpp"

namespace dsv3::pipeline {

// Per layer and micro-batch, forward, in any one time unit (e.g. us). Defaults: computation and
// communication 1 : 1 (V3-TR §3.2.1: "roughly 1:1" without overlap), split evenly.
struct OverlapInputs {
  double attn = 1;       // attention forward compute
  double mlp = 1;        // MoE MLP forward compute
  double dispatch = 1;   // all-to-all dispatch (forward); the backward's dispatch-gradient the same
  double combine = 1;    // all-to-all combine (forward); the backward's combine-gradient the same
  int64_t layers = 1;    // layers per stage (V3: 61 layers over PP 16, about 4)
  int64_t sms = 132;     // SMs per GPU (H800, V3-TR §3.5.1)
  int64_t comm_sms = 20; // SMs held by communication while F&B overlaps (V3-TR §3.5.1; 0 = free)
  void validate() const;  // std::invalid_argument naming the field
};

// One F&B on two streams, piece by piece (for tests and the timeline of one chunk).
struct OverlapPiece {
  std::string name;  // "attn_f", "dispatch_f", ... with the layer: "attn_f.0"
  bool comm = false;
  double start = 0, end = 0;
};

struct ChunkOverlap {
  OverlapInputs in;
  double f = 0, b = 0, w = 0, fb = 0;  // chunk times for the simulator
  double fb_compute = 0;  // F&B's compute (slowed by the SM share)
  double fb_comm = 0;     // F&B's all-to-all time
  double fb_hidden = 0;   // of it, under compute
  std::vector<OverlapPiece> pieces;
  ChunkTimes times() const;  // f, b, w, fb as ChunkTimes (latency 0)
};
ChunkOverlap chunk_overlap(const OverlapInputs& in);

// A schedule run with the chunk times of chunk_overlap(): step time and how much all-to-all it hides.
struct StepOverlap {
  std::string schedule;
  int64_t pp = 0, micro_batches = 0, devices = 0;
  double makespan = 0;
  double a2a_total = 0;   // all-to-all time of every chunk on every device
  double a2a_hidden = 0;  // of it, hidden under compute (F&B chunks only)
  double hidden_fraction() const { return a2a_total > 0 ? a2a_hidden / a2a_total : 0; }
};
StepOverlap step_overlap(const ChunkOverlap& c, ScheduleKind k, int64_t pp, int64_t micro_batches);
std::vector<StepOverlap> step_overlaps(const ChunkOverlap& c, int64_t pp, int64_t micro_batches);  // every schedule

nlohmann::json overlap_rows(const ChunkOverlap& c, const std::vector<StepOverlap>& steps);

}  // namespace dsv3::pipeline
