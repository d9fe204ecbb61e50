// Expert-parallel dispatch and combine kernels (optimized/ep_device.hpp: the layouts, the phases and
// what they equal). Local rank r = blockIdx.y of every per-rank kernel, global rank rank0 + r.
//   layout         a block per (destination d, local rank): a block-wide scan over the tokens of
//                  "does the token reach d" gives each token's row among d's (token order) and
//                  the count; the same pass counts the V3 path's link sends (reference/ep.cpp:
//                  local, NVLink direct, one IB send per remote node, NVLink forwards by the
//                  landing rank) in shared memory, then one atomic add per counter per block
//   offsets        a thread per local rank: exclusive prefix of the per-peer counts
//   pack_dispatch  a block per token: its distinct target ranks and their rows, the head written
//                  once per target; the FP8 wires quantize each 1x128 group once (a half-warp,
//                  8 channels per lane, quant_1x128's arithmetic from fp8_quant_device.cuh) and
//                  store the 8 codes and the scale to every target; BF16 copies 16-byte words
//   copy_segments  the one-device transport: (sender, receiver) pairs over blockIdx.y, 16-byte words
//   unpack         a block per receive slot: the received row's fields into the outputs, or the
//                  empty slot's defaults (ids -1, zeros)
//   pack_combine   a block per received row, a warp per 128-channel group, lane l channels
//                  l + 32 j: sum over the row's local choices of (w s_e) x^ in FP64 (the
//                  coefficients w s_e formed once, in the choices' order; explicit _rn operations,
//                  no contraction), one rounding to BF16; LogFMT-10 encodes the group as
//                  fp8_quant's logfmt_encode does (the shared warp helper)
//   finish         a block per token: its partials from each sender in ascending rank, FP32 adds,
//                  one rounding to BF16; each partial's token id checked
// Not yet run on a GPU: correctness is shown only by the gpu tests (GpuCheck_ep_cuda) and
// dsv3_ep_nccl on a lent device.
#include "optimized/ep_device.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "optimized/fp8_quant_device.cuh"

namespace dsv3::ep::gpu {
namespace {

namespace fm = fp8math;
using fp8::Elem;
using fp8::gpu::bf16_f32;
using fp8::gpu::bf16_hi;
using fp8::gpu::bf16_lo;
using fp8::gpu::cvt_x2;
using fp8::gpu::decode_x1;
using fp8::gpu::logfmt_code;
using fp8::gpu::logfmt_warp_group;
using fp8::gpu::max_nan;
using fp8::gpu::QArgs;
using fp8::gpu::scaled;
using fp8::gpu::shfl_max_nan;
using fp8::gpu::tile_scale;
using fp8::gpu::TileScale;
using fp8::gpu::to_bf16;

constexpr int kThreads = 256;
constexpr int kMaxTopk = 32;      // a token's targets and choices in shared memory
constexpr int kMaxRanks = 1024;   // counts transposed by one block of R threads per rank
constexpr int kLogFmtBits = 10;
constexpr int kLogFmtMetaBytes = 12;  // f32 log2 amin, f32 log2 amax, u32 fallback

int32_t round16(int64_t v) { return static_cast<int32_t>((v + 15) / 16 * 16); }

__global__ void __launch_bounds__(kThreads) layout_kernel(Geom g, int rank0, const int32_t* __restrict__ indices,
                                                          int32_t* __restrict__ pos, int32_t* __restrict__ sent,
                                                          int32_t* link_sends, int32_t* error) {
  __shared__ int32_t warp_hits[kThreads / 32];
  __shared__ int32_t links[4];  // local copies, direct NVLink sends, IB sends (source), forwards (landing rank)
  const int d = blockIdx.x, r = blockIdx.y, s = rank0 + r, K = g.topk, R = g.ranks, G = g.per_node;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int node = d / G, landing = node * G + s % G;
  const bool same_node = node == s / G;
  const int32_t* idx = indices + static_cast<int64_t>(r) * g.tokens * K;
  int32_t* my_pos = pos + static_cast<int64_t>(r) * g.tokens * R;
  if (threadIdx.x < 4) links[threadIdx.x] = 0;
  int32_t run = 0;  // d's rows among the tokens before this pass
  for (int t0 = 0; t0 < g.tokens; t0 += kThreads) {
    const int t = t0 + static_cast<int>(threadIdx.x);
    bool hit = false, first_on_node = true;  // first: no lower rank of d's node is a target
    if (t < g.tokens)
      for (int j = 0; j < K; ++j) {
        const int32_t e = idx[static_cast<int64_t>(t) * K + j];
        if (e < 0 || e >= g.experts) {
          atomicOr(error, kBadExpert);
          continue;
        }
        const int rank = e / g.experts_per_rank;
        hit |= rank == d;
        first_on_node &= !(rank >= node * G && rank < d);
      }
    const unsigned ballot = __ballot_sync(0xffffffffu, hit);
    if (lane == 0) warp_hits[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = run + __popc(ballot & ((1u << lane) - 1u)), total = 0;
    for (int w = 0; w < kThreads / 32; ++w) {
      if (w < warp) before += warp_hits[w];
      total += warp_hits[w];
    }
    if (t < g.tokens) my_pos[static_cast<int64_t>(t) * R + d] = hit ? before : -1;
    if (hit) {
      if (d == s) {
        atomicAdd(&links[0], 1);
      } else if (same_node) {
        atomicAdd(&links[1], 1);
      } else {
        if (first_on_node) atomicAdd(&links[2], 1);
        if (d != landing) atomicAdd(&links[3], 1);
      }
    }
    run += total;
    __syncthreads();  // warp_hits is rewritten by the next pass; links complete after the last
  }
  if (threadIdx.x == 0) {
    sent[static_cast<int64_t>(r) * R + d] = run;
    if (links[0]) atomicAdd(&link_sends[s * 3 + 2], links[0]);
    if (links[1]) atomicAdd(&link_sends[s * 3 + 1], links[1]);
    if (links[2]) atomicAdd(&link_sends[s * 3 + 0], links[2]);
    if (links[3]) atomicAdd(&link_sends[landing * 3 + 1], links[3]);
  }
}

// offsets[r][0..R] = exclusive prefix of counts[r][0..R-1] (the total last).
__global__ void offsets_kernel(const int32_t* __restrict__ counts, int32_t* __restrict__ offsets, int R, int local) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= local) return;
  int32_t run = 0;
  for (int i = 0; i < R; ++i) {
    offsets[static_cast<int64_t>(r) * (R + 1) + i] = run;
    run += counts[static_cast<int64_t>(r) * R + i];
  }
  offsets[static_cast<int64_t>(r) * (R + 1) + R] = run;
}

// got[d][s] = sent[s][d]: the one-device count exchange.
__global__ void transpose_counts_kernel(const int32_t* __restrict__ sent, int32_t* __restrict__ got, int R) {
  const int d = blockIdx.x, s = threadIdx.x;
  if (s < R) got[static_cast<int64_t>(d) * R + s] = sent[static_cast<int64_t>(s) * R + d];
}

template <bool kFp8>
__global__ void __launch_bounds__(kThreads) pack_dispatch_kernel(Geom g, int rank0, const uint16_t* __restrict__ x,
                                                                 const int32_t* __restrict__ indices,
                                                                 const float* __restrict__ weights,
                                                                 const int32_t* __restrict__ pos,
                                                                 const int32_t* __restrict__ send_off, uint8_t* send_rows,
                                                                 QArgs q) {
  __shared__ int64_t row_at[kMaxTopk];  // byte offset of the token's row for each target
  __shared__ int32_t target[kMaxTopk];
  __shared__ int n_targets;
  const int t = blockIdx.x, r = blockIdx.y, s = rank0 + r, K = g.topk, R = g.ranks;
  const int64_t tok = static_cast<int64_t>(r) * g.tokens + t;
  const int32_t* idx = indices + tok * K;
  const float* w = weights + tok * K;
  uint8_t* rows = send_rows + static_cast<int64_t>(r) * g.send_cap * g.row;
  if (threadIdx.x == 0) {
    int n = 0;
    for (int j = 0; j < K; ++j) {
      const int32_t e = idx[j];
      if (e < 0 || e >= g.experts) continue;  // flagged by the layout
      const int d = e / g.experts_per_rank;
      bool seen = false;
      for (int i = 0; i < n; ++i) seen |= target[i] == d;
      if (seen) continue;
      target[n] = d;
      row_at[n] = (static_cast<int64_t>(send_off[static_cast<int64_t>(r) * (R + 1) + d]) + pos[tok * R + d]) * g.row;
      ++n;
    }
    n_targets = n;
  }
  __syncthreads();
  const int n = n_targets;
  if (static_cast<int>(threadIdx.x) < n) {  // the head: source, token, the target's choices and weights
    auto* h = reinterpret_cast<int32_t*>(rows + row_at[threadIdx.x]);
    auto* hw = reinterpret_cast<float*>(h + 2 + K);
    const int d = target[threadIdx.x];
    h[0] = s;
    h[1] = t;
    for (int j = 0; j < K; ++j) {
      const int32_t e = idx[j];
      const bool here = e >= 0 && e < g.experts && e / g.experts_per_rank == d;
      h[2 + j] = here ? e : -1;
      hw[j] = here ? w[j] : 0.0f;
    }
  }
  const uint16_t* xr = x + tok * g.dim;
  if constexpr (!kFp8) {
    const int words = g.dim / 8;  // 8 BF16 per 16-byte word
    for (int i = threadIdx.x; i < words; i += kThreads) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr) + i);
      for (int k = 0; k < n; ++k) reinterpret_cast<uint4*>(rows + row_at[k] + g.head)[i] = v;
    }
  } else {
    // A half-warp per 1x128 group (the loop is warp-uniform: both halves shuffle together).
    const int lane = threadIdx.x & 31, sub = lane & 15, warp = threadIdx.x >> 5;
    for (int base = 2 * warp; base < g.groups; base += kThreads / 16) {
      const int grp = base + (lane >> 4);
      const bool ok = grp < g.groups;
      const uint4 v = ok ? __ldg(reinterpret_cast<const uint4*>(xr + grp * 128 + 8 * sub)) : make_uint4(0, 0, 0, 0);
      const float f[8] = {bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y),
                          bf16_lo(v.z), bf16_hi(v.z), bf16_lo(v.w), bf16_hi(v.w)};
      float amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = max_nan(amax, fabsf(f[i]));
      const TileScale ts = tile_scale<true>(shfl_max_nan(amax, 16), q);  // wire_quant_params: the divide convention
      if (!ok) continue;
      uint2 c;
      c.x = cvt_x2<Elem::e4m3>(scaled<true>(f[0], ts), scaled<true>(f[1], ts)) |
            (cvt_x2<Elem::e4m3>(scaled<true>(f[2], ts), scaled<true>(f[3], ts)) << 16);
      c.y = cvt_x2<Elem::e4m3>(scaled<true>(f[4], ts), scaled<true>(f[5], ts)) |
            (cvt_x2<Elem::e4m3>(scaled<true>(f[6], ts), scaled<true>(f[7], ts)) << 16);
      for (int k = 0; k < n; ++k) {
        uint8_t* payload = rows + row_at[k] + g.head;
        *reinterpret_cast<uint2*>(payload + grp * 128 + 8 * sub) = c;
        if (sub == 0) reinterpret_cast<float*>(payload + g.payload)[grp] = ts.s;
      }
    }
  }
}

// Rows [src_off[a][b], + counts[a][b]) of sender a's buffer to rows [dst_off[b][a], ...) of
// receiver b's, every (a, b) pair; rows of `row` bytes (a multiple of 16).
__global__ void copy_segments_kernel(const uint8_t* __restrict__ src, int64_t src_rank_bytes, const int32_t* __restrict__ src_off,
                                     uint8_t* __restrict__ dst, int64_t dst_rank_bytes, const int32_t* __restrict__ dst_off,
                                     const int32_t* __restrict__ counts, int R, int row) {
  for (int pair = blockIdx.y; pair < R * R; pair += gridDim.y) {
    const int a = pair / R, b = pair % R;
    const int64_t words = static_cast<int64_t>(counts[pair]) * row / 16;
    const auto* from = reinterpret_cast<const uint4*>(src + a * src_rank_bytes +
                                                      static_cast<int64_t>(src_off[static_cast<int64_t>(a) * (R + 1) + b]) * row);
    auto* to = reinterpret_cast<uint4*>(dst + b * dst_rank_bytes + static_cast<int64_t>(dst_off[static_cast<int64_t>(b) * (R + 1) + a]) * row);
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
      to[i] = from[i];
  }
}

template <bool kFp8>
__global__ void __launch_bounds__(kThreads) unpack_kernel(Geom g, const int32_t* __restrict__ recv_off, const uint8_t* __restrict__ recv_rows,
                                                          int32_t* __restrict__ recv_count, int32_t* __restrict__ meta,
                                                          int32_t* __restrict__ experts, float* __restrict__ weights,
                                                          uint8_t* __restrict__ recv_x, float* __restrict__ recv_scales) {
  const int i = blockIdx.x, r = blockIdx.y, R = g.ranks, K = g.topk;
  const int32_t n = recv_off[static_cast<int64_t>(r) * (R + 1) + R];
  const int64_t at = static_cast<int64_t>(r) * g.cap + i;
  if (i == 0 && threadIdx.x == 0) recv_count[r] = n;
  auto* xo = reinterpret_cast<uint4*>(recv_x + at * g.payload);
  const int words = g.payload / 16;
  if (i >= n) {  // an empty slot
    if (threadIdx.x < 2) meta[at * 2 + threadIdx.x] = -1;
    for (int j = threadIdx.x; j < K; j += kThreads) {
      experts[at * K + j] = -1;
      weights[at * K + j] = 0.0f;
    }
    for (int v = threadIdx.x; v < words; v += kThreads) xo[v] = make_uint4(0, 0, 0, 0);
    if constexpr (kFp8)
      for (int c = threadIdx.x; c < g.groups; c += kThreads) recv_scales[at * g.groups + c] = 0.0f;
    return;
  }
  const uint8_t* row = recv_rows + at * g.row;  // segments per source are contiguous: slot i is row i
  const auto* h = reinterpret_cast<const int32_t*>(row);
  if (threadIdx.x < 2) meta[at * 2 + threadIdx.x] = h[threadIdx.x];
  for (int j = threadIdx.x; j < K; j += kThreads) {
    experts[at * K + j] = h[2 + j];
    weights[at * K + j] = reinterpret_cast<const float*>(h + 2 + K)[j];
  }
  const auto* payload = reinterpret_cast<const uint4*>(row + g.head);
  for (int v = threadIdx.x; v < words; v += kThreads) xo[v] = payload[v];
  if constexpr (kFp8)
    for (int c = threadIdx.x; c < g.groups; c += kThreads)
      recv_scales[at * g.groups + c] = reinterpret_cast<const float*>(row + g.head + g.payload)[c];
}

template <bool kFp8, bool kLogFmt>
__global__ void __launch_bounds__(kThreads) pack_combine_kernel(Geom g, const int32_t* __restrict__ recv_off,
                                                                const uint8_t* __restrict__ recv_rows, uint8_t* __restrict__ combine_send) {
  __shared__ double coef[kMaxTopk];  // w_c s_e of the row's local choices, in choice order
  __shared__ int n_coef;
  const int i = blockIdx.x, r = blockIdx.y, R = g.ranks, K = g.topk;
  if (i >= recv_off[static_cast<int64_t>(r) * (R + 1) + R]) return;
  const int64_t at = static_cast<int64_t>(r) * g.cap + i;
  const uint8_t* row = recv_rows + at * g.row;
  uint8_t* out = combine_send + at * g.combine_row;
  if (threadIdx.x == 0) {
    const auto* h = reinterpret_cast<const int32_t*>(row);
    const auto* hw = reinterpret_cast<const float*>(h + 2 + K);
    int m = 0;
    for (int c = 0; c < K; ++c)
      if (h[2 + c] >= 0) {
        const double se = __dadd_rn(1.0, __ddiv_rn(static_cast<double>(h[2 + c]), static_cast<double>(g.experts)));
        coef[m++] = __dmul_rn(static_cast<double>(hw[c]), se);
      }
    n_coef = m;
    *reinterpret_cast<int32_t*>(out) = h[1];
  }
  __syncthreads();
  const int m = n_coef, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint8_t* payload = row + g.head;
  auto* values = reinterpret_cast<uint16_t*>(out + g.combine_values);
  for (int grp = warp; grp < g.groups; grp += kThreads / 32) {  // warp-uniform
    uint16_t bits[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = grp * 128 + lane + 32 * j;
      float xhat;
      if constexpr (kFp8) {
        xhat = fm::fmul(decode_x1<Elem::e4m3>(payload[c]), reinterpret_cast<const float*>(payload + g.payload)[grp]);
      } else {
        xhat = bf16_f32(reinterpret_cast<const uint16_t*>(payload)[c]);
      }
      double acc = 0.0;
      for (int k = 0; k < m; ++k) acc = __dadd_rn(acc, __dmul_rn(coef[k], static_cast<double>(xhat)));
      bits[j] = ::dsv3::gpu::bf16_from_f64(acc);
    }
    if constexpr (!kLogFmt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) values[grp * 128 + lane + 32 * j] = bits[j];
    } else {
      const bool valid[4] = {true, true, true, true};  // D is a multiple of 128
      const fm::LogFmtGroup lg = logfmt_warp_group(bits, valid, kLogFmtBits);
      if (lane == 0) {
        uint8_t* meta = out + 16 + kLogFmtMetaBytes * grp;
        const uint32_t fallback = lg.fallback ? 1u : 0u;
        reinterpret_cast<float*>(meta)[0] = lg.log_amin;
        reinterpret_cast<float*>(meta)[1] = lg.log_amax;
        reinterpret_cast<uint32_t*>(meta)[2] = fallback;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) values[grp * 128 + lane + 32 * j] = logfmt_code(lg, bits[j], kLogFmtBits);
    }
  }
}

// Channel c of a combine row as the source reads it (reference/ep.cpp combine_value).
template <bool kLogFmt>
__device__ __forceinline__ float combine_value(const Geom& g, const uint8_t* row, int c) {
  const uint16_t v = reinterpret_cast<const uint16_t*>(row + g.combine_values)[c];
  if constexpr (!kLogFmt) {
    return bf16_f32(v);
  } else {
    const uint8_t* meta = row + 16 + kLogFmtMetaBytes * (c / 128);
    if (reinterpret_cast<const uint32_t*>(meta)[2] != 0) return bf16_f32(v);
    const fm::LogFmtGroup lg =
        fm::logfmt_group_from_meta(reinterpret_cast<const float*>(meta)[0], reinterpret_cast<const float*>(meta)[1], kLogFmtBits);
    return fm::logfmt_decode_code(lg, v, kLogFmtBits);
  }
}

template <bool kLogFmt>
__global__ void __launch_bounds__(kThreads) finish_combine_kernel(Geom g, const int32_t* __restrict__ pos,
                                                                  const int32_t* __restrict__ send_off,
                                                                  const uint8_t* __restrict__ combine_recv, uint16_t* __restrict__ y,
                                                                  int32_t* error) {
  __shared__ int64_t from[kMaxTopk];  // byte offsets of the token's partials, ascending sender rank
  __shared__ int n_from;
  const int t = blockIdx.x, r = blockIdx.y, R = g.ranks;
  const int64_t tok = static_cast<int64_t>(r) * g.tokens + t;
  const uint8_t* rows = combine_recv + static_cast<int64_t>(r) * g.send_cap * g.combine_row;
  if (threadIdx.x == 0) {
    int m = 0;
    for (int d = 0; d < R && m < kMaxTopk; ++d) {
      const int32_t p = pos[tok * R + d];
      if (p >= 0) from[m++] = (static_cast<int64_t>(send_off[static_cast<int64_t>(r) * (R + 1) + d]) + p) * g.combine_row;
    }
    n_from = m;
  }
  __syncthreads();
  const int m = n_from;
  if (static_cast<int>(threadIdx.x) < m && *reinterpret_cast<const int32_t*>(rows + from[threadIdx.x]) != t)
    atomicOr(error, kBadCombineToken);
  for (int c = threadIdx.x; c < g.dim; c += kThreads) {
    float acc = 0.0f;
    for (int k = 0; k < m; ++k) acc = __fadd_rn(acc, combine_value<kLogFmt>(g, rows + from[k], c));
    y[tok * g.dim + c] = to_bf16(acc);
  }
}

void check_launch() { DSV3_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

Geom geom_of(const Params& p) {
  const moe_gate::Routing rt = p.routing();
  Geom g;
  g.ranks = static_cast<int32_t>(p.ranks);
  g.per_node = static_cast<int32_t>(p.ranks_per_node);
  g.tokens = static_cast<int32_t>(p.tokens);
  g.topk = static_cast<int32_t>(rt.topk);
  g.dim = static_cast<int32_t>(p.dim);
  g.experts = static_cast<int32_t>(rt.experts);
  g.experts_per_rank = static_cast<int32_t>(rt.experts / p.ranks);
  g.groups = static_cast<int32_t>(p.scale_groups());
  g.fp8 = p.wire != Wire::bf16;
  g.pow2 = p.wire == Wire::fp8_pow2;
  g.logfmt = p.combine == CombineWire::logfmt10;
  g.payload = static_cast<int32_t>(payload_bytes(p));
  g.scales = static_cast<int32_t>(scale_bytes(p));
  g.head = round16(8 + 8 * int64_t{g.topk});
  g.row = round16(int64_t{g.head} + g.payload + g.scales);
  g.combine_values = 16 + (g.logfmt ? round16(int64_t{kLogFmtMetaBytes} * g.groups) : 0);
  g.combine_row = round16(int64_t{g.combine_values} + 2 * int64_t{g.dim});
  g.send_cap = static_cast<int32_t>(p.tokens * std::min<int64_t>(p.ranks, g.topk));
  g.cap = static_cast<int32_t>(p.capacity());
  return g;
}

std::string unsupported_reason(const Params& p) {
  const int64_t k = p.routing().topk;
  if (p.ranks > kMaxRanks) return "ep/cuda: more than " + std::to_string(kMaxRanks) + " ranks";
  if (k > kMaxTopk) return "ep/cuda: top-k " + std::to_string(k) + " > " + std::to_string(kMaxTopk);
  if (p.capacity() >= (int64_t{1} << 31) || p.tokens * p.ranks * p.ranks >= (int64_t{1} << 31))
    return "ep/cuda: R T or R^2 T reaches 2^31 (32-bit row indices)";
  if (wire_quant_params(p, 1).conv != fp8::Convention::divide) return "ep/cuda: the wire quantizer is not the divide convention";
  return "";
}

std::vector<int64_t> offsets_of(const int32_t* counts, int64_t n) {
  std::vector<int64_t> o(static_cast<std::size_t>(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) o[static_cast<std::size_t>(i + 1)] = o[static_cast<std::size_t>(i)] + counts[i];
  return o;
}

Ranks::Ranks(const Params& p, int64_t rank0, int64_t local) : p_(p), rank0_(rank0), local_(local) {
  p.validate();
  if (std::string why = unsupported_reason(p); !why.empty()) throw std::invalid_argument(why);
  if (rank0 < 0 || local < 1 || rank0 + local > p.ranks)
    throw std::invalid_argument("ep/cuda: local ranks [" + std::to_string(rank0) + ", " + std::to_string(rank0 + local) +
                                ") outside the world of " + std::to_string(p.ranks));
  g_ = geom_of(p);
  int device = 0;
  DSV3_CUDA_CHECK(cudaGetDevice(&device));
  DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device));
  const auto n = static_cast<std::size_t>(local), R = static_cast<std::size_t>(p.ranks);
  auto bytes = [&](int64_t per_rank) { return n * static_cast<std::size_t>(per_rank); };
  pos_ = DeviceBuffer(bytes(4 * p.tokens * p.ranks), "ep positions");
  sent_ = DeviceBuffer(n * R * 4, "ep send counts");
  got_ = DeviceBuffer(n * R * 4, "ep receive counts");
  send_off_ = DeviceBuffer(n * (R + 1) * 4, "ep send offsets");
  recv_off_ = DeviceBuffer(n * (R + 1) * 4, "ep receive offsets");
  send_rows_ = DeviceBuffer(bytes(int64_t{g_.send_cap} * g_.row), "ep dispatch send rows");
  recv_rows_ = DeviceBuffer(bytes(int64_t{g_.cap} * g_.row), "ep dispatch receive rows");
  combine_send_ = DeviceBuffer(bytes(int64_t{g_.cap} * g_.combine_row), "ep combine send rows");
  combine_recv_ = DeviceBuffer(bytes(int64_t{g_.send_cap} * g_.combine_row), "ep combine receive rows");
  error_ = DeviceBuffer(4, "ep error flags");
}

void Ranks::pack_dispatch(const Io& io, cudaStream_t s) {
  const int32_t R = g_.ranks;
  DSV3_CUDA_CHECK(cudaMemsetAsync(error_.data(), 0, 4, s));
  DSV3_CUDA_CHECK(cudaMemsetAsync(io.link_sends, 0, static_cast<std::size_t>(R) * 3 * 4, s));
  const dim3 per_dest(static_cast<unsigned>(R), static_cast<unsigned>(local_));
  layout_kernel<<<per_dest, kThreads, 0, s>>>(g_, static_cast<int>(rank0_), io.indices, pos_.as<int32_t>(), sent(), io.link_sends,
                                              error_.as<int32_t>());
  check_launch();
  offsets_kernel<<<static_cast<unsigned>((local_ + 31) / 32), 32, 0, s>>>(sent(), send_off_.as<int32_t>(), R, static_cast<int>(local_));
  check_launch();
  const dim3 per_token(static_cast<unsigned>(g_.tokens), static_cast<unsigned>(local_));
  const QArgs q = fp8::gpu::qargs_of(wire_quant_params(p_, p_.tokens));
  if (g_.fp8)
    pack_dispatch_kernel<true><<<per_token, kThreads, 0, s>>>(g_, static_cast<int>(rank0_), io.x, io.indices, io.weights,
                                                              pos_.as<int32_t>(), send_off_.as<int32_t>(), send_rows_.as<uint8_t>(), q);
  else
    pack_dispatch_kernel<false><<<per_token, kThreads, 0, s>>>(g_, static_cast<int>(rank0_), io.x, io.indices, io.weights,
                                                               pos_.as<int32_t>(), send_off_.as<int32_t>(), send_rows_.as<uint8_t>(), q);
  check_launch();
}

void Ranks::receive_offsets(cudaStream_t s) {
  offsets_kernel<<<static_cast<unsigned>((local_ + 31) / 32), 32, 0, s>>>(got(), recv_off_.as<int32_t>(), g_.ranks,
                                                                          static_cast<int>(local_));
  check_launch();
}

void Ranks::unpack(const Io& io, cudaStream_t s) {
  const dim3 per_slot(static_cast<unsigned>(g_.cap), static_cast<unsigned>(local_));
  if (g_.fp8)
    unpack_kernel<true><<<per_slot, kThreads, 0, s>>>(g_, recv_off_.as<int32_t>(), recv_rows_.as<uint8_t>(), io.recv_count, io.recv_meta,
                                                      io.recv_experts, io.recv_weights, io.recv_x, io.recv_scales);
  else
    unpack_kernel<false><<<per_slot, kThreads, 0, s>>>(g_, recv_off_.as<int32_t>(), recv_rows_.as<uint8_t>(), io.recv_count, io.recv_meta,
                                                       io.recv_experts, io.recv_weights, io.recv_x, nullptr);
  check_launch();
}

void Ranks::pack_combine(cudaStream_t s) {
  const dim3 per_slot(static_cast<unsigned>(g_.cap), static_cast<unsigned>(local_));
  auto launch = [&](auto kernel) {
    kernel<<<per_slot, kThreads, 0, s>>>(g_, recv_off_.as<int32_t>(), recv_rows_.as<uint8_t>(), combine_send_.as<uint8_t>());
  };
  if (g_.fp8 && g_.logfmt) launch(pack_combine_kernel<true, true>);
  else if (g_.fp8) launch(pack_combine_kernel<true, false>);
  else if (g_.logfmt) launch(pack_combine_kernel<false, true>);
  else launch(pack_combine_kernel<false, false>);
  check_launch();
}

void Ranks::finish_combine(const Io& io, cudaStream_t s) {
  const dim3 per_token(static_cast<unsigned>(g_.tokens), static_cast<unsigned>(local_));
  auto launch = [&](auto kernel) {
    kernel<<<per_token, kThreads, 0, s>>>(g_, pos_.as<int32_t>(), send_off_.as<int32_t>(), combine_recv_.as<uint8_t>(), io.y,
                                          error_.as<int32_t>());
  };
  if (g_.logfmt) launch(finish_combine_kernel<true>);
  else launch(finish_combine_kernel<false>);
  check_launch();
}

void Ranks::check_errors() const {
  int32_t flags = 0;
  error_.download(&flags, 4);
  std::string what;
  if (flags & kBadExpert) what += "an expert id outside 0.." + std::to_string(g_.experts - 1) + " in the indices; ";
  if (flags & kBadCombineToken) what += "a combine row names another token than its dispatch row (a misrouted partial); ";
  if (!what.empty()) throw std::runtime_error("ep/cuda " + p_.to_string() + ": " + what.substr(0, what.size() - 2));
}

void Ranks::exchange_counts_locally(cudaStream_t s) {
  if (rank0_ != 0 || local_ != p_.ranks) throw std::logic_error("ep/cuda: a one-device transport needs every rank local");
  transpose_counts_kernel<<<static_cast<unsigned>(g_.ranks), static_cast<unsigned>(g_.ranks), 0, s>>>(sent(), got(), g_.ranks);
  check_launch();
}

namespace {

dim3 copy_grid(int R, int sms) {
  const int pairs = std::min(R * R, 65535);
  return dim3(static_cast<unsigned>(std::max(1, 4 * sms / pairs)), static_cast<unsigned>(pairs));
}

}  // namespace

void Ranks::transport_dispatch_locally(cudaStream_t s) {
  if (rank0_ != 0 || local_ != p_.ranks) throw std::logic_error("ep/cuda: a one-device transport needs every rank local");
  copy_segments_kernel<<<copy_grid(g_.ranks, sms_), kThreads, 0, s>>>(
      send_rows_.as<uint8_t>(), int64_t{g_.send_cap} * g_.row, send_off_.as<int32_t>(), recv_rows_.as<uint8_t>(),
      int64_t{g_.cap} * g_.row, recv_off_.as<int32_t>(), sent(), g_.ranks, g_.row);
  check_launch();
}

void Ranks::transport_combine_locally(cudaStream_t s) {
  if (rank0_ != 0 || local_ != p_.ranks) throw std::logic_error("ep/cuda: a one-device transport needs every rank local");
  // Sender a = the expert rank, receiver b = the source: got[a][b] rows from a's receive order
  // (recv_off[a][b]) to where b's dispatch rows left (send_off[b][a]).
  copy_segments_kernel<<<copy_grid(g_.ranks, sms_), kThreads, 0, s>>>(
      combine_send_.as<uint8_t>(), int64_t{g_.cap} * g_.combine_row, recv_off_.as<int32_t>(), combine_recv_.as<uint8_t>(),
      int64_t{g_.send_cap} * g_.combine_row, send_off_.as<int32_t>(), got(), g_.ranks, g_.combine_row);
  check_launch();
}

}  // namespace dsv3::ep::gpu
