// dsv3 model: model configs from datasets/models and the figures derived from them
// (parameter counts, v3-facts §1.3; KV-cache bytes per token, ISCA Table 1), and the hardware
// profiles from datasets/hardware.
// dsv3 model kv-cache: the KV-cache calculator (core/kv_cache.hpp): per-token figures, ratios,
// BF16 vs FlashMLA's FP8 latent cache, and GiB per sequence at each context length.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "core/hardware_profile.hpp"
#include "core/json_file.hpp"
#include "core/kv_cache.hpp"
#include "core/model_config.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;  // GiB = 2^30 B; ISCA's KB = 1000 B (v3-facts §0)

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

void print_kv_cache(const KvCacheTable& t) {
  std::printf("KV cache per token, all layers (ISCA Table 1: BF16; KB = 1000 B)\n");
  std::printf("%-22s %-10s %15s %13s %9s %8s %14s %9s\n", "model", "family", "elems/tok/layer", "BF16 B/token",
              "BF16 KB", "x base", "FP8 lat B/tok", "FP8/BF16");
  for (const KvCacheFigures& f : t.models) {
    const bool fp8 = f.fp8_latent_bytes_per_token.has_value();
    std::printf("%-22s %-10s %15lld %13lld %9.3f %8.4f %14s %9s\n", f.id.c_str(), f.family.c_str(),
                static_cast<long long>(f.elems_per_token_per_layer), static_cast<long long>(f.bf16_bytes_per_token),
                static_cast<double>(f.bf16_bytes_per_token) / 1000.0, f.ratio_to_baseline,
                fp8 ? std::to_string(*f.fp8_latent_bytes_per_token).c_str() : "n/a",
                fp8 ? fixed(f.fp8_latent_ratio_to_bf16(), 4).c_str() : "n/a");
  }

  std::printf("\nCache of one sequence, GiB (2^30 B) at each context length (tokens)\n");
  std::printf("%-22s %-10s", "model", "format");
  for (int64_t c : t.contexts) std::printf(" %10lld", static_cast<long long>(c));
  std::printf("\n");
  for (const KvCacheFigures& f : t.models) {
    auto line = [&](const char* format, int64_t per_token) {
      std::printf("%-22s %-10s", f.id.c_str(), format);
      for (int64_t c : t.contexts)
        std::printf(" %10.3f", static_cast<double>(kv_cache_sequence_bytes(per_token, c)) / kGiB);
      std::printf("\n");
    };
    line("bf16", f.bf16_bytes_per_token);
    if (f.fp8_latent_bytes_per_token) line("fp8_latent", *f.fp8_latent_bytes_per_token);
  }

  std::printf("\nelems/tok/layer: MLA kv_lora_rank + qk_rope_head_dim (latent + roped key); GQA 2 * n_kv_heads * head_dim.\n");
  std::printf("x base: BF16 bytes/token / %s's (ISCA Table 1's 1x is DeepSeek-V3).\n", t.baseline.c_str());
  std::printf("FP8 lat: FlashMLA's FP8 latent cache (V3.2 kernels, not V3's own): per layer kv_lora_rank E4M3 B +\n"
              "  one FP32 scale per %lld + qk_rope_head_dim BF16 values (V3: 512 + 16 + 128 = 656 B; v3-facts §2.2, G32).\n",
              static_cast<long long>(kFp8LatentScaleBlock));
  std::map<std::string, std::string> na;  // reason -> the ids it applies to
  for (const KvCacheFigures& f : t.models)
    if (!f.fp8_latent_na.empty()) na[f.fp8_latent_na] += (na[f.fp8_latent_na].empty() ? "" : ", ") + f.id;
  for (const auto& [why, models] : na) std::printf("  n/a for %s: %s.\n", models.c_str(), why.c_str());
  std::printf("Note: ISCA Table 1 prints 7.28x for LLaMA-3.1 405B, which does not follow from its own byte values:\n"
              "  516.096 KB / 70.272 KB = 7.344x (v3-facts §2.3, §12 item 1).\n");
}

void add_kv_cache(CLI::App& model) {
  auto* cmd = model.add_subcommand("kv-cache",
                                   "KV-cache calculator: bytes per token (ISCA Table 1) and per sequence, BF16 vs FP8 latent");
  cmd->footer(
      "Per model: cached elements per token per layer, BF16 bytes per token over all layers (KB = 1000 B),\n"
      "the ratio to DeepSeek-V3 (ISCA's 1x; the first model given when V3 is not among them), FlashMLA's\n"
      "FP8 latent cache (MLA only; n/a with the reason otherwise) and its ratio to BF16, then the GiB of one\n"
      "sequence at each context length. Formulas and sources: core/kv_cache.hpp.\n\n"
      "Examples:\n"
      "  dsv3 model kv-cache                          every config, contexts 4096 32768 131072 163840\n"
      "  dsv3 model kv-cache deepseek-v3-671b qwen2.5-72b --context 8192 1000000 --json kv.json");
  auto ids = std::make_shared<std::vector<std::string>>();
  auto contexts = std::make_shared<std::vector<int64_t>>();
  auto json_out = std::make_shared<std::string>();
  cmd->add_option("ids", *ids, "Model ids (default: every file in datasets/models); put them before --context");
  cmd->add_option("--context", *contexts,
                  "Context lengths in tokens, >= 1 (several after one --context, comma-separated or repeated; "
                  "default: 4096 32768 131072 163840)")
      ->delimiter(',');
  cmd->add_option("--json", *json_out,
                  "Also write the rows (one per model, format and context; docs/bundle-schema.md \"kv_cache\") "
                  "to this JSON file, atomically");
  cmd->callback([=] {
    std::vector<ModelConfig> models;  // all loaded first: a bad id fails before any output
    for (const auto& id : ids->empty() ? list_models() : *ids) models.push_back(find_model(id));
    const KvCacheTable t = contexts->empty() ? kv_cache_table(models) : kv_cache_table(models, *contexts);
    print_kv_cache(t);
    if (!json_out->empty()) {
      write_json_atomic(*json_out, kv_cache_rows(t));
      std::cerr << "model kv-cache: wrote " << *json_out << "\n";
    }
  });
}

}  // namespace

void add_model(CLI::App& app) {
  auto* cmd = app.add_subcommand("model", "Model configs (parameter counts, KV-cache bytes/token) and hardware profiles");
  auto ids = std::make_shared<std::vector<std::string>>();
  auto hardware = std::make_shared<bool>(false);
  cmd->add_option("ids", *ids, "Model ids (default: every file in datasets/models)");
  cmd->add_flag("--hardware", *hardware, "List the hardware profiles instead");
  add_kv_cache(*cmd);
  add_model_netmodel(*cmd);
  add_model_node_limit(*cmd);
  add_model_pipeline(*cmd);
  cmd->callback([=] {
    if (!cmd->get_subcommands().empty()) return;  // a subcommand (kv-cache, decode-limit, ...) ran instead
    if (*hardware) {
      std::printf("%-14s %-34s %5s %9s %10s %10s %10s %8s %6s\n", "id", "name", "SMs", "mem GiB", "HBM GB/s",
                  "BF16 TF/s", "FP8 TF/s", "NVL GB/s", "NIC Gb");
      for (const auto& id : list_hardware()) {
        const HardwareProfile h = find_hardware(id);
        std::printf("%-14s %-34s %5lld %9.0f %10.0f %10.0f %10.0f %8.0f %6.0f\n", h.id.c_str(), h.name.c_str(),
                    static_cast<long long>(h.sms), h.memory_gib, h.memory_bandwidth_gbs, h.dense_bf16_tflops,
                    h.dense_fp8_tflops, h.nvlink_bandwidth_gbs, h.nic_gbps);
      }
      return;
    }
    std::vector<ModelConfig> models;  // all loaded first: a bad id fails before any output
    for (const auto& id : ids->empty() ? list_models() : *ids) models.push_back(find_model(id));
    std::printf("%-22s %-10s %6s %6s %18s %18s %14s\n", "id", "family", "dim", "layers", "total params",
                "activated params", "KV B/token");
    for (const ModelConfig& m : models) {
      const bool moe = m.is_mla_moe();
      std::printf("%-22s %-10s %6lld %6lld %18s %18s %14lld\n", m.id.c_str(), m.family.c_str(),
                  static_cast<long long>(m.dim), static_cast<long long>(m.n_layers),
                  moe ? std::to_string(m.total_params()).c_str() : "n/a",
                  moe ? std::to_string(m.activated_params()).c_str() : "n/a",
                  static_cast<long long>(m.kv_cache_bytes_per_token(2)));
    }
    std::printf("\nKV bytes per token: BF16 cache, all layers (MLA: (kv_lora_rank + rope dim) * layers * 2; GQA: 2 * kv heads * head dim * layers * 2).\n");
    std::printf("Per sequence, ratios and the FP8 latent cache: dsv3 model kv-cache.\n");
  });
}

}  // namespace dsv3::cli
