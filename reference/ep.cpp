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
#include "core/parallel.hpp"
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

std::string_view combine_wire_name(CombineWire w) { return w == CombineWire::logfmt10 ? "logfmt10" : "bf16"; }

CombineWire combine_wire_from_name(std::string_view s) {
  for (CombineWire w : {CombineWire::bf16, CombineWire::logfmt10})
    if (combine_wire_name(w) == s) return w;
  throw std::invalid_argument("combine wire must be bf16 or logfmt10, got '" + std::string(s) + "'");
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
  if (combine != CombineWire::bf16) o << " combine=" << combine_wire_name(combine);
  if (x_scale_log2 != 0) o << " x=2^" << x_scale_log2;
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
  if (x_scale_log2 < -60 || x_scale_log2 > 60) bad("x_scale_log2 must be in [-60, 60], got " + std::to_string(x_scale_log2));
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
  if (p.x_scale_log2 != 0) {  // a power of two: exact in BF16 for these magnitudes
    const double f = std::ldexp(1.0, p.x_scale_log2);
    for (uint16_t& b : in[0].span<uint16_t>()) b = bf16_from_f64(static_cast<double>(bf16_to_f32(b)) * f);
  }
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

int64_t payload_bytes(const Params& p) { return p.wire == Wire::bf16 ? 2 * p.dim : p.dim; }
int64_t scale_bytes(const Params& p) { return p.wire == Wire::bf16 ? 0 : 4 * p.scale_groups(); }

double bytes_per_dispatch_send(const Params& p) { return static_cast<double>(payload_bytes(p) + scale_bytes(p)); }
double bytes_per_combine_send(const Params& p) {
  const double d = static_cast<double>(p.dim);
  return p.combine == CombineWire::logfmt10 ? d * 10 / 8 + d / 128 * 4 : 2 * d;
}

LinkBandwidth link_bandwidth(const Params& p, const int32_t* sends, double bytes_per_send, double seconds) {
  LinkBandwidth b;
  b.seconds = seconds;
  for (int64_t r = 0; r < p.ranks; ++r) {
    const double ib = sends[r * 3] * bytes_per_send, nvl = sends[r * 3 + 1] * bytes_per_send;
    if (sends[r * 3] > 0 && ib > b.ib_bytes) { b.ib_bytes = ib; b.ib_rank = r; }
    if (sends[r * 3 + 1] > 0 && nvl > b.nvlink_bytes) { b.nvlink_bytes = nvl; b.nvlink_rank = r; }
  }
  return b;
}

std::vector<int64_t> rows_sent(const Params& p, const std::vector<Tensor>& in) {
  const moe_gate::Placement pl = p.placement();
  const int64_t R = p.ranks, K = p.routing().topk;
  const auto idx = in[1].span<const int32_t>();
  std::vector<int64_t> rows(static_cast<std::size_t>(R * R), 0);
  std::vector<bool> target(static_cast<std::size_t>(R));
  for (int64_t tok = 0; tok < R * p.tokens; ++tok) {
    std::fill(target.begin(), target.end(), false);
    for (int64_t j = 0; j < K; ++j) target[static_cast<std::size_t>(pl.rank_of(idx[static_cast<std::size_t>(tok * K + j)]))] = true;
    for (int64_t d = 0; d < R; ++d) rows[static_cast<std::size_t>(tok / p.tokens * R + d)] += target[static_cast<std::size_t>(d)];
  }
  return rows;
}

AllToAllBandwidth alltoall_bandwidth(const Params& p, const std::vector<int64_t>& rows, bool combine, double bytes_per_send,
                                     double seconds) {
  const int64_t R = p.ranks;
  AllToAllBandwidth b;
  b.seconds = seconds;
  for (int64_t r = 0; r < R; ++r) {
    int64_t all = 0;
    for (int64_t q = 0; q < R; ++q) all += rows[static_cast<std::size_t>(combine ? q * R + r : r * R + q)];
    const double alg = static_cast<double>(all) * bytes_per_send;
    const double bus = static_cast<double>(all - rows[static_cast<std::size_t>(r * R + r)]) * bytes_per_send;
    if (alg > b.alg_bytes) { b.alg_bytes = alg; b.alg_rank = r; }
    if (bus > b.bus_bytes) { b.bus_bytes = bus; b.bus_rank = r; }
  }
  return b;
}

double bytes_moved(const Params& p) { return spec_bytes(input_specs(p)) + spec_bytes(output_specs(p)); }

namespace {

int64_t topk(const Params& p) { return p.routing().topk; }

template <class T> void put(std::vector<uint8_t>& b, const T* v, std::size_t n) {
  const auto* c = reinterpret_cast<const uint8_t*>(v);
  b.insert(b.end(), c, c + n * sizeof(T));
}

// A view of one serialized dispatch row: source rank, token, K choices, K weights, payload, scales.
struct RowView {
  const uint8_t* at;
  int64_t k;
  int32_t src() const { return get<int32_t>(0); }
  int32_t token() const { return get<int32_t>(4); }
  int32_t expert(int64_t c) const { return get<int32_t>(8 + 4 * c); }
  float weight(int64_t c) const { return get<float>(8 + 4 * k + 4 * c); }
  const uint8_t* payload() const { return at + 8 + 8 * k; }
  template <class T> T get(int64_t off) const {
    T v;
    std::memcpy(&v, at + off, sizeof v);
    return v;
  }
};

}  // namespace

fp8::Params wire_quant_params(const Params& p, int64_t rows) {
  fp8::Params q;
  q.op = fp8::Op::quant_1x128;
  q.m = rows;
  q.k = p.dim;
  q.scale_fmt = p.wire == Wire::fp8_pow2 ? fp8::ScaleFmt::ue8m0 : fp8::ScaleFmt::f32;
  return q;
}

WireRows encode_wire(const Params& p, const Tensor& x, int64_t row0, int64_t rows) {
  const int64_t d = p.dim;
  WireRows e;
  const auto* src = x.span<const uint16_t>().data() + row0 * d;
  if (p.wire == Wire::bf16) {
    e.codes.resize(static_cast<std::size_t>(rows * d * 2));
    std::memcpy(e.codes.data(), src, e.codes.size());
    return e;
  }
  const fp8::Params q = wire_quant_params(p, rows);
  Tensor xs("x", DType::bf16, {rows, d}), codes("codes", DType::e4m3, {rows, d}), scales("scales", DType::f32, {rows, d / 128});
  std::memcpy(xs.raw(), src, xs.nbytes());
  fp8::quant_1x128(xs, codes, scales, q);
  e.codes.assign(codes.span<const uint8_t>().begin(), codes.span<const uint8_t>().end());
  e.scales.assign(scales.span<const float>().begin(), scales.span<const float>().end());
  return e;
}

float wire_value(const Params& p, const uint8_t* payload, const uint8_t* scales, int64_t j) {
  if (p.wire == Wire::bf16) {
    uint16_t b;
    std::memcpy(&b, payload + 2 * j, 2);
    return bf16_to_f32(b);
  }
  float scale;
  std::memcpy(&scale, scales + 4 * (j / 128), 4);
  return fp8math::fmul(e4m3_to_f32(payload[j]), scale);
}

int64_t dispatch_row_bytes(const Params& p) { return 8 + 8 * topk(p) + payload_bytes(p) + scale_bytes(p); }
constexpr int64_t kLogFmtMetaBytes = 12;  // f32 log2 amin, f32 log2 amax, u32 fallback per group
int64_t combine_row_bytes(const Params& p) {
  return 4 + 2 * p.dim + (p.combine == CombineWire::logfmt10 ? kLogFmtMetaBytes * p.scale_groups() : 0);
}

Packets pack_dispatch(const Params& p, int64_t s, const std::vector<Tensor>& in, int32_t* sends) {
  const moe_gate::Placement pl = p.placement();
  const int64_t R = p.ranks, T = p.tokens, K = topk(p), G = p.ranks_per_node, pb = payload_bytes(p), sg = p.scale_groups();
  const auto idx = in[1].span<const int32_t>();
  const auto wts = in[2].span<const float>();
  for (int64_t i = s * T * K; i < (s + 1) * T * K; ++i)
    if (idx[static_cast<std::size_t>(i)] < 0 || idx[static_cast<std::size_t>(i)] >= pl.experts)
      throw std::invalid_argument("ep: indices hold expert " + std::to_string(idx[static_cast<std::size_t>(i)]) + " at flat position " +
                                  std::to_string(i) + ", outside 0.." + std::to_string(pl.experts - 1));
  const WireRows enc = encode_wire(p, in[0], s * T, T);
  Packets out(static_cast<std::size_t>(R));
  std::vector<int32_t> experts(static_cast<std::size_t>(K));
  std::vector<float> weights(static_cast<std::size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t tok = s * T + t;
    std::vector<bool> target(static_cast<std::size_t>(R), false), node_reached(static_cast<std::size_t>(p.nodes()), false);
    for (int64_t j = 0; j < K; ++j) target[static_cast<std::size_t>(pl.rank_of(idx[static_cast<std::size_t>(tok * K + j)]))] = true;
    for (int64_t d = 0; d < R; ++d) {
      if (!target[static_cast<std::size_t>(d)]) continue;
      const int64_t node = d / G, landing = node * G + s % G;
      if (sends) {
        if (d == s) {
          ++sends[s * 3 + 2];  // local
        } else if (node == s / G) {
          ++sends[s * 3 + 1];  // NVLink, direct
        } else {
          if (!node_reached[static_cast<std::size_t>(node)]) ++sends[s * 3 + 0];  // IB, once per remote node
          if (d != landing) ++sends[landing * 3 + 1];                            // NVLink forward by the landing rank
        }
      }
      if (node != s / G) node_reached[static_cast<std::size_t>(node)] = true;
      for (int64_t j = 0; j < K; ++j) {
        const int32_t e = idx[static_cast<std::size_t>(tok * K + j)];
        const bool here = pl.rank_of(e) == d;
        experts[static_cast<std::size_t>(j)] = here ? e : -1;
        weights[static_cast<std::size_t>(j)] = here ? wts[static_cast<std::size_t>(tok * K + j)] : 0.0f;
      }
      std::vector<uint8_t>& b = out[static_cast<std::size_t>(d)];
      const int32_t head[2] = {static_cast<int32_t>(s), static_cast<int32_t>(t)};
      put(b, head, 2);
      put(b, experts.data(), experts.size());
      put(b, weights.data(), weights.size());
      put(b, enc.codes.data() + t * pb, static_cast<std::size_t>(pb));
      if (sg && p.wire != Wire::bf16) put(b, enc.scales.data() + t * sg, static_cast<std::size_t>(sg));
    }
  }
  return out;
}

void store_received(const Params& p, int64_t d, const Packets& received, std::vector<Tensor>& out) {
  const int64_t K = topk(p), cap = p.capacity(), rb = dispatch_row_bytes(p), pb = payload_bytes(p), sg = p.scale_groups();
  auto count = out[0].span<int32_t>();
  auto meta = out[1].span<int32_t>();
  auto experts = out[2].span<int32_t>();
  auto weights = out[3].span<float>();
  auto* xr = static_cast<uint8_t*>(out[4].raw());
  float* sc = p.wire == Wire::bf16 ? nullptr : out[5].span<float>().data();
  for (int64_t i = d * cap; i < (d + 1) * cap; ++i) {  // this rank's slices: unused rows zero, ids -1
    meta[static_cast<std::size_t>(2 * i)] = meta[static_cast<std::size_t>(2 * i + 1)] = -1;
    for (int64_t c = 0; c < K; ++c) {
      experts[static_cast<std::size_t>(i * K + c)] = -1;
      weights[static_cast<std::size_t>(i * K + c)] = 0.0f;
    }
    std::memset(xr + i * pb, 0, static_cast<std::size_t>(pb));
    if (sc) std::fill(sc + i * sg, sc + (i + 1) * sg, 0.0f);
  }
  int64_t n = 0;
  for (const std::vector<uint8_t>& packet : received)  // ascending source rank
    for (std::size_t off = 0; off < packet.size(); off += static_cast<std::size_t>(rb), ++n) {
      if (n >= cap) throw std::runtime_error("ep: rank " + std::to_string(d) + " received more than its " + std::to_string(cap) + " rows");
      const RowView row{packet.data() + off, K};
      const int64_t at = d * cap + n;
      meta[static_cast<std::size_t>(at * 2)] = row.src();
      meta[static_cast<std::size_t>(at * 2 + 1)] = row.token();
      for (int64_t c = 0; c < K; ++c) {
        experts[static_cast<std::size_t>(at * K + c)] = row.expert(c);
        weights[static_cast<std::size_t>(at * K + c)] = row.weight(c);
      }
      std::memcpy(xr + at * pb, row.payload(), static_cast<std::size_t>(pb));
      if (sc) std::memcpy(sc + at * sg, row.payload() + pb, static_cast<std::size_t>(sg) * 4);
    }
  count[static_cast<std::size_t>(d)] = static_cast<int32_t>(n);
}

Packets pack_combine(const Params& p, const Packets& received) {
  const int64_t K = topk(p), D = p.dim, E = p.placement().experts, rb = dispatch_row_bytes(p), G = p.scale_groups();
  fp8::Params lf;  // one row of D channels, LogFMT-10
  lf.op = fp8::Op::logfmt;
  lf.m = 1;
  lf.k = D;
  lf.logfmt_bits = 10;
  Tensor partial("partial", DType::bf16, {1, D}), codes("codes", DType::u16, {1, D}), meta("meta", DType::f32, {1, G, 2}),
      fallback("fallback", DType::u8, {1, G});
  Packets out(received.size());
  for (std::size_t s = 0; s < received.size(); ++s)
    for (std::size_t off = 0; off < received[s].size(); off += static_cast<std::size_t>(rb)) {
      const RowView row{received[s].data() + off, K};
      std::vector<uint8_t>& b = out[s];
      const int32_t token = row.token();
      put(b, &token, 1);
      auto bits = partial.span<uint16_t>();
      for (int64_t j = 0; j < D; ++j) {
        const double xhat = wire_value(p, row.payload(), row.payload() + p.dim, j);
        double acc = 0;
        for (int64_t c = 0; c < K; ++c)
          if (row.expert(c) >= 0) acc += static_cast<double>(row.weight(c)) * expert_scale(row.expert(c), E) * xhat;
        bits[static_cast<std::size_t>(j)] = bf16_from_f64(acc);
      }
      if (p.combine == CombineWire::bf16) {
        put(b, bits.data(), D);
        continue;
      }
      fp8::logfmt_encode(partial, codes, meta, fallback, lf);
      for (int64_t g = 0; g < G; ++g) {
        const uint32_t fb = fallback.span<const uint8_t>()[static_cast<std::size_t>(g)];
        put(b, meta.span<const float>().data() + 2 * g, 2);
        put(b, &fb, 1);
        put(b, codes.span<const uint16_t>().data() + g * 128, 128);
      }
    }
  return out;
}

namespace {

// Channel j of a combine row as the source reads it: the BF16 partial, or its LogFMT-10 decoding
// (FP32; a fallback group's BF16 bits as they are).
float combine_value(const Params& p, const uint8_t* row, int64_t j) {
  if (p.combine == CombineWire::bf16) {
    uint16_t b;
    std::memcpy(&b, row + 2 * j, 2);
    return bf16_to_f32(b);
  }
  const uint8_t* group = row + (j / 128) * (kLogFmtMetaBytes + 256);
  float log_amin, log_amax;
  uint32_t fallback;
  uint16_t code;
  std::memcpy(&log_amin, group, 4);
  std::memcpy(&log_amax, group + 4, 4);
  std::memcpy(&fallback, group + 8, 4);
  std::memcpy(&code, group + kLogFmtMetaBytes + 2 * (j % 128), 2);
  if (fallback != 0) return bf16_to_f32(code);
  return fp8math::logfmt_decode_code(fp8math::logfmt_group_from_meta(log_amin, log_amax, 10), code, 10);
}

}  // namespace

void finish_combine(const Params& p, int64_t s, const Packets& partials, std::vector<Tensor>& out) {
  const int64_t T = p.tokens, D = p.dim, rb = combine_row_bytes(p);
  std::vector<float> acc(static_cast<std::size_t>(T * D), 0.0f);
  for (const std::vector<uint8_t>& packet : partials)  // ascending sender rank
    for (std::size_t off = 0; off < packet.size(); off += static_cast<std::size_t>(rb)) {
      int32_t token;
      std::memcpy(&token, packet.data() + off, 4);
      if (token < 0 || token >= T) throw std::runtime_error("ep: a combine packet names token " + std::to_string(token));
      for (int64_t j = 0; j < D; ++j) {
        float& a = acc[static_cast<std::size_t>(token * D + j)];
        a = fp8math::fadd(a, combine_value(p, packet.data() + off + 4, j));
      }
    }
  auto y = out[out.size() - 2].span<uint16_t>();
  for (int64_t i = 0; i < T * D; ++i) y[static_cast<std::size_t>(s * T * D + i)] = f32_to_bf16(acc[static_cast<std::size_t>(i)]);
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "ep/ref " + p.to_string() + " inputs");
  require_tensors(out, output_specs(p), "ep/ref " + p.to_string() + " outputs");
  const auto R = static_cast<std::size_t>(p.ranks);
  // Each phase runs the ranks in parallel: a rank writes only its own packets and output slices,
  // and its own link counts (summed after), so any thread count gives the same bits.
  std::vector<std::vector<int32_t>> counts(R, std::vector<int32_t>(R * 3, 0));
  std::vector<Packets> sent(R), received(R, Packets(R));
  parallel_for(p.ranks, [&](int64_t r0, int64_t r1) {
    for (int64_t s = r0; s < r1; ++s) sent[static_cast<std::size_t>(s)] = pack_dispatch(p, s, in, counts[static_cast<std::size_t>(s)].data());
  });
  auto sends = out.back().span<int32_t>();
  std::fill(sends.begin(), sends.end(), 0);
  for (const std::vector<int32_t>& c : counts)
    for (std::size_t i = 0; i < c.size(); ++i) sends[i] += c[i];
  // The simulated transport: what rank s packed for rank d arrives at d as its s-th packet.
  for (std::size_t s = 0; s < R; ++s)
    for (std::size_t d = 0; d < R; ++d) received[d][s] = std::move(sent[s][d]);
  std::vector<Packets> back(R), partials(R, Packets(R));
  parallel_for(p.ranks, [&](int64_t r0, int64_t r1) {
    for (int64_t d = r0; d < r1; ++d) {
      store_received(p, d, received[static_cast<std::size_t>(d)], out);
      back[static_cast<std::size_t>(d)] = pack_combine(p, received[static_cast<std::size_t>(d)]);
    }
  });
  for (std::size_t d = 0; d < R; ++d)
    for (std::size_t s = 0; s < R; ++s) partials[s][d] = std::move(back[d][s]);
  parallel_for(p.ranks, [&](int64_t r0, int64_t r1) {
    for (int64_t s = r0; s < r1; ++s) finish_combine(p, s, partials[static_cast<std::size_t>(s)], out);
  });
}

}  // namespace dsv3::ep
