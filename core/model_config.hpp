// Model architecture configs (datasets/models/<id>.json; schema in datasets/README.md) and the
// quantities derived from them: KV-cache bytes per token and parameter counts.
//
// Parameter counts (mla_moe only) follow model.py's module list, reproducing v3-facts §1.3:
//   attention  q_lora_rank > 0: wq_a dim*q_lora + q_norm q_lora + wq_b q_lora*H*(nope+rope)
//              q_lora_rank = 0: wq dim*H*(nope+rope)
//              + wkv_a dim*(kv_lora+rope) + kv_norm kv_lora + wkv_b kv_lora*H*(nope+v) + wo H*v*dim
//   FFN        dense 3*dim*inter_dim; MoE (routed + shared) * 3*dim*moe_inter_dim + gate n_routed*dim
//              + router bias n_routed when has_router_bias() (V3's e_score_correction_bias:
//              Hugging Face creates it for topk_method noaux_tc, a sigmoid gate; model.py keys it
//              on dim == 7168, which is the same set of released models)
//   per layer  + 2 RMSNorms (2*dim); model + final norm dim + embedding and head vocab*dim each.
// Activated counts keep n_activated + n_shared experts per MoE layer (gate and bias included).
// MTP modules are not in total_params(); mtp_params() counts them (each: one MoE block + eh_proj
// 2*dim*dim + 3 norms, sharing the main model's embedding and head; v3-facts §1.3).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace dsv3 {

struct ModelConfig {
  std::filesystem::path source;  // file it was loaded from

  // Both families.
  std::string id;
  std::string name;
  std::string family;  // "mla_moe" | "gqa_dense"
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t vocab_size = 0;
  int64_t inter_dim = 0;
  std::string dtype;  // "fp8" | "bf16": released checkpoint weights
  double rope_theta = 0;
  double rms_norm_eps = 0;

  // mla_moe only (0 / empty for gqa_dense).
  int64_t n_dense_layers = 0;
  int64_t q_lora_rank = 0;  // 0 = plain wq (V2-Lite)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t moe_inter_dim = 0;
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t n_activated_experts = 0;
  int64_t n_expert_groups = 0;
  int64_t n_limited_groups = 0;
  double route_scale = 0;
  std::string score_func;  // "sigmoid" | "softmax"
  // Hugging Face's topk_method: "noaux_tc" (V3: sigmoid gate with the selection bias, groups
  // scored by their top-2 sum), "group_limited_greedy" (V2-236B: groups scored by their max),
  // "greedy" (V2-Lite: one plain top-k, no groups). Optional in the file; absent = "greedy".
  std::string topk_method;
  int64_t mtp_depth = 0;

  // gqa_dense only (0 for mla_moe).
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;

  // field (or group of fields) -> source; string values only ("notes" included).
  std::map<std::string, std::string> sources;

  bool is_mla_moe() const { return family == "mla_moe"; }
  bool is_gqa_dense() const { return family == "gqa_dense"; }
  int64_t n_moe_layers() const { return is_mla_moe() ? n_layers - n_dense_layers : 0; }
  // V3's e_score_correction_bias: Hugging Face's rule, scoring_func sigmoid with topk_method
  // noaux_tc (not model.py's dim == 7168 shortcut).
  bool has_router_bias() const { return is_mla_moe() && score_func == "sigmoid" && topk_method == "noaux_tc"; }

  // Elements cached per token per layer: MLA kv_lora_rank + qk_rope_head_dim (576 for V3);
  // GQA 2 * n_kv_heads * head_dim.
  int64_t kv_cache_elems_per_token_per_layer() const;
  // All layers, `bytes_per_elem` bytes each (2 = BF16, the ISCA Table 1 convention).
  int64_t kv_cache_bytes_per_token(int bytes_per_elem = 2) const;

  // Parameter counts of the main model (no MTP). mla_moe only: throw std::invalid_argument for
  // gqa_dense (the schema lacks biases etc. needed for an exact count).
  int64_t attention_params_per_layer() const;
  int64_t dense_ffn_params() const;  // 3 * dim * inter_dim
  int64_t expert_params() const;     // 3 * dim * moe_inter_dim
  int64_t moe_ffn_params(bool activated_only) const;
  int64_t total_params() const;
  int64_t activated_params() const;
  int64_t mtp_params() const;  // mtp_depth modules, without the shared embedding and head
};

// Loads and validates one file; InputError("<file>: <field>: <problem>") on any problem.
ModelConfig load_model_config(const std::filesystem::path& path);
// datasets_dir()/models/<id>.json; the error lists the available ids. Checks id == file stem.
ModelConfig find_model(const std::string& id);
// Sorted ids of datasets_dir()/models/*.json.
std::vector<std::string> list_models();

}  // namespace dsv3
