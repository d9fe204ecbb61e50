// FP8 quantization component: params identity, cases, seeded inputs, registration of "ref".
#include <array>
#include <sstream>
#include <stdexcept>

#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {
namespace {

template <class E, std::size_t N>
E from_name(std::string_view name, const std::array<E, N>& all, std::string_view (*to)(E), const char* what) {
  std::string known;
  for (E e : all) {
    if (to(e) == name) return e;
    known += (known.empty() ? "" : ", ") + std::string(to(e));
  }
  throw std::invalid_argument(std::string("unknown ") + what + " '" + std::string(name) + "' (expected " + known + ")");
}

constexpr std::array kOps = {Op::quant_1x128, Op::quant_128x128, Op::dequant_1x128,
                             Op::dequant_128x128, Op::retile_1x128_to_128x1, Op::logfmt};
constexpr std::array kConvs = {Convention::divide, Convention::reciprocal, Convention::fused, Convention::fused_torch};
constexpr std::array kScaleFmts = {ScaleFmt::f32, ScaleFmt::ue8m0};
constexpr std::array kElems = {Elem::e4m3, Elem::e5m2};

}  // namespace

std::string_view op_name(Op o) {
  switch (o) {
    case Op::quant_1x128: return "quant_1x128";
    case Op::quant_128x128: return "quant_128x128";
    case Op::dequant_1x128: return "dequant_1x128";
    case Op::dequant_128x128: return "dequant_128x128";
    case Op::retile_1x128_to_128x1: return "retile_1x128_to_128x1";
    case Op::logfmt: return "logfmt";
  }
  return "?";
}
std::string_view conv_name(Convention c) {
  switch (c) {
    case Convention::divide: return "divide";
    case Convention::reciprocal: return "reciprocal";
    case Convention::fused: return "fused";
    case Convention::fused_torch: return "fused_torch";
  }
  return "?";
}
std::string_view scale_fmt_name(ScaleFmt f) { return f == ScaleFmt::f32 ? "f32" : "ue8m0"; }
std::string_view elem_name(Elem e) { return e == Elem::e4m3 ? "e4m3" : "e5m2"; }
Op op_from_name(std::string_view n) { return from_name(n, kOps, op_name, "fp8 op"); }
Convention conv_from_name(std::string_view n) { return from_name(n, kConvs, conv_name, "scale convention"); }
ScaleFmt scale_fmt_from_name(std::string_view n) { return from_name(n, kScaleFmts, scale_fmt_name, "scale format"); }
Elem elem_from_name(std::string_view n) { return from_name(n, kElems, elem_name, "fp8 element format"); }

std::string Params::to_string() const {
  std::ostringstream os;
  os << op_name(op) << " m=" << m << " k=" << k;
  if (op == Op::logfmt) {
    os << " bits=" << logfmt_bits;
  } else {
    os << ' ' << elem_name(elem) << ' ' << conv_name(conv) << ' ' << scale_fmt_name(scale_fmt);
  }
  os << ' ' << dist_name(dist);
  if (scale != 1.0) os << " x" << scale;
  return os.str();
}

void Params::validate() const {
  if (m < 1 || k < 1)
    throw std::invalid_argument("fp8 " + std::string(op_name(op)) + ": m and k must be >= 1 (m=" +
                                std::to_string(m) + ", k=" + std::to_string(k) + ")");
  if (op == Op::logfmt && logfmt_bits != 8 && logfmt_bits != 10)
    throw std::invalid_argument("logfmt: bits must be 8 or 10, got " + std::to_string(logfmt_bits));
  if (!(scale > 0)) throw std::invalid_argument("fp8: distribution scale must be > 0");
}

std::vector<TensorSpec> input_specs(const Params& p) {
  const DType cd = elem_dtype(p.elem);
  switch (p.op) {
    case Op::quant_1x128: case Op::quant_128x128: case Op::logfmt: return {{"x", DType::bf16, {p.m, p.k}}};
    case Op::dequant_128x128: return {{"codes", cd, {p.m, p.k}}, {"scales", DType::f32, {tiles(p.m), tiles(p.k)}}};
    case Op::dequant_1x128: case Op::retile_1x128_to_128x1:
      return {{"codes", cd, {p.m, p.k}}, {"scales", DType::f32, {p.m, tiles(p.k)}}};
  }
  throw std::logic_error("input_specs: unknown op");
}

std::vector<TensorSpec> output_specs(const Params& p) {
  const DType cd = elem_dtype(p.elem);
  switch (p.op) {
    case Op::quant_1x128: return {{"codes", cd, {p.m, p.k}}, {"scales", DType::f32, {p.m, tiles(p.k)}}};
    case Op::quant_128x128: return {{"codes", cd, {p.m, p.k}}, {"scales", DType::f32, {tiles(p.m), tiles(p.k)}}};
    case Op::dequant_1x128: case Op::dequant_128x128: return {{"y", DType::bf16, {p.m, p.k}}};
    case Op::retile_1x128_to_128x1: return {{"codes_t", cd, {p.k, p.m}}, {"scales_t", DType::f32, {p.k, tiles(p.m)}}};
    case Op::logfmt:
      return {{"codes", DType::u16, {p.m, p.k}}, {"meta", DType::f32, {p.m, tiles(p.k), 2}},
              {"fallback", DType::u8, {p.m, tiles(p.k)}}, {"y", DType::bf16, {p.m, p.k}}};
  }
  throw std::logic_error("output_specs: unknown op");
}

std::vector<Tensor> make_outputs(const Params& p) { return allocate(output_specs(p)); }

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  Tensor x("x", DType::bf16, {p.m, p.k});
  fill(x, p.dist, seed_from(p.to_string()), p.scale);
  if (p.op == Op::quant_1x128 || p.op == Op::quant_128x128 || p.op == Op::logfmt) return {std::move(x)};
  // Dequant and retile consume what the reference quantizer produced from the seeded fill.
  Params q = p;
  q.op = p.op == Op::dequant_128x128 ? Op::quant_128x128 : Op::quant_1x128;
  std::vector<Tensor> qo = make_outputs(q);
  if (q.op == Op::quant_1x128) quant_1x128(x, qo[0], qo[1], q);
  else quant_128x128(x, qo[0], qo[1], q);
  return qo;  // codes, scales
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "fp8_quant/ref " + std::string(op_name(p.op)) + " inputs");
  require_tensors(out, output_specs(p), "fp8_quant/ref " + std::string(op_name(p.op)) + " outputs");
  switch (p.op) {
    case Op::quant_1x128: quant_1x128(in.at(0), out.at(0), out.at(1), p); break;
    case Op::quant_128x128: quant_128x128(in.at(0), out.at(0), out.at(1), p); break;
    case Op::dequant_1x128: case Op::dequant_128x128: dequant(in.at(0), in.at(1), out.at(0), p); break;
    case Op::retile_1x128_to_128x1: retile_1x128_to_128x1(in.at(0), in.at(1), out.at(0), out.at(1), p); break;
    case Op::logfmt:
      logfmt_encode(in.at(0), out.at(0), out.at(1), out.at(2), p);
      logfmt_decode(out.at(0), out.at(1), out.at(2), out.at(3), p);
      break;
  }
}

double bytes_moved(const Params& p) {
  const double n = static_cast<double>(p.m) * static_cast<double>(p.k);
  const double row_tiles = static_cast<double>(p.m) * static_cast<double>(tiles(p.k));
  const double blocks = static_cast<double>(tiles(p.m)) * static_cast<double>(tiles(p.k));
  switch (p.op) {
    case Op::quant_1x128: return 2 * n + n + 4 * row_tiles;
    case Op::quant_128x128: return 2 * n + n + 4 * blocks;
    case Op::dequant_1x128: return n + 4 * row_tiles + 2 * n;
    case Op::dequant_128x128: return n + 4 * blocks + 2 * n;
    case Op::retile_1x128_to_128x1:
      return n + 4 * row_tiles + n + 4 * static_cast<double>(p.k) * static_cast<double>(tiles(p.m));
    case Op::logfmt:  // read x; write codes (u16), meta, fallback, decoded y
      return 2 * n + 2 * n + 9 * row_tiles + 2 * n;
  }
  return 0;
}

namespace {

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // Irregular sizes: one tile, ragged K, ragged M and K, several blocks, V3's hidden size.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 128}, {7, 300}, {130, 257}, {256, 512}, {3, 7168}};
  struct Scheme { Elem e; Convention c; ScaleFmt f; };
  const std::vector<Scheme> schemes = {{Elem::e4m3, Convention::divide, ScaleFmt::f32},
                                       {Elem::e4m3, Convention::reciprocal, ScaleFmt::f32},
                                       {Elem::e4m3, Convention::fused, ScaleFmt::f32},
                                       {Elem::e4m3, Convention::fused_torch, ScaleFmt::f32},
                                       {Elem::e4m3, Convention::divide, ScaleFmt::ue8m0},
                                       {Elem::e5m2, Convention::divide, ScaleFmt::f32}};
  for (Op op : {Op::quant_1x128, Op::quant_128x128, Op::dequant_1x128, Op::dequant_128x128, Op::retile_1x128_to_128x1})
    for (auto [m, k] : shapes)
      for (const Scheme& s : schemes)
        for (Dist d : all_dists()) {
          Params p;
          p.op = op; p.m = m; p.k = k; p.elem = s.e; p.conv = s.c; p.scale_fmt = s.f; p.dist = d;
          cases.push_back(make_case(p));
        }
  for (auto [m, k] : shapes)
    for (int bits : {8, 10})
      for (Dist d : all_dists())
        for (double scale : {1.0, 0.01}) {  // 0.01: most groups have amax < 1 and are encoded
          Params p;
          p.op = Op::logfmt; p.m = m; p.k = k; p.logfmt_bits = bits; p.dist = d; p.scale = scale;
          cases.push_back(make_case(p));
        }
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("fp8_quant", [](const nlohmann::json& c, const std::string& at) {
    Params p;
    p.op = op_from_name(json_field<std::string>(c, "op", at));
    p.m = json_field<int64_t>(c, "m", at);
    p.k = json_field<int64_t>(c, "k", at);
    p.elem = elem_from_name(json_field_or<std::string>(c, "elem", "e4m3", at));
    p.conv = conv_from_name(json_field_or<std::string>(c, "conv", "divide", at));
    p.scale_fmt = scale_fmt_from_name(json_field_or<std::string>(c, "scale_fmt", "f32", at));
    p.logfmt_bits = json_field_or<int>(c, "bits", 10, at);
    p.dist = dist_from_name(json_field_or<std::string>(c, "dist", "normal", at));
    p.scale = json_field_or<double>(c, "scale", 1.0, at);
    p.validate();
    return std::vector<Case>{make_case(p)};
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "fp8_quant";
  c.description = "FP8 fine-grained quantization: 1x128 / 128x128 tiles, dequant, 1x128->128x1 retile, LogFMT";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  c.make_inputs = [](const Case& k) { return make_inputs(k.as<Params>()); };
  c.make_outputs = [](const Case& k) { return make_outputs(k.as<Params>()); };
  c.bytes = [](const Case& k) { return bytes_moved(k.as<Params>()); };
  c.study = numerics_study;
  Registry::instance().add(std::move(c));

  Variant v;
  v.component = "fp8_quant";
  v.name = "ref";
  v.description = "CPU reference, one tile at a time (reference/fp8_quant.cpp)";
  v.prepare = [](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_reference(p, io.in, io.out); });
  };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::fp8

void dsv3_register_fp8_quant_ref() { dsv3::fp8::register_component(); }
