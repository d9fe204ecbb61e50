// The verification step of speculative decoding on the GPU (variant "cuda"; the rules are
// reference/mtp_accept.hpp).
//
// One block of 256 threads per sequence, drafts in order. Greedy: a block argmax over p[j]
// (coalesced strided loads; ties to the lowest index, as the reference). Sample: the acceptance
// test u q[d] < p[d] in FP64 (exact: a 24-bit u times an FP32 q), and the draw from the integer
// weights floor(max(0, p - q) 2^46): a block sum of the weights, threshold = floor(total bits /
// 2^32) (a 128-bit product through __umul64hi), then tile by tile an inclusive block scan until
// the running sum passes the threshold. Integer sums are exact in any order, so the token is the
// reference's: the tolerance is bit-exact. Memory-bound: p (and q) rows read once or twice.
// Not yet run on a GPU: correctness is shown only by the gpu tests on a lent device.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "reference/mtp.hpp"

namespace dsv3::mtp {
namespace {

constexpr int kThreads = 256;
using u64 = unsigned long long;

__device__ __forceinline__ u64 grid_weight_dev(float p, float q) {
  const double r = __dsub_rn(static_cast<double>(p), static_cast<double>(q));
  if (!(r > 0)) return 0;
  return __double2ull_rz(__dmul_rn(r, 0x1p46));  // a power-of-two scaling is exact
}

struct ArgMax {
  float v;
  int i;
};
struct ArgMaxOp {
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};

using Reduce64 = cub::BlockReduce<u64, kThreads>;
using Scan64 = cub::BlockScan<u64, kThreads>;
using ReduceArg = cub::BlockReduce<ArgMax, kThreads>;

struct Shared {
  union {
    typename Reduce64::TempStorage reduce;
    typename Scan64::TempStorage scan;
    typename ReduceArg::TempStorage arg;
  } tmp;
  u64 total;
  int token;
  int found;
};

__device__ int block_argmax(const float* __restrict__ p, int vocab, Shared& sh) {
  ArgMax best{p[0], 0};
  for (int x = threadIdx.x; x < vocab; x += kThreads) {
    const float v = p[x];
    if (v > best.v || (v == best.v && x < best.i)) best = ArgMax{v, x};
  }
  const ArgMax b = ReduceArg(sh.tmp.arg).Reduce(best, ArgMaxOp());
  if (threadIdx.x == 0) sh.token = b.i;
  __syncthreads();
  const int t = sh.token;
  __syncthreads();
  return t;
}

// The token drawn from max(0, p - q) (q null: from p) with `bits`; -1 when every weight is 0.
__device__ int block_sample(const float* __restrict__ p, const float* __restrict__ q, int vocab, uint32_t bits, Shared& sh) {
  u64 local = 0;
  for (int x = threadIdx.x; x < vocab; x += kThreads) local += grid_weight_dev(p[x], q ? q[x] : 0.0f);
  const u64 total = Reduce64(sh.tmp.reduce).Sum(local);
  if (threadIdx.x == 0) {
    sh.total = total;
    sh.found = 0;
    sh.token = -1;
  }
  __syncthreads();
  const u64 all = sh.total;
  if (all == 0) {
    __syncthreads();
    return -1;
  }
  const u64 lo = all * bits, hi = __umul64hi(all, static_cast<u64>(bits));
  const u64 threshold = (hi << 32) | (lo >> 32);  // floor(total bits / 2^32) < total
  u64 carry = 0;
  for (int base = 0; base < vocab; base += kThreads) {
    const int x = base + static_cast<int>(threadIdx.x);
    const u64 w = x < vocab ? grid_weight_dev(p[x], q ? q[x] : 0.0f) : 0;
    u64 inclusive, tile_total;
    Scan64(sh.tmp.scan).InclusiveSum(w, inclusive, tile_total);
    inclusive += carry;
    if (x < vocab && inclusive > threshold && inclusive - w <= threshold) {  // exactly one thread
      sh.token = x;
      sh.found = 1;
    }
    __syncthreads();
    const bool done = sh.found;
    __syncthreads();  // the scan's storage and sh.found are reused by the next tile
    if (done) break;
    carry += tile_total;
  }
  const int t = sh.token;
  __syncthreads();
  return t;
}

__global__ void verify_kernel(int rule_sample, const float* __restrict__ P, const float* __restrict__ Q, const int32_t* __restrict__ D,
                              const uint32_t* __restrict__ W, int K, int vocab, int32_t* __restrict__ accepted, int32_t* __restrict__ tokens) {
  __shared__ Shared sh;
  const int64_t b = blockIdx.x;
  const float* p = P + b * (K + 1) * vocab;
  const float* q = Q + b * K * vocab;
  const int32_t* draft = D + b * K;
  const uint32_t* bits = W + b * (K + 1);
  int32_t* out = tokens + b * (K + 1);
  for (int j = threadIdx.x; j <= K; j += kThreads) out[j] = -1;
  __syncthreads();
  int j = 0;
  for (; j < K; ++j) {
    const float* pj = p + static_cast<int64_t>(j) * vocab;
    const int d = draft[j];
    int correction = -1;
    bool accept;
    if (!rule_sample) {
      correction = block_argmax(pj, vocab, sh);
      accept = correction == d;
    } else {
      const double u = static_cast<double>(bits[j] >> 8) * 0x1p-24;
      accept = __dmul_rn(u, static_cast<double>(q[static_cast<int64_t>(j) * vocab + d])) < static_cast<double>(pj[d]);
    }
    if (accept) {
      if (threadIdx.x == 0) out[j] = d;
      continue;
    }
    if (rule_sample) {
      correction = block_sample(pj, q + static_cast<int64_t>(j) * vocab, vocab, bits[K], sh);
      if (correction < 0) correction = block_sample(pj, nullptr, vocab, bits[K], sh);
    }
    if (threadIdx.x == 0) {
      out[j] = correction;
      accepted[b] = j;
    }
    return;
  }
  const float* pk = p + static_cast<int64_t>(K) * vocab;
  const int bonus = rule_sample ? block_sample(pk, nullptr, vocab, bits[K], sh) : block_argmax(pk, vocab, sh);
  if (threadIdx.x == 0) {
    out[K] = bonus;
    accepted[b] = K;
  }
}

std::string unsupported(const Params& p) {
  if (p.batch > 0x7fffffff) return "batch > 2^31 - 1 (one block per sequence)";
  return {};
}

class CudaRunner final : public DeviceRunner<Params> {
 public:
  CudaRunner(const Params& p, Io& io) : DeviceRunner(p, io, "mtp/cuda") {}
  void run() override {
    verify_kernel<<<static_cast<unsigned>(p_.batch), kThreads>>>(
        p_.rule == Rule::sample, dev_.in<float>(0), dev_.in<float>(1), dev_.in<int32_t>(2),
        reinterpret_cast<const uint32_t*>(dev_.in<int32_t>(3)), static_cast<int>(p_.drafts), static_cast<int>(p_.vocab),
        dev_.out<int32_t>(0), dev_.out<int32_t>(1));
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
};

}  // namespace
}  // namespace dsv3::mtp

void dsv3_register_mtp_cuda() {
  using namespace dsv3;
  using namespace dsv3::mtp;
  Variant v = cuda_variant<Params, CudaRunner>(
      "mtp", "cuda", "one block per sequence: block argmax, exact FP64 acceptance test, integer-grid draw by block scan (optimized/mtp.cu)",
      unsupported);
  v.tolerances["*"] = Tolerance::bit_exact(
      "the same decisions: the acceptance test is one exact FP64 comparison and the draw sums integer weights "
      "(exact in any order), so the reference's tokens are reproduced from the same bits");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
}
