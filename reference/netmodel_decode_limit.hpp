// Theoretical decode speed limit of an expert-parallel MoE deployment, ISCA §2.3.2 reproduced
// step by step (v3-facts §7.3): every token's all-to-all traffic at a given per-device bandwidth,
// with the computation assumed fully hidden behind communication. `dsv3 model decode-limit`.
//
// Per EP step, per device (one expert per device, `tokens_per_device` tokens per step):
//   dispatch bytes   = tokens_per_device * experts_per_token * hidden * dispatch_bytes_per_elem
//   combine bytes    = tokens_per_device * experts_per_token * hidden * combine_bytes_per_elem
//                      (ISCA §2.3.2: (1 B + 2 B) x 32 x 9 x 7K = 6,048,000 B)
//   dispatch / combine time = bytes / bandwidth + latency_us each (the paper ignores latency)
//   step time        = dispatch + combine       (ISCA: 120.96 us at 50 GB/s, 6.72 us at 900 GB/s)
//   time per layer   = micro_batches * step     (dual micro-batch overlap: the two micro-batches'
//                      all-to-alls share the link while the other computes, computation fully
//                      hidden; ISCA: 2 x 120.96 = 241.92 us, 2 x 6.72 = 13.44 us)
//                      calibrated: micro_batches * max(step, compute_us) with a measured compute
//                      time per micro-batch (compute- or network-bound, whichever is longer)
//   TPOT             = n_layers * time per layer  (ISCA: 61 x 241.92 us = 14.76 ms; 0.82 ms)
//   tokens/s         = 1 / TPOT                 (ISCA: "67" and "approximately 1200")
// Bandwidths are per device, one direction, GB/s = 1e9 B/s (v3-facts §0).
//
// Cases: the paper's two (400 Gbps IB = 50 GB/s per device; GB200 NVL72 = 900 GB/s per GPU one
// direction, ISCA §2.3.2) and, per hardware profile, a scale-out row (nic_gbps / 8 * nics_per_gpu)
// and a scale-up row (nvlink_bandwidth_gbs). A scale-up row is the limit only if every EP device
// sits in one NVLink domain (ep_devices <= nvlink_domain_gpus); the rows say whether it does. The
// paper's GB200 case assumes NVLink speed for all 256+ experts though one NVL72 holds 72 GPUs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/hardware_profile.hpp"
#include "core/model_config.hpp"

namespace dsv3::netmodel {

// The paper's assumptions, each a named input; defaults are ISCA §2.3.2's (v3-facts §7.3).
struct DecodeLimitInputs {
  // Tokens one device processes per EP step: "about 32 tokens at a time" (ISCA §2.3.2).
  int64_t tokens_per_device = 32;
  // Experts each token is sent to: 8 routed + 1 shared (ISCA §2.3.2; V3 config
  // n_activated_experts 8 + n_shared_experts 1, v3-facts §1.1).
  int64_t experts_per_token = 9;
  // Hidden size: the paper's "7K" = 7000 (V3's dim is 7168, which does not give the paper's
  // figures; v3-facts §7.3). --model takes the config's dim instead.
  int64_t hidden = 7000;
  // Bytes per element on the wire: FP8 dispatch, BF16 combine (ISCA §2.3.2, §3.2; V3-TR §3.3.3;
  // DeepEP "FP8 dispatching and BF16 combining"; v3-facts §7.2).
  double dispatch_bytes_per_elem = 1;
  double combine_bytes_per_elem = 2;
  // Layers whose all-to-alls are on the critical path: the paper multiplies by all 61 (V3 config
  // n_layers; only 58 of them are MoE layers, v3-facts §1.1).
  int64_t n_layers = 61;
  // Micro-batches whose communication overlaps the other's computation: 2 (dual micro-batch
  // overlap, ISCA §2.3.2: "2 x 120.96 us").
  int64_t micro_batches = 2;
  // Fixed latency added to each all-to-all, microseconds: 0 ("network latency ignored", ISCA
  // §2.3.2). For scale: 64-byte IB latency 2.8-3.7 us, NVLink 3.33 us (ISCA Table 5, v3-facts §7.1).
  double latency_us = 0;
  // Devices in the EP group, one expert per device: V3's 256 routed experts (ISCA §2.3.2 "each
  // device holds one expert"; config n_routed_experts). Used only to say whether a scale-up row's
  // NVLink domain holds the whole group.
  int64_t ep_devices = 256;
  // Compute time of one micro-batch's layer on one device (attention for its tokens and its
  // expert's FFN), microseconds: 0 = hidden behind communication (the paper's assumption). Else
  // each micro-batch slot lasts the longer of its all-to-alls and the other micro-batch's compute:
  // time per layer = micro_batches x max(step, compute), and the row says which bounds it.
  // `dsv3 model decode-limit --bundle` measures it (reference/netmodel_decode_calibrate.hpp).
  double compute_us = 0;

  // Throws std::invalid_argument naming the first bad field ("tokens_per_device must be positive, got 0").
  void validate() const;
};

// Inputs with the model-dependent ones taken from a config: hidden = dim, experts_per_token =
// n_activated + n_shared, n_layers, ep_devices = n_routed_experts (mla_moe only; std::invalid_argument
// otherwise). The rest as in `base`.
DecodeLimitInputs decode_limit_inputs_for(const ModelConfig& m, DecodeLimitInputs base = {});

// One bandwidth to evaluate.
struct DecodeLimitCase {
  std::string id;              // "paper-ib-400g", "h800-sxm/scale_out", ...
  std::string label;           // human-readable
  std::string link;            // "scale_out" | "scale_up"
  std::string hardware;        // profile id, empty for the paper's cases
  double bandwidth_gbs = 0;    // per device, one direction, GB/s
  std::string bandwidth_from;  // how bandwidth_gbs was obtained (field names or the paper's words)
  int64_t nvlink_domain_gpus = 0;  // scale_up rows: GPUs in one NVLink domain (0 when unknown)

  // The paper's printed figures, for its two cases only.
  struct Paper {
    double step_us, layer_us, tpot_ms, tokens_per_s;
  };
  std::optional<Paper> paper;
};

// ISCA §2.3.2's two cases: 400 Gbps InfiniBand (50 GB/s per device) and GB200 NVL72 (900 GB/s).
std::vector<DecodeLimitCase> decode_limit_paper_cases();
// A profile's scale_out row (nic_gbps / 8 * nics_per_gpu) and scale_up row (nvlink_bandwidth_gbs).
std::vector<DecodeLimitCase> decode_limit_hardware_cases(const HardwareProfile& h);
// A user-given bandwidth (GB/s; std::invalid_argument unless positive and finite).
DecodeLimitCase decode_limit_custom_case(double bandwidth_gbs, const std::string& link = "custom");

// Every intermediate of the calculation for one case.
struct DecodeLimitResult {
  DecodeLimitCase c;
  DecodeLimitInputs in;
  double dispatch_bytes = 0;  // per device per EP step
  double combine_bytes = 0;
  double step_bytes = 0;      // dispatch + combine
  double dispatch_us = 0;     // bytes / bandwidth (+ latency)
  double combine_us = 0;
  double step_us = 0;         // both all-to-alls of one EP step
  double layer_us = 0;        // micro_batches * max(step_us, in.compute_us)
  std::string bound;          // "hidden" (compute_us 0), "network" (step >= compute) or "compute"
  double tpot_ms = 0;         // n_layers * layer_us
  double tokens_per_s = 0;    // 1 / TPOT
  // scale_up rows: whether ep_devices <= nvlink_domain_gpus (the all-to-all stays on NVLink).
  std::optional<bool> fits_nvlink_domain;
};

// Validates inputs and the case's bandwidth (std::invalid_argument naming the field).
DecodeLimitResult decode_limit(const DecodeLimitInputs& in, const DecodeLimitCase& c);

// One row per result; keys in docs/netmodel.md ("decode_limit" rows).
nlohmann::json decode_limit_rows(const std::vector<DecodeLimitResult>& results);

// The paper's cases then every profile in datasets/hardware, with the paper's inputs.
std::vector<DecodeLimitResult> decode_limit_default_results(const DecodeLimitInputs& in = {});

}  // namespace dsv3::netmodel
