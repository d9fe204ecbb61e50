// The MoE layer reference: permute, combine, layer (reference/moe.hpp).
#include "reference/moe.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/parallel.hpp"

namespace dsv3::moe {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::string_view op_name(Op o) { return o == Op::permute ? "permute" : o == Op::combine ? "combine" : "layer"; }
std::string_view draw_name(Draw d) { return d == Draw::uniform ? "uniform" : d == Draw::skewed ? "skewed" : "same_experts"; }

std::string Params::to_string() const {
  std::ostringstream os;
  os << op_name(op) << ' ' << model << " t=" << tokens;
  if (dim) os << " dim=" << dim;
  if (op == Op::layer) {
    if (inter) os << " inter=" << inter;
  } else {
    os << ' ' << draw_name(draw);
    if (align != kAlign) os << " align=" << align;
  }
  os << ' ' << dist_name(dist);
  return os.str();
}

moe_gate::Routing Params::routing() const {
  moe_gate::Routing r = moe_gate::Routing::from(find_model(model));
  if (dim) r.dim = dim;
  r.validate();
  auto bad = [](const std::string& what) { throw std::invalid_argument("moe: " + what); };
  if (tokens < 1) bad("tokens must be >= 1, got " + std::to_string(tokens));
  if (align < 1) bad("align must be >= 1, got " + std::to_string(align));
  if (inter < 0) bad("inter must be >= 0 (0 = the config's moe_inter_dim)");
  return r;
}

int64_t Params::inter_dim() const { return inter ? inter : find_model(model).moe_inter_dim; }
int64_t Params::shared_inter() const { return find_model(model).n_shared_experts * inter_dim(); }

std::vector<int32_t> draw_indices(const Params& p) {
  const moe_gate::Routing r = p.routing();
  std::vector<int32_t> idx(static_cast<std::size_t>(p.tokens * r.topk));
  Rng rng(seed_from(p.to_string() + " routing"));
  std::vector<int32_t> pool(static_cast<std::size_t>(r.experts));
  for (int64_t t = 0; t < p.tokens; ++t) {
    int32_t* row = &idx[static_cast<std::size_t>(t * r.topk)];
    if (p.draw == Draw::same_experts) {
      for (int64_t j = 0; j < r.topk; ++j) row[j] = static_cast<int32_t>(j);
    } else if (p.draw == Draw::uniform) {  // partial Fisher-Yates: k distinct experts
      for (int64_t e = 0; e < r.experts; ++e) pool[static_cast<std::size_t>(e)] = static_cast<int32_t>(e);
      for (int64_t j = 0; j < r.topk; ++j) {
        const auto pick = j + static_cast<int64_t>(rng.next() % static_cast<uint64_t>(r.experts - j));
        std::swap(pool[static_cast<std::size_t>(j)], pool[static_cast<std::size_t>(pick)]);
        row[j] = pool[static_cast<std::size_t>(j)];
      }
    } else {  // skewed: weight 1 / (e + 1), without replacement (redraw a repeat)
      double total = 0;
      for (int64_t e = 0; e < r.experts; ++e) total += 1.0 / static_cast<double>(e + 1);
      for (int64_t j = 0; j < r.topk;) {
        double u = rng.uniform01() * total;
        int32_t e = 0;
        while (e + 1 < r.experts && (u -= 1.0 / (e + 1)) > 0) ++e;
        if (std::find(row, row + j, e) == row + j) row[j++] = e;
      }
    }
  }
  return idx;
}

std::vector<int64_t> segment_starts(const std::vector<int32_t>& indices, int64_t experts, int64_t align) {
  std::vector<int64_t> count(static_cast<std::size_t>(experts), 0), starts(static_cast<std::size_t>(experts + 1), 0);
  for (int32_t e : indices) {
    if (e < 0 || e >= experts)
      throw std::invalid_argument("moe: an index is " + std::to_string(e) + ", outside [0, " + std::to_string(experts) + ")");
    ++count[static_cast<std::size_t>(e)];
  }
  for (int64_t e = 0; e < experts; ++e)
    starts[static_cast<std::size_t>(e + 1)] = starts[static_cast<std::size_t>(e)] + (count[static_cast<std::size_t>(e)] + align - 1) / align * align;
  return starts;
}

namespace {

int64_t padded_rows(const Params& p) {
  if (p.op == Op::layer) return 0;
  return segment_starts(draw_indices(p), p.routing().experts, p.align).back();
}

// Checks each token's k indices: in range and distinct.
void check_indices(std::span<const int32_t> idx, int64_t tokens, int64_t k, int64_t experts) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[static_cast<std::size_t>(t * k + j)];
      if (e < 0 || e >= experts)
        throw std::invalid_argument("moe: indices[" + std::to_string(t) + ", " + std::to_string(j) + "] = " + std::to_string(e) +
                                    " is outside [0, " + std::to_string(experts) + ")");
      for (int64_t i = 0; i < j; ++i)
        if (idx[static_cast<std::size_t>(t * k + i)] == e)
          throw std::invalid_argument("moe: token " + std::to_string(t) + " chooses expert " + std::to_string(e) + " twice");
    }
}

}  // namespace

std::vector<TensorSpec> input_specs(const Params& p) {
  const moe_gate::Routing r = p.routing();
  const int64_t T = p.tokens, k = r.topk, d = r.dim;
  switch (p.op) {
    case Op::permute: return {{"x", DType::bf16, {T, d}}, {"indices", DType::i32, {T, k}}};
    case Op::combine:
      return {{"expert_out", DType::bf16, {padded_rows(p), d}}, {"row_of", DType::i32, {T, k}}, {"weights", DType::bf16, {T, k}}};
    case Op::layer: {
      const int64_t E = r.experts, I = p.inter_dim(), Is = p.shared_inter();
      std::vector<TensorSpec> s = {{"x", DType::bf16, {T, d}}, {"gate_weight", DType::bf16, {E, d}}};
      if (r.bias) s.push_back({"gate_bias", DType::f32, {E}});
      for (const char* n : {"w1", "w3"}) s.push_back({n, DType::bf16, {E, I, d}});
      s.push_back({"w2", DType::bf16, {E, d, I}});
      for (const char* n : {"ws1", "ws3"}) s.push_back({n, DType::bf16, {Is, d}});
      s.push_back({"ws2", DType::bf16, {d, Is}});
      return s;
    }
  }
  return {};
}

std::vector<TensorSpec> output_specs(const Params& p) {
  const moe_gate::Routing r = p.routing();
  if (p.op == Op::permute) {
    const int64_t R = padded_rows(p);
    return {{"xp", DType::bf16, {R, r.dim}}, {"group_index", DType::i32, {R}}, {"row_of", DType::i32, {p.tokens, r.topk}}};
  }
  return {{"y", DType::bf16, {p.tokens, r.dim}}};
}

namespace {

// Rows of the contiguous layout for a routing: row_of [T, k] and group_index [R] (-1 = padding).
struct Layout {
  std::vector<int32_t> row_of, group_index;
};

Layout layout_of(std::span<const int32_t> idx, int64_t tokens, int64_t k, int64_t experts, int64_t align) {
  check_indices(idx, tokens, k, experts);
  const std::vector<int64_t> starts = segment_starts(std::vector<int32_t>(idx.begin(), idx.end()), experts, align);
  Layout l;
  l.row_of.resize(static_cast<std::size_t>(tokens * k));
  l.group_index.assign(static_cast<std::size_t>(starts.back()), -1);
  std::vector<int64_t> next(starts.begin(), starts.end() - 1);
  for (int64_t t = 0; t < tokens; ++t)  // ascending tokens within each expert (model.py's torch.where order)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[static_cast<std::size_t>(t * k + j)];
      const int64_t row = next[static_cast<std::size_t>(e)]++;
      l.row_of[static_cast<std::size_t>(t * k + j)] = static_cast<int32_t>(row);
      l.group_index[static_cast<std::size_t>(row)] = e;
    }
  return l;
}

void fill_bf16_normal(Tensor& t, uint64_t seed, double stddev) {
  const std::vector<float> g = draw(Dist::normal, seed, t.numel(), t.dim(t.rank() - 1), stddev);
  auto s = t.span<uint16_t>();
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = f32_to_bf16(g[i]);
}

MatD rows_f64(const Tensor& t, int64_t row0, int64_t rows, int64_t cols) {
  MatD m(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m(r, c) = t.get((row0 + r) * cols + c);
  return m;
}

// w2 (silu(w1 x) * w3 x) for the rows of h, in FP64; w1, w3 [I, d] and w2 [d, I] at matrix `e`.
MatD swiglu(const MatD& h, const Tensor& w1, const Tensor& w3, const Tensor& w2, int64_t e, int64_t I, int64_t d) {
  const MatD a = h * rows_f64(w1, e * I, I, d).transpose(), b = h * rows_f64(w3, e * I, I, d).transpose();
  MatD act(a.rows(), a.cols());
  for (Eigen::Index i = 0; i < a.size(); ++i) act.data()[i] = a.data()[i] / (1 + std::exp(-a.data()[i])) * b.data()[i];
  return act * rows_f64(w2, e * d, d, I).transpose();
}

}  // namespace

LayerRouting layer_routing(const Params& p, const std::vector<Tensor>& in) {
  moe_gate::Params gp;
  gp.model = p.model; gp.tokens = p.tokens; gp.dim = p.dim;
  std::vector<Tensor> gin = allocate(moe_gate::input_specs(gp));  // x, weight (, bias): the gate's names
  for (std::size_t i = 0; i < gin.size(); ++i) std::memcpy(gin[i].raw(), in[i].raw(), gin[i].nbytes());
  std::vector<Tensor> gout = allocate(moe_gate::output_specs(gp));
  moe_gate::run_reference(gp, gin, gout);
  const auto gw = gout[0].span<const uint16_t>();
  const auto gi = gout[1].span<const int32_t>();
  return {{gw.begin(), gw.end()}, {gi.begin(), gi.end()}};
}

namespace {

void layer_reference(const Params& p, const std::vector<Tensor>& in, Tensor& y) {
  const moe_gate::Routing r = p.routing();
  const int64_t T = p.tokens, k = r.topk, d = r.dim, E = r.experts, I = p.inter_dim(), Is = p.shared_inter();
  const LayerRouting routing = layer_routing(p, in);
  const std::span<const uint16_t> gw = routing.weights;
  const std::span<const int32_t> gi = routing.indices;
  const std::size_t w0 = r.bias ? 3 : 2;  // first expert weight input
  const Tensor &w1 = in[w0], &w3 = in[w0 + 1], &w2 = in[w0 + 2], &ws1 = in[w0 + 3], &ws3 = in[w0 + 4], &ws2 = in[w0 + 5];
  const MatD x = rows_f64(in[0], 0, T, d);
  // Each expert's outputs for its (token, choice) pairs, threaded over experts.
  MatD routed = MatD::Zero(T * k, d);
  parallel_for(E, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      std::vector<int64_t> pairs;
      for (int64_t q = 0; q < T * k; ++q)
        if (gi[static_cast<std::size_t>(q)] == e) pairs.push_back(q);
      if (pairs.empty()) continue;
      MatD h(static_cast<Eigen::Index>(pairs.size()), d);
      for (std::size_t i = 0; i < pairs.size(); ++i) h.row(static_cast<Eigen::Index>(i)) = x.row(pairs[i] / k);
      const MatD o = swiglu(h, w1, w3, w2, e, I, d);
      for (std::size_t i = 0; i < pairs.size(); ++i) routed.row(pairs[i]) = o.row(static_cast<Eigen::Index>(i));
    }
  });
  const MatD shared = Is > 0 ? swiglu(x, ws1, ws3, ws2, 0, Is, d) : MatD::Zero(T, d);
  auto out = y.span<uint16_t>();
  parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j) acc += bf16_to_f32(gw[static_cast<std::size_t>(t * k + j)]) * routed(t * k + j, c);
        out[static_cast<std::size_t>(t * d + c)] = bf16_from_f64(acc + shared(t, c));
      }
  });
}

// One branch's contribution to the bound (moe.hpp): rows h [n, d] through w1, w3 [I, d] and w2
// [d, I] at matrix e; returns do [n, d] and M [n, d].
std::pair<MatD, MatD> branch_bound(const MatD& h, const Tensor& w1, const Tensor& w3, const Tensor& w2, int64_t e, int64_t I, int64_t d) {
  constexpr double u = 0x1p-24;
  const MatD W1 = rows_f64(w1, e * I, I, d), W3 = rows_f64(w3, e * I, I, d), W2 = rows_f64(w2, e * d, d, I);
  const MatD habs = h.cwiseAbs();
  const MatD h1 = h * W1.transpose(), h3 = h * W3.transpose();
  const MatD s1 = habs * W1.cwiseAbs().transpose(), s3 = habs * W3.cwiseAbs().transpose();
  const double gd = 2.0 * static_cast<double>(d) * u, gi = 2.0 * static_cast<double>(I) * u;
  MatD a(h1.rows(), h1.cols()), da(h1.rows(), h1.cols());
  for (Eigen::Index i = 0; i < h1.size(); ++i) {
    const double x1 = h1.data()[i], x3 = h3.data()[i], sig = 1 / (1 + std::exp(-x1)), silu = x1 * sig;
    const double dsilu = sig * (1 + x1 * (1 - sig));
    a.data()[i] = silu * x3;
    da.data()[i] = std::fabs(dsilu) * std::fabs(x3) * gd * s1.data()[i] + std::fabs(silu) * gd * s3.data()[i] +
                   (0x1p-8 + 8 * u) * std::fabs(a.data()[i]);
  }
  const MatD w2abs = W2.cwiseAbs().transpose();
  const MatD m = a.cwiseAbs() * w2abs, dm = da * w2abs;
  const MatD dout = dm + gi * m + 0x1p-8 * (m + dm);
  return {dout, m};
}

}  // namespace

Tensor layer_error_bound(const Params& p, const std::vector<Tensor>& in) {
  const moe_gate::Routing r = p.routing();
  const int64_t T = p.tokens, k = r.topk, d = r.dim, E = r.experts, I = p.inter_dim(), Is = p.shared_inter();
  const LayerRouting routing = layer_routing(p, in);
  const std::size_t w0 = r.bias ? 3 : 2;
  const MatD x = rows_f64(in[0], 0, T, d);
  MatD bound = MatD::Zero(T, d), mag = MatD::Zero(T, d);
  for (int64_t e = 0; e < E; ++e) {  // in expert order: the sums are the same on any thread count
    std::vector<int64_t> pairs;
    for (int64_t q = 0; q < T * k; ++q)
      if (routing.indices[static_cast<std::size_t>(q)] == e) pairs.push_back(q);
    if (pairs.empty()) continue;
    MatD h(static_cast<Eigen::Index>(pairs.size()), d);
    for (std::size_t i = 0; i < pairs.size(); ++i) h.row(static_cast<Eigen::Index>(i)) = x.row(pairs[i] / k);
    const auto [dout, m] = branch_bound(h, in[w0], in[w0 + 1], in[w0 + 2], e, I, d);
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const double g = std::fabs(static_cast<double>(bf16_to_f32(routing.weights[static_cast<std::size_t>(pairs[i])])));
      bound.row(pairs[i] / k) += g * dout.row(static_cast<Eigen::Index>(i));
      mag.row(pairs[i] / k) += g * m.row(static_cast<Eigen::Index>(i));
    }
  }
  if (Is > 0) {
    const auto [dout, m] = branch_bound(x, in[w0 + 3], in[w0 + 4], in[w0 + 5], 0, Is, d);
    bound += dout;
    mag += m;
  }
  bound += static_cast<double>(k + 1) * 0x1p-24 * mag;
  Tensor out("magnitude:y", DType::f32, {T, d});
  auto o = out.span<float>();
  for (int64_t i = 0; i < T * d; ++i) o[static_cast<std::size_t>(i)] = static_cast<float>(bound.data()[i]);
  return out;
}

std::vector<Tensor> make_inputs(const Params& p) {
  const moe_gate::Routing r = p.routing();
  std::vector<Tensor> in = allocate(input_specs(p));
  const uint64_t seed = seed_from(p.to_string());
  const int64_t T = p.tokens, k = r.topk;
  if (p.op == Op::permute) {
    fill(in[0], p.dist, seed);
    const std::vector<int32_t> idx = draw_indices(p);
    std::copy(idx.begin(), idx.end(), in[1].span<int32_t>().begin());
  } else if (p.op == Op::combine) {
    const std::vector<int32_t> idx = draw_indices(p);
    const Layout l = layout_of(idx, T, k, r.experts, p.align);
    fill(in[0], p.dist, seed);
    const int64_t d = r.dim;
    auto eo = in[0].span<uint16_t>();
    for (std::size_t row = 0; row < l.group_index.size(); ++row)  // padding rows: NaN, never read
      if (l.group_index[row] < 0) std::fill(eo.begin() + static_cast<std::ptrdiff_t>(row) * d, eo.begin() + static_cast<std::ptrdiff_t>(row + 1) * d, uint16_t{0x7FC0});
    std::copy(l.row_of.begin(), l.row_of.end(), in[1].span<int32_t>().begin());
    Rng rng(seed + 1);  // gate-like weights in [0.05, 1)
    for (auto& w : in[2].span<uint16_t>()) w = f32_to_bf16(static_cast<float>(0.05 + 0.95 * rng.uniform01()));
  } else {
    fill(in[0], p.dist, seed);
    const int64_t d = r.dim, I = p.inter_dim();
    fill_bf16_normal(in[1], seed + 1, 1.0 / std::sqrt(static_cast<double>(d)));
    std::size_t i = 2;
    if (r.bias) {
      Rng rng(seed + 2);
      for (float& b : in[2].span<float>()) b = static_cast<float>(0.05 * rng.normal());
      i = 3;
    }
    const double fan_d = 1.0 / std::sqrt(static_cast<double>(d)), fan_i = 1.0 / std::sqrt(static_cast<double>(I));
    const double fan_s = p.shared_inter() > 0 ? 1.0 / std::sqrt(static_cast<double>(p.shared_inter())) : 1.0;
    const double stddev[6] = {fan_d, fan_d, fan_i, fan_d, fan_d, fan_s};
    for (int j = 0; j < 6; ++j) fill_bf16_normal(in[i + static_cast<std::size_t>(j)], seed + 10 + static_cast<uint64_t>(j), stddev[j]);
  }
  return in;
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  const moe_gate::Routing r = p.routing();
  const int64_t T = p.tokens, k = r.topk, d = r.dim;
  if (p.op == Op::layer) {
    require_tensors(in, input_specs(p), "moe/ref layer inputs");
    require_tensors(out, output_specs(p), "moe/ref layer outputs");
    layer_reference(p, in, out[0]);
    return;
  }
  // permute and combine take any routing: the row count R comes from the inputs, not the case.
  if (p.op == Op::permute) {
    if (in.size() != 2 || out.size() != 3) throw ShapeError("moe/ref permute: expected inputs x, indices and outputs xp, group_index, row_of");
    require_tensor(in[0], DType::bf16, {T, d}, "moe/ref permute x");
    require_tensor(in[1], DType::i32, {T, k}, "moe/ref permute indices");
    const Layout l = layout_of(in[1].span<const int32_t>(), T, k, r.experts, p.align);
    const auto R = static_cast<int64_t>(l.group_index.size());
    require_tensor(out[0], DType::bf16, {R, d}, "moe/ref permute xp (rows from the indices)");
    require_tensor(out[1], DType::i32, {R}, "moe/ref permute group_index");
    require_tensor(out[2], DType::i32, {T, k}, "moe/ref permute row_of");
    auto xp = out[0].span<uint16_t>();
    std::fill(xp.begin(), xp.end(), uint16_t{0});
    const auto x = in[0].span<const uint16_t>();
    for (int64_t q = 0; q < T * k; ++q)
      std::copy_n(x.begin() + (q / k) * d, d, xp.begin() + static_cast<std::ptrdiff_t>(l.row_of[static_cast<std::size_t>(q)]) * d);
    std::copy(l.group_index.begin(), l.group_index.end(), out[1].span<int32_t>().begin());
    std::copy(l.row_of.begin(), l.row_of.end(), out[2].span<int32_t>().begin());
    return;
  }
  if (in.size() != 3 || out.size() != 1) throw ShapeError("moe/ref combine: expected inputs expert_out, row_of, weights and output y");
  require_tensor(in[0], DType::bf16, {in[0].rank() == 2 ? in[0].dim(0) : -1, d}, "moe/ref combine expert_out");
  require_tensor(in[1], DType::i32, {T, k}, "moe/ref combine row_of");
  require_tensor(in[2], DType::bf16, {T, k}, "moe/ref combine weights");
  require_tensor(out[0], DType::bf16, {T, d}, "moe/ref combine y");
  const auto row_of = in[1].span<const int32_t>();
  const int64_t R = in[0].dim(0);
  for (int64_t q = 0; q < T * k; ++q)
    if (row_of[static_cast<std::size_t>(q)] < 0 || row_of[static_cast<std::size_t>(q)] >= R)
      throw std::invalid_argument("moe combine: row_of[" + std::to_string(q / k) + ", " + std::to_string(q % k) + "] = " +
                                  std::to_string(row_of[static_cast<std::size_t>(q)]) + " is outside expert_out's " + std::to_string(R) + " rows");
  const auto w = in[2].span<const uint16_t>();
  auto y = out[0].span<uint16_t>();
  parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j)
          acc += static_cast<double>(bf16_to_f32(w[static_cast<std::size_t>(t * k + j)])) *
                 in[0].get(row_of[static_cast<std::size_t>(t * k + j)] * d + c);
        y[static_cast<std::size_t>(t * d + c)] = bf16_from_f64(acc);
      }
  });
}

double flops(const Params& p) {
  const moe_gate::Routing r = p.routing();
  const auto T = static_cast<double>(p.tokens), d = static_cast<double>(r.dim), k = static_cast<double>(r.topk);
  if (p.op == Op::combine) return 2 * T * k * d;
  if (p.op == Op::permute) return 0;
  // gate GEMM + 3 GEMMs per (token, choice) and for the shared expert
  return 2 * T * r.experts * d + 6 * T * d * (k * static_cast<double>(p.inter_dim()) + static_cast<double>(p.shared_inter()));
}

double bytes_moved(const Params& p) {
  const moe_gate::Routing r = p.routing();
  const auto T = static_cast<double>(p.tokens), d = static_cast<double>(r.dim), k = static_cast<double>(r.topk);
  // permute: x and indices read once; every row of xp (padding zeros too), group_index, row_of written
  if (p.op == Op::permute) {
    const auto R = static_cast<double>(padded_rows(p));
    return 2 * T * d + 4 * T * k + 2 * R * d + 4 * R + 4 * T * k;
  }
  if (p.op == Op::combine) return 2 * T * k * d + 4 * T * k + 2 * T * k + 2 * T * d;  // only the routed rows are read
  double w = 0;
  for (const TensorSpec& s : input_specs(p)) w += static_cast<double>(shape_numel(s.shape) * static_cast<int64_t>(dtype_size(s.dtype)));
  return w + 2 * T * d;
}

}  // namespace dsv3::moe
