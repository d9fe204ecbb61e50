// Expert-parallel dispatch and combine (v3-facts §3.6, §7.2, §9.1; DeepEP's normal kernels): the
// reference, with every rank simulated in one process.
//
// Topology: R ranks, G per node (nodes = R / G), E experts, expert e on rank e / (E / R)
// (moe_gate::Placement). Every rank holds T tokens of D channels and their routing (top-K experts
// and weights). Routing comes from the config's gate numbers with one group per node and the node
// limit M as n_limited_groups (V3: 8 groups of 32 experts on 8 nodes, M = 4), routed by
// moe_gate::route_token from the synthetic skewed router of reference/netmodel_node_limit.hpp.
//
// Dispatch: each token goes once to every rank that holds one of its experts (a rank's several
// experts share one copy, as DeepEP sends per rank), as FP8 codes with 1x128 scales (fp8_quant's
// quant_1x128; power-of-two UE8M0-valued scales as an option) or as BF16. Rank d's receive buffer
// lists its tokens in (source rank, source token) order, each with its K choices as global expert
// ids where the expert is on d and -1 elsewhere, and their weights (0 elsewhere).
// Experts: expert e multiplies its dequantized input by s_e = 1 + e / E (FP64), so a contribution
// that reaches the wrong expert shows as a wrong scale.
// Combine: rank d sends back, per received token, the partial sum over its local choices of
// w_k s_e x^ (FP64, rounded once to BF16: the BF16 combine of v3-facts §7.2); the source adds the
// partials in ascending rank order in FP32 and rounds once to BF16: y [T, D] per rank.
// LogFMT-10 combine (option; v3-facts §4.3, DeepEP's low-latency combine): each BF16 partial is
// encoded per 128 channels by fp8_quant's logfmt_encode (10 bits; a group with amax >= 1, a
// non-finite value or a single magnitude is sent as BF16, DeepEP's rule) and decoded by the source
// to FP32 (not rounded to BF16, as DeepEP decodes and accumulates) before the same FP32 sum.
//
// The V3 path and the byte accounting (V3-TR §3.2.2; as reference/netmodel_node_limit.hpp counts):
// a token bound for a rank on its own node goes over NVLink (none to itself: local); for a remote
// node, one IB send to the rank with the source's in-node index there (the landing rank), then one
// NVLink forward from the landing rank to each further target rank on that node. Per rank:
// ib_sends (as source), nvlink_sends (direct sends as source + forwards as landing rank), local
// copies; the combine retraces the path, so its counts are the same. Bytes per dispatch send:
// FP8 D + 4 D / 128 (codes + f32 scales), BF16 2 D; combine 2 D, LogFMT-10 10 D / 8 + 4 D / 128
// (DeepEP's test count, v3-facts G31: every group as encoded, though a fallback group carries its
// 2 x 128 BF16 bytes; metadata not counted).
//
// Execution: dispatch and combine are per-rank packing, a transport that moves the packed
// buffers, and per-rank unpacking; the simulated execution's transport is a move in memory, the
// MPI execution's is point-to-point messages (tools/ep_mpi.cpp). The GPU executions run the same
// phases as kernels over their own 16-byte-aligned rows (optimized/ep_device.hpp): every rank on
// one device (variant cuda) or one rank per process over NCCL (tools/ep_nccl.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/fp8_quant.hpp"
#include "reference/moe_gate.hpp"
#include "reference/moe_gate_balance.hpp"

namespace dsv3::ep {

enum class Wire : uint8_t { fp8, fp8_pow2, bf16 };
std::string_view wire_name(Wire w);
Wire wire_from_name(std::string_view s);  // throws std::invalid_argument naming the known ones
enum class CombineWire : uint8_t { bf16, logfmt10 };
std::string_view combine_wire_name(CombineWire w);
CombineWire combine_wire_from_name(std::string_view s);  // throws std::invalid_argument naming the known ones

// How a case's routing is drawn: the skewed router; every token to the experts of rank 0; or
// every token to rank 0's experts except on rank 0's own tokens (rank 0 then receives from all,
// the others receive nothing).
enum class Draw : uint8_t { router, all_to_rank0 };

struct Params {
  std::string model = "deepseek-v3-671b";  // gate numbers (experts, top-K) from datasets/models
  int64_t ranks = 4, ranks_per_node = 2;
  int64_t tokens = 16;         // per rank
  int64_t dim = 512;           // channels D (multiple of 128); the config's own dim is 7168 for V3
  int64_t node_limit = 0;      // M; 0 = min(the config's n_limited_groups, nodes)
  Wire wire = Wire::fp8;
  CombineWire combine = CombineWire::bf16;
  int x_scale_log2 = 0;        // x = 2^x_scale_log2 N(0, 1) (exact in BF16): small partials keep LogFMT groups encoded
  Draw draw = Draw::router;
  std::string to_string() const;  // "deepseek-v3-671b R=4 G=2 T=16 D=512 M=2 fp8" (+ " combine=logfmt10", " x=2^-6")
  void validate() const;          // throws std::invalid_argument naming the field
  int64_t nodes() const { return ranks / ranks_per_node; }
  int64_t limit() const;          // M as used
  moe_gate::Routing routing() const;      // groups = nodes, topk_groups = M
  moe_gate::Placement placement() const;
  int64_t capacity() const { return ranks * tokens; }  // receive rows per rank (the worst case)
  int64_t scale_groups() const { return dim / 128; }
};

// Inputs: x bf16 [R, T, D], indices i32 [R, T, K], weights f32 [R, T, K].
// Outputs (rows past a rank's count are zero, ids -1): recv_count i32 [R],
// recv_meta i32 [R, cap, 2] (source rank, source token), recv_experts i32 [R, cap, K],
// recv_weights f32 [R, cap, K], recv_x (FP8 codes u8 or bf16) [R, cap, D],
// recv_scales f32 [R, cap, D / 128] (FP8 wires only), y bf16 [R, T, D],
// link_sends i32 [R, 3] (IB sends, NVLink sends, local copies per rank, dispatch).
std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);

// The per-rank pieces every execution shares (simulated: run_reference; MPI: tools/ep_mpi.cpp).
// Packets [peer] -> bytes. A dispatch row is source rank (i32), token (i32), K expert ids (i32,
// -1 where the expert is on another rank), K weights (f32), the payload (D FP8 codes or 2 D bytes
// of BF16) and, for FP8 wires, D / 128 f32 scales; a combine row is the token (i32) and D BF16,
// or for LogFMT-10 per 128-channel group its meta (f32 log2 amin, f32 log2 amax, u32 fallback)
// and 128 u16 codes (the BF16 bits in a fallback group).
using Packets = std::vector<std::vector<uint8_t>>;
int64_t payload_bytes(const Params& p);  // one row's channels on the wire: D E4M3 codes or 2 D bytes of BF16
int64_t scale_bytes(const Params& p);    // its 1x128 scales: 4 D / 128 (FP8 wires), 0 (BF16)
int64_t dispatch_row_bytes(const Params& p);
int64_t combine_row_bytes(const Params& p);
// Source rank s's dispatch packets, one per destination (rows in token order); with `sends`
// ([R, 3] i32) adds the V3 path's counts, the landing ranks' forwards included.
Packets pack_dispatch(const Params& p, int64_t s, const std::vector<Tensor>& in, int32_t* sends);
// Writes rank d's slices of the receive outputs from its dispatch packets (indexed by source).
void store_received(const Params& p, int64_t d, const Packets& received, std::vector<Tensor>& out);
// Rank d's combine packets (per source rank, the BF16 partials of the rows it received from it).
Packets pack_combine(const Params& p, const Packets& received);
// Source rank s's slice of y from its combine packets (indexed by sender, added in that order).
void finish_combine(const Params& p, int64_t s, const Packets& partials, std::vector<Tensor>& out);

// The wire form of rows [row0, row0 + rows) of x ([R T, D] BF16): FP8 codes (D per row) and
// their 1x128 scales (fp8_quant's quant_1x128), or the BF16 bits (2 D bytes per row).
struct WireRows {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};
WireRows encode_wire(const Params& p, const Tensor& x, int64_t row0, int64_t rows);
// The FP8 wires' quantizer for `rows` rows (quant_1x128, E4M3, the divide convention, f32 or
// UE8M0 scales): the CPU and GPU executions quantize with the same parameters.
fp8::Params wire_quant_params(const Params& p, int64_t rows);
// Channel j of a wire row as a receiver reads it: the BF16 value, or RN32(code * scale) with the
// row's scales at `scales` (f32, possibly unaligned).
float wire_value(const Params& p, const uint8_t* payload, const uint8_t* scales, int64_t j);

double bytes_per_dispatch_send(const Params& p);
double bytes_per_combine_send(const Params& p);

// The bandwidth of one dispatch or combine per link type, counted on the V3 path's physical
// sends: the bytes the busiest rank sends over that link divided by the time (the slowest
// rank's), so a figure compares with the link's speed:
//   ib_bytes(r)     = IB sends of rank r x bytes per send      (link_sends[r][0]: one per token
//                     and remote node; its own node is not counted)
//   nvlink_bytes(r) = NVLink sends of rank r x bytes per send  (link_sends[r][1]: direct sends to
//                     the other ranks of its node and forwards as landing rank)
//   bytes per send  = bytes_per_dispatch_send (payload + scales) or bytes_per_combine_send (2 D)
//   GB/s            = max_r bytes(r) / seconds / 1e9
// The combine retraces the dispatch's path, so the same counts serve both. Local copies move no
// link bytes. `sends` is link_sends' [R, 3] i32. Not the count of DeepEP's normal-kernel test
// (tests/test_internode.py, later tests/legacy/test_internode.py), which takes a rank's (token,
// node) pairs with its own node included as RDMA bytes and the rows it receives as NVL bytes, each
// over that rank's own time: summed over ranks those counts are the larger (docs/ep.md).
struct LinkBandwidth {
  double seconds = 0;
  double ib_bytes = 0, nvlink_bytes = 0;  // of the busiest rank for each link
  int64_t ib_rank = -1, nvlink_rank = -1;  // that rank (-1: no rank used the link)
  double ib_gbs() const { return seconds > 0 ? ib_bytes / seconds / 1e9 : 0; }
  double nvlink_gbs() const { return seconds > 0 ? nvlink_bytes / seconds / 1e9 : 0; }
};
LinkBandwidth link_bandwidth(const Params& p, const int32_t* sends, double bytes_per_send, double seconds);
// The same traffic in nccl-tests' all-to-all terms (the transports send each row straight to its
// target rank, no forwarding): with rows[s][d] the rows rank s dispatches to rank d,
//   S(r)   = the rows rank r sends, itself included, x bytes per send
//            (dispatch: sum_d rows[r][d]; combine, which sends every received row back: sum_s rows[s][r])
//   algbw  = max_r S(r) / time
//   busbw  = max_r (S(r) - its rows to itself x bytes per send) / time: the bytes that leave the
//            rank, nccl-tests' (n - 1) / n factor for uneven traffic
// Each maximum is over ranks, the rank named; time is the slowest rank's.
struct AllToAllBandwidth {
  double seconds = 0;
  double alg_bytes = 0, bus_bytes = 0;
  int64_t alg_rank = 0, bus_rank = 0;
  double algbw_gbs() const { return seconds > 0 ? alg_bytes / seconds / 1e9 : 0; }
  double busbw_gbs() const { return seconds > 0 ? bus_bytes / seconds / 1e9 : 0; }
};
std::vector<int64_t> rows_sent(const Params& p, const std::vector<Tensor>& in);  // [R R] row-major: rows[s][d]
AllToAllBandwidth alltoall_bandwidth(const Params& p, const std::vector<int64_t>& rows, bool combine, double bytes_per_send,
                                     double seconds);
double bytes_moved(const Params& p);  // every input read once and every output written once
double expert_scale(int64_t e, int64_t experts);  // s_e = 1 + e / E

}  // namespace dsv3::ep
