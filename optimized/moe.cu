// MoE permute and combine on the GPU (variant "cuda"; the definitions are reference/moe.hpp).
//
// permute, deterministic (rows within an expert in ascending token order, like the reference):
//   1. count     one block per 256-token tile: a shared-memory histogram of its tokens' experts
//                -> tile_counts[tile][E]
//   2. offsets   one thread per expert: exclusive scan of its tile counts -> tile_base[tile][E],
//                count[e]; then one block scans the padded counts -> starts[E + 1]
//   3. scatter   one block per tile, one thread per token: a choice's rank among the tile's
//                earlier tokens with the same expert (from shared memory) gives its row
//                starts[e] + tile_base + rank; row_of and group_index written, the x row copied
//                with 16-byte stores by the block's warps
//   4. padding   one block per expert: the rows past its count zeroed, group_index -1
// combine: one block per token, 8 columns per thread; y = RN_bf16(sum_j w_j * out[row_of[t, j]])
// accumulated in FP32 with fmaf in j order (the tolerance below is derived from that).
// The layer is variant cublas_bf16 (optimized/moe_layer.cu), built on this permutation. Not yet run
// on a GPU: correctness is shown only by the gpu tests on a lent device.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "optimized/bf16_device.cuh"
#include "optimized/cuda_check.hpp"
#include "optimized/device_io.hpp"
#include "optimized/moe_device.hpp"
#include "reference/moe.hpp"

namespace dsv3::moe {
namespace {

constexpr int kTile = 256;        // tokens per tile (threads per block in count/scatter)
constexpr int kMaxExperts = 1024;  // shared-memory histogram and the single-block scan

__global__ void count_kernel(const int32_t* __restrict__ idx, int tokens, int k, int experts, int32_t* tile_counts) {
  __shared__ int32_t hist[kMaxExperts];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  const int t = blockIdx.x * kTile + threadIdx.x;
  if (t < tokens)
    for (int j = 0; j < k; ++j) atomicAdd(&hist[idx[static_cast<int64_t>(t) * k + j]], 1);  // counts: order-free
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) tile_counts[static_cast<int64_t>(blockIdx.x) * experts + e] = hist[e];
}

__global__ void offsets_kernel(const int32_t* tile_counts, int tiles, int experts, int32_t* tile_base, int32_t* count) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= experts) return;
  int32_t run = 0;
  for (int b = 0; b < tiles; ++b) {
    tile_base[static_cast<int64_t>(b) * experts + e] = run;
    run += tile_counts[static_cast<int64_t>(b) * experts + e];
  }
  count[e] = run;
}

__global__ void starts_kernel(const int32_t* count, int experts, int align, int64_t* starts) {
  if (threadIdx.x != 0) return;  // E <= 1024 values: a serial scan costs microseconds
  int64_t s = 0;
  for (int e = 0; e < experts; ++e) {
    starts[e] = s;
    s += (static_cast<int64_t>(count[e]) + align - 1) / align * align;
  }
  starts[experts] = s;
}

__global__ void scatter_kernel(const uint16_t* __restrict__ x, const int32_t* __restrict__ idx, int tokens, int k, int dim,
                               int experts, const int32_t* tile_base, const int64_t* starts, uint16_t* xp,
                               int32_t* group_index, int32_t* row_of) {
  extern __shared__ int32_t tile_idx[];  // [kTile * k]
  const int t0 = blockIdx.x * kTile, n = min(kTile, tokens - t0);
  for (int i = threadIdx.x; i < n * k; i += blockDim.x) tile_idx[i] = idx[static_cast<int64_t>(t0) * k + i];
  __syncthreads();
  if (threadIdx.x < n) {
    const int t = threadIdx.x;
    for (int j = 0; j < k; ++j) {
      const int e = tile_idx[t * k + j];
      int rank = 0;  // earlier tokens of the tile that chose e (a token chooses an expert once)
      for (int q = 0; q < t * k; ++q) rank += tile_idx[q] == e;
      const int64_t row = starts[e] + tile_base[static_cast<int64_t>(blockIdx.x) * experts + e] + rank;
      row_of[static_cast<int64_t>(t0 + t) * k + j] = static_cast<int32_t>(row);
      group_index[row] = e;
    }
  }
  __syncthreads();
  // Copy rows: each warp takes (token, choice) pairs; 16-byte chunks when dim % 8 == 0.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int q = warp; q < n * k; q += warps) {
    const int t = q / k;
    const int64_t row = row_of[static_cast<int64_t>(t0) * k + q];
    const uint16_t* src = x + static_cast<int64_t>(t0 + t) * dim;
    uint16_t* dst = xp + row * dim;
    if (dim % 8 == 0) {
      for (int c = lane * 8; c < dim; c += 32 * 8)
        *reinterpret_cast<uint4*>(dst + c) = __ldg(reinterpret_cast<const uint4*>(src + c));
    } else {
      for (int c = lane; c < dim; c += 32) dst[c] = src[c];
    }
  }
}

__global__ void padding_kernel(const int32_t* count, const int64_t* starts, int dim, uint16_t* xp, int32_t* group_index) {
  const int e = blockIdx.x;
  const int64_t first = starts[e] + count[e], end = starts[e + 1];
  for (int64_t row = first; row < end; ++row) {
    if (threadIdx.x == 0) group_index[row] = -1;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) xp[row * dim + c] = 0;
  }
}

// shared (nullable): a [T, dim] BF16 term added after the k choices (the layer's shared expert).
__global__ void combine_kernel(const uint16_t* __restrict__ expert_out, const int32_t* __restrict__ row_of,
                               const uint16_t* __restrict__ w, const uint16_t* __restrict__ shared, int k, int dim,
                               uint16_t* __restrict__ y) {
  const int t = blockIdx.x;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int64_t row = row_of[static_cast<int64_t>(t) * k + j];
      acc = __fmaf_rn(gpu::bf16_f32(w[static_cast<int64_t>(t) * k + j]), gpu::bf16_f32(expert_out[row * dim + c]), acc);
    }
    if (shared) acc = __fadd_rn(acc, gpu::bf16_f32(shared[static_cast<int64_t>(t) * dim + c]));
    y[static_cast<int64_t>(t) * dim + c] = gpu::to_bf16(acc);
  }
}

std::string unsupported(const Params& p) {
  if (p.op == Op::layer) return "the layer is variant cublas_bf16 (the gate, this permutation, cuBLAS BF16 experts)";
  const moe_gate::Routing r = p.routing();
  if (std::string why = DevicePermute::unsupported(p.tokens, r); !why.empty()) return why;
  if (p.op == Op::combine && r.topk > 8) return "combine's tolerance is derived for k <= 8 choices";
  return {};
}

class CudaRunner final : public Runner {
 public:
  CudaRunner(const Params& p, Io& io) : p_(p), r_(p.routing()), io_(io), dev_(io), perm_(p.tokens, r_.experts) {
    const std::string why = unsupported(p_);
    if (!why.empty()) throw std::invalid_argument("moe/cuda: " + why);
  }
  void run() override {
    const int T = static_cast<int>(p_.tokens), k = static_cast<int>(r_.topk), d = static_cast<int>(r_.dim), E = static_cast<int>(r_.experts);
    if (p_.op == Op::combine) {
      launch_combine(dev_.in<uint16_t>(0), dev_.in<int32_t>(1), dev_.in<uint16_t>(2), nullptr, T, k, d, dev_.out<uint16_t>(0));
      return;
    }
    const int32_t* idx = dev_.in<int32_t>(1);
    perm_.plan(idx, T, k, E, static_cast<int>(p_.align));
    perm_.scatter(dev_.in<uint16_t>(0), idx, T, k, d, E, dev_.out<uint16_t>(0), dev_.out<int32_t>(1), dev_.out<int32_t>(2));
  }
  void fetch() override { dev_.fetch(io_); }

 private:
  Params p_;
  moe_gate::Routing r_;
  Io& io_;
  DeviceIo dev_;
  DevicePermute perm_;
};

}  // namespace

void launch_combine(const uint16_t* expert_out, const int32_t* row_of, const uint16_t* w, const uint16_t* shared, int tokens, int k,
                    int dim, uint16_t* y) {
  combine_kernel<<<tokens, 256>>>(expert_out, row_of, w, shared, k, dim, y);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

std::string DevicePermute::unsupported(int64_t tokens, const moe_gate::Routing& r) {
  if (r.experts > kMaxExperts) return "more than " + std::to_string(kMaxExperts) + " experts (the permutation's shared-memory histogram)";
  if (tokens > 0x7fffffff / r.topk) return "tokens * k >= 2^31";
  return {};
}

DevicePermute::DevicePermute(int64_t tokens, int64_t experts)
    : tiles_(static_cast<int>((tokens + kTile - 1) / kTile)), experts_(experts) {
  const auto E = static_cast<std::size_t>(experts), tiles = static_cast<std::size_t>(tiles_);
  tile_counts_ = DeviceBuffer(tiles * E * 4, "moe tile_counts");
  tile_base_ = DeviceBuffer(tiles * E * 4, "moe tile_base");
  count_ = DeviceBuffer(E * 4, "moe count");
  starts_ = DeviceBuffer((E + 1) * 8, "moe starts");
}

void DevicePermute::plan(const int32_t* idx, int tokens, int k, int experts, int align) {
  count_kernel<<<tiles_, kTile>>>(idx, tokens, k, experts, tile_counts_.as<int32_t>());
  offsets_kernel<<<(experts + 255) / 256, 256>>>(tile_counts_.as<int32_t>(), tiles_, experts, tile_base_.as<int32_t>(),
                                                 count_.as<int32_t>());
  starts_kernel<<<1, 32>>>(count_.as<int32_t>(), experts, align, starts_.as<int64_t>());
  DSV3_CUDA_CHECK(cudaGetLastError());
}

std::vector<int64_t> DevicePermute::starts_on_host() const {
  std::vector<int64_t> s(static_cast<std::size_t>(experts_ + 1));
  DSV3_CUDA_CHECK(cudaMemcpy(s.data(), starts_.data(), s.size() * 8, cudaMemcpyDeviceToHost));
  return s;
}

void DevicePermute::scatter(const uint16_t* x, const int32_t* idx, int tokens, int k, int dim, int experts, uint16_t* xp,
                            int32_t* group_index, int32_t* row_of) {
  scatter_kernel<<<tiles_, kTile, static_cast<std::size_t>(kTile) * static_cast<std::size_t>(k) * 4>>>(
      x, idx, tokens, k, dim, experts, tile_base_.as<int32_t>(), starts_.as<int64_t>(), xp, group_index, row_of);
  padding_kernel<<<experts, 256>>>(count_.as<int32_t>(), starts_.as<int64_t>(), dim, xp, group_index);
  DSV3_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv3::moe

void dsv3_register_moe_cuda() {
  using namespace dsv3;
  using namespace dsv3::moe;
  Variant v = cuda_variant<Params, CudaRunner>(
      "moe", "cuda",
      "permute: tile histograms, scanned offsets, rank-in-tile scatter (deterministic order); combine: block per token, FP32 fmaf (optimized/moe.cu)",
      unsupported);
  v.tolerances["*"] = Tolerance::bit_exact("permute moves values and computes integer rows in the reference's order: nothing is rounded");
  // combine: the FP32 fmaf chain of k terms is within k 2^-24 sum_j |w_j v_j| (times 1.01 for the
  // higher-order terms) of the exact sum; both sides then round once to BF16 (unit roundoff 2^-8
  // each, relative to values within 2^-8 of ref): 2^-7 * 1.01 * |ref|.
  v.tolerances["y"] = Tolerance::bounded_by(8 * 1.01 * 0x1p-24, 0x1p-7 * 1.01, false,
                                            "FP32 fmaf over k <= 8 choices (8 * 2^-24 of sum |w v|, the magnitude aid) "
                                            "plus one BF16 rounding on each side (2 * 2^-8 of |ref|)");
  v.experimental = kNotYetRunOnGpu;
  Registry::instance().add(std::move(v));
  register_cublas_layer_variant();
}
