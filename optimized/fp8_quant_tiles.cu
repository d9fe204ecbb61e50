// FP8 quantization kernels for the 1x128 and 128x128 tilings and their dequantization (variant
// "cuda"; shared helpers and the full kernel notes in optimized/fp8_quant_device.cuh):
//   quant_1x128_vec / quant_1x128_scalar      x bf16 [M, K] -> codes [M, K], scales [M, Kb]
//   quant_128x128_vec / quant_128x128_scalar  w bf16 [M, K] -> codes [M, K], scales [Mb, Kb]
//   dequant_vec / dequant_scalar              codes + scales (either tiling) -> y bf16 [M, K]
// Bit-identical to reference/fp8_quant.cpp (scale math through core/fp8_math.hpp).
#include "optimized/fp8_quant_device.cuh"

namespace dsv3::fp8::gpu {
namespace {

// ---- quant 1x128 ------------------------------------------------------------------------------

template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads, 6) quant_1x128_vec(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                            float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, half = lane >> 4, sub = lane & 15;
  const uint32_t units = d.m * d.kb, step = 2 * warp_count();
  for (uint32_t base = 2 * global_warp(); base < units; base += step * kUnroll) {
    uint4 v[kUnroll];
    uint32_t u[kUnroll];
    uint64_t off[kUnroll];
    bool ok[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {  // issue every load before the first reduction
      u[j] = base + step * j + half;
      const uint32_t row = d.by_kb.div(u[j]);
      const uint32_t col = (u[j] - row * d.kb) * 128 + 8 * sub;
      ok[j] = u[j] < units && col < d.k;
      off[j] = static_cast<uint64_t>(row) * d.k + col;
      v[j] = ok[j] ? __ldg(reinterpret_cast<const uint4*>(x + off[j])) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const float f[8] = {bf16_lo(v[j].x), bf16_hi(v[j].x), bf16_lo(v[j].y), bf16_hi(v[j].y),
                          bf16_lo(v[j].z), bf16_hi(v[j].z), bf16_lo(v[j].w), bf16_hi(v[j].w)};
      float amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = max_nan(amax, fabsf(f[i]));
      const TileScale t = tile_scale<kDiv>(shfl_max_nan(amax, 16), q);
      if (ok[j]) {
        uint2 c;
        c.x = cvt_x2<E>(scaled<kDiv>(f[0], t), scaled<kDiv>(f[1], t)) |
              (cvt_x2<E>(scaled<kDiv>(f[2], t), scaled<kDiv>(f[3], t)) << 16);
        c.y = cvt_x2<E>(scaled<kDiv>(f[4], t), scaled<kDiv>(f[5], t)) |
              (cvt_x2<E>(scaled<kDiv>(f[6], t), scaled<kDiv>(f[7], t)) << 16);
        *reinterpret_cast<uint2*>(codes + off[j]) = c;
      }
      if (sub == 0 && u[j] < units) scales[u[j]] = t.s;  // scales [M, Kb]: index = tile index
    }
  }
}

template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_1x128_scalar(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                               float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, units = d.m * d.kb;
  for (uint32_t u = global_warp(); u < units; u += warp_count()) {
    const auto [base, c0] = tile_at(u, d);
    float f[4];
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      f[j] = c < d.k ? bf16_f32(x[base + c]) : 0.0f;
      amax = max_nan(amax, fabsf(f[j]));
    }
    const TileScale t = tile_scale<kDiv>(shfl_max_nan(amax, 32), q);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t c = c0 + lane + 32 * j;
      if (c < d.k) codes[base + c] = cvt_x1<E>(scaled<kDiv>(f[j], t));
    }
    if (lane == 0) scales[u] = t.s;
  }
}

// ---- quant 128x128 ----------------------------------------------------------------------------

// Thread (warp w, lane) holds rows 16w + 2p + (lane >> 4), p < 8, columns 8 (lane & 15) + [0, 8).
template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_128x128_vec(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                              float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t col = blockIdx.x * 128 + 8 * (lane & 15);
  const uint32_t row0 = blockIdx.y * 128 + 16 * warp + (lane >> 4);
  uint4 v[8];
  float amax = 0.0f;
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t row = row0 + 2 * p;
    v[p] = col < d.k && row < d.m ? __ldg(reinterpret_cast<const uint4*>(x + static_cast<uint64_t>(row) * d.k + col))
                                  : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t w[4] = {v[p].x, v[p].y, v[p].z, v[p].w};
#pragma unroll
    for (int i = 0; i < 4; ++i) amax = max_nan(max_nan(amax, fabsf(bf16_lo(w[i]))), fabsf(bf16_hi(w[i])));
  }
  const TileScale t = tile_scale<kDiv>(block_max_nan(amax), q);
#pragma unroll
  for (int p = 0; p < 8; ++p) {
    const uint32_t row = row0 + 2 * p;
    if (col >= d.k || row >= d.m) continue;
    const uint32_t w[4] = {v[p].x, v[p].y, v[p].z, v[p].w};
    uint32_t c2[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) c2[i] = cvt_x2<E>(scaled<kDiv>(bf16_lo(w[i]), t), scaled<kDiv>(bf16_hi(w[i]), t));
    *reinterpret_cast<uint2*>(codes + static_cast<uint64_t>(row) * d.k + col) =
        make_uint2(c2[0] | (c2[1] << 16), c2[2] | (c2[3] << 16));
  }
  if (threadIdx.x == 0) scales[blockIdx.y * d.kb + blockIdx.x] = t.s;
}

// Thread t holds column t % 128 of rows t / 128 + 2j, j < 64; reads the block twice.
template <Elem E, bool kDiv>
__global__ void __launch_bounds__(kThreads) quant_128x128_scalar(const uint16_t* __restrict__ x, uint8_t* __restrict__ codes,
                                                                 float* __restrict__ scales, Dims d, QArgs q) {
  const uint32_t col = blockIdx.x * 128 + (threadIdx.x & 127);
  const uint32_t row0 = blockIdx.y * 128 + (threadIdx.x >> 7);
  const uint32_t rows = min(128u, d.m - blockIdx.y * 128);
  float amax = 0.0f;
  if (col < d.k)
    for (uint32_t r = row0; r < blockIdx.y * 128 + rows; r += 2)
      amax = max_nan(amax, fabsf(bf16_f32(x[static_cast<uint64_t>(r) * d.k + col])));
  const TileScale t = tile_scale<kDiv>(block_max_nan(amax), q);
  if (col < d.k)
    for (uint32_t r = row0; r < blockIdx.y * 128 + rows; r += 2) {
      const uint64_t i = static_cast<uint64_t>(r) * d.k + col;
      codes[i] = cvt_x1<E>(scaled<kDiv>(bf16_f32(x[i]), t));
    }
  if (threadIdx.x == 0) scales[blockIdx.y * d.kb + blockIdx.x] = t.s;
}

// ---- dequant ----------------------------------------------------------------------------------

template <Elem E, bool kBlock>
__global__ void __launch_bounds__(kThreads) dequant_vec(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                                        uint16_t* __restrict__ y, Dims d) {
  const uint32_t chunks = d.m * (d.k / 8);  // 8 elements each, never straddling a tile
  const uint32_t stride = gridDim.x * kThreads;
  for (uint32_t base = blockIdx.x * kThreads + threadIdx.x; base < chunks; base += stride * kDequantUnroll) {
    uint2 c[kDequantUnroll];
    float s[kDequantUnroll];
#pragma unroll
    for (int j = 0; j < kDequantUnroll; ++j) {
      const uint32_t n = base + stride * j;
      if (n >= chunks) continue;
      const uint32_t row = d.by_k8.div(n);
      const uint32_t col = (n - row * (d.k / 8)) * 8;
      c[j] = __ldg(reinterpret_cast<const uint2*>(codes) + n);
      s[j] = __ldg(scales + (kBlock ? row / 128 : row) * d.kb + col / 128);
    }
#pragma unroll
    for (int j = 0; j < kDequantUnroll; ++j) {
      const uint32_t n = base + stride * j;
      if (n >= chunks) continue;
      const float2 a = decode_x2<E>(c[j].x & 0xffffu), b = decode_x2<E>(c[j].x >> 16);
      const float2 e = decode_x2<E>(c[j].y & 0xffffu), g = decode_x2<E>(c[j].y >> 16);
      const float sj = s[j];
      reinterpret_cast<uint4*>(y)[n] =
          make_uint4(pack_bf16x2(fm::fmul(a.x, sj), fm::fmul(a.y, sj)), pack_bf16x2(fm::fmul(b.x, sj), fm::fmul(b.y, sj)),
                     pack_bf16x2(fm::fmul(e.x, sj), fm::fmul(e.y, sj)), pack_bf16x2(fm::fmul(g.x, sj), fm::fmul(g.y, sj)));
    }
  }
}

template <Elem E, bool kBlock>
__global__ void __launch_bounds__(kThreads) dequant_scalar(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                                           uint16_t* __restrict__ y, Dims d) {
  const uint32_t n = d.m * d.k;
  for (uint32_t i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) {
    const uint32_t row = d.by_k.div(i);
    const uint32_t col = i - row * d.k;
    const float s = __ldg(scales + (kBlock ? row / 128 : row) * d.kb + col / 128);
    y[i] = to_bf16(fm::fmul(decode_x1<E>(codes[i]), s));
  }
}


}  // namespace

void quant_1x128(const uint16_t* x, uint8_t* codes, float* scales, const Params& p, const LaunchCfg& cfg,
                 cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  const QArgs q = qargs_of(p);
  const uint64_t units = static_cast<uint64_t>(d.m) * d.kb;
  dispatch(p, [&](auto e, auto div) {
    constexpr Elem E = decltype(e)::value;
    constexpr bool D = decltype(div)::value;
    if (d.k % 8 == 0 && aligned(x, 16) && aligned(codes, 8))
      launch_strided<quant_1x128_vec<E, D>>(units, (kThreads / 16) * kUnroll, cfg, stream, x, codes, scales, d, q);
    else
      launch_strided<quant_1x128_scalar<E, D>>(units, kThreads / 32, cfg, stream, x, codes, scales, d, q);
  });
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void quant_128x128(const uint16_t* w, uint8_t* codes, float* scales, const Params& p, const LaunchCfg&,
                   cudaStream_t stream) {
  check_launch(p);
  const Dims d = dims_of(p);
  const QArgs q = qargs_of(p);
  const dim3 grid(d.kb, d.mb);
  dispatch(p, [&](auto e, auto div) {
    if (d.k % 8 == 0 && aligned(w, 16) && aligned(codes, 8))
      quant_128x128_vec<decltype(e)::value, decltype(div)::value><<<grid, kThreads, 0, stream>>>(w, codes, scales, d, q);
    else
      quant_128x128_scalar<decltype(e)::value, decltype(div)::value><<<grid, kThreads, 0, stream>>>(w, codes, scales, d, q);
  });
  DSV3_CUDA_CHECK(cudaGetLastError());
}

void dequant(const uint8_t* codes, const float* scales, uint16_t* y, const Params& p, const LaunchCfg& cfg,
             cudaStream_t stream) {
  check_launch(p);
  if (p.op != Op::dequant_1x128 && p.op != Op::dequant_128x128)
    throw std::invalid_argument("fp8 gpu::dequant: op must be dequant_1x128 or dequant_128x128, got " +
                                std::string(op_name(p.op)));
  const Dims d = dims_of(p);
  const bool block = p.op == Op::dequant_128x128;
  const bool vec = d.k % 8 == 0 && aligned(codes, 8) && aligned(y, 16);
  const uint64_t n = static_cast<uint64_t>(d.m) * d.k;
  auto go = [&](auto e, auto blk) {
    constexpr Elem E = decltype(e)::value;
    constexpr bool B = decltype(blk)::value;
    if (vec)
      launch_strided<dequant_vec<E, B>>(n / 8, static_cast<uint64_t>(kThreads) * kDequantUnroll, cfg, stream, codes,
                                        scales, y, d);
    else
      launch_strided<dequant_scalar<E, B>>(n, kThreads, cfg, stream, codes, scales, y, d);
  };
  dispatch(p.elem, block, go);
  DSV3_CUDA_CHECK(cudaGetLastError());
}


}  // namespace dsv3::fp8::gpu
