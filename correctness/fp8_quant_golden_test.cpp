// The FP8 1x128 quantization reference against torch, bit for bit, for every quantizer
// convention (reference/fp8_quant.hpp) and both scale formats.
//
// datasets/golden/fp8_quant_torch.json is written by scripts/crosscheck_torch_quant.py, which
// computes each convention with torch on the CPU exactly as the code it is named after writes it
// (kernel.py act_quant x / s, DeepGEMM x * (1.0 / sf), DeepEP's helper x * (448.0 / x_amax),
// and the IEEE quotient form x * (448 / amax)); ctest re-runs that script where torch imports.
// The file holds bf16 inputs [32, 1024] per distribution (ties-heavy ones included), the scales,
// the divide convention's codes, and per convention the elements whose codes differ from those.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "core/json_file.hpp"
#include "correctness/reference_run.hpp"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {
namespace {

std::vector<uint8_t> from_base64(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;  // '=' padding
  };
  std::vector<uint8_t> out;
  out.reserve(s.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = val(c);
    if (v < 0) break;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xffu));
    }
  }
  return out;
}

template <class T>
std::vector<T> decode_array(const nlohmann::json& field, std::size_t n, const std::string& what) {
  const std::vector<uint8_t> bytes = from_base64(field.get<std::string>());
  if (bytes.size() != n * sizeof(T))
    throw std::runtime_error(what + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                             std::to_string(n * sizeof(T)));
  std::vector<T> v(n);
  std::memcpy(v.data(), bytes.data(), bytes.size());  // little-endian, as written
  return v;
}

class TorchQuant : public testing::TestWithParam<Convention> {};

TEST_P(TorchQuant, ReferenceMatchesTorchBitForBit) {
  const Convention conv = GetParam();
  const nlohmann::json golden = load_json_file(datasets_dir() / "golden" / "fp8_quant_torch.json");
  int64_t tiles_checked = 0;
  for (const auto& set : golden.at("sets")) {
    const std::string name = set.at("name").get<std::string>();
    const int64_t m = set.at("rows").get<int64_t>(), k = set.at("cols").get<int64_t>();
    const auto n = static_cast<std::size_t>(m * k);
    Tensor x("x", DType::bf16, {m, k});
    const auto xs = decode_array<uint16_t>(set.at("x_bf16"), n, name + " x_bf16");
    std::copy(xs.begin(), xs.end(), x.span<uint16_t>().begin());
    for (ScaleFmt fmt : {ScaleFmt::f32, ScaleFmt::ue8m0}) {
      const auto& g = set.at(std::string(scale_fmt_name(fmt)));
      const auto want_s = decode_array<uint32_t>(g.at("scales_f32"), n / kTile, name + " scales");
      auto want_c = decode_array<uint8_t>(g.at("codes_divide"), n, name + " codes");
      for (const auto& d : g.at("code_diffs_from_divide").at(std::string(conv_name(conv))))
        want_c.at(d.at(0).get<std::size_t>()) = d.at(1).get<uint8_t>();

      Params p;
      p.op = Op::quant_1x128; p.m = m; p.k = k; p.elem = Elem::e4m3; p.conv = conv; p.scale_fmt = fmt;
      const std::vector<Tensor> out = run_reference_poisoned(p, {x});
      const auto codes = out[0].span<const uint8_t>();
      const auto scales = out[1].span<const uint32_t>();
      int bad = 0;
      for (std::size_t i = 0; i < n / kTile; ++i)
        if (scales[i] != want_s[i] && ++bad <= 5)
          ADD_FAILURE() << name << " " << scale_fmt_name(fmt) << " scale " << i << ": got 0x" << std::hex
                        << scales[i] << ", torch 0x" << want_s[i];
      for (std::size_t i = 0; i < n; ++i)
        if (codes[i] != want_c[i] && ++bad <= 5)
          ADD_FAILURE() << name << " " << scale_fmt_name(fmt) << " element " << i << " (bf16 0x" << std::hex
                        << xs[i] << "): got code 0x" << int{codes[i]} << ", torch 0x" << int{want_c[i]};
      EXPECT_EQ(bad, 0) << name << " " << scale_fmt_name(fmt) << " " << conv_name(conv);
      tiles_checked += static_cast<int64_t>(n / kTile);
    }
  }
  EXPECT_GE(tiles_checked, 2 * 2000) << "golden file has too few tiles";
}

INSTANTIATE_TEST_SUITE_P(Golden, TorchQuant,
                         testing::Values(Convention::divide, Convention::reciprocal, Convention::fused,
                                         Convention::fused_torch),
                         [](const testing::TestParamInfo<Convention>& i) { return std::string(conv_name(i.param)); });

}  // namespace
}  // namespace dsv3::fp8
