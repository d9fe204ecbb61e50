// The codecs against implementations nobody here wrote:
//  - CudaFp8Host: the CUDA toolkit's cuda_fp8.hpp / cuda_bf16.hpp conversions compiled for the
//    host, over all 256 codes and a float32 sweep (ties, subnormals, saturation, NaN), with both
//    saturation modes;
//  - Golden*: ml_dtypes (PyPI), through datasets/golden/fp8_codecs_ml_dtypes.json written by
//    scripts/crosscheck_ml_dtypes.py (ctest also re-runs that script against the installed
//    ml_dtypes). ml_dtypes does not saturate, so it is compared with Saturation::none. NaN
//    results are compared as NaN-ness: ml_dtypes keeps the NaN's sign, CUDA's cvt does not.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/json_file.hpp"
#if DSV3_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#endif

namespace dsv3 {
namespace {

// Float32 inputs that exercise every rounding path of an 8-bit format.
[[maybe_unused]] std::vector<float> fp8_sweep(float (*decode)(uint8_t)) {
  std::vector<float> xs;
  std::vector<float> values;
  for (int c = 0; c < 128; ++c) {
    const float v = decode(static_cast<uint8_t>(c));
    if (std::isfinite(v)) values.push_back(v);
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    xs.insert(xs.end(), {v, std::nextafter(v, INFINITY), std::nextafter(v, -INFINITY)});
    const float next = i + 1 < values.size() ? values[i + 1] : v * 1.0714285f;  // the would-be level above max
    const float mid = static_cast<float>((static_cast<double>(v) + next) / 2);   // exact tie
    xs.insert(xs.end(), {mid, std::nextafter(mid, INFINITY), std::nextafter(mid, -INFINITY)});
  }
  xs.insert(xs.end(), {INFINITY, NAN, 1e30f, 3e38f, 1e-30f, 1e-40f, 0.0f, 600.0f, 70000.0f});
  Rng rng(2024);
  for (int i = 0; i < 20000; ++i)
    xs.push_back(static_cast<float>(std::ldexp(rng.uniform01() + 0.5, static_cast<int>(rng.next() % 48) - 24)));
  const std::size_t n = xs.size();
  for (std::size_t i = 0; i < n; ++i) xs.push_back(-xs[i]);
  return xs;
}

#if DSV3_HAVE_CUDA
TEST(CudaFp8Host, AllCodesDecodeIdentically) {
  for (int c = 0; c < 256; ++c) {
    const __nv_fp8_e4m3 e4 = std::bit_cast<__nv_fp8_e4m3>(static_cast<uint8_t>(c));
    const __nv_fp8_e5m2 e5 = std::bit_cast<__nv_fp8_e5m2>(static_cast<uint8_t>(c));
    const float a = static_cast<float>(e4), b = static_cast<float>(e5);
    if (std::isnan(a)) EXPECT_TRUE(std::isnan(e4m3_to_f32(static_cast<uint8_t>(c))));
    else EXPECT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(e4m3_to_f32(static_cast<uint8_t>(c)))) << c;
    if (std::isnan(b)) EXPECT_TRUE(std::isnan(e5m2_to_f32(static_cast<uint8_t>(c))));
    else EXPECT_EQ(std::bit_cast<uint32_t>(b), std::bit_cast<uint32_t>(e5m2_to_f32(static_cast<uint8_t>(c)))) << c;
  }
}

TEST(CudaFp8Host, EncodeSweepMatchesBothSaturationModes) {
  for (float x : fp8_sweep(e4m3_to_f32)) {
    ASSERT_EQ(f32_to_e4m3(x, Saturation::finite), __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)) << x;
    ASSERT_EQ(f32_to_e4m3(x, Saturation::none), __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3)) << x;
  }
  for (float x : fp8_sweep(e5m2_to_f32)) {
    ASSERT_EQ(f32_to_e5m2(x, Saturation::finite), __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)) << x;
    ASSERT_EQ(f32_to_e5m2(x, Saturation::none), __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2)) << x;
  }
}

TEST(CudaFp8Host, Bf16MatchesCudaBf16) {
  Rng rng(11);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng.next()));
    const uint16_t cuda = std::bit_cast<uint16_t>(__float2bfloat16_rn(x));
    if (std::isnan(x)) EXPECT_TRUE(std::isnan(bf16_to_f32(cuda)));
    else ASSERT_EQ(f32_to_bf16(x), cuda) << x;
  }
}
#else
TEST(CudaFp8Host, Skipped) { GTEST_SKIP() << "built without the CUDA toolkit: cuda_fp8.hpp is not available"; }
#endif

// ---- ml_dtypes golden file ----------------------------------------------------------------

struct Codec {
  const char* name;
  uint32_t (*encode)(float);
  float (*decode)(uint32_t);
};

const Codec kCodecs[] = {
    {"e4m3", [](float x) -> uint32_t { return f32_to_e4m3(x, Saturation::none); },
     [](uint32_t c) { return e4m3_to_f32(static_cast<uint8_t>(c)); }},
    {"e5m2", [](float x) -> uint32_t { return f32_to_e5m2(x, Saturation::none); },
     [](uint32_t c) { return e5m2_to_f32(static_cast<uint8_t>(c)); }},
    {"bf16", [](float x) -> uint32_t { return f32_to_bf16(x); }, [](uint32_t c) { return bf16_to_f32(static_cast<uint16_t>(c)); }},
    {"f16", [](float x) -> uint32_t { return f32_to_f16(x); }, [](uint32_t c) { return f16_to_f32(static_cast<uint16_t>(c)); }},
};

class MlDtypes : public testing::TestWithParam<std::string> {};

TEST_P(MlDtypes, DecodeAndEncodeAgree) {
  const Codec codec = *std::find_if(std::begin(kCodecs), std::end(kCodecs), [](const Codec& c) { return c.name == GetParam(); });
  const auto path = datasets_dir() / "golden" / "fp8_codecs_ml_dtypes.json";
  const nlohmann::json golden = load_json_file(path);
  const auto& fmt = golden.at("formats").at(codec.name);
  int checked = 0;
  for (const auto& e : fmt.at("decode")) {
    const auto code = e[0].get<uint32_t>();
    const float got = codec.decode(code);
    if (e[1].is_null()) EXPECT_TRUE(std::isnan(got)) << codec.name << " code " << code;
    else EXPECT_EQ(std::bit_cast<uint32_t>(got), e[1].get<uint32_t>()) << codec.name << " code " << code;
    ++checked;
  }
  for (const auto& e : fmt.at("encode")) {
    const float x = std::bit_cast<float>(e[0].get<uint32_t>());
    const auto want = e[1].get<uint32_t>();
    const uint32_t got = codec.encode(x);
    if (std::isnan(codec.decode(want))) EXPECT_TRUE(std::isnan(codec.decode(got))) << codec.name << " x=" << x;
    else EXPECT_EQ(got, want) << codec.name << " x=" << x << " (bits " << e[0] << ")";
    ++checked;
  }
  EXPECT_GT(checked, 256) << "golden file has too few entries for " << codec.name;
}

INSTANTIATE_TEST_SUITE_P(Golden, MlDtypes, testing::Values("e4m3", "e5m2", "bf16", "f16"),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace dsv3
