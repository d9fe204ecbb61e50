// RoPE/YaRN reference (reference/rope.hpp), its cases and the registration of "ref".
#include "reference/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "core/json_file.hpp"
#include "core/parallel.hpp"
#include "core/registry.hpp"

namespace dsv3::rope {

std::pair<int64_t, int64_t> correction_range(const Yarn& y) {
  const auto dim = static_cast<double>(y.dim);
  auto corr = [&](double rotations) {
    return dim * std::log(static_cast<double>(y.original_seq_len) / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(y.theta));
  };
  const auto low = static_cast<int64_t>(std::floor(corr(y.beta_fast)));
  const auto high = static_cast<int64_t>(std::ceil(corr(y.beta_slow)));
  return {std::max<int64_t>(low, 0), std::min<int64_t>(high, y.dim - 1)};
}

std::vector<float> frequencies(const Yarn& y) {
  const int64_t half = y.dim / 2;
  std::vector<float> f(static_cast<std::size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(y.dim);
    const auto p = static_cast<float>(std::pow(y.theta, static_cast<double>(e)));
    f[static_cast<std::size_t>(i)] = 1.0f / p;
  }
  if (!y.enabled) return f;
  auto [low, high] = correction_range(y);
  float lo = static_cast<float>(low), hi = static_cast<float>(high);
  if (lo == hi) hi += 0.001f;  // model.py linear_ramp_factor
  const auto factor = static_cast<float>(y.factor);
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp((static_cast<float>(i) - lo) / (hi - lo), 0.0f, 1.0f);
    const float smooth = 1.0f - ramp;
    float& fi = f[static_cast<std::size_t>(i)];
    const float scaled = (fi / factor) * (1.0f - smooth);
    const float kept = fi * smooth;
    fi = scaled + kept;
  }
  return f;
}

void cos_sin(const std::vector<float>& freqs, int64_t t, float* out) {
  const auto tf = static_cast<float>(t);
  for (std::size_t i = 0; i < freqs.size(); ++i) {
    const float angle = tf * freqs[i];
    out[2 * i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    out[2 * i + 1] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

std::vector<float> cos_sin_table(const Yarn& y, int64_t positions) {
  const std::vector<float> f = frequencies(y);
  std::vector<float> table(static_cast<std::size_t>(positions * y.dim));
  parallel_for(positions, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) cos_sin(f, t, table.data() + t * y.dim);
  }, 1024);
  return table;
}

double softmax_scale(int64_t qk_head_dim, const Yarn& y) {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim));
  if (y.enabled) {
    const double mscale = 0.1 * y.mscale * std::log(y.factor) + 1.0;
    scale *= mscale * mscale;
  }
  return scale;
}

std::string Params::to_string() const {
  std::ostringstream os;
  os << "t=" << tokens << " h=" << heads << " pos<" << max_pos << (yarn ? " yarn " : " plain ") << dist_name(dist);
  return os.str();
}

void Params::validate() const {
  if (tokens < 1) throw std::invalid_argument("rope: tokens must be >= 1, got " + std::to_string(tokens));
  if (heads < 1) throw std::invalid_argument("rope: heads must be >= 1, got " + std::to_string(heads));
  if (max_pos < 1 || max_pos > (int64_t{1} << 24))
    throw std::invalid_argument("rope: max_pos must be in [1, 2^24] (positions exact in FP32), got " + std::to_string(max_pos));
}

Yarn Params::settings() const {
  Yarn y;
  y.enabled = yarn;
  return y;
}

std::vector<TensorSpec> input_specs(const Params& p) {
  const int64_t d = p.settings().dim;
  return {{"x", DType::bf16, {p.tokens, p.heads, d}}, {"positions", DType::i32, {p.tokens}}};
}
std::vector<TensorSpec> output_specs(const Params& p) {
  return {{"y", DType::bf16, {p.tokens, p.heads, p.settings().dim}}};
}

std::vector<Tensor> make_inputs(const Params& p) {
  p.validate();
  std::vector<Tensor> in = allocate(input_specs(p));
  const uint64_t seed = seed_from(p.to_string());
  fill(in[0], p.dist, seed);
  Rng rng(seed ^ 0x9e3779b97f4a7c15ull);
  auto pos = in[1].span<int32_t>();
  for (int64_t t = 0; t < p.tokens; ++t)
    pos[static_cast<std::size_t>(t)] = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(p.max_pos));
  pos[0] = 0;
  pos[static_cast<std::size_t>(p.tokens - 1)] = static_cast<int32_t>(p.max_pos - 1);
  return in;
}

void check_positions(const Params& p, const Tensor& positions) {
  const auto pos = positions.span<const int32_t>();
  for (std::size_t t = 0; t < pos.size(); ++t)
    if (pos[t] < 0 || pos[t] >= p.max_pos)
      throw std::invalid_argument("rope: positions[" + std::to_string(t) + "] = " + std::to_string(pos[t]) +
                                  " is outside [0, " + std::to_string(p.max_pos) + ")");
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "rope/ref inputs");
  require_tensors(out, output_specs(p), "rope/ref outputs");
  check_positions(p, in[1]);
  const Yarn y = p.settings();
  const std::vector<float> f = frequencies(y);
  const uint16_t* x = in[0].span<uint16_t>().data();
  const int32_t* pos = in[1].span<int32_t>().data();
  uint16_t* o = out[0].span<uint16_t>().data();
  const int64_t half = y.dim / 2;
  parallel_for(p.tokens, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(static_cast<std::size_t>(y.dim));
    for (int64_t t = t0; t < t1; ++t) {
      cos_sin(f, pos[t], cs.data());
      for (int64_t h = 0; h < p.heads; ++h) {
        const int64_t base = (t * p.heads + h) * y.dim;
        for (int64_t i = 0; i < half; ++i) {
          float y0, y1;
          rotate_pair(bf16_to_f32(x[base + 2 * i]), bf16_to_f32(x[base + 2 * i + 1]), cs[2 * i], cs[2 * i + 1], y0, y1);
          o[base + 2 * i] = f32_to_bf16(y0);
          o[base + 2 * i + 1] = f32_to_bf16(y1);
        }
      }
    }
  }, 16);
}

namespace {

std::vector<Case> eval_cases() {
  std::vector<Case> cases;
  // q^R (128 heads) and the shared k^R (1 head); positions within the original 4096 and up to
  // V3's 163840 (max_position_embeddings; past the YaRN ramp's long-wavelength end).
  struct S { int64_t t, h, max_pos; };
  for (const S s : {S{1, 1, 1}, S{7, 1, 4096}, S{5, 128, 163840}, S{33, 3, 16384}, S{2, 16, 163840}})
    for (bool yarn : {true, false})
      for (Dist d : all_dists()) {
        Params p;
        p.tokens = s.t; p.heads = s.h; p.max_pos = s.max_pos; p.yarn = yarn; p.dist = d;
        cases.push_back(make_case(p));
      }
  return cases;
}

std::vector<Case> perf_cases() {
  return load_shape_cases("rope", [](const nlohmann::json& c, const std::string& at) {
    Params p;
    p.tokens = json_int(c, "tokens", at);
    p.heads = json_int(c, "heads", at);
    p.max_pos = json_field_or<int64_t>(c, "max_pos", 163840, at);
    p.yarn = json_field_or<bool>(c, "yarn", true, at);
    p.validate();
    return std::vector<Case>{make_case(p)};
  });
}

}  // namespace

double bytes_moved(const Params& p) {
  const auto d = static_cast<double>(p.settings().dim);
  const auto t = static_cast<double>(p.tokens);
  return t * static_cast<double>(p.heads) * d * 2 * 2 + t * 4 + t * d * 4;
}

void register_component() {
  Component c;
  c.name = "rope";
  c.description = "RoPE with V3's YaRN (factor 40, beta 32/1, original 4096) on adjacent pairs, BF16 in/out, FP32 rotation";
  c.eval_cases = eval_cases;
  c.perf_cases = perf_cases;
  bind_case_hooks<Params>(c);
  Registry::instance().add(std::move(c));

  Variant v;
  v.component = "rope";
  v.name = "ref";
  v.description = "CPU reference: model.py's FP32 table steps, FP64 cos/sin rounded once (reference/rope.cpp)";
  v.prepare = [](const Case& k, Io& io) {
    return make_cpu_runner([p = k.as<Params>(), &io] { run_reference(p, io.in, io.out); });
  };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: every other variant is compared with it, it is never checked against itself");
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::rope

void dsv3_register_rope_ref() { dsv3::rope::register_component(); }
