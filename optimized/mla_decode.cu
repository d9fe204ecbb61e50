// MLA decode on the GPU (variant "mla/decode"): absorbed attention (MQA form) over the paged latent
// cache, as reference/mla.hpp defines it. EXPERIMENTAL: compiled, never run on a GPU yet; the
// gpu tests (GpuCheck_mla_decode) and the bench rows on a lent device are what will show it works.
//
// Three kernels per call, all on the default stream, no host synchronisation (CUDA-graph friendly):
//   plan_splits   one block: the split-KV plan of optimized/mla_decode_plan.hpp from the device
//                 seqlens (items of at most `size` pages, about one wave of CTAs: kCtaWaves), the
//                 items (sequence, page range, split index) and each sequence's split count and
//                 offset; at most B + target items, the bound the host sizes the grid by.
//   decode_split  one CTA per (item, block of 64 query rows); rows are (query i, head h) as i * H + h,
//                 so s_q = 2 with 128 heads is 4 row blocks. Eight warps: warp w owns rows
//                 16 (w % 4) .. +16; for S = Q K^T its 32 keys are 32 (w / 4) .. +32 of the page, for
//                 O += P V its 256 latent columns 256 (w / 4) .. +256. Per 64-token page:
//                   S    mma.sync m16n8k16 BF16 -> FP32 over K = 576 (Q and the page in shared memory,
//                        ldmatrix), scaled by V3's softmax scale in FP32, -Inf past a row's causal limit
//                   max  row max over the pair of warps sharing the rows (shared memory)
//                   P    exp(s - max) in FP32; the running sum in FP32; P rounded to BF16 into shared
//                        memory (the pair's halves joined)
//                   O    rescaled, += P V with V = the page's first 512 columns (ldmatrix.trans)
//                 One split: out (BF16) and lse written directly. Several: O / l and the partial
//                 lse (-Inf when the split saw no key) in FP32 scratch.
//   combine       one warp per (sequence, row) of a sequence with several splits: the log-sum-exp
//                 merge, out rounded to BF16 once.
// Pages: the BF16 cache is copied with cp.async (16 B, zero-filled past the sequence's length, so
// NaN-poisoned tails never reach the products) into two swizzled buffers, the next page in flight
// while the current one is computed. The FP8 cache (656 B tokens) is copied raw with cp.async into
// a staging buffer, the next page in flight while the current one is computed, then dequantized
// into the BF16 page buffer: code * scale in FP32, rounded to BF16, which is exact for the cache's
// power-of-two scales (reference/mla_cache.hpp), so both cache formats run the same products.
// Why mma.sync and not wgmma: the softmax needs the scores in registers between the two products
// and the per-row statistics shared across warps; mma.sync keeps that in plain registers with
// documented fragment layouts (optimized/mma_sm80.cuh) and runs on sm_80 too. wgmma (FlashMLA's
// choice) issues larger asynchronous tiles and is the step after this version has run.
// Shared memory: Q 64 x 576 BF16 (72 KiB), page buffers (2 x 72 KiB, or 72 KiB + 41 KiB staging
// for FP8), P 64 x 64 BF16, row statistics: 225 KiB (BF16) / 194 KiB (FP8), one CTA per SM.
// Rows of 576 BF16 are 72 chunks of 16 B; chunk c of row r is stored at c ^ (r % 8), so the eight
// rows an ldmatrix reads hit eight different bank groups.
//
// Versions (the llm.c-style record; figures are GPU bench rows once measured):
//   v1  this file. Not yet run: no figures.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "optimized/device_io.hpp"
#include "optimized/mla_decode_plan.hpp"
#include "optimized/mma_sm80.cuh"
#include "reference/mla.hpp"
#include "reference/mla_cache.hpp"

namespace dsv3::mla {
namespace {

using gpu::cp_async16;
using gpu::cp_async_commit;
using gpu::cp_async_wait;
using gpu::ldmatrix_x4;
using gpu::ldmatrix_x4_trans;
using gpu::mma_bf16_16816;

constexpr int kThreads = 256;       // 8 warps
constexpr int kRows = 64;           // query rows (i, h) per CTA
constexpr int kKeys = plan::kPageTokens;  // 64 tokens per page and per iteration
static_assert(kKeys == kPage);
constexpr int kWidth = static_cast<int>(kQk);   // 576
constexpr int kChunks = kWidth / 8;  // 72 chunks of 16 B per row
constexpr int kDv = static_cast<int>(kLatent);  // 512
constexpr int kFp8Token = static_cast<int>(kFp8TokenBytes);  // 656 = 41 chunks of 16 B
constexpr int kCtaWaves = 1;        // plan_splits aims at this many CTAs per SM
constexpr int kPlanThreads = 1024;

constexpr int kTileBytes = kRows * kWidth * 2;     // Q, and one page (64 tokens) of BF16
constexpr int kStageBytes = kKeys * kFp8Token;     // one raw FP8 page
constexpr int kPBytes = kRows * kKeys * 2;
constexpr int kStatBytes = 2 * 2 * kRows * 4;      // row max and row sum, per column half
constexpr int smem_bytes(bool fp8) { return kTileBytes * 2 + (fp8 ? kStageBytes : kTileBytes) + kPBytes + kStatBytes; }

// Element (r, c) of a swizzled tile with `chunks` 16-byte chunks per row (chunks % 8 == 0).
__device__ __forceinline__ int swz(int r, int c, int chunks) { return r * chunks * 8 + ((((c >> 3) ^ (r & 7))) << 3) + (c & 7); }

struct Item {
  int b, page_begin, page_end, split;
};
struct SeqSplits {
  int offset, count;  // the sequence's first item and its number of splits
};

// Inclusive prefix sum over the block (kPlanThreads threads).
__device__ int block_inclusive_scan(int v, int* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = warp_sums[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += u;
    }
    warp_sums[lane] = w;
  }
  __syncthreads();
  return v + (warp ? warp_sums[warp - 1] : 0);
}

// Thread t owns sequences [t * per, (t + 1) * per); the plan is optimized/mla_decode_plan.hpp's.
__global__ void __launch_bounds__(kPlanThreads) plan_splits(const int* __restrict__ seqlens, int batch, int target,
                                                             Item* __restrict__ items, SeqSplits* __restrict__ seqs,
                                                             int* __restrict__ n_items) {
  __shared__ int warp_sums[32];
  __shared__ int total;
  const int per = (batch + kPlanThreads - 1) / kPlanThreads;
  const int b0 = min(batch, static_cast<int>(threadIdx.x) * per), b1 = min(batch, b0 + per);
  auto pages = [&](int b) { return plan::pages_of(seqlens[b]); };
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  int mine = 0;
  for (int b = b0; b < b1; ++b) mine += pages(b);
  atomicAdd(&total, mine);
  __syncthreads();
  const int size = plan::split_size(total, target);
  auto splits = [&](int b) { return plan::split_count(pages(b), size); };
  int count = 0;
  for (int b = b0; b < b1; ++b) count += splits(b);
  int offset = block_inclusive_scan(count, warp_sums) - count;
  for (int b = b0; b < b1; ++b) {
    const int x = pages(b), n = splits(b);
    seqs[b] = SeqSplits{offset, n};
    for (int k = 0; k < n; ++k) items[offset + k] = Item{b, plan::split_begin(x, n, k), plan::split_begin(x, n, k + 1), k};
    offset += n;
  }
  if (b0 < b1 && b1 == batch) *n_items = offset;
}

struct DecodeArgs {
  const __nv_bfloat16* q;     // [B, s_q, H, 576]
  const uint8_t* cache;       // [NB, 64, 576] BF16 or [NB, 64, 656] FP8 tokens
  const int* block_table;     // [B, width]
  const int* seqlens;         // [B]
  const Item* items;
  const SeqSplits* seqs;
  const int* n_items;
  __nv_bfloat16* out;         // [B, s_q, H, 512]
  float* lse;                 // [B, H, s_q]
  float* o_part;              // [max_items, rows, 512]: O / l of each split
  float* lse_part;            // [max_items, rows]
  int table_width, heads, s_q, rows;  // rows = s_q * H
  float scale;
};

// Copies this CTA's 64 query rows (rows past `rows` zero-filled) into the swizzled Q tile.
__device__ __forceinline__ void load_q(__nv_bfloat16* sq, const DecodeArgs& a, int b, int row0) {
  const __nv_bfloat16* base = a.q + static_cast<int64_t>(b) * a.rows * kWidth;
  for (int idx = threadIdx.x; idx < kRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool valid = row0 + r < a.rows;
    cp_async16(sq + swz(r, c * 8, kChunks), valid ? base + static_cast<int64_t>(row0 + r) * kWidth + c * 8 : base, valid);
  }
}

// Copies tokens [0, n) of a BF16 page into a swizzled page buffer; tokens n.. are zero-filled.
__device__ __forceinline__ void load_page_bf16(__nv_bfloat16* sk, const uint8_t* page, int n) {
  const auto* src = reinterpret_cast<const __nv_bfloat16*>(page);
  for (int idx = threadIdx.x; idx < kKeys * kChunks; idx += kThreads) {
    const int t = idx / kChunks, c = idx % kChunks;
    cp_async16(sk + swz(t, c * 8, kChunks), t < n ? src + t * kWidth + c * 8 : src, t < n);
  }
}

// Copies tokens [0, n) of an FP8 page, raw, into the staging buffer; tokens n.. are zero-filled.
__device__ __forceinline__ void load_page_fp8(uint8_t* stage, const uint8_t* page, int n) {
  constexpr int kTokChunks = kFp8Token / 16;  // 41
  for (int idx = threadIdx.x; idx < kKeys * kTokChunks; idx += kThreads) {
    const int t = idx / kTokChunks;
    cp_async16(stage + idx * 16, t < n ? page + idx * 16 : page, t < n);
  }
}

// The staged FP8 page -> the swizzled BF16 page buffer: latent chunk c (8 codes) times the scale of
// its 128-value group, rounded to BF16 (exact for power-of-two scales); the RoPE chunks copied.
__device__ __forceinline__ void dequant_page(__nv_bfloat16* sk, const uint8_t* stage) {
  constexpr int kLatentChunks = kDv / 8;  // 64
  for (int idx = threadIdx.x; idx < kKeys * kChunks; idx += kThreads) {
    const int t = idx / kChunks, c = idx % kChunks;
    const uint8_t* tok = stage + t * kFp8Token;
    uint4 v;
    if (c < kLatentChunks) {
      const uint2 codes = *reinterpret_cast<const uint2*>(tok + c * 8);
      const float s = *reinterpret_cast<const float*>(tok + kFp8ScalesAt + (c * 8 / kFp8LatentScaleBlock) * 4);
      uint32_t w[4];
      for (int k = 0; k < 4; ++k) {
        const uint32_t pair = ((k < 2 ? codes.x : codes.y) >> (16 * (k & 1))) & 0xffffu;
        const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair), __NV_E4M3);
        const float2 f = __half22float2(__half2(h));
        const __nv_bfloat162 bf = __floats2bfloat162_rn(__fmul_rn(f.x, s), __fmul_rn(f.y, s));
        w[k] = *reinterpret_cast<const uint32_t*>(&bf);
      }
      v = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      v = *reinterpret_cast<const uint4*>(tok + kFp8RopeAt + (c - kLatentChunks) * 16);
    }
    *reinterpret_cast<uint4*>(sk + swz(t, c * 8, kChunks)) = v;
  }
}

// The per-thread softmax state of the two rows a lane holds (g and g + 8 of its warp's 16).
struct RowState {
  float max[2] = {-INFINITY, -INFINITY};
  float sum[2] = {0.0f, 0.0f};  // this lane's share of sum exp(s - max)
};

template <bool kFp8>
__global__ void __launch_bounds__(kThreads, 1) decode_split(const DecodeArgs a) {
  if (static_cast<int>(blockIdx.x) >= *a.n_items) return;
  const Item item = a.items[blockIdx.x];
  const int b = item.b, row0 = blockIdx.y * kRows;
  if (row0 >= a.rows) return;
  extern __shared__ __align__(128) uint8_t smem[];
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem);
  auto* sk0 = reinterpret_cast<__nv_bfloat16*>(smem + kTileBytes);
  uint8_t* second = smem + 2 * kTileBytes;  // BF16: the second page buffer; FP8: the staging buffer
  auto* sp = reinterpret_cast<__nv_bfloat16*>(second + (kFp8 ? kStageBytes : kTileBytes));
  auto* smax = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(sp) + kPBytes);  // [2][64]
  float* ssum = smax + 2 * kRows;                                                     // [2][64]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const int rg = warp & 3, half = warp >> 2;  // rows 16 rg.., keys / output columns of half `half`
  const int len = a.seqlens[b];
  const int n_pages = item.page_end - item.page_begin;
  const int* table = a.block_table + static_cast<int64_t>(b) * a.table_width;
  const int64_t tok_bytes = kFp8 ? kFp8Token : kWidth * 2;
  auto page_ptr = [&](int it) { return a.cache + static_cast<int64_t>(table[item.page_begin + it]) * kKeys * tok_bytes; };
  auto page_tokens = [&](int it) { return min(kKeys, len - (item.page_begin + it) * kKeys); };
  auto load_page = [&](int it, __nv_bfloat16* dst) {
    if constexpr (kFp8) load_page_fp8(second, page_ptr(it), page_tokens(it));
    else load_page_bf16(dst, page_ptr(it), page_tokens(it));
  };
  auto page_buf = [&](int it) {
    return kFp8 || (it & 1) == 0 ? sk0 : reinterpret_cast<__nv_bfloat16*>(second);
  };

  // The causal limit of each of this lane's two rows: the last key position it sees.
  int last[2];
  for (int k = 0; k < 2; ++k) {
    const int row = row0 + rg * 16 + g + 8 * k;
    last[k] = row < a.rows ? len - a.s_q + row / a.heads : -1;
  }
  const bool active = row0 + rg * 16 < a.rows;  // a warp whose 16 rows are all padding skips the products

  float o[32][4];
  for (auto& f : o) f[0] = f[1] = f[2] = f[3] = 0.0f;
  RowState st;

  load_q(sq, a, b, row0);
  if (n_pages > 0) load_page(0, sk0);
  cp_async_commit();
  if constexpr (kFp8) {
    cp_async_wait<0>();
    __syncthreads();
    if (n_pages > 0) dequant_page(sk0, second);
    __syncthreads();
  }
  for (int it = 0; it < n_pages; ++it) {
    if (it + 1 < n_pages) load_page(it + 1, page_buf(it + 1));
    cp_async_commit();
    if constexpr (!kFp8) {
      cp_async_wait<1>();
      __syncthreads();
    }
    const __nv_bfloat16* sk = page_buf(it);
    const int key0 = (item.page_begin + it) * kKeys;

    // S = Q K^T for rows 16 rg.., keys 32 half..
    float s[4][4] = {};
    if (active) {
      for (int kk = 0; kk < kWidth / 16; ++kk) {
        uint32_t qa[4];
        ldmatrix_x4(qa, sq + swz(rg * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8, kChunks));
        for (int np = 0; np < 2; ++np) {
          uint32_t kb[4];
          const int key = half * 32 + np * 16 + (lane & 7) + (lane >> 4) * 8;
          ldmatrix_x4(kb, sk + swz(key, kk * 16 + ((lane >> 3) & 1) * 8, kChunks));
          mma_bf16_16816(s[2 * np], qa, kb[0], kb[1]);
          mma_bf16_16816(s[2 * np + 1], qa, kb[2], kb[3]);
        }
      }
    }
    // Scale, mask, this lane's row maxima, then the quad's, then the pair of warps'.
    float mx[2] = {-INFINITY, -INFINITY};
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, key = key0 + half * 32 + j * 8 + 2 * t4 + (e & 1);
        s[j][e] = key <= last[r] ? __fmul_rn(s[j][e], a.scale) : -INFINITY;
        mx[r] = fmaxf(mx[r], s[j][e]);
      }
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      if (t4 == 0) smax[half * kRows + rg * 16 + g + 8 * r] = mx[r];
    }
    __syncthreads();
    float keep[2];
    for (int r = 0; r < 2; ++r) {
      const int row = rg * 16 + g + 8 * r;
      const float m_new = fmaxf(st.max[r], fmaxf(smax[row], smax[kRows + row]));
      keep[r] = m_new == -INFINITY ? 1.0f : expf(st.max[r] - m_new);  // exp(-Inf) = 0 on the first keys
      st.sum[r] = __fmul_rn(st.sum[r], keep[r]);
      st.max[r] = m_new;
    }
    for (int j = 0; j < 4; ++j) {
      float p[4];
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        p[e] = s[j][e] == -INFINITY ? 0.0f : expf(s[j][e] - st.max[r]);
        st.sum[r] = __fadd_rn(st.sum[r], p[e]);
      }
      const int col = half * 32 + j * 8 + 2 * t4;
      const __nv_bfloat162 lo = __floats2bfloat162_rn(p[0], p[1]), hi = __floats2bfloat162_rn(p[2], p[3]);
      *reinterpret_cast<__nv_bfloat162*>(sp + swz(rg * 16 + g, col, kKeys / 8)) = lo;
      *reinterpret_cast<__nv_bfloat162*>(sp + swz(rg * 16 + g + 8, col, kKeys / 8)) = hi;
    }
    for (auto& f : o) {
      f[0] *= keep[0]; f[1] *= keep[0];
      f[2] *= keep[1]; f[3] *= keep[1];
    }
    __syncthreads();

    // O += P V for rows 16 rg.., latent columns 256 half..
    if (active) {
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t pa[4];
        ldmatrix_x4(pa, sp + swz(rg * 16 + (lane & 15), kk * 16 + (lane >> 4) * 8, kKeys / 8));
        const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        for (int dp = 0; dp < 16; ++dp) {
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, sk + swz(key, half * 256 + dp * 16 + (lane >> 4) * 8, kChunks));
          mma_bf16_16816(o[2 * dp], pa, vb[0], vb[1]);
          mma_bf16_16816(o[2 * dp + 1], pa, vb[2], vb[3]);
        }
      }
    }
    if constexpr (kFp8) {
      cp_async_wait<0>();
      __syncthreads();  // every warp is done with the page buffer, the next page is staged
      if (it + 1 < n_pages) {
        dequant_page(sk0, second);
        __syncthreads();
      }
    } else {
      __syncthreads();  // every warp is done with this buffer before it is refilled
    }
  }
  cp_async_wait<0>();

  // The row sums: the quad's lanes, then the pair of warps.
  for (int r = 0; r < 2; ++r) {
    st.sum[r] = __fadd_rn(st.sum[r], __shfl_xor_sync(0xffffffffu, st.sum[r], 1));
    st.sum[r] = __fadd_rn(st.sum[r], __shfl_xor_sync(0xffffffffu, st.sum[r], 2));
    if (t4 == 0) ssum[half * kRows + rg * 16 + g + 8 * r] = st.sum[r];
  }
  __syncthreads();
  const SeqSplits seq = a.seqs[b];
  for (int r = 0; r < 2; ++r) {
    const int local = rg * 16 + g + 8 * r, row = row0 + local;
    if (row >= a.rows) continue;
    const float l = __fadd_rn(ssum[local], ssum[kRows + local]);
    const float inv = l > 0.0f ? __fdiv_rn(1.0f, l) : 0.0f;
    const float lse = l > 0.0f ? __fadd_rn(st.max[r], logf(l)) : (seq.count == 1 ? INFINITY : -INFINITY);
    const int64_t at = (static_cast<int64_t>(b) * a.rows + row) * kDv;
    const int64_t part = (static_cast<int64_t>(blockIdx.x) * a.rows + row) * kDv;
    for (int n = 0; n < 32; ++n) {
      const int col = half * 256 + n * 8 + 2 * t4;
      const float x = __fmul_rn(o[n][2 * r], inv), y = __fmul_rn(o[n][2 * r + 1], inv);
      if (seq.count == 1) *reinterpret_cast<__nv_bfloat162*>(a.out + at + col) = __floats2bfloat162_rn(x, y);
      else *reinterpret_cast<float2*>(a.o_part + part + col) = make_float2(x, y);
    }
    if (half == 0 && t4 == 0) {
      const int i = row / a.heads, h = row % a.heads;
      if (seq.count == 1) a.lse[(static_cast<int64_t>(b) * a.heads + h) * a.s_q + i] = lse;
      else a.lse_part[static_cast<int64_t>(blockIdx.x) * a.rows + row] = lse;
    }
  }
}

// One warp per (sequence, row) of the sequences with several splits: lse = log sum_k exp(lse_k),
// out = sum_k exp(lse_k - lse) O_k, rounded to BF16; no visible key in any split: out 0, lse +Inf.
__global__ void __launch_bounds__(128) combine_splits(const DecodeArgs a, int batch) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= static_cast<int64_t>(batch) * a.rows) return;
  const int b = static_cast<int>(w / a.rows), row = static_cast<int>(w % a.rows);
  const SeqSplits seq = a.seqs[b];
  if (seq.count == 1) return;
  float m = -INFINITY;
  for (int k = 0; k < seq.count; ++k) m = fmaxf(m, a.lse_part[static_cast<int64_t>(seq.offset + k) * a.rows + row]);
  float lse = INFINITY;
  if (m != -INFINITY) {
    float sum = 0.0f;
    for (int k = 0; k < seq.count; ++k)
      sum = __fadd_rn(sum, expf(a.lse_part[static_cast<int64_t>(seq.offset + k) * a.rows + row] - m));
    lse = __fadd_rn(m, logf(sum));
  }
  float acc[4][4] = {};
  if (m != -INFINITY)
    for (int k = 0; k < seq.count; ++k) {
      const float wk = expf(a.lse_part[static_cast<int64_t>(seq.offset + k) * a.rows + row] - lse);
      const float* src = a.o_part + (static_cast<int64_t>(seq.offset + k) * a.rows + row) * kDv;
      for (int j = 0; j < 4; ++j) {
        const float4 v = *reinterpret_cast<const float4*>(src + j * 128 + lane * 4);
        acc[j][0] = __fmaf_rn(wk, v.x, acc[j][0]);
        acc[j][1] = __fmaf_rn(wk, v.y, acc[j][1]);
        acc[j][2] = __fmaf_rn(wk, v.z, acc[j][2]);
        acc[j][3] = __fmaf_rn(wk, v.w, acc[j][3]);
      }
    }
  __nv_bfloat16* dst = a.out + (static_cast<int64_t>(b) * a.rows + row) * kDv;
  for (int j = 0; j < 4; ++j) {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(acc[j][0], acc[j][1]), hi = __floats2bfloat162_rn(acc[j][2], acc[j][3]);
    uint2 packed;
    packed.x = *reinterpret_cast<const uint32_t*>(&lo);
    packed.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(dst + j * 128 + lane * 4) = packed;
  }
  if (lane == 0) a.lse[(static_cast<int64_t>(b) * a.heads + row % a.heads) * a.s_q + row / a.heads] = lse;
}

class DecodeRunner final : public DeviceRunner<Params> {
 public:
  DecodeRunner(const Params& p, Io& io) : DeviceRunner(p, io, "mla/decode") {
    p_.validate();
    validate_decode_inputs(p_, io.in);  // lengths and block-table entries: named errors, not faults
    int dev = 0, sms = 0, optin = 0;
    DSV3_CUDA_CHECK(cudaGetDevice(&dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const bool fp8 = p_.cache == CacheFmt::fp8;
    smem_ = smem_bytes(fp8);
    if (optin < smem_)
      throw VariantUnsupported("mla/decode needs " + std::to_string(smem_) + " B of shared memory per block; this GPU offers " +
                               std::to_string(optin));
    DSV3_CUDA_CHECK(fp8 ? cudaFuncSetAttribute(decode_split<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_)
                        : cudaFuncSetAttribute(decode_split<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_));
    rows_ = static_cast<int>(p_.s_q * p_.heads);
    row_blocks_ = (rows_ + kRows - 1) / kRows;
    target_ = plan::split_target(sms, kCtaWaves, row_blocks_);
    max_items_ = plan::max_items(static_cast<int>(p_.batch), target_);
    items_ = DeviceBuffer(sizeof(Item) * static_cast<std::size_t>(max_items_), "mla decode items");
    seqs_ = DeviceBuffer(sizeof(SeqSplits) * static_cast<std::size_t>(p_.batch), "mla decode splits per sequence");
    n_items_ = DeviceBuffer(sizeof(int), "mla decode item count");
    const auto part_rows = static_cast<std::size_t>(max_items_) * static_cast<std::size_t>(rows_);
    o_part_ = DeviceBuffer(part_rows * kDv * sizeof(float), "mla decode partial outputs");
    lse_part_ = DeviceBuffer(part_rows * sizeof(float), "mla decode partial lse");
  }

  void run() override {
    DecodeArgs a{};
    a.q = dev_.in<__nv_bfloat16>(0);
    a.cache = dev_.in<uint8_t>(1);
    a.block_table = dev_.in<int>(2);
    a.seqlens = dev_.in<int>(3);
    a.items = items_.as<Item>();
    a.seqs = seqs_.as<SeqSplits>();
    a.n_items = n_items_.as<int>();
    a.out = dev_.out<__nv_bfloat16>(0);
    a.lse = dev_.out<float>(1);
    a.o_part = o_part_.as<float>();
    a.lse_part = lse_part_.as<float>();
    a.table_width = static_cast<int>(io_.in[2].dim(1));
    a.heads = static_cast<int>(p_.heads);
    a.s_q = static_cast<int>(p_.s_q);
    a.rows = rows_;
    a.scale = static_cast<float>(v3_softmax_scale());
    const int batch = static_cast<int>(p_.batch);
    plan_splits<<<1, kPlanThreads>>>(a.seqlens, batch, target_, items_.as<Item>(), seqs_.as<SeqSplits>(), n_items_.as<int>());
    DSV3_CUDA_CHECK(cudaGetLastError());
    const dim3 grid(static_cast<unsigned>(max_items_), static_cast<unsigned>(row_blocks_));
    if (p_.cache == CacheFmt::fp8) decode_split<true><<<grid, kThreads, smem_>>>(a);
    else decode_split<false><<<grid, kThreads, smem_>>>(a);
    DSV3_CUDA_CHECK(cudaGetLastError());
    const int64_t warps = static_cast<int64_t>(batch) * rows_;
    combine_splits<<<static_cast<unsigned>((warps + 3) / 4), 128>>>(a, batch);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }

  void fetch() override {
    DeviceRunner::fetch();
    for (const DeviceBuffer* b : {&items_, &seqs_, &n_items_, &o_part_, &lse_part_}) b->check_canaries();
  }

 private:
  DeviceBuffer items_, seqs_, n_items_, o_part_, lse_part_;
  int smem_ = 0, rows_ = 0, row_blocks_ = 0, target_ = 1, max_items_ = 1;
};

}  // namespace

void register_decode_cuda() {
  Variant v = cuda_variant<Params, DecodeRunner>(
      "mla", "decode",
      "absorbed decode over the paged BF16/FP8 latent cache: split-KV planned on the device, mma.sync BF16 tensor cores, "
      "cp.async pages, FP32 online softmax, log-sum-exp combine (optimized/mla_decode.cu)",
      [](const Params& p) -> std::string {
        if (p.op != Op::decode) return "prefill runs on cublas_prefill";
        return {};
      });
  v.experimental = "not yet run on a GPU (issue 9): no GPU bundle shows it passing";
  v.tolerances = fp32_score_decode_tolerances();  // the error model: reference/mla.cpp
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::mla
