// MLA on the GPU (the definitions are reference/mla.hpp). This file: the naive prefill
// (variant "cublas_prefill"), as model.py computes it with K and V materialised:
//   scores = Q K^T   cuBLAS strided-batched GEMM over heads, BF16 in, FP32 out
//   P      = softmax(scale * scores), causal, in FP32, rounded to BF16 (model.py casts the FP32
//            softmax back to the activation dtype before P V); lse = max + ln(sum) in FP32
//   out    = P V     cuBLAS strided-batched GEMM, FP32 accumulation, BF16 out
// Heads are processed in chunks so the FP32 score matrix stays within 1 GiB. The decode kernel
// (absorbed form over the paged cache) is optimized/mla_decode.cu, variant "decode".
// Not yet run on a GPU: correctness is shown only by the gpu tests on a lent device.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "optimized/bf16_device.cuh"
#include "optimized/cublaslt.hpp"
#include "optimized/device_io.hpp"
#include "reference/mla.hpp"

namespace dsv3::mla {
namespace {

constexpr int kThreads = 256;

// One block per query row of one head in the chunk: scores [hc, S, S] FP32 -> P [hc, S, S] BF16.
__global__ void causal_softmax(const float* __restrict__ scores, __nv_bfloat16* __restrict__ p, float* __restrict__ lse,
                               int s, float scale, int64_t lse_base, int lse_head_stride) {
  const int i = blockIdx.x, hl = blockIdx.y;
  const float* row = scores + (static_cast<int64_t>(hl) * s + i) * s;
  __nv_bfloat16* out = p + (static_cast<int64_t>(hl) * s + i) * s;
  float m = -INFINITY;
  for (int j = threadIdx.x; j <= i; j += blockDim.x) m = fmaxf(m, __fmul_rn(row[j], scale));
  m = gpu::block_max(m);
  float l = 0.0f;
  for (int j = threadIdx.x; j <= i; j += blockDim.x) l = __fadd_rn(l, expf(__fsub_rn(__fmul_rn(row[j], scale), m)));
  l = gpu::block_sum(l);
  const float inv = __fdiv_rn(1.0f, l);
  for (int j = threadIdx.x; j < s; j += blockDim.x)
    out[j] = __float2bfloat16_rn(j <= i ? __fmul_rn(expf(__fsub_rn(__fmul_rn(row[j], scale), m)), inv) : 0.0f);
  if (threadIdx.x == 0) lse[lse_base + static_cast<int64_t>(hl) * lse_head_stride + i] = __fadd_rn(m, logf(l));
}

class PrefillRunner final : public DeviceRunner<Params> {
 public:
  PrefillRunner(const Params& p, Io& io) : DeviceRunner(p, io, "mla/cublas_prefill") {
    p_.validate();
    const int64_t s = p_.s_q, per_head = s * s * 4;
    chunk_ = std::clamp<int64_t>((int64_t{1} << 30) / per_head, 1, p_.heads);
    scores_ = DeviceBuffer(static_cast<std::size_t>(chunk_ * per_head), "prefill scores");
    probs_ = DeviceBuffer(static_cast<std::size_t>(chunk_ * s * s * 2), "prefill probabilities");
  }

  void run() override {
    const int s = static_cast<int>(p_.s_q), h = static_cast<int>(p_.heads);
    const float one = 1.0f, zero = 0.0f;
    const auto scale = static_cast<float>(v3_softmax_scale());
    const auto* q = dev_.in<__nv_bfloat16>(0);
    const auto* k = dev_.in<__nv_bfloat16>(1);
    const auto* v = dev_.in<__nv_bfloat16>(2);
    auto* out = dev_.out<__nv_bfloat16>(0);
    auto* lse = dev_.out<float>(1);
    for (int64_t b = 0; b < p_.batch; ++b)
      for (int64_t h0 = 0; h0 < h; h0 += chunk_) {
        const int hc = static_cast<int>(std::min<int64_t>(chunk_, h - h0));
        const int64_t tok0 = b * s * h;  // row (b, 0, 0)
        // scores[hl] (column-major S_k x S_q, ld S) = K_h (S_k x 192) . Q_h^T (192 x S_q)
        DSV3_LT_CHECK(cublasGemmStridedBatchedEx(
            handle_, CUBLAS_OP_T, CUBLAS_OP_N, s, s, static_cast<int>(kHeadQk), &one,
            k + (tok0 + h0) * kHeadQk, CUDA_R_16BF, h * static_cast<int>(kHeadQk), kHeadQk,
            q + (tok0 + h0) * kHeadQk, CUDA_R_16BF, h * static_cast<int>(kHeadQk), kHeadQk, &zero,
            scores_.as<float>(), CUDA_R_32F, s, static_cast<int64_t>(s) * s, hc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        causal_softmax<<<dim3(s, hc), kThreads>>>(scores_.as<float>(), probs_.as<__nv_bfloat16>(), lse, s, scale,
                                                 (b * h + h0) * s, s);
        DSV3_CUDA_CHECK(cudaGetLastError());
        // out_h^T (column-major 128 x S_q, ld H*128) = V_h^T (128 x S_k) . P_h^T (S_k x S_q)
        DSV3_LT_CHECK(cublasGemmStridedBatchedEx(
            handle_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(kHeadV), s, s, &one,
            v + (tok0 + h0) * kHeadV, CUDA_R_16BF, h * static_cast<int>(kHeadV), kHeadV,
            probs_.as<__nv_bfloat16>(), CUDA_R_16BF, s, static_cast<int64_t>(s) * s, &zero,
            out + (tok0 + h0) * kHeadV, CUDA_R_16BF, h * static_cast<int>(kHeadV), kHeadV, hc, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
      }
  }
  void fetch() override {
    DeviceRunner::fetch();
    scores_.check_canaries();
    probs_.check_canaries();
  }

 private:
  DeviceBuffer scores_, probs_;
  int64_t chunk_ = 1;
  CublasHandle handle_;
};

}  // namespace

void register_decode_cuda();  // optimized/mla_decode.cu

}  // namespace dsv3::mla

void dsv3_register_mla_cuda() {
  using namespace dsv3;
  using namespace dsv3::mla;
  Variant v = cuda_variant<Params, PrefillRunner>(
      "mla", "cublas_prefill",
      "naive prefill: cuBLAS batched Q K^T and P V (BF16 in, FP32 accumulate), FP32 causal softmax rounded to BF16 (optimized/mla.cu)",
      [](const Params& p) -> std::string {
        if (p.op != Op::prefill) return "decode runs on the paged-latent decode kernel (variant decode)";
        if (p.s_q > 65535) return "prefill length > 65535 (one grid row per query)";
        return {};
      });
  // P is rounded to BF16 before P V (|dp_j| <= 2^-8 p_j, BF16's unit roundoff), so out moves by at
  // most 2^-8 sum_j p_j |v_j| (the magnitude aid); FP32 accumulation over S <= 4096 keys adds at most
  // 4096 * 2^-24 of it; both sides round out to BF16, each by up to 2^-8 of the value: two adjacent
  // BF16 values apart, 2^-7 |ref| (with a margin for the FP32 softmax).
  Tolerance out = Tolerance::bounded_by(
      0x1p-8 + 4096 * 0x1p-24, 0x1p-7 * 1.01, false,
      "P rounded to BF16 before P V moves out by <= 2^-8 sum p|v| (the magnitude), FP32 accumulation over <= 4096 "
      "keys by <= 4096 * 2^-24 of it, and both sides round out to BF16 (2^-8 each: 2^-7 |ref|)");
  out.max_cos_dist = 5e-6;  // FlashMLA's test threshold (v3-facts §9.2)
  v.tolerances["out"] = out;
  v.tolerances["lse"] = Tolerance::abs_rel(1e-6, 8.01 / 65536,
                                           "FlashMLA's LSE tolerance (abs 1e-6 or rel 8.01/65536, v3-facts §9.2): FP32 "
                                           "scores and FP32 exp/log against the FP64 reference");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
  register_decode_cuda();
}
