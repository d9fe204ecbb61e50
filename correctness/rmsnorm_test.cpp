// The RMSNorm reference (reference/rmsnorm.hpp) against properties of its definition. The CUDA
// variant is compared with it by the generic checker.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/parallel.hpp"
#include "correctness/reference_run.hpp"
#include "reference/rmsnorm.hpp"

namespace dsv3::rmsnorm {
namespace {

Params make(int64_t rows, int64_t dim, Dist d = Dist::normal) {
  Params p;
  p.rows = rows; p.dim = dim; p.dist = d;
  return p;
}

std::vector<Tensor> run(const Params& p, const std::vector<Tensor>& in) { return run_reference_poisoned(p, in); }

void set_row(Tensor& x, int64_t row, const std::vector<float>& v) {
  auto s = x.span<uint16_t>();
  for (std::size_t j = 0; j < v.size(); ++j) s[static_cast<std::size_t>(row * x.dim(1)) + j] = f32_to_bf16(v[j]);
}

TEST(RmsNormRef, KnownRow) {
  // x = 2 everywhere, w = 1: mean square 4, rinv = RN_f32(1/sqrt(4 + 1e-6)) just below 0.5, x * rinv
  // just below 1, which rounds to BF16 1.0.
  const Params p = make(1, 256);
  std::vector<Tensor> in = make_inputs(p);
  set_row(in[0], 0, std::vector<float>(256, 2.0f));
  for (auto& w : in[1].span<uint16_t>()) w = f32_to_bf16(1.0f);
  const float rinv = row_rinv(in[0].span<uint16_t>().data(), 256, kEps);
  EXPECT_EQ(rinv, static_cast<float>(1.0 / std::sqrt(4.0 + 1e-6)));
  EXPECT_LT(rinv, 0.5f);
  for (int64_t j = 0; j < 256; ++j) EXPECT_EQ(run(p, in)[0].get(j), 1.0);
}

TEST(RmsNormRef, WithinTwoBf16RoundingsOfTheExactValue) {
  for (Dist d : {Dist::normal, Dist::outlier_channels, Dist::token_scaled, Dist::uniform}) {
    const Params p = make(13, 1536, d);
    const auto in = make_inputs(p);
    const auto y = run(p, in);
    for (int64_t r = 0; r < p.rows; ++r) {
      double ss = 0;
      for (int64_t j = 0; j < p.dim; ++j) ss += in[0].get(r * p.dim + j) * in[0].get(r * p.dim + j);
      const double rinv = 1.0 / std::sqrt(ss / static_cast<double>(p.dim) + p.eps);
      for (int64_t j = 0; j < p.dim; ++j) {
        const double exact = in[0].get(r * p.dim + j) * rinv * in[1].get(j);
        // BF16 keeps 8 significant bits: each rounding is within 2^-8 relative; two of them and the
        // FP32 steps stay below 2^-7 * 1.01.
        EXPECT_LE(std::fabs(y[0].get(r * p.dim + j) - exact), std::fabs(exact) * 0x1p-7 * 1.01 + 1e-30)
            << dist_name(d) << " row " << r << " col " << j;
      }
    }
  }
}

TEST(RmsNormRef, SpecialValues) {
  const Params p = make(4, 64);
  std::vector<Tensor> in = make_inputs(p);
  std::vector<float> nan_row(64, 1.0f), inf_row(64, 1.0f), zero_row(64, 0.0f);
  nan_row[5] = std::numeric_limits<float>::quiet_NaN();
  inf_row[7] = -std::numeric_limits<float>::infinity();
  set_row(in[0], 0, nan_row);
  set_row(in[0], 1, inf_row);
  set_row(in[0], 2, zero_row);
  const auto y = run(p, in);
  for (int64_t j = 0; j < 64; ++j) {
    EXPECT_TRUE(std::isnan(y[0].get(j))) << "a NaN makes its whole row NaN";
    if (j == 7) {
      EXPECT_TRUE(std::isnan(y[0].get(64 + j))) << "Inf * rinv 0";
    } else {
      EXPECT_EQ(y[0].get(64 + j), 0.0) << "an Inf in the row makes rinv 0";
    }
    EXPECT_EQ(y[0].get(128 + j), 0.0);
    EXPECT_TRUE(std::isfinite(y[0].get(192 + j)));
  }
}

TEST(RmsNormRef, OneAndFourThreadsGiveIdenticalOutputs) {
  const Params p = make(37, 7168, Dist::outliers);
  const auto in = make_inputs(p);
  set_thread_count(1);
  const auto a = run(p, in);
  set_thread_count(4);
  const auto b = run(p, in);
  set_thread_count(0);
  ASSERT_EQ(a[0].nbytes(), b[0].nbytes());
  EXPECT_EQ(std::memcmp(a[0].raw(), b[0].raw(), a[0].nbytes()), 0);
}

TEST(RmsNormRef, BadInputIsNamed) {
  EXPECT_THROW(make(0, 7168).validate(), std::invalid_argument);
  Params p = make(2, 16);
  p.eps = 0;
  EXPECT_THROW(p.validate(), std::invalid_argument);
  const Params good = make(2, 16);
  std::vector<Tensor> in = make_inputs(make(2, 32));  // wrong width
  std::vector<Tensor> out = allocate(output_specs(good));
  try {
    run_reference(good, in, out);
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm/ref inputs"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3::rmsnorm
