// Expert-parallel dispatch and combine on the GPU: the per-rank kernels of reference/ep.hpp's
// execution (packing, a transport, unpacking), shared by the one-GPU variant "cuda"
// (optimized/ep.cu: every rank's buffers on one device, the transport a device copy) and the
// one-process-per-GPU NCCL execution (tools/ep_nccl.cpp: this process's rank, the transport
// grouped ncclSend/ncclRecv). The kernels are in optimized/ep_kernels.cu. Every output equals the
// simulated execution's bit for bit: the FP8 wire is fp8_quant's quant_1x128 arithmetic, the
// experts' partial sums are FP64 with explicit round-to-nearest operations in the reference's order
// and one rounding to BF16, the source adds the partials in ascending sender rank in FP32.
//
// A device dispatch row (this execution's wire; the bytes per send that the bandwidth formulas of
// docs/ep.md count are unchanged, the reference's packed rows in ep.hpp are the CPU transports'
// form):
//   [0, 8)            source rank, token (i32)
//   [8, 8 + 4K)       the K choices' global expert ids where the expert is on the receiver, else -1
//   [8 + 4K, 8 + 8K)  their weights (f32), 0 elsewhere
//   [head, +payload)  D E4M3 codes or 2 D bytes of BF16, head = 8 + 8K rounded up to 16 bytes
//   [.., +scales)     D / 128 f32 scales (FP8 wires)
//   stride            rounded up to 16 bytes, so every copy moves whole 16-byte words
// A device combine row: the token (i32) in a 16-byte head; LogFMT-10 then D / 128 group metas
// (f32 log2 amin, f32 log2 amax, u32 fallback; padded to 16 bytes); then D u16 values (the BF16
// partial or its LogFMT codes: 10 bits carried in 16, as the reference's packets carry them).
//
// Buffers per rank: rows a rank sends go to one segment per destination in ascending destination,
// rows in token order; rows it receives land in one segment per source in ascending source (the
// reference's order). The combine retraces: the receiver's combine rows lie in its received order,
// and land at the source where its dispatch rows left.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "optimized/cuda_check.hpp"
#include "reference/ep.hpp"

namespace dsv3::ep::gpu {

// One case's sizes as the kernels see them (32-bit: unsupported_reason bounds them).
struct Geom {
  int32_t ranks = 1, per_node = 1, tokens = 1, topk = 1, dim = 128, experts = 1, experts_per_rank = 1, groups = 1;
  int32_t payload = 0, scales = 0;     // bytes of one row's channels and scales on the wire
  int32_t head = 0, row = 0;           // dispatch row: payload offset, stride
  int32_t combine_values = 0, combine_row = 0;  // combine row: values offset, stride
  int32_t send_cap = 0;                // rows a rank may send: T min(R, K)
  int32_t cap = 0;                     // rows a rank may receive: R T (the outputs' capacity)
  bool fp8 = true, pow2 = false, logfmt = false;
};
Geom geom_of(const Params& p);
std::string unsupported_reason(const Params& p);  // empty when the kernels run p

// Error bits a run sets on the device (check_errors() turns them into an exception).
enum ErrorBit : int32_t { kBadExpert = 1, kBadCombineToken = 2 };

// The device pointers of `local` consecutive ranks starting at global rank `rank0`: the case's
// inputs and outputs laid out as reference/ep.hpp's tensors (rank r's slice at base + r x its
// size, the local ranks' first), except link_sends: [R, 3] over the global ranks, which the
// kernels add to (an execution with several processes sums them).
struct Io {
  const uint16_t* x = nullptr;
  const int32_t* indices = nullptr;
  const float* weights = nullptr;
  int32_t* recv_count = nullptr;
  int32_t* recv_meta = nullptr;
  int32_t* recv_experts = nullptr;
  float* recv_weights = nullptr;
  uint8_t* recv_x = nullptr;
  float* recv_scales = nullptr;  // FP8 wires only
  uint16_t* y = nullptr;
  int32_t* link_sends = nullptr;
};

// The workspace and the phases of one dispatch and combine for ranks [rank0, rank0 + local).
// Every phase is asynchronous on the stream given; none allocates.
class Ranks {
 public:
  Ranks(const Params& p, int64_t rank0, int64_t local);  // allocates; throws std::invalid_argument when unsupported
  const Geom& geom() const { return g_; }
  int64_t rank0() const { return rank0_; }
  int64_t local() const { return local_; }

  // Dispatch, before the transport: zeroes link_sends and the error flag, finds each token's
  // targets (position per destination, counts per destination, link counts), then packs the rows
  // (the FP8 quantization fused: each token quantized once, written to every target).
  void pack_dispatch(const Io& io, cudaStream_t s);
  int32_t* sent() { return sent_.as<int32_t>(); }  // [local, R] rows to each destination
  int32_t* got() { return got_.as<int32_t>(); }    // [local, R] rows from each source: the transport fills it
  // After got() is filled (before the dispatch transport): where each source's rows land.
  void receive_offsets(cudaStream_t s);
  // After the dispatch transport: the received rows unpacked into the outputs.
  void unpack(const Io& io, cudaStream_t s);
  // Combine: each received row's weighted partial over the local experts, one row per received row.
  void pack_combine(cudaStream_t s);
  // After the combine transport: y of the local ranks' tokens.
  void finish_combine(const Io& io, cudaStream_t s);
  // After the stream is synchronized: throws std::runtime_error naming what the kernels found
  // (an expert id outside 0..E-1, a combine row for another token).
  void check_errors() const;

  // The one-device transports (every rank local): counts transposed, rows copied per (source, destination).
  void exchange_counts_locally(cudaStream_t s);
  void transport_dispatch_locally(cudaStream_t s);
  void transport_combine_locally(cudaStream_t s);

  // Local rank r's wire buffers, for a transport (byte offsets of segments from sent/got counts).
  uint8_t* send_rows(int64_t r) { return send_rows_.as<uint8_t>() + r * int64_t{g_.send_cap} * g_.row; }
  uint8_t* recv_rows(int64_t r) { return recv_rows_.as<uint8_t>() + r * int64_t{g_.cap} * g_.row; }
  uint8_t* combine_send(int64_t r) { return combine_send_.as<uint8_t>() + r * int64_t{g_.cap} * g_.combine_row; }
  uint8_t* combine_recv(int64_t r) { return combine_recv_.as<uint8_t>() + r * int64_t{g_.send_cap} * g_.combine_row; }

 private:
  Params p_;
  Geom g_;
  int64_t rank0_, local_;
  int sms_ = 1;
  DeviceBuffer pos_, sent_, got_, send_off_, recv_off_, send_rows_, recv_rows_, combine_send_, combine_recv_, error_;
};

// Prefix offsets of per-peer row counts (exclusive, n + 1 values): the host side of a transport.
std::vector<int64_t> offsets_of(const int32_t* counts, int64_t n);

}  // namespace dsv3::ep::gpu
