// compare_tensors() and compare_index_sets(): every rule on a crafted pair.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/compare.hpp"

namespace dsv3 {
namespace {

Tensor f32(std::vector<float> v, Shape s) {
  Tensor t("t", DType::f32, std::move(s));
  std::copy(v.begin(), v.end(), t.span<float>().begin());
  return t;
}

TEST(Compare, ExactComparesBits) {
  const auto r = compare_tensors(f32({1, 2, 3, 4}, {2, 2}), f32({1, 2, 3, 4}, {2, 2}), Tolerance::bit_exact("test"));
  EXPECT_TRUE(r.pass);
  EXPECT_EQ(r.max_abs, 0);
  const auto bad = compare_tensors(f32({1, 2, 3, 4.5f}, {2, 2}), f32({1, 2, 3, 4}, {2, 2}), Tolerance::bit_exact("test"));
  EXPECT_FALSE(bad.pass);
  EXPECT_EQ(bad.mismatches, 1);
  EXPECT_EQ(bad.worst_index, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(bad.worst_got, 4.5);
}

TEST(Compare, NanAndInfPositionsMustMatch) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto r = compare_tensors(f32({nan, 1}, {2}), f32({1, 1}, {2}), Tolerance::abs_rel(1e9, 1e9, "loose"));
  EXPECT_FALSE(r.pass);
  EXPECT_EQ(r.nan_mismatches, 1);
  r = compare_tensors(f32({-inf, 1}, {2}), f32({inf, 1}, {2}), Tolerance::abs_rel(1e9, 1e9, "loose"));
  EXPECT_EQ(r.inf_mismatches, 1);
  r = compare_tensors(f32({nan, inf}, {2}), f32({nan, inf}, {2}), Tolerance::bit_exact("same"));
  EXPECT_TRUE(r.pass);
}

TEST(Compare, AbsOrRelPerElement) {
  const Tolerance t = Tolerance::abs_rel(1e-3, 1e-2, "test");
  EXPECT_TRUE(compare_tensors(f32({100.9f, 0.0005f}, {2}), f32({100, 0}, {2}), t).pass);  // rel 0.9%, abs 5e-4
  EXPECT_FALSE(compare_tensors(f32({102, 0}, {2}), f32({100, 0}, {2}), t).pass);
}

TEST(Compare, UlpsInTheOutputFormat) {
  EXPECT_EQ(ulp_in(DType::bf16, 1.0), 0x1p-7);
  EXPECT_EQ(ulp_in(DType::e4m3, 448.0), 32.0);
  EXPECT_EQ(ulp_in(DType::e4m3, 0.0), 0x1p-9);
  const Tolerance t = Tolerance::in_ulps(1, DType::bf16, "test");
  EXPECT_TRUE(compare_tensors(f32({1.0078125f}, {1}), f32({1.0f}, {1}), t).pass);
  EXPECT_FALSE(compare_tensors(f32({1.016f}, {1}), f32({1.0f}, {1}), t).pass);
}

TEST(Compare, ShapeMismatchAndGuardsAreReported) {
  auto r = compare_tensors(f32({1, 2}, {2}), f32({1, 2}, {1, 2}), Tolerance::bit_exact("t"));
  EXPECT_FALSE(r.pass);
  EXPECT_NE(r.message.find("[1, 2]"), std::string::npos);
  Tensor g = f32({1, 2}, {2});
  static_cast<unsigned char*>(g.raw())[8] = 0;  // one byte past the end
  r = compare_tensors(g, f32({1, 2}, {2}), Tolerance::bit_exact("t"));
  EXPECT_FALSE(r.pass);
  EXPECT_NE(r.message.find("canary"), std::string::npos);
}

TEST(Compare, CosineAndNmseBounds) {
  Tolerance t = Tolerance::abs_rel(1, 1, "loose per element");
  t.max_cos_dist = 1e-6;
  EXPECT_FALSE(compare_tensors(f32({1, 0}, {2}), f32({0.5f, 0.5f}, {2}), t).pass);
}

TEST(Compare, IndexSetsAreOrderFreeAndTieAware) {
  Tensor scores("s", DType::f32, {1, 4});
  auto s = scores.span<float>();
  s[0] = 0.9f; s[1] = 0.5f; s[2] = 0.5f; s[3] = 0.1f;
  Tensor ref("idx", DType::i32, {1, 2}), got("idx", DType::i32, {1, 2});
  ref.span<int32_t>()[0] = 0; ref.span<int32_t>()[1] = 1;
  got.span<int32_t>()[0] = 2; got.span<int32_t>()[1] = 0;  // swapped order, tie 1 <-> 2
  EXPECT_TRUE(compare_index_sets(got, ref, scores).pass);
  got.span<int32_t>()[0] = 3;
  EXPECT_FALSE(compare_index_sets(got, ref, scores).pass);
}

}  // namespace
}  // namespace dsv3
