// The decode limit with a compute time (reference/netmodel_decode_limit.hpp: each layer slot lasts
// max(all-to-alls, compute)) and that compute time taken from a bundle's benchmarks
// (reference/netmodel_decode_calibrate.hpp): row selection, interpolation, units, named errors.
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/json_file.hpp"
#include "reference/netmodel_decode_calibrate.hpp"

namespace dsv3::netmodel {
namespace {

TEST(NetmodelDecodeCompute, TheLongerOfCommunicationAndComputeBoundsTheLayer) {
  const DecodeLimitCase ib = decode_limit_paper_cases().at(0);  // 120.96 us per step at 50 GB/s
  DecodeLimitInputs in;
  const DecodeLimitResult hidden = decode_limit(in, ib);
  EXPECT_EQ(hidden.bound, "hidden");
  EXPECT_NEAR(hidden.layer_us, 241.92, 1e-9);  // the paper's figure is unchanged
  in.compute_us = 100;
  const DecodeLimitResult net = decode_limit(in, ib);
  EXPECT_EQ(net.bound, "network");
  EXPECT_NEAR(net.layer_us, 241.92, 1e-9);
  in.compute_us = 200;
  const DecodeLimitResult comp = decode_limit(in, ib);
  EXPECT_EQ(comp.bound, "compute");
  EXPECT_NEAR(comp.layer_us, 400, 1e-9);
  EXPECT_NEAR(comp.tokens_per_s, 1e3 / (61 * 400 / 1e3), 1e-9);
  in.compute_us = -1;
  try {
    decode_limit(in, ib);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("compute_us"), std::string::npos) << e.what();
  }
}

nlohmann::json row(const std::string& name, double t, const char* unit = "us") {
  return {{"name", name + "/manual_time"}, {"run_name", name + "/manual_time"}, {"real_time", t}, {"time_unit", unit}, {"run_type", "iteration"}};
}

nlohmann::json bundle() {
  nlohmann::json b = {{"schema", "dsv3bench.bundle/1"}, {"device", {{"present", true}, {"name", "Test GPU"}}}};
  b["benchmarks"] = {
      row("mla/cuda/decode b=4 sq=1 h=128 bf16 len~4096 normal", 10), row("mla/cuda/decode b=128 sq=1 h=128 bf16 len~4096 normal", 0.05, "ms"),
      row("mla/cuda/decode b=128 sq=2 h=128 bf16 len~4096 normal", 70),   // s_q 2: not this model's
      row("mla/cuda/decode b=128 sq=1 h=128 bf16 len~16384 normal", 90),  // farther from 4096
      row("mla/ref/decode b=32 sq=1 h=128 bf16 len~4096 normal", 5e4),    // the CPU reference: a GPU variant wins
      row("fp8_gemm/cublaslt_block/dense m=128 n=4096 k=7168 f32 out=bf16 normal", 20),
      row("fp8_gemm/cublaslt_block/dense m=4096 n=4096 k=7168 f32 out=bf16 normal", 100),
      row("fp8_gemm/cublas_bf16/dense m=128 n=4096 k=7168 f32 out=bf16 normal", 1),  // BF16: not V3's recipe, ranked after
      row("fp8_gemm/cublaslt_block/dense m=64 n=7168 k=2048 f32 out=bf16 normal", 8),
      row("fp8_gemm/cublaslt_block/dense m=128 n=7168 k=2048 f32 out=bf16 normal", 10)};
  // Repetitions: the median aggregate is taken, not the iterations.
  nlohmann::json med = row("fp8_gemm/cublaslt_block/dense m=64 n=7168 k=2048 f32 out=bf16 normal", 9);
  med["aggregate_name"] = "median";
  med["run_type"] = "aggregate";
  b["benchmarks"].push_back(med);
  return b;
}

TEST(NetmodelDecodeCompute, FromABundleInterpolatesThePreferredRows) {
  DecodeLimitInputs in;  // 32 tokens per device, 9 experts per token: m = 288
  const ComputeCalibration cal = calibrate_compute(bundle(), "b.json", in, find_model("deepseek-v3-671b"));
  EXPECT_EQ(cal.device, "Test GPU");
  ASSERT_EQ(cal.terms.size(), 3u);
  // Attention at b = 32 between b = 4 (10 us) and b = 128 (0.05 ms), the cuda variant, len 4096.
  EXPECT_EQ(cal.terms[0].variant, "cuda");
  EXPECT_NEAR(cal.terms[0].us, 10 + (32.0 - 4) / (128 - 4) * (50 - 10), 1e-9);
  EXPECT_NE(cal.terms[0].how.find("interpolated"), std::string::npos) << cal.terms[0].how;
  // Gate+up (n = 2 x 2048, k = 7168) at m = 288 between m = 128 and 4096, block-scaled FP8.
  EXPECT_EQ(cal.terms[1].variant, "cublaslt_block");
  EXPECT_NEAR(cal.terms[1].us, 20 + (288.0 - 128) / (4096 - 128) * (100 - 20), 1e-9);
  // Down (n = 7168, k = 2048) above the largest measured m = 128: scaled in proportion.
  EXPECT_NEAR(cal.terms[2].us, 10 * 288.0 / 128, 1e-9);
  EXPECT_NE(cal.terms[2].how.find("scaled"), std::string::npos);
  EXPECT_NEAR(cal.compute_us, cal.terms[0].us + cal.terms[1].us + cal.terms[2].us, 1e-12);
  // A batch below every measured one is clamped to the smallest (a smaller problem is not slower).
  in.tokens_per_device = 2;
  const ComputeCalibration small = calibrate_compute(bundle(), "b.json", in, find_model("deepseek-v3-671b"));
  EXPECT_NEAR(small.terms[0].us, 10, 1e-12);
  EXPECT_NEAR(small.terms[2].us, 9, 1e-12);  // m = 18 < 64: the median aggregate of m = 64
}

TEST(NetmodelDecodeCompute, MissingRowsAreNamed) {
  nlohmann::json b = bundle();
  b["benchmarks"] = nlohmann::json::array({row("fp8_gemm/cublaslt_block/dense m=128 n=4096 k=7168 f32 out=bf16 normal", 20)});
  try {
    calibrate_compute(b, "b.json", {}, find_model("deepseek-v3-671b"));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no mla decode"), std::string::npos) << e.what();
  }
  b["benchmarks"].push_back(row("mla/cuda/decode b=4 sq=1 h=128 bf16 len~4096 normal", 10));
  try {
    calibrate_compute(b, "b.json", {}, find_model("deepseek-v3-671b"));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("expert down shape n=7168 k=2048"), std::string::npos) << e.what();
  }
  EXPECT_THROW(calibrate_compute(bundle(), "b.json", {}, find_model("llama-3.1-405b")), InputError);
}

}  // namespace
}  // namespace dsv3::netmodel
