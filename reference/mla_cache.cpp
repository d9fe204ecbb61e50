// The latent cache formats and page layout (reference/mla_cache.hpp).
#include "reference/mla_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/dtype.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::mla {

int64_t token_bytes(CacheFmt f) { return f == CacheFmt::bf16 ? kQk * 2 : kFp8TokenBytes; }

void encode_fp8_token(const float* values, uint8_t* out) {
  fp8::Params q;  // E4M3, divide convention (every convention agrees with power-of-two scales)
  q.scale_fmt = fp8::ScaleFmt::ue8m0;
  for (int64_t t = 0; t < kScaleGroups; ++t) {
    const float* v = values + t * kFp8LatentScaleBlock;
    float amax = 0;
    for (int64_t j = 0; j < kFp8LatentScaleBlock; ++j) amax = std::isnan(v[j]) || std::isnan(amax) ? NAN : std::max(amax, std::fabs(v[j]));
    const float s = fp8::tile_scale(amax, fp8::Elem::e4m3, fp8::ScaleFmt::ue8m0);
    for (int64_t j = 0; j < kFp8LatentScaleBlock; ++j) out[t * kFp8LatentScaleBlock + j] = fp8::quantize_element(v[j], s, amax, q);
    std::memcpy(out + kFp8ScalesAt + t * 4, &s, 4);
  }
  for (int64_t j = 0; j < kRope; ++j) {
    const uint16_t b = f32_to_bf16(values[kLatent + j]);
    std::memcpy(out + kFp8RopeAt + j * 2, &b, 2);
  }
}

void decode_token(CacheFmt f, const uint8_t* token, double* out) {
  if (f == CacheFmt::bf16) {
    for (int64_t j = 0; j < kQk; ++j) {
      uint16_t b;
      std::memcpy(&b, token + j * 2, 2);
      out[j] = bf16_to_f32(b);
    }
    return;
  }
  for (int64_t t = 0; t < kScaleGroups; ++t) {
    float s;
    std::memcpy(&s, token + kFp8ScalesAt + t * 4, 4);
    for (int64_t j = t * kFp8LatentScaleBlock; j < (t + 1) * kFp8LatentScaleBlock; ++j)
      out[j] = static_cast<double>(e4m3_to_f32(token[j])) * s;
  }
  for (int64_t j = 0; j < kRope; ++j) {
    uint16_t b;
    std::memcpy(&b, token + kFp8RopeAt + j * 2, 2);
    out[kLatent + j] = bf16_to_f32(b);
  }
}

void store_token(CacheFmt f, const float* values, uint8_t* token) {
  if (f == CacheFmt::fp8) return encode_fp8_token(values, token);
  for (int64_t j = 0; j < kQk; ++j) {
    const uint16_t b = f32_to_bf16(values[j]);
    std::memcpy(token + j * 2, &b, 2);
  }
}

void poison_token(CacheFmt f, uint8_t* token) {
  if (f == CacheFmt::bf16) {
    const uint16_t nan = 0x7fc0;
    for (int64_t j = 0; j < kQk; ++j) std::memcpy(token + j * 2, &nan, 2);
    return;
  }
  std::memset(token, 0x7f, kLatent);  // the E4M3 NaN code
  const float nan = NAN;
  for (int64_t t = 0; t < kScaleGroups; ++t) std::memcpy(token + kFp8ScalesAt + t * 4, &nan, 4);
  const uint16_t bnan = 0x7fc0;
  for (int64_t j = 0; j < kRope; ++j) std::memcpy(token + kFp8RopeAt + j * 2, &bnan, 2);
}

PagedLayout plan_pages(const std::vector<int64_t>& lens, int64_t table_width, int64_t spare, uint64_t seed) {
  PagedLayout l;
  l.table_width = table_width;
  int64_t used = 0;
  for (int64_t len : lens) used += (len + kPage - 1) / kPage;
  l.pages = used + std::max<int64_t>(spare, 1);  // at least one poisoned page for unused table entries
  std::vector<int32_t> order(static_cast<std::size_t>(l.pages));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next() % i]);  // Fisher-Yates
  const int32_t poisoned = order.back();  // never given to a sequence
  l.block_table.assign(lens.size() * static_cast<std::size_t>(table_width), poisoned);
  std::size_t next = 0;
  for (std::size_t b = 0; b < lens.size(); ++b)
    for (int64_t k = 0; k < (lens[b] + kPage - 1) / kPage; ++k)
      l.block_table[b * static_cast<std::size_t>(table_width) + static_cast<std::size_t>(k)] = order[next++];
  return l;
}

}  // namespace dsv3::mla
