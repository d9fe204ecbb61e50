// Training GFLOPs per token and Table 4 figures; formulas and sources in netmodel_train_cost.hpp.
#include "reference/netmodel_train_cost.hpp"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace dsv3::netmodel {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

void require_positive(double v, const char* field) {
  if (!(v > 0) || !std::isfinite(v))
    throw std::invalid_argument(std::string(field) + " must be positive and finite, got " + nlohmann::json(v).dump());
}

void require_positive(int64_t v, const char* field) {
  if (v <= 0) throw std::invalid_argument(std::string(field) + " must be positive, got " + std::to_string(v));
}

// Table 2 prints whole GFLOPs: a figure reproduces when it rounds to the printed one.
constexpr double kTable2Rounding = 0.5;

}  // namespace

int64_t matmul_params_per_token(const ModelConfig& m) {
  const int64_t head = m.vocab_size * m.dim;  // LM head; the input embedding is a lookup (no FLOPs)
  if (m.is_gqa_dense()) {
    const int64_t q = m.dim * m.n_heads * m.head_dim;
    const int64_t kv = 2 * m.dim * m.n_kv_heads * m.head_dim;
    const int64_t o = m.n_heads * m.head_dim * m.dim;
    const int64_t ffn = 3 * m.dim * m.inter_dim;  // SwiGLU: gate, up, down
    return m.n_layers * (q + kv + o + ffn) + head;
  }
  const int64_t qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim;
  const int64_t q = m.q_lora_rank > 0 ? m.dim * m.q_lora_rank + m.q_lora_rank * m.n_heads * qk_head  // wq_a, wq_b
                                      : m.dim * m.n_heads * qk_head;                                   // wq
  const int64_t kv = m.dim * (m.kv_lora_rank + m.qk_rope_head_dim) +                    // wkv_a
                     m.kv_lora_rank * m.n_heads * (m.qk_nope_head_dim + m.v_head_dim);  // wkv_b
  const int64_t o = m.n_heads * m.v_head_dim * m.dim;                                    // wo
  const int64_t dense_ffn = 3 * m.dim * m.inter_dim;
  const int64_t moe_ffn = (m.n_activated_experts + m.n_shared_experts) * 3 * m.dim * m.moe_inter_dim +
                          m.n_routed_experts * m.dim;  // activated experts + router (gate) projection
  return m.n_layers * (q + kv + o) + m.n_dense_layers * dense_ffn + m.n_moe_layers() * moe_ffn + head;
}

std::optional<double> isca_table2_gflops(const std::string& id) {
  // ISCA Table 2 (§2.2.1), "GFLOPS/Token" meaning GFLOPs per token (v3-facts §8.1).
  if (id == "deepseek-v2-236b") return 155;
  if (id == "deepseek-v3-671b") return 250;
  if (id == "qwen2.5-72b") return 394;  // the table says "Qwen-72B Dense"
  if (id == "llama-3.1-405b") return 2448;
  return std::nullopt;
}

TrainFlopsPerToken train_flops_per_token(const ModelConfig& m, int64_t seq_len) {
  require_positive(seq_len, "seq_len");
  TrainFlopsPerToken f;
  f.id = m.id;
  f.name = m.name;
  f.family = m.family;
  f.seq_len = seq_len;
  f.matmul_params = matmul_params_per_token(m);
  const int64_t d_qk = m.is_mla_moe() ? m.qk_nope_head_dim + m.qk_rope_head_dim : m.head_dim;
  const int64_t d_v = m.is_mla_moe() ? m.v_head_dim : m.head_dim;
  f.matmul_gflops = 6.0 * static_cast<double>(f.matmul_params) / 1e9;
  f.attention_gflops = 3.0 * static_cast<double>(m.n_layers) * static_cast<double>(seq_len) *
                       static_cast<double>(m.n_heads) * static_cast<double>(d_qk + d_v) / 1e9;
  f.total_gflops = f.matmul_gflops + f.attention_gflops;
  f.noncausal_gflops = f.matmul_gflops + 2 * f.attention_gflops;
  f.half_attention_gflops = f.matmul_gflops + f.attention_gflops / 2;
  f.paper_gflops = seq_len == kIscaTrainSeqLen ? isca_table2_gflops(m.id) : std::nullopt;
  if (!f.paper_gflops) return f;
  const double paper = *f.paper_gflops;
  if (std::fabs(f.total_gflops - paper) <= kTable2Rounding) {
    f.verdict = "reproduces (" + fmt("%.2f", f.total_gflops) + " prints as " + fmt("%.0f", paper) + ")";
  } else if (f.matmul_gflops > paper) {
    f.verdict = "does not reproduce: 6 x N_mm alone is " + fmt("%.2f", f.matmul_gflops) + " > " + fmt("%.0f", paper) +
                ", so no 6N-style count of this architecture gives the paper's figure (it implies N = " +
                fmt("%.1f", paper / 6) + " B); which model and method the paper used is not stated";
  } else if (std::fabs(f.half_attention_gflops - paper) <= kTable2Rounding) {
    f.verdict = "does not reproduce: causal formula gives " + fmt("%.2f", f.total_gflops) + " (" +
                fmt("%+.1f", (f.total_gflops / paper - 1) * 100) + " %); half the causal attention term gives " +
                fmt("%.2f", f.half_attention_gflops) + " = the paper's figure, a fit, not a stated method";
  } else {
    f.verdict = "does not reproduce: formula gives " + fmt("%.2f", f.total_gflops) + " (" +
                fmt("%+.1f", (f.total_gflops / paper - 1) * 100) + " %)";
  }
  return f;
}

void TrainStepInputs::validate() const {
  require_positive(step_s, "step_s");
  require_positive(gpus, "gpus");
  require_positive(seqs_per_step, "seqs_per_step");
  require_positive(seq_len, "seq_len");
  require_positive(peak_tflops, "peak_tflops");
}

std::vector<TrainStepInputs> isca_table4_cases(double peak_tflops) {
  TrainStepInputs mpft, mrft;
  mpft.id = "isca-table4-mpft";  // multi-plane fat-tree, 19.926 s per step
  mrft.id = "isca-table4-mrft";  // multi-rail fat-tree, 19.946 s per step
  mrft.step_s = 19.946;
  mpft.peak_tflops = mrft.peak_tflops = peak_tflops;
  return {mpft, mrft};
}

TrainStepFigures train_step_figures(const TrainStepInputs& in, double gflops_causal, double gflops_noncausal) {
  in.validate();
  require_positive(gflops_causal, "gflops_causal");
  require_positive(gflops_noncausal, "gflops_noncausal");
  TrainStepFigures r;
  r.in = in;
  r.gflops_causal = gflops_causal;
  r.gflops_noncausal = gflops_noncausal;
  r.tokens_per_step = in.seqs_per_step * in.seq_len;  // 62,914,560 (G19)
  const double tokens = static_cast<double>(r.tokens_per_step);
  r.tokens_per_day = tokens * 86400.0 / in.step_s;  // 272.80e9 at 19.926 s (G20)
  const double gpu_seconds = static_cast<double>(in.gpus) * in.step_s;
  r.tflops_causal = gflops_causal * 1e9 * tokens / gpu_seconds / 1e12;
  r.tflops_noncausal = gflops_noncausal * 1e9 * tokens / gpu_seconds / 1e12;
  r.mfu_causal = r.tflops_causal / in.peak_tflops;
  r.mfu_noncausal = r.tflops_noncausal / in.peak_tflops;
  // ISCA Table 4 as confirmed by v3-facts §8.1 and G20; only for the paper's setup.
  const TrainStepInputs v3;
  if (in.gpus != v3.gpus || in.seqs_per_step != v3.seqs_per_step || in.seq_len != v3.seq_len) return r;
  if (in.id == "isca-table4-mpft") r.paper = IscaTable4Paper{272.80, 385, 432, 0.4373};
  if (in.id == "isca-table4-mrft") r.paper = IscaTable4Paper{272.52, std::nullopt, std::nullopt, std::nullopt};
  return r;
}

nlohmann::json train_cost_rows(const std::vector<TrainFlopsPerToken>& flops, const std::vector<TrainStepFigures>& steps) {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& f : flops)
    rows.push_back({{"table", "gflops_per_token"},
                    {"model", f.id},
                    {"name", f.name},
                    {"family", f.family},
                    {"seq_len", f.seq_len},
                    {"matmul_params", f.matmul_params},
                    {"matmul_gflops", f.matmul_gflops},
                    {"attention_gflops", f.attention_gflops},
                    {"gflops", f.total_gflops},
                    {"noncausal_gflops", f.noncausal_gflops},
                    {"half_attention_gflops", f.half_attention_gflops},
                    {"paper_gflops", opt(f.paper_gflops)},
                    {"verdict", f.verdict}});
  for (const auto& s : steps) {
    nlohmann::json paper = nullptr;
    if (s.paper)
      paper = {{"tokens_per_day_b", s.paper->tokens_per_day_b},
               {"tflops_causal", opt(s.paper->tflops_causal)},
               {"tflops_noncausal", opt(s.paper->tflops_noncausal)},
               {"mfu_noncausal", opt(s.paper->mfu_noncausal)}};
    rows.push_back({{"table", "step"},
                    {"case", s.in.id},
                    {"step_s", s.in.step_s},
                    {"gpus", s.in.gpus},
                    {"seqs_per_step", s.in.seqs_per_step},
                    {"seq_len", s.in.seq_len},
                    {"peak_tflops", s.in.peak_tflops},
                    {"gflops_causal", s.gflops_causal},
                    {"gflops_noncausal", s.gflops_noncausal},
                    {"tokens_per_step", s.tokens_per_step},
                    {"tokens_per_day", s.tokens_per_day},
                    {"tflops_causal", s.tflops_causal},
                    {"tflops_noncausal", s.tflops_noncausal},
                    {"mfu_causal", s.mfu_causal},
                    {"mfu_noncausal", s.mfu_noncausal},
                    {"paper", paper}});
  }
  return rows;
}

}  // namespace dsv3::netmodel
