// KV-cache calculator: cache bytes per token and per sequence for every model config, from the
// configs alone (`dsv3 model kv-cache`, bundle study "kv_cache"). Reproduces ISCA Table 1.
//
//   elements per token per layer  MLA kv_lora_rank + qk_rope_head_dim (576 for V3, G1: the
//                                 normalized latent and the roped key, v3-facts §2.2);
//                                 GQA 2 * n_kv_heads * head_dim (K and V, v3-facts §2.3)
//   BF16 bytes per token          elements * n_layers * 2 (ISCA Table 1's convention, "BF16
//                                 precision"; V3 70,272 = 70.272 KB with KB = 1000 B, G2, v3-facts §0)
//   ratio to baseline             BF16 bytes / the baseline model's BF16 bytes; the baseline is
//                                 DeepSeek-V3 (ISCA's 1x) when it is among the models, else the first
//                                 (Qwen2.5-72B 4.6630, LLaMA-3.1-405B 7.3443, G5; ISCA prints 7.28x,
//                                 which its own byte values do not give, v3-facts §12 item 1)
//   FP8 latent bytes per token    FlashMLA's FP8 cache (introduced with V3.2's sparse kernels, not
//                                 V3's own): per layer kv_lora_rank E4M3 bytes + one FP32 scale per 128
//                                 latent values + qk_rope_head_dim BF16 values = 512 + 16 + 128 = 656 B
//                                 for V3 (FlashMLA README; v3-facts §2.2, G32), times n_layers.
//                                 Not applicable ("n/a" with the reason, never an error) to GQA models
//                                 and to MLA configs whose kv_lora_rank is not a multiple of 128.
//   bytes of one sequence         bytes per token * context length, exactly (no rounding up to
//                                 FlashMLA's 64-token pages, G33).
// Contexts must be >= 1 and small enough for the byte count to fit in int64; otherwise
// std::invalid_argument naming the value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model_config.hpp"

namespace dsv3 {

// One FP32 scale per this many E4M3 latent values in FlashMLA's FP8 cache (FlashMLA README;
// v3-facts §2.2, G32: 4 scales for V3's 512).
inline constexpr int64_t kFp8LatentScaleBlock = 128;
// The baseline of the ratios when present: ISCA Table 1's 1x (v3-facts §2.3).
inline constexpr const char* kKvCacheBaselineId = "deepseek-v3-671b";

// Default context lengths: 4096 (V3 pre-training), 32768 and 131072 (V3's two context-extension
// phases, 4K -> 32K -> 128K; V3-TR §4.3, v3-facts §1.2) and 163840 (max_position_embeddings,
// 160K; HF config [UNCONFIRMED-secondary], V2 §3.1.4's YaRN target; v3-facts §1.2).
const std::vector<int64_t>& kv_cache_default_contexts();

// The per-token figures of one model.
struct KvCacheFigures {
  std::string id, name, family;
  int64_t n_layers = 0;
  int64_t elems_per_token_per_layer = 0;       // 576 for V3
  int64_t bf16_bytes_per_token_per_layer = 0;  // 1152 for V3
  int64_t bf16_bytes_per_token = 0;            // all layers: 70,272 for V3
  double ratio_to_baseline = 0;                // bf16_bytes_per_token / the baseline's
  // FlashMLA's FP8 latent cache; empty with fp8_latent_na saying why when not applicable.
  std::optional<int64_t> fp8_latent_bytes_per_token_per_layer;  // 656 for V3
  std::optional<int64_t> fp8_latent_bytes_per_token;            // all layers: 40,016 for V3
  std::string fp8_latent_na;
  // FP8 latent / BF16 bytes (656 / 1152 for V3); meaningful only with the FP8 figures.
  double fp8_latent_ratio_to_bf16() const;
};

struct KvCacheTable {
  std::string baseline;           // id of the model every ratio_to_baseline divides by
  std::vector<int64_t> contexts;  // validated, in the order given
  std::vector<KvCacheFigures> models;
};

// Per layer: kv_lora_rank E4M3 + kv_lora_rank/128 FP32 scales + qk_rope_head_dim BF16 bytes, or
// nullopt with `why` set (GQA model; kv_lora_rank not a multiple of 128).
std::optional<int64_t> fp8_latent_bytes_per_token_per_layer(const ModelConfig& m, std::string* why = nullptr);

// Throws std::invalid_argument unless context >= 1 and bytes_per_token * context fits in int64.
int64_t kv_cache_sequence_bytes(int64_t bytes_per_token, int64_t context);

// Figures for `models` (at least one); contexts checked as kv_cache_sequence_bytes does, against
// the largest per-token size (at least one context).
KvCacheTable kv_cache_table(const std::vector<ModelConfig>& models,
                            const std::vector<int64_t>& contexts = kv_cache_default_contexts());

// Flat rows, one per (model, format, context): format "bf16" for every model, "fp8_latent" for the
// models that have it. Keys: model, name, family, format, baseline, n_layers,
// elems_per_token_per_layer, bytes_per_token_per_layer, bytes_per_token, ratio_to_baseline (this
// format's bytes_per_token / the baseline's BF16 bytes_per_token), ratio_to_bf16 (this format / the
// model's BF16; 1 for bf16 rows), context, bytes (one sequence). docs/bundle-schema.md "kv_cache".
nlohmann::json kv_cache_rows(const KvCacheTable& table);

// The bundle study "kv_cache": kv_cache_rows over every config in datasets/models and the default
// contexts. `quick` changes nothing (the study is arithmetic on the configs).
nlohmann::json kv_cache_study_rows(bool quick);

}  // namespace dsv3
