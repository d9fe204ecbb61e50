// RMSNorm reference (reference/rmsnorm.hpp), its cases and the registration of "ref".
#include "reference/rmsnorm.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "core/json_file.hpp"
#include "core/parallel.hpp"
#include "core/registry.hpp"

namespace dsv3::rmsnorm {

std::string Params::to_string() const {
  std::ostringstream os;
  os << "rows=" << rows << " dim=" << dim << ' ' << dist_name(dist);
  if (scale != 1.0) os << " x" << scale;
  if (eps != kEps) os << " eps=" << eps;
  return os.str();
}

void Params::validate() const {
  if (rows < 1) throw std::invalid_argument("rmsnorm: rows must be >= 1, got " + std::to_string(rows));
  if (dim < 1) throw std::invalid_argument("rmsnorm: dim must be >= 1, got " + std::to_string(dim));
  if (!(eps > 0) || !std::isfinite(eps)) throw std::invalid_argument("rmsnorm: eps must be finite and > 0");
  if (!(scale > 0)) throw std::invalid_argument("rmsnorm: distribution scale must be > 0");
}

std::vector<TensorSpec> input_specs(const Params& p) {
  return {{"x", DType::bf16, {p.rows, p.dim}}, {"w", DType::bf16, {p.dim}}};
}
std::vector<TensorSpec> output_specs(const Params& p) { return {{"y", DType::bf16, {p.rows, p.dim}}}; }

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  std::vector<Tensor> in = allocate(input_specs(p));
  fill(in[0], p.dist, seed_from(p.to_string()), p.scale);
  // Norm weights: positive around 1 with spread, as trained norms are; seeded by the width only.
  const std::vector<float> g = draw(Dist::normal, seed_from("rmsnorm weight dim=" + std::to_string(p.dim)), p.dim, p.dim);
  auto w = in[1].span<uint16_t>();
  for (int64_t j = 0; j < p.dim; ++j) w[j] = f32_to_bf16(1.0f + 0.25f * g[j]);
  return in;
}

float row_rinv(const uint16_t* x, int64_t dim, double eps) {
  double ss = 0;
  for (int64_t j = 0; j < dim; ++j) {
    const double v = bf16_to_f32(x[j]);
    ss += v * v;
  }
  const float mean = static_cast<float>(ss / static_cast<double>(dim));  // Inf past FLT_MAX, as FP32 would be
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(mean) + eps));
}

void normalize_row(const uint16_t* x, const uint16_t* w, int64_t dim, double eps, uint16_t* y) {
  const float rinv = row_rinv(x, dim, eps);
  for (int64_t j = 0; j < dim; ++j) {
    const float n = bf16_to_f32(f32_to_bf16(bf16_to_f32(x[j]) * rinv));
    y[j] = f32_to_bf16(n * bf16_to_f32(w[j]));
  }
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "rmsnorm/ref inputs");
  require_tensors(out, output_specs(p), "rmsnorm/ref outputs");
  const uint16_t* x = in[0].span<uint16_t>().data();
  const uint16_t* w = in[1].span<uint16_t>().data();
  uint16_t* y = out[0].span<uint16_t>().data();
  parallel_for(p.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) normalize_row(x + r * p.dim, w, p.dim, p.eps, y + r * p.dim);
  }, std::max<int64_t>(1, 65536 / p.dim));
}

namespace {

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // kv_norm, q_norm and hidden widths; ragged widths (not a multiple of 8 or 32) and one element.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 7}, {5, 100}, {17, 512}, {2, 1536}, {3, 7168}, {33, 1000}};
  for (auto [rows, dim] : shapes)
    for (Dist d : all_dists()) {
      Params p;
      p.rows = rows; p.dim = dim; p.dist = d;
      cases.push_back(make_case(p));
    }
  for (double s : {1e-3, 1e4}) {  // eps matters at 1e-3 (mean square ~1e-6); large values at 1e4
    Params p;
    p.rows = 9; p.dim = 512; p.scale = s;
    cases.push_back(make_case(p));
  }
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("rmsnorm", [](const nlohmann::json& c, const std::string& at) {
    Params p;
    p.rows = json_int(c, "rows", at);
    p.dim = json_int(c, "dim", at);
    p.validate();
    return std::vector<Case>{make_case(p)};
  });
}

}  // namespace

void register_component() {
  Component c;
  c.name = "rmsnorm";
  c.description = "RMSNorm, eps 1e-6, BF16 in/out, normalized in FP32 then times the BF16 weight (V3's every norm)";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  c.make_inputs = [](const Case& k) { return make_inputs(k.as<Params>()); };
  c.make_outputs = [](const Case& k) { return allocate(output_specs(k.as<Params>())); };
  c.bytes = [](const Case& k) {  // x read, w read, y written
    const Params& p = k.as<Params>();
    return 2.0 * static_cast<double>(p.rows * p.dim) * 2 + 2.0 * static_cast<double>(p.dim);
  };
  Registry::instance().add(std::move(c));

  Variant v;
  v.component = "rmsnorm";
  v.name = "ref";
  v.description = "CPU reference: FP64 sum of squares, FP32 normalize, two BF16 roundings (reference/rmsnorm.cpp)";
  v.prepare = [](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_reference(p, io.in, io.out); });
  };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::rmsnorm

void dsv3_register_rmsnorm_ref() { dsv3::rmsnorm::register_component(); }
