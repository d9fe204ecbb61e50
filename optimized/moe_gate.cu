// The fused DeepSeekMoE gate on the GPU (variant "cuda"; the definition is reference/moe_gate.hpp):
// logits, scores, bias, group top-2, group top-k, expert top-k and the weights in one kernel.
//
// One block of 256 threads per tile of 8 tokens. Logits: each thread owns experts tid, tid + 256,
// ... and accumulates x . w in FP64 over dim in chunks of 64 (x staged in shared memory as FP32,
// the weight row read from global); every product of two BF16 values is exact in FP64, so the
// sums differ from the reference's only by FP64 rounding, and their FP32 roundings are the same
// unless a sum lies within ~1e-16 (relative) of an FP32 rounding boundary. Scores: sigmoid or the
// softmax over the E logits in FP64 (the softmax sum by one thread in expert order, as the
// reference), rounded once to FP32. Selection: warp w routes token w with warp-wide argmax
// reductions under the reference's order (larger first, NaN above any number, equal values to the
// lower index): group scores from the top-2 (FP32 add) or the top-1, the best groups kept, the rest
// masked to -inf, then the top-k experts; the weights are the reference's FP64 operations in the
// same order, rounded once to BF16 (round-to-odd to FP32 first, then RNE: a correct rounding).
// Not yet run on a GPU: correctness is shown only by the gpu tests on a lent device.
#include <cuda_runtime.h>

#include <cmath>
#include <memory>
#include <string>

#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "optimized/moe_device.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::moe_gate {
namespace {

constexpr int kThreads = 256;      // 8 warps
constexpr int kTile = 8;           // tokens per block: one warp routes each
constexpr int kChunk = 64;         // dim values staged per step
constexpr int kMaxExperts = 512;   // shared memory: 8 x 512 x (4 + 4 + 1) bytes
constexpr int kPerThread = kMaxExperts / kThreads;
constexpr int kMaxGroups = 64;

struct Dims {
  int tokens, dim, experts, groups, topk_groups, topk;
  double route_scale;  // as the reference multiplies: a value not exact in FP32 must not be narrowed
  bool sigmoid, bias;
};

__device__ __forceinline__ bool better(float a, int ia, float b, int ib) {
  if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || ia < ib);
  return a > b || (a == b && ia < ib);
}

// The best index in [lo, hi) of vals not flagged in `skip` (lane-strided scan, then a shuffle
// reduction under `better`); every lane gets it; -1 when every index is skipped.
__device__ int warp_best(const float* vals, const uint8_t* skip, int lo, int hi) {
  const int lane = threadIdx.x & 31;
  float bv = 0.0f;
  int bi = -1;
  for (int i = lo + lane; i < hi; i += 32)
    if (!skip[i] && (bi < 0 || better(vals[i], i, bv, bi))) {
      bv = vals[i];
      bi = i;
    }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && (bi < 0 || better(ov, oi, bv, bi))) {
      bv = ov;
      bi = oi;
    }
  }
  return bi;
}

__global__ void __launch_bounds__(kThreads) gate_kernel(Dims d, const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                                                        const float* __restrict__ bias, uint16_t* __restrict__ out_w,
                                                        int32_t* __restrict__ out_i) {
  __shared__ float xs[kTile][kChunk];
  __shared__ float scores[kTile][kMaxExperts], biased[kTile][kMaxExperts];
  __shared__ uint8_t skip[kTile][kMaxExperts];
  __shared__ float group_score[kTile][kMaxGroups];
  __shared__ uint8_t group_skip[kTile][kMaxGroups], group_taken[kTile][kMaxGroups];
  const int t0 = blockIdx.x * kTile, tid = threadIdx.x;
  const int nt = min(kTile, d.tokens - t0);

  double acc[kPerThread][kTile];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j)
#pragma unroll
    for (int t = 0; t < kTile; ++t) acc[j][t] = 0.0;
  for (int k0 = 0; k0 < d.dim; k0 += kChunk) {
    const int kn = min(kChunk, d.dim - k0);
    for (int i = tid; i < kTile * kChunk; i += kThreads) {
      const int t = i / kChunk, k = i % kChunk;
      xs[t][k] = (t < nt && k < kn) ? gpu::bf16_f32(x[static_cast<int64_t>(t0 + t) * d.dim + k0 + k]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int e = tid + j * kThreads;
      if (e >= d.experts) break;
      const uint16_t* wr = w + static_cast<int64_t>(e) * d.dim + k0;
      for (int k = 0; k < kn; ++k) {
        const double wv = gpu::bf16_f32(wr[k]);
#pragma unroll
        for (int t = 0; t < kTile; ++t) acc[j][t] = __fma_rn(static_cast<double>(xs[t][k]), wv, acc[j][t]);  // exact product
      }
    }
    __syncthreads();
  }
  // Logits rounded once to FP32; sigmoid scores here, softmax below.
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int e = tid + j * kThreads;
    if (e >= d.experts) break;
    for (int t = 0; t < kTile; ++t) {
      const float logit = __double2float_rn(acc[j][t]);
      scores[t][e] = d.sigmoid ? __double2float_rn(1.0 / (1.0 + exp(-static_cast<double>(logit)))) : logit;
    }
  }
  __syncthreads();
  const int warp = tid >> 5, lane = tid & 31;
  if (warp >= nt) return;
  float* s = scores[warp];
  float* b = biased[warp];
  uint8_t* sk = skip[warp];
  if (!d.sigmoid && lane == 0) {  // softmax over the FP32 logits in FP64, summed in expert order
    double m = -INFINITY, z = 0;
    for (int e = 0; e < d.experts; ++e) m = fmax(m, static_cast<double>(s[e]));
    for (int e = 0; e < d.experts; ++e) z += exp(static_cast<double>(s[e]) - m);
    for (int e = 0; e < d.experts; ++e) s[e] = __double2float_rn(exp(static_cast<double>(s[e]) - m) / z);
  }
  __syncwarp();
  for (int e = lane; e < d.experts; e += 32) {
    b[e] = (d.bias && bias) ? __fadd_rn(s[e], bias[e]) : s[e];
    sk[e] = 0;
  }
  __syncwarp();
  if (d.groups > 1) {
    const int per = d.experts / d.groups;
    for (int g = 0; g < d.groups; ++g) {
      const int b1 = warp_best(b, sk, g * per, (g + 1) * per);
      float gs = b[b1];
      if (d.bias) {
        if (lane == 0) sk[b1] = 1;
        __syncwarp();
        const int b2 = warp_best(b, sk, g * per, (g + 1) * per);
        if (b2 >= 0) gs = __fadd_rn(b[b1], b[b2]);  // a one-expert group keeps its top-1
        __syncwarp();
        if (lane == 0) sk[b1] = 0;
      }
      if (lane == 0) {
        group_score[warp][g] = gs;
        group_skip[warp][g] = 1;  // set to 0 for the kept groups below
      }
      __syncwarp();
    }
    uint8_t* gsk = group_skip[warp];
    uint8_t* taken = group_taken[warp];
    for (int g = lane; g < d.groups; g += 32) taken[g] = 0;
    __syncwarp();
    for (int j = 0; j < d.topk_groups; ++j) {
      const int g = warp_best(group_score[warp], taken, 0, d.groups);
      if (lane == 0) {
        taken[g] = 1;
        gsk[g] = 0;
      }
      __syncwarp();
    }
    for (int e = lane; e < d.experts; e += 32)
      if (gsk[e / per]) b[e] = -INFINITY;
    __syncwarp();
  }
  const int64_t row = static_cast<int64_t>(t0 + warp) * d.topk;
  double sum = 0;
  for (int j = 0; j < d.topk; ++j) {
    const int e = warp_best(b, sk, 0, d.experts);
    if (lane == 0) {
      sk[e] = 1;
      out_i[row + j] = e;
      sum += static_cast<double>(s[e]);  // in choice order, as the reference
    }
    __syncwarp();
  }
  if (lane == 0)
    for (int j = 0; j < d.topk; ++j) {
      double wj = static_cast<double>(s[out_i[row + j]]);
      if (d.sigmoid) wj = __ddiv_rn(wj, sum);
      out_w[row + j] = gpu::bf16_from_f64(__dmul_rn(wj, d.route_scale));
    }
}

std::string unsupported(const Params& p) { return gate_unsupported(p.routing(), p.tokens); }

Dims dims_of(const Routing& r, int64_t tokens) {
  return Dims{static_cast<int>(tokens), static_cast<int>(r.dim), static_cast<int>(r.experts), static_cast<int>(r.groups),
              static_cast<int>(r.topk_groups), static_cast<int>(r.topk), r.route_scale, r.sigmoid, r.bias};
}

class CudaRunner final : public DeviceRunner<Params> {
 public:
  CudaRunner(const Params& p, Io& io) : DeviceRunner(p, io, "moe_gate/cuda") {
    d_ = dims_of(p_.routing(), p_.tokens);
  }
  void run() override {
    const auto grid = static_cast<unsigned>((p_.tokens + kTile - 1) / kTile);
    gate_kernel<<<grid, kThreads>>>(d_, dev_.in<uint16_t>(0), dev_.in<uint16_t>(1), d_.bias ? dev_.in<float>(2) : nullptr,
                                    dev_.out<uint16_t>(0), dev_.out<int32_t>(1));
    DSV3_CUDA_CHECK(cudaGetLastError());
  }

 private:
  Dims d_{};
};

}  // namespace

std::string gate_unsupported(const Routing& r, int64_t tokens) {
  if (r.experts > kMaxExperts) return "more than " + std::to_string(kMaxExperts) + " experts (shared-memory tiles)";
  if (r.groups > kMaxGroups) return "more than " + std::to_string(kMaxGroups) + " expert groups";
  if (tokens > (int64_t{1} << 30) || r.dim > (int64_t{1} << 30)) return "tokens or dim beyond 2^30";
  return {};
}

void launch_gate(const Routing& r, int64_t tokens, const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* out_w,
                 int32_t* out_i, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>((tokens + kTile - 1) / kTile);
  gate_kernel<<<grid, kThreads, 0, stream>>>(dims_of(r, tokens), x, w, r.bias ? bias : nullptr, out_w, out_i);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv3::moe_gate

void dsv3_register_moe_gate_cuda() {
  using namespace dsv3;
  using namespace dsv3::moe_gate;
  Variant v = cuda_variant<Params, CudaRunner>(
      "moe_gate", "cuda",
      "fused gate: FP64-accumulated logits, scores, bias, group top-2 / top-k, expert top-k, weights (optimized/moe_gate.cu)",
      unsupported);
  // Built to match the reference bit for bit (the logits are FP64 sums of exact BF16 products
  // rounded once to FP32; scores, selection and weights are the reference's operations in its
  // order), but held to the routing checks of reference/moe_gate_check.hpp, not to bit-exactness:
  // the device's FP64 exp may differ from glibc's by an FP64 ulp, which survives the FP32 rounding
  // with probability ~2^-29 per score, and a near tie may then fall the other way (equal scores
  // go to the lower index here as in the reference, but torch.topk leaves that order open).
  v.tolerances["*"] = Tolerance::by_component_check(
      "routing as expert sets per token, tie-aware (selection scores within 2^-20 of the k-th, group scores within 2^-18, may swap), weights "
      "by expert within 1 BF16 ulp: a score one FP32 ulp off (device exp) can move a weight's BF16 rounding by one ulp");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}
