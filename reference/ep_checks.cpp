// The order-free checks of the ep component (ep_checks.hpp).
#include "reference/ep_checks.hpp"

#include <cmath>
#include <cstring>
#include <set>
#include <utility>


namespace dsv3::ep {
namespace {

const Tensor& named(const std::vector<Tensor>& ts, const std::string& name) { return tensor_named(ts, name, "ep check: tensor"); }

CompareReport failed(CompareReport r, const std::string& why) {
  r.pass = false;
  if (r.message.empty()) r.message = why;
  return r;
}

}  // namespace

std::vector<Tensor> combine_aids(const Params& p, const std::vector<Tensor>& in) {
  const int64_t R = p.ranks, T = p.tokens, D = p.dim, K = p.routing().topk, E = p.routing().experts, rb = payload_bytes(p);
  Tensor wire("wire:x", DType::u8, {R, T, rb}), scales("wire:scales", DType::f32, {R, T, p.scale_groups()});
  const WireRows enc = encode_wire(p, in[0], 0, R * T);  // per row: the same as each rank encoding its own rows
  std::memcpy(wire.raw(), enc.codes.data(), enc.codes.size());
  if (p.wire != Wire::bf16) std::memcpy(scales.raw(), enc.scales.data(), enc.scales.size() * 4);
  Tensor y64("fp64:y", DType::f32, {R, T, D}), mag("magnitude:y", DType::f32, {R, T, D});
  const auto idx = in[1].span<const int32_t>();
  const auto w = in[2].span<const float>();
  const auto* codes = static_cast<const uint8_t*>(wire.raw());
  const auto sc = scales.span<const float>();
  for (int64_t t = 0; t < R * T; ++t)
    for (int64_t j = 0; j < D; ++j) {
      const double xhat =
          wire_value(p, codes + t * rb, reinterpret_cast<const uint8_t*>(sc.data() + t * p.scale_groups()), j);
      double s = 0, m = 0;
      for (int64_t c = 0; c < K; ++c) {
        const double v = static_cast<double>(w[static_cast<std::size_t>(t * K + c)]) * expert_scale(idx[static_cast<std::size_t>(t * K + c)], E) * xhat;
        s += v;
        m += std::fabs(v);
      }
      y64.span<float>()[static_cast<std::size_t>(t * D + j)] = static_cast<float>(s);
      mag.span<float>()[static_cast<std::size_t>(t * D + j)] = static_cast<float>(m);
    }
  std::vector<Tensor> aids;
  aids.push_back(std::move(wire));
  if (p.wire != Wire::bf16) aids.push_back(std::move(scales));
  Tensor ii("in:indices", DType::i32, in[1].shape()), ww("in:weights", DType::f32, in[2].shape());
  std::memcpy(ii.raw(), in[1].raw(), in[1].nbytes());
  std::memcpy(ww.raw(), in[2].raw(), in[2].nbytes());
  aids.push_back(std::move(ii));
  aids.push_back(std::move(ww));
  aids.push_back(std::move(y64));
  aids.push_back(std::move(mag));
  return aids;
}

CompareReport delivery_check(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
  CompareReport r;
  r.name = "delivery";
  r.tolerance = "each token exactly once at each rank holding one of its experts, payload and choices bit for bit";
  r.pass = true;
  const moe_gate::Placement pl = p.placement();
  const int64_t R = p.ranks, T = p.tokens, K = p.routing().topk, cap = p.capacity(), rb = payload_bytes(p), sg = p.scale_groups();
  const auto idx = named(aids, "in:indices").span<const int32_t>();
  const auto w = named(aids, "in:weights").span<const float>();
  const auto* wire = static_cast<const uint8_t*>(named(aids, "wire:x").raw());
  const float* wsc = p.wire == Wire::bf16 ? nullptr : named(aids, "wire:scales").span<const float>().data();
  const auto count = named(got, "recv_count").span<const int32_t>();
  const auto meta = named(got, "recv_meta").span<const int32_t>();
  const auto ex = named(got, "recv_experts").span<const int32_t>();
  const auto ew = named(got, "recv_weights").span<const float>();
  const auto* xr = static_cast<const uint8_t*>(named(got, "recv_x").raw());
  const float* rs = p.wire == Wire::bf16 ? nullptr : named(got, "recv_scales").span<const float>().data();
  for (int64_t d = 0; d < R; ++d) {
    const std::string at = "rank " + std::to_string(d);
    const int64_t n = count[static_cast<std::size_t>(d)];
    if (n < 0 || n > cap) return failed(r, at + ": recv_count " + std::to_string(n) + " outside 0.." + std::to_string(cap));
    std::set<std::pair<int32_t, int32_t>> seen;
    for (int64_t i = 0; i < cap; ++i) {
      const int64_t row = d * cap + i;
      const int32_t s = meta[static_cast<std::size_t>(row * 2)], t = meta[static_cast<std::size_t>(row * 2 + 1)];
      ++r.n;
      if (i >= n) {  // unused rows: -1 ids, zero payload
        bool clean = s == -1 && t == -1;
        for (int64_t b = 0; b < rb && clean; ++b) clean = xr[row * rb + b] == 0;
        if (!clean) return failed(r, at + ": unused row " + std::to_string(i) + " was written");
        continue;
      }
      if (s < 0 || s >= R || t < 0 || t >= T)
        return failed(r, at + ": row " + std::to_string(i) + " names source rank " + std::to_string(s) + ", token " + std::to_string(t));
      if (!seen.insert({s, t}).second)
        return failed(r, at + ": token " + std::to_string(t) + " of rank " + std::to_string(s) + " arrived twice");
      const int64_t tok = s * T + t;
      bool mine = false;
      for (int64_t c = 0; c < K; ++c) {
        const int32_t e = idx[static_cast<std::size_t>(tok * K + c)];
        const bool here = pl.rank_of(e) == d;
        mine = mine || here;
        const float wexp = here ? w[static_cast<std::size_t>(tok * K + c)] : 0.0f;
        const float wgot = ew[static_cast<std::size_t>(row * K + c)];
        if (ex[static_cast<std::size_t>(row * K + c)] != (here ? e : -1) || std::memcmp(&wgot, &wexp, 4) != 0)
          return failed(r, at + ": token " + std::to_string(t) + " of rank " + std::to_string(s) + ": choice " + std::to_string(c) + " is wrong");
      }
      if (!mine) return failed(r, at + ": token " + std::to_string(t) + " of rank " + std::to_string(s) + " has no expert here (misrouted)");
      if (std::memcmp(xr + row * rb, wire + tok * rb, static_cast<std::size_t>(rb)) != 0 ||
          (rs && std::memcmp(rs + row * sg, wsc + tok * sg, static_cast<std::size_t>(sg) * 4) != 0))
        return failed(r, at + ": token " + std::to_string(t) + " of rank " + std::to_string(s) + ": payload differs from the sender's");
    }
    for (int64_t tok = 0; tok < R * T; ++tok) {  // nothing lost
      bool wanted = false;
      for (int64_t c = 0; c < K; ++c) wanted = wanted || pl.rank_of(idx[static_cast<std::size_t>(tok * K + c)]) == d;
      if (wanted && !seen.count({static_cast<int32_t>(tok / T), static_cast<int32_t>(tok % T)}))
        return failed(r, at + ": token " + std::to_string(tok % T) + " of rank " + std::to_string(tok / T) + " never arrived");
    }
  }
  return r;
}

CompareReport combine_check(const Params& p, const std::vector<Tensor>& aids, const std::vector<Tensor>& got) {
  CompareReport r;
  r.name = "combine vs FP64";
  const bool logfmt = p.combine == CombineWire::logfmt10;
  const double rel = logfmt ? 0x1p-8 + kLogFmt10Rel : 0x1p-8, floor = logfmt ? 0x1p-29 : 0.0;
  r.tolerance = logfmt ? "|y - y64| <= 1.01 ((2^-8 + 0.0218) sum |w s x^| + 2^-8 |y64|) + 2^-29 (BF16 partials, LogFMT-10 on the wire, "
                         "BF16 output; ep_checks.hpp)"
                       : "|y - y64| <= 1.01 (2^-8 sum |w s x^| + 2^-8 |y64|) (BF16 partials and output; ep_checks.hpp)";
  r.metric = "max_err_over_bound";
  const Tensor &y64 = named(aids, "fp64:y"), &mag = named(aids, "magnitude:y"), &y = named(got, "y");
  double worst = 0;
  for (int64_t i = 0; i < y64.numel(); ++i) {
    const double e = y64.get(i), g = y.get(i), bound = 1.01 * (rel * mag.get(i) + 0x1p-8 * std::fabs(e)) + floor;
    const double err = std::fabs(g - e);
    ++r.n;
    r.max_abs = std::max(r.max_abs, err);
    if (!(err <= bound)) {  // NaN fails
      r.pass = false;
      r.message = "y element " + std::to_string(i) + ": " + std::to_string(g) + " vs FP64 " + std::to_string(e) + ", bound " + std::to_string(bound);
      r.metric_value = bound > 0 ? err / bound : INFINITY;
      return r;
    }
    if (bound > 0) worst = std::max(worst, err / bound);
  }
  r.pass = true;
  r.metric_value = worst;
  return r;
}

}  // namespace dsv3::ep
