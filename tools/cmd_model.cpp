// dsv3 model: model configs from datasets/models and the figures derived from them
// (parameter counts, v3-facts §1.3; KV-cache bytes per token, ISCA Table 1), and the hardware
// profiles from datasets/hardware.
#include <cstdio>

#include "core/hardware_profile.hpp"
#include "core/model_config.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

void add_model(CLI::App& app) {
  auto* cmd = app.add_subcommand("model", "Model configs (parameter counts, KV-cache bytes/token) and hardware profiles");
  auto ids = std::make_shared<std::vector<std::string>>();
  auto hardware = std::make_shared<bool>(false);
  cmd->add_option("ids", *ids, "Model ids (default: every file in datasets/models)");
  cmd->add_flag("--hardware", *hardware, "List the hardware profiles instead");
  cmd->callback([=] {
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
  });
}

}  // namespace dsv3::cli
