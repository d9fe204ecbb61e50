// Expert-parallel dispatch and combine, simulated ranks (semantics in ep.hpp): per-rank packing,
// a transport (here a copy), per-rank unpacking.
#include "reference/ep.hpp"

#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/fp8_math.hpp"
#include "core/model_config.hpp"
#include "reference/fp8_quant.hpp"
#include "reference/netmodel_node_limit.hpp"

namespace dsv3::ep {

std::string_view wire_name(Wire w) {
  switch (w) {
    case Wire::fp8: return "fp8";
    case Wire::fp8_pow2: return "fp8_pow2";
    case Wire::bf16: return "bf16";
  }
  return "?";
}

Wire wire_from_name(std::string_view s) {
  for (Wire w : {Wire::fp8, Wire::fp8_pow2, Wire::bf16})
    if (wire_name(w) == s) return w;
  throw std::invalid_argument("wire must be fp8, fp8_pow2 or bf16, got '" + std::string(s) + "'");
}

int64_t Params::limit() const {
  if (node_limit > 0) return node_limit;
  return std::min<int64_t>(find_model(model).n_limited_groups, nodes());
}

moe_gate::Routing Params::routing() const {
  moe_gate::Routing r = moe_gate::Routing::from(find_model(model));
  r.dim = dim;
  r.groups = nodes();
  r.topk_groups = limit();
  r.validate();
  return r;
}

moe_gate::Placement Params::placement() const { return {routing().experts, ranks, ranks_per_node}; }

std::string Params::to_string() const {
  std::ostringstream o;
  o << model << " R=" << ranks << " G=" << ranks_per_node << " T=" << tokens << " D=" << dim << " M=" << limit() << ' '
    << wire_name(wire);
  if (draw == Draw::all_to_rank0) o << " all_to_rank0";
  return o.str();
}

void Params::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("ep: " + what); };
  if (ranks < 1) bad("ranks must be >= 1, got " + std::to_string(ranks));
  if (ranks_per_node < 1 || ranks % ranks_per_node != 0)
    bad("ranks_per_node = " + std::to_string(ranks_per_node) + " does not divide ranks = " + std::to_string(ranks));
  if (tokens < 1) bad("tokens per rank must be >= 1, got " + std::to_string(tokens));
  if (dim < 128 || dim % 128 != 0) bad("dim must be a positive multiple of 128 (1x128 scales), got " + std::to_string(dim));
  if (node_limit < 0 || node_limit > nodes()) bad("node_limit must be in [0, nodes = " + std::to_string(nodes()) + "]");
  placement().validate();  // also validates the routing: experts divisible by nodes and ranks
  const moe_gate::Routing r = routing();
  if (draw == Draw::all_to_rank0 && r.experts / ranks < r.topk)
    bad("all_to_rank0 needs top-k = " + std::to_string(r.topk) + " experts on rank 0, which holds " + std::to_string(r.experts / ranks));
}

std::vector<TensorSpec> input_specs(const Params& p) {
  const int64_t k = p.routing().topk;
  return {{"x", DType::bf16, {p.ranks, p.tokens, p.dim}},
          {"indices", DType::i32, {p.ranks, p.tokens, k}},
          {"weights", DType::f32, {p.ranks, p.tokens, k}}};
}

std::vector<TensorSpec> output_specs(const Params& p) {
  const int64_t k = p.routing().topk, cap = p.capacity(), r = p.ranks;
  std::vector<TensorSpec> s = {{"recv_count", DType::i32, {r}},
                               {"recv_meta", DType::i32, {r, cap, 2}},
                               {"recv_experts", DType::i32, {r, cap, k}},
                               {"recv_weights", DType::f32, {r, cap, k}},
                               {"recv_x", p.wire == Wire::bf16 ? DType::bf16 : DType::e4m3, {r, cap, p.dim}}};
  if (p.wire != Wire::bf16) s.push_back({"recv_scales", DType::f32, {r, cap, p.scale_groups()}});
  s.push_back({"y", DType::bf16, {r, p.tokens, p.dim}});
  s.push_back({"link_sends", DType::i32, {r, 3}});
  return s;
}

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  std::vector<Tensor> in = allocate(input_specs(p));
  const uint64_t seed = seed_from(p.to_string());
  fill(in[0], Dist::normal, seed);
  const moe_gate::Routing r = p.routing();
  auto idx = in[1].span<int32_t>();
  auto w = in[2].span<float>();
  const int64_t n = p.ranks * p.tokens, k = r.topk;
  if (p.draw == Draw::all_to_rank0) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < k; ++j) {
        idx[static_cast<std::size_t>(t * k + j)] = static_cast<int32_t>(j);
        w[static_cast<std::size_t>(t * k + j)] = static_cast<float>(r.route_scale / static_cast<double>(k));
      }
    return in;
  }
  netmodel::NodeLimitInputs router;
  router.model = p.model;
  router.tokens = n;
  router.seed = seed;
  router.ranks = p.ranks;
  router.ranks_per_node = p.ranks_per_node;
  const std::vector<float> scores = netmodel::node_limit_scores(router, r);
  std::vector<double> wd(static_cast<std::size_t>(k));
  for (int64_t t = 0; t < n; ++t) {
    moe_gate::route_token(r, &scores[static_cast<std::size_t>(t * r.experts)], nullptr, &idx[static_cast<std::size_t>(t * k)], wd.data());
    for (int64_t j = 0; j < k; ++j) w[static_cast<std::size_t>(t * k + j)] = static_cast<float>(wd[static_cast<std::size_t>(j)]);
  }
  return in;
}

double expert_scale(int64_t e, int64_t experts) { return 1.0 + static_cast<double>(e) / static_cast<double>(experts); }

double bytes_per_dispatch_send(const Params& p) {
  return p.wire == Wire::bf16 ? 2.0 * static_cast<double>(p.dim) : static_cast<double>(p.dim) + 4.0 * static_cast<double>(p.scale_groups());
}
double bytes_per_combine_send(const Params& p) { return 2.0 * static_cast<double>(p.dim); }

double bytes_moved(const Params& p) {
  double b = 0;
  for (const auto& specs : {input_specs(p), output_specs(p)})
    for (const TensorSpec& s : specs) b += static_cast<double>(shape_numel(s.shape) * dtype_size(s.dtype));
  return b;
}

namespace {

// One token as it travels: its origin, its choices as seen by the receiving rank, its payload.
struct Row {
  int32_t src = -1, token = -1;
  std::vector<int32_t> experts;  // global id where the expert is on the receiving rank, else -1
  std::vector<float> weights;    // 0 where the expert is elsewhere
  std::vector<uint8_t> payload;  // FP8 codes (D) or BF16 bits (2 D bytes)
  std::vector<float> scales;     // FP8 wires: D / 128
};
using Buffers = std::vector<std::vector<std::vector<Row>>>;  // [from][to] -> rows

// The transport of the simulated execution: what `from` packed for `to` arrives at `to`, in
// ascending order of `from`.
std::vector<std::vector<Row>> transport(Buffers& send) {
  const std::size_t r = send.size();
  std::vector<std::vector<Row>> recv(r);
  for (std::size_t from = 0; from < r; ++from)
    for (std::size_t to = 0; to < r; ++to)
      for (Row& row : send[from][to]) recv[to].push_back(std::move(row));
  return recv;
}

struct Encoded {
  std::vector<uint8_t> codes;  // [T, D] (FP8) or the BF16 bits [T, 2 D]
  std::vector<float> scales;   // [T, D / 128]
};

// Rank s's tokens on the wire.
Encoded encode(const Params& p, const Tensor& x, int64_t s) {
  const int64_t t = p.tokens, d = p.dim;
  Encoded e;
  const auto* src = x.span<const uint16_t>().data() + s * t * d;
  if (p.wire == Wire::bf16) {
    e.codes.resize(static_cast<std::size_t>(t * d * 2));
    std::memcpy(e.codes.data(), src, e.codes.size());
    return e;
  }
  fp8::Params q;
  q.op = fp8::Op::quant_1x128;
  q.m = t;
  q.k = d;
  q.scale_fmt = p.wire == Wire::fp8_pow2 ? fp8::ScaleFmt::ue8m0 : fp8::ScaleFmt::f32;
  Tensor xs("x", DType::bf16, {t, d}), codes("codes", DType::e4m3, {t, d}), scales("scales", DType::f32, {t, d / 128});
  std::memcpy(xs.raw(), src, xs.nbytes());
  fp8::quant_1x128(xs, codes, scales, q);
  e.codes.assign(codes.span<const uint8_t>().begin(), codes.span<const uint8_t>().end());
  e.scales.assign(scales.span<const float>().begin(), scales.span<const float>().end());
  return e;
}

// The dequantized channel j of a received row (FP32 RN(code * scale) for FP8, as fp8_quant dequantizes).
float dequant(const Params& p, const Row& row, int64_t j) {
  if (p.wire == Wire::bf16) {
    uint16_t b;
    std::memcpy(&b, row.payload.data() + 2 * j, 2);
    return bf16_to_f32(b);
  }
  return fp8math::fmul(e4m3_to_f32(row.payload[static_cast<std::size_t>(j)]), row.scales[static_cast<std::size_t>(j / 128)]);
}

}  // namespace

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "ep/ref " + p.to_string() + " inputs");
  require_tensors(out, output_specs(p), "ep/ref " + p.to_string() + " outputs");
  const moe_gate::Placement pl = p.placement();
  const int64_t R = p.ranks, T = p.tokens, D = p.dim, K = p.routing().topk, E = pl.experts, G = p.ranks_per_node;
  const auto idx = in[1].span<const int32_t>();
  const auto wts = in[2].span<const float>();
  for (std::size_t i = 0; i < idx.size(); ++i)
    if (idx[i] < 0 || idx[i] >= E)
      throw std::invalid_argument("ep: indices hold expert " + std::to_string(idx[i]) + " at flat position " + std::to_string(i) +
                                  ", outside 0.." + std::to_string(E - 1));
  for (Tensor& t : out) std::memset(t.raw(), 0, t.nbytes());
  auto sends = out.back().span<int32_t>();

  // Dispatch: pack per source rank (and count the V3 path's sends), transport, unpack.
  Buffers send(static_cast<std::size_t>(R), std::vector<std::vector<Row>>(static_cast<std::size_t>(R)));
  const int64_t row_bytes = p.wire == Wire::bf16 ? 2 * D : D;
  for (int64_t s = 0; s < R; ++s) {
    const Encoded enc = encode(p, in[0], s);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t tok = s * T + t;
      std::vector<bool> target(static_cast<std::size_t>(R), false);
      for (int64_t j = 0; j < K; ++j) target[static_cast<std::size_t>(pl.rank_of(idx[static_cast<std::size_t>(tok * K + j)]))] = true;
      std::vector<bool> node_reached(static_cast<std::size_t>(p.nodes()), false);
      for (int64_t d = 0; d < R; ++d) {
        if (!target[static_cast<std::size_t>(d)]) continue;
        const int64_t node = d / G, landing = node * G + s % G;
        if (d == s) {
          ++sends[static_cast<std::size_t>(s * 3 + 2)];  // local
        } else if (node == s / G) {
          ++sends[static_cast<std::size_t>(s * 3 + 1)];  // NVLink, direct
        } else {
          if (!node_reached[static_cast<std::size_t>(node)]) ++sends[static_cast<std::size_t>(s * 3 + 0)];  // IB, once per node
          if (d != landing) ++sends[static_cast<std::size_t>(landing * 3 + 1)];  // NVLink forward from the landing rank
        }
        if (node != s / G) node_reached[static_cast<std::size_t>(node)] = true;
        Row row;
        row.src = static_cast<int32_t>(s);
        row.token = static_cast<int32_t>(t);
        for (int64_t j = 0; j < K; ++j) {
          const int32_t e = idx[static_cast<std::size_t>(tok * K + j)];
          const bool here = pl.rank_of(e) == d;
          row.experts.push_back(here ? e : -1);
          row.weights.push_back(here ? wts[static_cast<std::size_t>(tok * K + j)] : 0.0f);
        }
        row.payload.assign(enc.codes.begin() + t * row_bytes, enc.codes.begin() + (t + 1) * row_bytes);
        if (p.wire != Wire::bf16)
          row.scales.assign(enc.scales.begin() + t * p.scale_groups(), enc.scales.begin() + (t + 1) * p.scale_groups());
        send[static_cast<std::size_t>(s)][static_cast<std::size_t>(d)].push_back(std::move(row));
      }
    }
  }
  const std::vector<std::vector<Row>> recv = transport(send);

  auto count = out[0].span<int32_t>();
  auto meta = out[1].span<int32_t>();
  auto experts = out[2].span<int32_t>();
  auto weights = out[3].span<float>();
  auto* xr = static_cast<uint8_t*>(out[4].raw());
  float* sc = p.wire == Wire::bf16 ? nullptr : out[5].span<float>().data();
  const int64_t cap = p.capacity();
  std::fill(meta.begin(), meta.end(), -1);
  std::fill(experts.begin(), experts.end(), -1);
  for (int64_t d = 0; d < R; ++d) {
    const auto& rows = recv[static_cast<std::size_t>(d)];
    count[static_cast<std::size_t>(d)] = static_cast<int32_t>(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const int64_t at = d * cap + static_cast<int64_t>(i);
      meta[static_cast<std::size_t>(at * 2)] = rows[i].src;
      meta[static_cast<std::size_t>(at * 2 + 1)] = rows[i].token;
      std::copy(rows[i].experts.begin(), rows[i].experts.end(), experts.begin() + at * K);
      std::copy(rows[i].weights.begin(), rows[i].weights.end(), weights.begin() + at * K);
      std::memcpy(xr + at * row_bytes, rows[i].payload.data(), static_cast<std::size_t>(row_bytes));
      if (sc) std::copy(rows[i].scales.begin(), rows[i].scales.end(), sc + at * p.scale_groups());
    }
  }

  // Experts and combine: each rank's partial per received token, back along the same path, summed
  // at the source in ascending rank order.
  Buffers back(static_cast<std::size_t>(R), std::vector<std::vector<Row>>(static_cast<std::size_t>(R)));
  for (int64_t d = 0; d < R; ++d)
    for (const Row& row : recv[static_cast<std::size_t>(d)]) {
      Row part;
      part.src = static_cast<int32_t>(d);  // the partial's sender
      part.token = row.token;
      part.payload.resize(static_cast<std::size_t>(2 * D));
      for (int64_t j = 0; j < D; ++j) {
        const double xhat = dequant(p, row, j);
        double acc = 0;
        for (int64_t c = 0; c < K; ++c)
          if (row.experts[static_cast<std::size_t>(c)] >= 0)
            acc += static_cast<double>(row.weights[static_cast<std::size_t>(c)]) * expert_scale(row.experts[static_cast<std::size_t>(c)], E) * xhat;
        const uint16_t b = bf16_from_f64(acc);
        std::memcpy(part.payload.data() + 2 * j, &b, 2);
      }
      back[static_cast<std::size_t>(d)][static_cast<std::size_t>(row.src)].push_back(std::move(part));
    }
  const std::vector<std::vector<Row>> parts = transport(back);
  auto y = out[out.size() - 2].span<uint16_t>();
  std::vector<float> acc(static_cast<std::size_t>(T * D));
  for (int64_t s = 0; s < R; ++s) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (const Row& part : parts[static_cast<std::size_t>(s)])  // ascending sender rank
      for (int64_t j = 0; j < D; ++j) {
        uint16_t b;
        std::memcpy(&b, part.payload.data() + 2 * j, 2);
        float& a = acc[static_cast<std::size_t>(part.token * D + j)];
        a = fp8math::fadd(a, bf16_to_f32(b));
      }
    for (int64_t i = 0; i < T * D; ++i) y[static_cast<std::size_t>(s * T * D + i)] = f32_to_bf16(acc[static_cast<std::size_t>(i)]);
  }
}

}  // namespace dsv3::ep
