// The own FP8 GEMM for Hopper (variant fp8_gemm/wgmma): D = A . B^T with DeepSeek's 1x128 / 128x128
// scales, as reference/fp8_gemm.hpp defines it, for the dense, grouped-contiguous and grouped-masked
// layouts from one kernel family. EXPERIMENTAL: compiled for sm_90a, never run on a GPU yet; the gpu
// tests (GpuCheck_fp8_gemm_wgmma) and the bench rows on a lent device are what will show it works.
//
// The kernel, built the way DeepGEMM's is (written here from the PTX ISA):
//   CTA       (block_m / 64) consumer warpgroups of 64 rows each and one producer warpgroup, one
//             CTA per SM, persistent: it walks output tiles of block_m x block_n in the schedule of
//             optimized/fp8_gemm_tiles.hpp (bands of 8 m blocks; grouped layouts skip tiles without
//             tokens on the device, so a masked call's grid is fixed by its capacity: CUDA-graph
//             friendly).
//   producer  one thread issues TMA loads (tensor maps with 128-byte swizzle, encoded on the host by
//             optimized/tensor_map.hpp) of A's [block_m x 128] and B's [block_n x 128] tiles for every
//             K block into a ring of `stages` shared-memory stages; a "full" mbarrier per stage
//             completes on the bytes, an "empty" one on the consumers' release. setmaxnreg moves
//             registers from it (40) to the consumers (232) in the two-warpgroup configuration.
//   consumer  per K block of 128: four wgmma m64nNk32 E4M3 x E4M3 -> FP32 (QGMMA in SASS) from the
//             two stage tiles into a fresh accumulator (the first with scale-d = 0), wait, release the
//             stage, then promote on CUDA cores: acc = fma(partial, sa[row] * sb, acc) in FP32
//             registers (V3-TR §3.3.2's promotion every N_C = 128). sa is read from global memory for
//             the thread's two rows (issued before the stage wait, so the loads overlap it), sb once
//             per K block; UE8M0 codes are decoded exactly.
//   epilogue  each warp writes its 16 rows of the tile to a private shared-memory staging block
//             (row stride block_n + 8 floats: the two-row float2 stores hit distinct banks), then
//             stores rows of 16-byte runs to D: BF16 or FP32, + C when accumulating, only token rows
//             and columns below N.
// Configurations (block_m, block_n, stages): (128, 128, 4), (128, 64, 7), (64, 128, 7), (64, 64, 8);
// the host picks 64-row blocks when a group's rows fit in 64 (decode) and 64-column blocks when
// 128-column tiles would leave SMs idle (tiles::choose_blocks).
// Tails: TMA reads rows and columns outside A and B as zeros; stores are guarded by row (token) and
// column (< N), so N = 576 or 2112 (not a multiple of the block) and M = 1..64 need no padding. The
// grouped layouts read B as one [G * N, K] matrix: a tile's columns past N read the next group's
// rows, whose outputs are never stored.
// Arithmetic against the reference: the group sum is the tensor cores' (fewer bits than FP32: the
// tolerance kEpsFp8, as for cuBLASLt), sa * sb is rounded to FP32 as the reference does, and the
// promotion is one fused multiply-add where the reference rounds the product first (covered by the
// same bound; exact where the small_ints cases prove every step exact).
//
// Versions (the llm.c-style record; figures are GPU bench rows once measured):
//   v1  this file. Not yet run: no figures. ptxas (CUDA 13.0, sm_90a): 168 registers at entry for
//       128 x 128 and 128 x 64 (consumers raised to 232 by setmaxnreg), 174 for 64 x 128, 110 for
//       64 x 64; no stack, no spills; the file compiles in about 8 s. SASS per K block: 1
//       WARPGROUP.ARRIVE, 4 QGMMA.64xNx32.F32.E4M3.E4M3, 1 WARPGROUP.DEPBAR, N / 2 FFMA; UTMALDG.2D,
//       SYNCS, USETMAXREG; no LDL/STL (docs/fp8-gemm.md).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>

#include "optimized/device_io.hpp"
#include "optimized/fp8_gemm_tiles.hpp"
#include "optimized/sm90.cuh"
#include "optimized/tensor_map.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

namespace sm90 = gpu::sm90;

constexpr int kBlockK = 128;            // K per stage: one scale group, one 128-byte swizzle row
constexpr int kWarpgroup = 128;
constexpr int kSmemOptin = 232448;      // sm_90's largest dynamic shared memory per block (227 KiB)
constexpr int kStagePad = 8;            // floats past block_n per epilogue staging row
constexpr int kProducerRegs = 40, kConsumerRegs = 232;

template <int BM, int BN>
struct Config {
  static constexpr int kConsumers = BM / 64;
  static constexpr int kThreads = (kConsumers + 1) * kWarpgroup;
  static constexpr int kATile = BM * kBlockK;  // bytes (E4M3)
  static constexpr int kBTile = BN * kBlockK;
  static constexpr int kStageBytes = kATile + kBTile;
  static constexpr int kWarpStage = 16 * (BN + kStagePad);  // floats of one warp's epilogue block
  static constexpr int kEpiBytes = kConsumers * 4 * kWarpStage * 4;
  static constexpr int kBarBytes = 256;
  static constexpr int kFit = (kSmemOptin - 1024 - kEpiBytes - kBarBytes) / kStageBytes;
  static constexpr int kStages = kFit < 8 ? kFit : 8;
  static constexpr int kSmem = 1024 + kStages * kStageBytes + kEpiBytes + kBarBytes;  // + alignment slack
  static_assert(kStages >= 3 && 2 * kStages * 8 <= kBarBytes);
};

struct GemmArgs {
  tiles::Grid grid;
  int kb = 1;                 // K / 128
  int64_t nb_w = 1;           // weight scale blocks per group along N: ceil(N / 128)
  int64_t a_rows = 0;         // rows of A and sa (scale reads stay below)
  const void* sa = nullptr;   // [a_rows, kb]: f32, or UE8M0 codes
  const void* sb = nullptr;   // [G, nb_w, kb]
  int ue8m0 = 0;
  const int32_t* index = nullptr;  // group_index (contiguous) or counts (masked)
  const float* c = nullptr;        // accumulate: C [a_rows, N], else null
  void* d = nullptr;               // D [a_rows, N]
  int out_f32 = 0;
};

__device__ __forceinline__ float scale_at(const void* s, int64_t i, int ue8m0) {
  if (!ue8m0) return __ldg(static_cast<const float*>(s) + i);
  const uint32_t code = __ldg(static_cast<const uint8_t*>(s) + i);
  if (code == 0xff) return __uint_as_float(0x7fc00000u);
  return code == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(code << 23);  // 2^(code - 127), 2^-127 subnormal
}

// Four consecutive outputs of row a_row from column col: + C, rounded to D's type, stored as one
// 16-byte (FP32) or 8-byte (BF16) access where the row allows, else element by element.
__device__ __forceinline__ void store4(const GemmArgs& a, int64_t a_row, int64_t col, float4 v) {
  const int64_t n = a.grid.n, at = a_row * n + col;
  const bool whole = col + 4 <= n && n % 4 == 0;
  if (a.c) {
    if (whole) {
      const float4 c = __ldg(reinterpret_cast<const float4*>(a.c + at));
      v.x += c.x, v.y += c.y, v.z += c.z, v.w += c.w;
    } else {
      float* e = &v.x;
      for (int j = 0; j < 4 && col + j < n; ++j) e[j] += __ldg(a.c + at + j);
    }
  }
  if (whole) {
    if (a.out_f32) {
      *reinterpret_cast<float4*>(static_cast<float*>(a.d) + at) = v;
    } else {
      const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
      uint2 packed;
      packed.x = *reinterpret_cast<const uint32_t*>(&lo);
      packed.y = *reinterpret_cast<const uint32_t*>(&hi);
      *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(a.d) + at) = packed;
    }
    return;
  }
  const float* e = &v.x;
  for (int j = 0; j < 4 && col + j < n; ++j) {
    if (a.out_f32) static_cast<float*>(a.d)[at + j] = e[j];
    else static_cast<__nv_bfloat16*>(a.d)[at + j] = __float2bfloat16_rn(e[j]);
  }
}

template <int BM, int BN>
__global__ void __launch_bounds__(Config<BM, BN>::kThreads, 1)
    fp8_gemm_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                    const GemmArgs args) {
#if defined(DSV3_SM90A)
  using C = Config<BM, BN>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  uint8_t* a_tiles = smem;  // every tile 1024-byte aligned: the 128-byte swizzle's period
  uint8_t* b_tiles = a_tiles + C::kStages * C::kATile;
  float* epi = reinterpret_cast<float*>(b_tiles + C::kStages * C::kBTile);
  uint64_t* full = reinterpret_cast<uint64_t*>(reinterpret_cast<uint8_t*>(epi) + C::kEpiBytes);
  uint64_t* empty = full + C::kStages;
  const int producer_thread = C::kConsumers * kWarpgroup;

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      sm90::mbar_init(&full[s], 1);                   // the producer's arrive.expect_tx
      sm90::mbar_init(&empty[s], C::kConsumers * 4);  // one arrival per consumer warp
    }
    sm90::fence_proxy_async_shared();
    sm90::mbar_init_fence();
  }
  if (threadIdx.x == producer_thread) {
    sm90::tma_prefetch_map(&map_a);
    sm90::tma_prefetch_map(&map_b);
  }
  __syncthreads();

  const tiles::Grid& g = args.grid;
  const int64_t tile_total = tiles::tile_count(g);
  const int kb_total = args.kb;

  if (threadIdx.x >= producer_thread) {  // ---- producer warpgroup ----
    if constexpr (C::kConsumers == 2) sm90::regs_dec<kProducerRegs>();
    if (threadIdx.x != producer_thread) return;
    uint32_t it = 0;
    for (int64_t t = blockIdx.x; t < tile_total; t += gridDim.x) {
      const tiles::TileRows tr = tiles::resolve(g, tiles::tile_at(g, t), args.index);
      if (!tr.work) continue;
      for (int kb = 0; kb < kb_total; ++kb, ++it) {
        const int s = static_cast<int>(it % C::kStages);
        sm90::mbar_wait(&empty[s], ((it / C::kStages) & 1) ^ 1);
        sm90::mbar_arrive_expect_tx(&full[s], C::kStageBytes);
        sm90::tma_load_2d(a_tiles + s * C::kATile, &map_a, &full[s], kb * kBlockK, static_cast<int32_t>(tr.a_row0));
        sm90::tma_load_2d(b_tiles + s * C::kBTile, &map_b, &full[s], kb * kBlockK, static_cast<int32_t>(tr.b_row0));
      }
    }
    return;
  }

  // ---- consumer warpgroups ----
  if constexpr (C::kConsumers == 2) sm90::regs_inc<kConsumerRegs>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wg = warp / 4;
  const int r_lo = warp * 16 + lane / 4;  // the thread's tile rows r_lo and r_lo + 8 (warp 4 wg + w: 64 wg + 16 w)
  float* stage_rows = epi + warp * C::kWarpStage;
  constexpr int kRegs = BN / 2;
  float acc[kRegs], part[kRegs];
#pragma unroll
  for (int i = 0; i < kRegs; ++i) part[i] = 0.0f;  // overwritten by each K block's first wgmma (scale-d = 0)
  uint32_t it = 0;
  for (int64_t t = blockIdx.x; t < tile_total; t += gridDim.x) {
    const tiles::TileRows tr = tiles::resolve(g, tiles::tile_at(g, t), args.index);
    if (!tr.work) continue;
    const int64_t row_lo = tr.a_row0 + r_lo, row_hi = row_lo + 8;
    const int64_t sb_row = (tr.group * args.nb_w + tr.col0 / 128) * kb_total;
#pragma unroll
    for (int i = 0; i < kRegs; ++i) acc[i] = 0.0f;
    for (int kb = 0; kb < kb_total; ++kb, ++it) {
      // Rows past A's end have no scales to read; their outputs are never stored.
      const float sa_lo = row_lo < args.a_rows ? scale_at(args.sa, row_lo * kb_total + kb, args.ue8m0) : 0.0f;
      const float sa_hi = row_hi < args.a_rows ? scale_at(args.sa, row_hi * kb_total + kb, args.ue8m0) : 0.0f;
      const float sb = scale_at(args.sb, sb_row + kb, args.ue8m0);
      const int s = static_cast<int>(it % C::kStages);
      sm90::mbar_wait(&full[s], (it / C::kStages) & 1);
      const uint8_t* a_tile = a_tiles + s * C::kATile + wg * 64 * kBlockK;
      const uint8_t* b_tile = b_tiles + s * C::kBTile;
#pragma unroll
      for (int i = 0; i < kRegs; ++i) sm90::fence_operand(part[i]);
      sm90::wgmma_fence();
#pragma unroll
      for (int k = 0; k < kBlockK / 32; ++k)
        sm90::wgmma_e4m3<BN>(part, sm90::smem_desc_sw128(a_tile + k * 32), sm90::smem_desc_sw128(b_tile + k * 32), k > 0);
      sm90::wgmma_commit();
      sm90::wgmma_wait<0>();
#pragma unroll
      for (int i = 0; i < kRegs; ++i) sm90::fence_operand(part[i]);
      if (lane == 0) sm90::mbar_arrive(&empty[s]);  // this warp's reads of the stage are done
      const float s_lo = sa_lo * sb, s_hi = sa_hi * sb;  // RN32(sa * sb), as the reference
#pragma unroll
      for (int i = 0; i < kRegs; ++i) acc[i] = fmaf(part[i], (i & 2) ? s_hi : s_lo, acc[i]);
    }
    // Epilogue: registers -> this warp's staging rows -> D.
    __syncwarp();
    const int ld = BN + kStagePad;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int col = 8 * j + 2 * (lane % 4);
      *reinterpret_cast<float2*>(stage_rows + (lane / 4) * ld + col) = make_float2(acc[4 * j], acc[4 * j + 1]);
      *reinterpret_cast<float2*>(stage_rows + (lane / 4 + 8) * ld + col) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
    }
    __syncwarp();
    constexpr int kQuads = BN / 4;
    for (int q = lane; q < 16 * kQuads; q += 32) {
      const int rr = q / kQuads, c4 = q % kQuads;
      const int64_t a_row = tr.a_row0 + warp * 16 + rr, col = tr.col0 + 4 * c4;
      if (col >= g.n || !tiles::is_token(g, tr, args.index, a_row)) continue;
      store4(args, a_row, col, *reinterpret_cast<const float4*>(stage_rows + rr * ld + 4 * c4));
    }
    __syncwarp();  // reconverged before the next tile's wgmma (.sync.aligned)
  }
#else
  (void)map_a, (void)map_b, (void)args;
#if defined(__CUDA_ARCH__)
  // Built for a target without sm_90a's features (DSV3_CUDA_ARCHITECTURES=90 instead of 90a): the
  // body is empty, so stop loudly rather than leave D unwritten.
  __trap();
#endif
#endif
}

// The gpu's view of one case: tensor maps over the uploaded A and B, the schedule, the launch.
class WgmmaRunner final : public DeviceRunner<Params> {
 public:
  WgmmaRunner(const Params& p, Io& io) : DeviceRunner(p, io, "fp8_gemm/wgmma") {
    p_.validate();
    (void)token_rows(p_, io.in);  // index tensors: named errors, not faults on the device
    int dev = 0, major = 0, minor = 0, sms = 0, optin = 0;
    DSV3_CUDA_CHECK(cudaGetDevice(&dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    DSV3_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (major != 9 || minor != 0)
      throw VariantUnsupported("fp8_gemm/wgmma is built for sm_90a (wgmma, TMA); this GPU is sm_" +
                               std::to_string(major * 10 + minor));
    const tiles::Blocks b = tiles::choose_blocks(tiles::grid_of(p_, 128, 128), sms);
    a_.grid = tiles::grid_of(p_, b.block_m, b.block_n);
    smem_ = smem_for(b);
    if (optin < smem_)
      throw VariantUnsupported("fp8_gemm/wgmma needs " + std::to_string(smem_) + " B of shared memory per block; this GPU offers " +
                               std::to_string(optin));
    a_.kb = static_cast<int>(p_.kb());
    a_.nb_w = p_.nb();
    a_.a_rows = p_.a_rows();
    a_.sa = dev_.in<uint8_t>(1);
    a_.sb = dev_.in<uint8_t>(3);
    a_.ue8m0 = p_.scale_fmt == ScaleFmt::ue8m0;
    a_.index = p_.layout == Layout::dense ? nullptr : dev_.in<int32_t>(4);
    a_.c = p_.accumulate ? dev_.in<float>(io.in.size() - 1) : nullptr;
    a_.d = dev_.out<uint8_t>(0);
    a_.out_f32 = p_.out == DType::f32;
    const int64_t tiles_total = tiles::tile_count(a_.grid);
    ctas_ = static_cast<int>(std::min<int64_t>(sms, tiles_total));
    // No tiles (every contiguous group empty): nothing to launch, and no tensor map over 0 rows
    // (cuTensorMapEncodeTiled refuses a dimension of 0).
    if (ctas_ == 0 || p_.a_rows() == 0) {
      ctas_ = 0;
      return;
    }
    const auto k = static_cast<uint64_t>(p_.k);
    map_a_ = gpu::tensor_map_u8_sw128(dev_.in<uint8_t>(0), static_cast<uint64_t>(p_.a_rows()), k,
                                      static_cast<uint32_t>(b.block_m), kBlockK, "A");
    map_b_ = gpu::tensor_map_u8_sw128(dev_.in<uint8_t>(2), static_cast<uint64_t>(p_.groups() * p_.n), k,
                                      static_cast<uint32_t>(b.block_n), kBlockK, "B");
  }

  void run() override {
    if (ctas_ == 0) return;  // no tiles: nothing to compute, D stays as it was
    const int bm = a_.grid.block_m, bn = a_.grid.block_n;
    if (bm == 128 && bn == 128) launch<128, 128>();
    else if (bm == 128) launch<128, 64>();
    else if (bn == 128) launch<64, 128>();
    else launch<64, 64>();
  }

 private:
  static int smem_for(tiles::Blocks b) {
    if (b.block_m == 128) return b.block_n == 128 ? Config<128, 128>::kSmem : Config<128, 64>::kSmem;
    return b.block_n == 128 ? Config<64, 128>::kSmem : Config<64, 64>::kSmem;
  }
  template <int BM, int BN>
  void launch() {
    auto* kernel = fp8_gemm_kernel<BM, BN>;
    if (!attr_set_) {
      DSV3_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_));
      attr_set_ = true;
    }
    kernel<<<ctas_, Config<BM, BN>::kThreads, smem_>>>(map_a_, map_b_, a_);
    DSV3_CUDA_CHECK(cudaGetLastError());
  }

  GemmArgs a_;
  CUtensorMap map_a_{}, map_b_{};
  int smem_ = 0, ctas_ = 0;
  bool attr_set_ = false;
};

}  // namespace

void register_wgmma_cuda() {
  Variant v = cuda_variant<Params, WgmmaRunner>(
      "fp8_gemm", "wgmma",
      "own sm_90a kernel: TMA into a multi-stage mbarrier pipeline, producer warp + consumer warpgroups, wgmma E4M3, "
      "FP32 promotion every 128 of K, persistent tile scheduler; dense, contiguous and masked (optimized/fp8_gemm_wgmma.cu)",
      [](const Params&) -> std::string { return {}; });
  v.experimental = "not yet run on a GPU (issue 6): no GPU bundle shows it passing";
  v.tolerances["*"] = Tolerance::bounded_by(
      kEpsFp8, kRtolOut, true,
      "as cublaslt_block: eps = 4 wgmma steps x 33 aligned terms x 2^-13 + FP32 scale steps, times the Cauchy-Schwarz "
      "magnitude; + 2^-7 |ref| for the bf16 output's rounding on both sides; exact where the case proves it (small_ints)");
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::fp8gemm
