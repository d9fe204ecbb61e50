// MLA's latent KV cache: per token and layer the normalized latent kv_norm(c^KV) (512) and the
// roped shared key k^R (64), in pages of 64 tokens addressed through a block table
// (v3-facts §2.2, G33). Two storage formats:
//   bf16  576 BF16 values = 1152 bytes per token (model.py's kv_cache + pe_cache)
//   fp8   FlashMLA's FP8 latent cache (introduced with its V3.2 kernels; v3-facts §2.2, G32):
//         656 bytes per token = [512 E4M3 codes][4 FP32 scales, one per 128 latent values]
//         [64 BF16 RoPE values]. A scale is the power of two at or above amax / 448 (amax over
//         the 128 values, floored at 1e-4), so x / s is exact before the E4M3 rounding; the codes
//         are RNE with saturation (reference/fp8_quant.hpp's 1x128 quantizer, ue8m0 scales).
//         The power-of-two rule is that of public re-implementations of FlashMLA's quantizer
//         (not checked against FlashMLA's own test code here).
// Dequantized value: code * scale, in FP64 (exact).
#pragma once

#include <cstdint>
#include <vector>

#include "core/kv_cache.hpp"
#include "reference/mla.hpp"

namespace dsv3::mla {

// The FP8 token: [kLatent E4M3 codes][kScaleGroups FP32 scales][kRope BF16 values]; the size is the
// calculator's formula (core/kv_cache.hpp) at V3's dims.
constexpr int64_t kScaleGroups = kLatent / kFp8LatentScaleBlock;  // 4
constexpr int64_t kFp8ScalesAt = kLatent;                          // byte offset of the scales
constexpr int64_t kFp8RopeAt = kFp8ScalesAt + kScaleGroups * 4;    // byte offset of the RoPE values
constexpr int64_t kFp8TokenBytes = kFp8RopeAt + kRope * 2;         // 656
static_assert(kFp8TokenBytes == 656);

int64_t token_bytes(CacheFmt f);  // 1152 or 656
// One token's 576 values (BF16 values held as float) into the FP8 format (656 bytes).
void encode_fp8_token(const float* values, uint8_t* out);
// One stored token (either format) to FP64 (576 values).
void decode_token(CacheFmt f, const uint8_t* token, double* out);
// One token's 576 values stored in format f (BF16: RNE of each value; values are BF16 already).
void store_token(CacheFmt f, const float* values, uint8_t* token);
// NaN in every field of a stored token (BF16 NaN; E4M3 NaN codes, NaN scales, BF16 NaN RoPE).
void poison_token(CacheFmt f, uint8_t* token);

// A paged cache laid out as a decode case's inputs: the sequences' pages in a seeded random
// order among `spare` poisoned pages; table entries past a sequence's last page point at a
// poisoned page; tokens past a sequence's length are poisoned.
struct PagedLayout {
  int64_t pages = 0;                    // NB
  int64_t table_width = 0;              // max_blocks
  std::vector<int32_t> block_table;     // [B, table_width]
};
PagedLayout plan_pages(const std::vector<int64_t>& lens, int64_t table_width, int64_t spare, uint64_t seed);

}  // namespace dsv3::mla
