// safetensors files: read, write, and the FP8 block-scaled weights of DeepSeek-V3 checkpoints.
//
// Format: 8-byte little-endian header length N, N bytes of JSON header
//   {"<tensor>": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string>"}}
// then the data section; offsets are relative to the start of the data section.
// dtype names: BF16 F16 F32 F8_E4M3 F8_E5M2 F8_E8M0 (ue8m0) I32 U8 U16. Other safetensors dtypes
// (F64, I64, BOOL, ...) are rejected with an InputError naming them.
//
// The reader validates everything it is given (header length, JSON, fields, dtypes, shapes,
// offsets, sizes, overlaps) and throws InputError("<file>: <problem>"); gaps between tensors and
// trailing bytes are tolerated. The writer lays tensors out contiguously in the order given and pads
// the header with spaces to a multiple of 8 bytes, so the data section is 8-byte aligned.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_file.hpp"
#include "core/tensor.hpp"

namespace dsv3 {

struct SafetensorsFile {
  std::filesystem::path path;                    // where it was read from (for error messages)
  std::map<std::string, std::string> metadata;   // "__metadata__"
  std::vector<Tensor> tensors;                   // in data-section order

  const Tensor* find(const std::string& name) const;  // nullptr when absent
  const Tensor& get(const std::string& name) const;   // throws InputError naming file and tensor
};

// safetensors dtype name <-> DType. from_name returns nullopt for names this suite does not hold.
std::string_view safetensors_dtype_name(DType t);
std::optional<DType> safetensors_dtype_from_name(std::string_view name);

SafetensorsFile read_safetensors(const std::filesystem::path& path);
// The same, holding only the tensors `keep` accepts: the whole header is still validated, but the
// data of the others is never read (a few layers of a checkpoint whose shards do not fit in memory).
SafetensorsFile read_safetensors(const std::filesystem::path& path, const std::function<bool(const std::string&)>& keep);

// Atomic (temporary file + rename). Tensor names are Tensor::name(); they must be unique, non-empty
// and not "__metadata__" (InputError otherwise).
void write_safetensors(const std::filesystem::path& path, const std::vector<const Tensor*>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// DeepSeek-V3 FP8 linear weight: E4M3 codes with one float32 inverse scale per 128x128 block
// (dequantized w = code * scale_inv[n / 128][k / 128]; V3-TR §3.3.2, model.py `Linear`).
constexpr int64_t kFp8WeightBlock = 128;

struct Fp8Weight {
  Tensor weight;     // e4m3 [N, K]
  Tensor scale_inv;  // f32 [ceil(N/128), ceil(K/128)]
};

// Finds "<name>" and "<name>_scale_inv" (checkpoint naming: "...kv_a_proj_with_mqa.weight" and
// "...kv_a_proj_with_mqa.weight_scale_inv") and checks dtypes and the scale shape.
Fp8Weight get_fp8_weight(const SafetensorsFile& file, const std::string& name);

}  // namespace dsv3
