// Training cost: GFLOPs per token from the model configs (ISCA Table 2, §2.2.1) and the per-step
// throughput figures of ISCA Table 4 (tokens/day, TFLOPS, MFU) from a step time (v3-facts §8.1).
// `dsv3 model train-cost`.
//
// GFLOPs per training token at sequence length s (v3-facts §8.1 [derived]):
//   F = 6 * N_mm + 3 * L * s * n_h * (d_qk + d_v)                                   [causal]
//   N_mm  activated matmul parameters per token: every projection a token passes through, LM head
//         and MoE router included; input embedding (a lookup), norms and the router bias excluded.
//         6 = 2 FLOPs per multiply-add x (forward + backward's two products).
//         mla_moe per layer: q (wq_a dim*q_lora + wq_b q_lora*H*(nope+rope), or wq dim*H*(nope+rope)),
//           wkv_a dim*(kv_lora+rope), wkv_b kv_lora*H*(nope+v), wo H*v*dim; FFN dense 3*dim*inter,
//           MoE (n_activated + n_shared) * 3*dim*moe_inter + router n_routed*dim; + head vocab*dim.
//         gqa_dense per layer: wq dim*H*hd, wk+wv 2*dim*n_kv*hd, wo H*hd*dim, FFN 3*dim*inter
//           (SwiGLU); + head vocab*dim (Qwen2.5's QKV biases are not in the schema: ignored).
//   attention: QK^T and PV per token and layer, 2*ctx*H*(d_qk + d_v) forward, causal average context
//         s/2, x3 for forward + backward: 3 * s * H * (d_qk + d_v) per layer. MLA trains in the
//         naive (MHA) form: d_qk = nope + rope = 192, d_v = 128 for V3; GQA d_qk = d_v = head_dim.
//         Non-causal (full context): twice the attention term.
//   V3: 6 * 36,624,596,992 + 3*61*4096*128*320 = 219.748 + 30.702 = 250.45 (paper 250, G11)
//   V2: 6 * 20,850,769,920 + 3*60*4096*128*320 = 125.105 + 30.199 = 155.30 (paper 155, G12)
//   LLaMA-3.1-405B: 2422.49 + 50.73 = 2473.2, not the paper's 2448; half the attention term gives
//     2447.85 (v3-facts §8.1 prints 2447.86) -- a fit, not a stated method (UNCONFIRMED).
//   Qwen2.5-72B: 6 * N_mm alone is 428.75 > 394, so no 6N-style count of this architecture gives
//     the paper's 394 (which Qwen-72B the paper meant is not stated; v3-facts §12 item 2).
//
// Table 4 from a step time t (v3-facts §8.1, G19, G20):
//   tokens/step = seqs_per_step * seq_len = 15360 * 4096 = 62,914,560 (V3-TR §4.2)
//   tokens/day  = tokens/step * 86400 / t                    (MPFT t = 19.926 s: 272.80 B)
//   TFLOPS/GPU  = F * tokens/step / (gpus * t) / 1e12        (2048 H800; F causal or non-causal)
//   MFU         = TFLOPS / peak dense BF16 TFLOPS             (H800 989, hardware profile h800-sxm)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model_config.hpp"

namespace dsv3::netmodel {

// ISCA Table 2's sequence length (ISCA §2.2.1; V3-TR §4.2 pre-training sequence length 4K).
inline constexpr int64_t kIscaTrainSeqLen = 4096;

// Activated matmul parameters per token (N_mm above), both families.
int64_t matmul_params_per_token(const ModelConfig& m);

struct TrainFlopsPerToken {
  std::string id, name, family;
  int64_t seq_len = 0;
  int64_t matmul_params = 0;      // N_mm
  double matmul_gflops = 0;       // 6 * N_mm / 1e9
  double attention_gflops = 0;    // causal: 3 * L * s * H * (d_qk + d_v) / 1e9
  double total_gflops = 0;        // causal total (Table 2's convention where it reproduces)
  double noncausal_gflops = 0;    // matmul + 2 * attention
  double half_attention_gflops = 0;  // matmul + attention / 2 (the LLaMA fit, UNCONFIRMED)
  std::optional<double> paper_gflops;  // ISCA Table 2, when the model is in it
  std::string verdict;  // "reproduces", "does not reproduce: ..." or empty without a paper figure
};

// ISCA Table 2 (ISCA §2.2.1; v3-facts §8.1) by model id: V2 155, V3 250, Qwen 394, LLaMA 2448.
std::optional<double> isca_table2_gflops(const std::string& model_id);

// std::invalid_argument unless seq_len >= 1.
TrainFlopsPerToken train_flops_per_token(const ModelConfig& m, int64_t seq_len = kIscaTrainSeqLen);

// One training step's setup; defaults are V3's (V3-TR §4.2; ISCA Table 4, §5.1).
struct TrainStepInputs {
  std::string id = "given";  // "isca-table4-mpft", "isca-table4-mrft" or "given"
  double step_s = 19.926;    // seconds per step: ISCA Table 4, MPFT (MRFT 19.946) (v3-facts G20)
  int64_t gpus = 2048;       // H800 GPUs (V3-TR §3.1; ISCA)
  int64_t seqs_per_step = 15360;  // batch size in sequences (V3-TR §4.2, after the ramp-up)
  int64_t seq_len = kIscaTrainSeqLen;
  double peak_tflops = 989;  // dense BF16 peak per GPU: h800-sxm's dense_bf16_tflops
  void validate() const;     // std::invalid_argument naming the field
};

// ISCA Table 4's printed figures that v3-facts §8.1 / G20 confirm (the others are left empty).
struct IscaTable4Paper {
  double tokens_per_day_b = 0;           // billions
  std::optional<double> tflops_causal;   // 385 (MPFT)
  std::optional<double> tflops_noncausal;  // 432 (MPFT)
  std::optional<double> mfu_noncausal;     // 0.4373 (MPFT)
};

struct TrainStepFigures {
  TrainStepInputs in;
  double gflops_causal = 0, gflops_noncausal = 0;  // F used
  int64_t tokens_per_step = 0;
  double tokens_per_day = 0;
  double tflops_causal = 0, tflops_noncausal = 0;  // per GPU
  double mfu_causal = 0, mfu_noncausal = 0;        // fractions
  std::optional<IscaTable4Paper> paper;
};

// ISCA Table 4's two setups, MPFT (19.926 s) and MRFT (19.946 s), with the given peak.
std::vector<TrainStepInputs> isca_table4_cases(double peak_tflops = 989);
// Validates; F in GFLOPs per token (std::invalid_argument unless positive).
TrainStepFigures train_step_figures(const TrainStepInputs& in, double gflops_causal, double gflops_noncausal);

// Rows with "table": "gflops_per_token" (one per model) or "step" (one per step setup); keys in
// docs/netmodel.md ("train_cost" rows).
nlohmann::json train_cost_rows(const std::vector<TrainFlopsPerToken>& flops, const std::vector<TrainStepFigures>& steps);

}  // namespace dsv3::netmodel
