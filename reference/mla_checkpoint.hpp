// One MLA layer's weights from a Hugging Face DeepSeek-V3 / V2 checkpoint (safetensors), so a
// vendor can run a real layer through the references:
//   model.layers.<L>.self_attn.q_a_proj.weight            [q_lora, dim]        (q_lora_rank > 0)
//   model.layers.<L>.self_attn.q_a_layernorm.weight       [q_lora]
//   model.layers.<L>.self_attn.q_b_proj.weight            [H (nope + rope), q_lora]
//   model.layers.<L>.self_attn.q_proj.weight              [H (nope + rope), dim]  (q_lora_rank = 0, V2-Lite)
//   model.layers.<L>.self_attn.kv_a_proj_with_mqa.weight  [kv_lora + rope, dim]
//   model.layers.<L>.self_attn.kv_a_layernorm.weight      [kv_lora]
//   model.layers.<L>.self_attn.kv_b_proj.weight           [H (nope + v), kv_lora]
//   model.layers.<L>.self_attn.o_proj.weight              [dim, H v]
// A projection stored as F8_E4M3 must come with "<name>_scale_inv" (FP32, one per 128x128 block)
// and is dequantized exactly (code * scale, in FP64); BF16 (or F32) weights are taken as stored.
// Every tensor's presence, dtype and shape is checked against the config's dims; errors name the
// file, the tensor and the config fields its shape follows from.
#pragma once

#include <filesystem>
#include <string>

#include "core/safetensors.hpp"
#include "reference/mla_layer.hpp"

namespace dsv3::mla {

std::string layer_tensor_name(int64_t layer, const std::string& module);  // "model.layers.3.self_attn.<module>.weight"

LayerWeights load_layer_weights(const SafetensorsFile& file, int64_t layer, const LayerDims& d);

// Writes `w` under those names (tests and examples): BF16, or the projections as FP8 with 128x128
// scales (reference/fp8_quant.hpp's quantizer) when `fp8`; norms are always BF16.
void write_layer_weights(const std::filesystem::path& path, int64_t layer, const LayerDims& d, const LayerWeights& w, bool fp8);

}  // namespace dsv3::mla
