// The communication-overlap view's per-layer times (pipeline_overlap.hpp) for a model's training
// step on a hardware profile, with compute either modelled from the profile's peaks or measured in
// a result bundle. `dsv3 model pipeline-overlap --hardware ID [--bundle FILE]`, and the bundle's
// studies.pipeline_overlap (written by `dsv3 run` after its benchmarks).
//
// Workload (OverlapWorkload; defaults are V3's pre-training, V3-TR §3.2 and §4.2):
//   tokens         per micro-batch and device T = 4096: one sequence of seq_len 4096 [assumption:
//                  V3-TR gives the sequence length and the batch, 15360 sequences, not the
//                  micro-batch size]
//   micro_batches  per step and pipeline = 15360 sequences / (2048 GPUs / PP 16) / (T / seq_len)
//                  = 120 [derived]; pp 16, EP 64 ranks (V3-TR §3.2), as many per node as the
//                  profile's NVLink domain holds (8 on HGX machines as in V3's; all 64 on GB200 NVL72,
//                  where no byte crosses the scale-out network)
//   layers         per stage = ceil(n_layers / pp) = 4 for V3, each counted as a MoE layer (the
//                  first stage's 3 dense layers have no all-to-all: not modelled)
//
// One layer, forward, one micro-batch on one device:
//   attention  FP8 GEMMs 2 T P_attn (P_attn: wq_a, wq_b, wkv_a, wkv_b, wo, as train_flops_per_token
//              counts them) + the BF16 causal core T seq_len H (d_qk + d_v) (QK^T and PV at the
//              mean context seq_len / 2; MLA trains in the naive form: d_qk 192, d_v 128)
//   mlp        FP8 GEMMs 2 T (k + n_shared) 3 dim moe_inter (a balanced EP rank computes as many
//              expert rows as its tokens send) + the router 2 T dim E at the BF16 rate
//   dispatch   the node-limited path (netmodel_node_limit.hpp: V3's router model and placement, the
//              gate's node limit): per token mean IB sends s_ib and NVLink sends s_nv, each send one
//              FP8 token (hidden bytes + 1x128 FP32 scales, hidden / 32); IB and the NVLink
//              forwarding run together (V3-TR §3.2.2), so
//              time = T max(s_ib / IB, s_nv / NVLink) x send bytes
//   combine    the same path back with BF16 tokens (2 hidden bytes)
// Profile (compute "profile"): FLOPs / (peak x compute_efficiency), FP8 GEMMs at dense_fp8_tflops,
// the rest at dense_bf16_tflops; compute_efficiency 0.6 [assumption: DeepGEMM's dense V3 shapes at
// M = 4096 run 1009-1426 TFLOPS of the H800's 1979, 0.51-0.72, v3-facts §9.3]. IB = nic_gbps / 8 x
// nics_per_gpu, NVLink = nvlink_bandwidth_gbs (nominal, per direction); sms from the profile, comm_sms
// 20 on every profile (V3-TR §3.5.1's H800 figure).
// Bundle (compute "bundle", with_measured_compute): attention and mlp from the run's benchmarks instead
// (netmodel_bundle_rows.hpp for rows, variants and interpolation):
//   attention  mla prefill "prefill b=1 s=S h=128" at S = seq_len (beyond the largest measured S
//              scaled as S^2, the causal core), x T / seq_len sequences; + fp8_gemm dense rows of the
//              projections at m = T: wq_a|wkv_a (q_lora + kv_lora + rope, dim), wq_b (H (nope + rope),
//              q_lora), wkv_b (H (nope + v), kv_lora), wo (dim, H v)
//   mlp        fp8_gemm dense rows gate+up (2 moe_inter, dim) and down (dim, moe_inter) at
//              m = T (k + n_shared); the router is not counted
//   communication stays the profile's (a CPU bundle measures no fabric).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/hardware_profile.hpp"
#include "core/model_config.hpp"
#include "reference/netmodel_bundle_rows.hpp"
#include "reference/pipeline_overlap.hpp"

namespace dsv3::pipeline {

struct OverlapWorkload {
  std::string model = "deepseek-v3-671b";
  int64_t tokens = 4096;    // per micro-batch and device
  int64_t seq_len = 4096;   // attention context (causal)
  int64_t pp = 16;
  int64_t gpus = 2048, seqs_per_step = 15360;  // for micro_batches (V3-TR §3.1, §4.2)
  int64_t ranks = 64;         // EP ranks (V3-TR §3.2: 64 in 8 nodes)
  int64_t ranks_per_node = 0;  // 0: the profile's NVLink domain, at most ranks (H800: 8; NVL72: all 64)
  int64_t comm_sms = 20;                       // V3-TR §3.5.1
  double compute_efficiency = 0.6;             // of the profile's peaks (above)
  void validate() const;  // std::invalid_argument naming the field
  int64_t micro_batches() const;  // seqs_per_step / (gpus / pp) / (tokens / seq_len)
};

// One derived time, with its formula's inputs.
struct OverlapTerm {
  std::string piece;  // "attn", "mlp", "dispatch", "combine"
  std::string what;   // "FP8 GEMMs", "causal core (BF16)", "IB", ... or the measured term's what
  double amount = 0;  // FLOPs or bytes (0 for a measured term)
  std::string how;    // the rate used, or the rows and interpolation
  double us = 0;
};

struct OverlapProfile {
  std::string hardware, model, compute;  // compute: "profile" or "bundle (<device>)"
  OverlapWorkload work;
  std::vector<OverlapTerm> terms;
  OverlapInputs in;  // attn, mlp, dispatch, combine in us; layers, sms, comm_sms
};

// From the profile alone. InputError-like std::invalid_argument for a model without MoE, a
// profile with a zero rate.
OverlapProfile overlap_from_profile(const ModelConfig& m, const HardwareProfile& h, const OverlapWorkload& w);
// `modelled` (overlap_from_profile of model m) with attention and mlp measured in `bundle` (path for
// messages) instead; its dispatch and combine terms kept. InputError naming the bundle and the
// missing rows.
OverlapProfile with_measured_compute(const OverlapProfile& modelled, const ModelConfig& m, const nlohmann::json& bundle,
                                     const std::string& path);

// p's chunk, and every schedule run with it at p.work.pp and p.work.micro_batches().
struct OverlapRun {
  ChunkOverlap chunk;
  std::vector<StepOverlap> steps;
};
OverlapRun run_overlap(const OverlapProfile& p);
// The chunk and step rows of overlap_rows() for a run of p, each tagged with hardware, model and
// compute; plus one {"table": "term"} row per term.
nlohmann::json overlap_profile_rows(const OverlapProfile& p, const OverlapRun& run);
// studies.pipeline_overlap: every hardware profile from its peaks, and from `bundle` where it has
// the rows (else one {"table": "skipped", "reason"} row).
nlohmann::json overlap_study_rows(const nlohmann::json& bundle, const std::string& path);

}  // namespace dsv3::pipeline
