#include "core/fill.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace dsv3 {
namespace {

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

float special_value(uint64_t r) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  static const std::array<float, 19> kSpecials = {
      3e38f, -3e38f, 1e30f, -1e30f, 65504.f, 57344.f, 464.f, -448.f, 1e-30f, 0x1p-9f,
      -0x1p-10f, 1e-40f, std::numeric_limits<float>::quiet_NaN(), inf, -inf, 0.0f, -0.0f,
      0x1p-7f, 1e-4f};
  return kSpecials[r % kSpecials.size()];
}

}  // namespace

std::string_view dist_name(Dist d) {
  switch (d) {
    case Dist::normal: return "normal";
    case Dist::uniform: return "uniform";
    case Dist::outliers: return "outliers";
    case Dist::outlier_channels: return "outlier_channels";
    case Dist::token_scaled: return "token_scaled";
    case Dist::small_ints: return "small_ints";
    case Dist::adversarial: return "adversarial";
    case Dist::zeros: return "zeros";
  }
  return "?";
}

const std::vector<Dist>& all_dists() {
  static const std::vector<Dist> all = {Dist::normal,           Dist::uniform,    Dist::outliers,
                                        Dist::outlier_channels, Dist::token_scaled, Dist::small_ints,
                                        Dist::adversarial,      Dist::zeros};
  return all;
}

Dist dist_from_name(std::string_view name) {
  for (Dist d : all_dists())
    if (dist_name(d) == name) return d;
  throw std::invalid_argument("unknown distribution '" + std::string(name) +
                              "' (expected normal, uniform, outliers, outlier_channels, "
                              "token_scaled, small_ints, adversarial, zeros)");
}

uint64_t seed_from(std::string_view identity) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : identity) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform01() { return static_cast<double>(next() >> 11) * 0x1p-53; }

double Rng::normal() {
  const double u1 = 1.0 - uniform01();  // (0, 1]
  const double u2 = uniform01();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
}

std::vector<float> draw(Dist d, uint64_t seed, int64_t n, int64_t channels, double scale) {
  Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  std::vector<bool> hot_channel;
  double row_scale = scale;  // token_scaled: the current row's magnitude
  if (d == Dist::outlier_channels) {
    const int64_t c = std::max<int64_t>(channels, 1);
    hot_channel.assign(static_cast<std::size_t>(c), false);
    const int64_t n_hot = std::max<int64_t>(1, c / 50);
    for (int64_t i = 0; i < n_hot; ++i) hot_channel[rng.next() % c] = true;
  }
  for (int64_t i = 0; i < n; ++i) {
    double x = 0.0;
    switch (d) {
      case Dist::normal: x = rng.normal() * scale; break;
      case Dist::uniform: x = (2.0 * rng.uniform01() - 1.0) * scale; break;
      case Dist::outliers:
        x = rng.normal() * scale;
        if (rng.next() % 256 == 0) x *= 100.0;
        break;
      case Dist::outlier_channels:
        x = rng.normal() * scale;
        if (hot_channel[static_cast<std::size_t>(i % static_cast<int64_t>(hot_channel.size()))]) x *= 100.0;
        break;
      case Dist::token_scaled:
        if (i % std::max<int64_t>(channels, 1) == 0) row_scale = std::exp2(-20.0 + 28.0 * rng.uniform01()) * scale;
        x = rng.normal() * row_scale;
        break;
      case Dist::small_ints: x = static_cast<double>(static_cast<int64_t>(rng.next() % 17) - 8); break;
      case Dist::adversarial: {
        const uint64_t r = rng.next();
        x = (r % 4 == 0) ? special_value(r >> 8) : rng.normal() * scale;
        break;
      }
      case Dist::zeros: x = 0.0; break;
    }
    v[static_cast<std::size_t>(i)] = static_cast<float>(x);
  }
  return v;
}

void fill(Tensor& t, Dist d, uint64_t seed, double scale) {
  const int64_t channels = t.rank() ? t.dim(-1) : 1;
  const std::vector<float> v = draw(d, seed, t.numel(), channels, scale);
  switch (t.dtype()) {
    case DType::f32: std::copy(v.begin(), v.end(), t.span<float>().begin()); break;
    case DType::bf16: { auto s = t.span<uint16_t>(); for (std::size_t i = 0; i < v.size(); ++i) s[i] = f32_to_bf16(v[i]); break; }
    case DType::f16: { auto s = t.span<uint16_t>(); for (std::size_t i = 0; i < v.size(); ++i) s[i] = f32_to_f16(v[i]); break; }
    case DType::e4m3: { auto s = t.span<uint8_t>(); for (std::size_t i = 0; i < v.size(); ++i) s[i] = f32_to_e4m3(v[i]); break; }
    case DType::e5m2: { auto s = t.span<uint8_t>(); for (std::size_t i = 0; i < v.size(); ++i) s[i] = f32_to_e5m2(v[i]); break; }
    default:
      throw std::invalid_argument("fill: tensor '" + t.name() + "' has non-float dtype " +
                                  std::string(dtype_name(t.dtype())));
  }
}

}  // namespace dsv3
