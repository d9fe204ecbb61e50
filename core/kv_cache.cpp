// KV-cache calculator; formulas and sources in kv_cache.hpp.
#include "core/kv_cache.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <utility>

namespace dsv3 {

const std::vector<int64_t>& kv_cache_default_contexts() {
  static const std::vector<int64_t> contexts{4096, 32768, 131072, 163840};  // sources in kv_cache.hpp
  return contexts;
}

double KvCacheFigures::fp8_latent_ratio_to_bf16() const {
  if (!fp8_latent_bytes_per_token || bf16_bytes_per_token == 0) return 0;
  return static_cast<double>(*fp8_latent_bytes_per_token) / static_cast<double>(bf16_bytes_per_token);
}

std::optional<int64_t> fp8_latent_bytes_per_token_per_layer(const ModelConfig& m, std::string* why) {
  auto na = [&](std::string reason) -> std::optional<int64_t> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (!m.is_mla_moe())
    return na(m.family + " (the format stores MLA's compressed latent; GQA caches full K and V)");
  if (m.kv_lora_rank % kFp8LatentScaleBlock != 0)
    return na("kv_lora_rank " + std::to_string(m.kv_lora_rank) + " is not a multiple of " +
              std::to_string(kFp8LatentScaleBlock) + " (one FP32 scale per " + std::to_string(kFp8LatentScaleBlock) +
              " latent values)");
  if (why) why->clear();
  // E4M3 latent (1 B each) + FP32 scales (4 B each) + BF16 RoPE key (2 B each): 512 + 16 + 128 for V3.
  return m.kv_lora_rank * 1 + (m.kv_lora_rank / kFp8LatentScaleBlock) * 4 + m.qk_rope_head_dim * 2;
}

int64_t kv_cache_sequence_bytes(int64_t bytes_per_token, int64_t context) {
  if (context < 1)
    throw std::invalid_argument("context length " + std::to_string(context) + " must be >= 1 token");
  if (bytes_per_token < 0)
    throw std::invalid_argument("bytes per token " + std::to_string(bytes_per_token) + " must be >= 0");
  if (bytes_per_token > 0 && context > std::numeric_limits<int64_t>::max() / bytes_per_token)
    throw std::invalid_argument("context length " + std::to_string(context) + " is too large: " +
                                std::to_string(bytes_per_token) + " B/token * context overflows int64");
  return bytes_per_token * context;
}

KvCacheTable kv_cache_table(const std::vector<ModelConfig>& models, const std::vector<int64_t>& contexts) {
  if (models.empty()) throw std::invalid_argument("kv_cache_table: no model configs given");
  if (contexts.empty()) throw std::invalid_argument("kv_cache_table: no context lengths given");
  KvCacheTable t;
  const auto base = std::find_if(models.begin(), models.end(), [](const ModelConfig& m) {
    return m.id == kKvCacheBaselineId;
  });
  const ModelConfig& baseline = base != models.end() ? *base : models.front();
  t.baseline = baseline.id;
  const int64_t base_bytes = baseline.kv_cache_bytes_per_token(2);

  int64_t largest = 0;
  for (const ModelConfig& m : models) {
    KvCacheFigures f;
    f.id = m.id;
    f.name = m.name;
    f.family = m.family;
    f.n_layers = m.n_layers;
    f.elems_per_token_per_layer = m.kv_cache_elems_per_token_per_layer();
    f.bf16_bytes_per_token_per_layer = f.elems_per_token_per_layer * 2;  // BF16: 2 bytes per element
    f.bf16_bytes_per_token = m.kv_cache_bytes_per_token(2);
    f.ratio_to_baseline = static_cast<double>(f.bf16_bytes_per_token) / static_cast<double>(base_bytes);
    f.fp8_latent_bytes_per_token_per_layer = fp8_latent_bytes_per_token_per_layer(m, &f.fp8_latent_na);
    if (f.fp8_latent_bytes_per_token_per_layer)
      f.fp8_latent_bytes_per_token = *f.fp8_latent_bytes_per_token_per_layer * m.n_layers;
    largest = std::max({largest, f.bf16_bytes_per_token, f.fp8_latent_bytes_per_token.value_or(0)});
    t.models.push_back(std::move(f));
  }
  for (int64_t c : contexts) (void)kv_cache_sequence_bytes(largest, c);  // throws on a bad one
  t.contexts = contexts;
  return t;
}

nlohmann::json kv_cache_rows(const KvCacheTable& t) {
  const auto base = std::find_if(t.models.begin(), t.models.end(),
                                 [&](const KvCacheFigures& f) { return f.id == t.baseline; });
  if (base == t.models.end())
    throw std::invalid_argument("kv_cache_rows: baseline '" + t.baseline + "' is not among the models");
  const double base_bytes = static_cast<double>(base->bf16_bytes_per_token);
  nlohmann::json rows = nlohmann::json::array();
  for (const KvCacheFigures& f : t.models) {
    auto add = [&](const char* format, int64_t per_layer, int64_t per_token) {
      for (int64_t c : t.contexts)
        rows.push_back({{"model", f.id},
                        {"name", f.name},
                        {"family", f.family},
                        {"format", format},
                        {"baseline", t.baseline},
                        {"n_layers", f.n_layers},
                        {"elems_per_token_per_layer", f.elems_per_token_per_layer},
                        {"bytes_per_token_per_layer", per_layer},
                        {"bytes_per_token", per_token},
                        {"ratio_to_baseline", static_cast<double>(per_token) / base_bytes},
                        {"ratio_to_bf16", static_cast<double>(per_token) / static_cast<double>(f.bf16_bytes_per_token)},
                        {"context", c},
                        {"bytes", kv_cache_sequence_bytes(per_token, c)}});
    };
    add("bf16", f.bf16_bytes_per_token_per_layer, f.bf16_bytes_per_token);
    if (f.fp8_latent_bytes_per_token)
      add("fp8_latent", *f.fp8_latent_bytes_per_token_per_layer, *f.fp8_latent_bytes_per_token);
  }
  return rows;
}

nlohmann::json kv_cache_study_rows(bool /*quick: the same rows, see kv_cache.hpp*/) {
  std::vector<ModelConfig> models;
  for (const std::string& id : list_models()) models.push_back(find_model(id));
  return kv_cache_rows(kv_cache_table(models));
}

}  // namespace dsv3
