// The MLA attention cores (reference/mla.hpp, mla_cache.hpp) against properties of their
// definitions: paging and poisoning are honoured, the FP8 latent format is exact where it must
// be, and bad input is named (the FP64 layer's tests: mla_layer_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "correctness/reference_run.hpp"
#include "reference/mla.hpp"
#include "reference/mla_cache.hpp"

namespace dsv3::mla {
namespace {

Params decode(std::vector<int64_t> lens, int64_t s_q = 1, int64_t heads = 16, CacheFmt f = CacheFmt::bf16) {
  return decode_params(std::move(lens), s_q, heads, f);
}

std::vector<Tensor> run(const Params& p, const std::vector<Tensor>& in) { return run_reference_poisoned(p, in); }

TEST(MlaCache, Fp8TokenLayoutAndPowerOfTwoScales) {
  float v[kQk];
  for (int i = 0; i < kQk; ++i) v[i] = bf16_to_f32(f32_to_bf16(std::sin(0.37f * static_cast<float>(i)) * (i < 128 ? 100.0f : 1.0f)));
  uint8_t tok[kFp8TokenBytes];
  encode_fp8_token(v, tok);
  double back[kQk];
  decode_token(CacheFmt::fp8, tok, back);
  for (int t = 0; t < 4; ++t) {
    float s;
    std::memcpy(&s, tok + kLatent + 4 * t, 4);
    int e;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << "scale " << t << " is a power of two";
    float amax = 0;
    for (int j = 0; j < 128; ++j) amax = std::max(amax, std::fabs(v[t * 128 + j]));
    EXPECT_GE(s * 448, amax);
    EXPECT_LT(s * 224, amax);
    for (int j = 0; j < 128; ++j)  // E4M3 keeps 3 mantissa bits: half an ulp is 2^-4 relative (normal range)
      EXPECT_LE(std::fabs(back[t * 128 + j] - v[t * 128 + j]), std::fabs(v[t * 128 + j]) * 0x1p-4 + s * 0x1p-10) << t << " " << j;
  }
  for (int j = kLatent; j < kQk; ++j) EXPECT_EQ(back[j], v[j]) << "RoPE part stored as BF16, exact";
}

TEST(MlaDecode, PagingPermutationAndPoisonAreHonoured) {
  // The same sequences through two page orders give identical results, and nothing poisoned is read
  // (a NaN would reach the output).
  for (CacheFmt f : {CacheFmt::bf16, CacheFmt::fp8}) {
    Params p = decode({0, 1, 63, 64, 65, 130}, 2, 16, f);
    std::vector<Tensor> in = make_inputs(p);
    const auto a = run(p, in);
    for (std::size_t i = 0; i < a[0].span<uint16_t>().size(); ++i) ASSERT_FALSE(std::isnan(a[0].get(static_cast<int64_t>(i))));
    Params q = p;
    q.spare_pages = 5;  // another page order and more poisoned pages, same values
    const std::vector<Tensor> in_q = make_inputs(q);
    ASSERT_NE(in_q[1].dim(0), in[1].dim(0));
    const auto b = run(q, in_q);
    EXPECT_EQ(std::memcmp(a[0].raw(), b[0].raw(), a[0].nbytes()), 0) << cache_fmt_name(f);
    EXPECT_EQ(std::memcmp(a[1].raw(), b[1].raw(), a[1].nbytes()), 0) << cache_fmt_name(f);
  }
}

TEST(MlaDecode, EmptyRowsAndCausalStep) {
  // lens 0: no key for either query; lens 1 with s_q 2: query 0 sees nothing, query 1 sees token 0,
  // so its output is exactly that token's latent (softmax weight 1) and lse its scaled score.
  const Params p = decode({0, 1}, 2, 4);
  const auto in = make_inputs(p);
  const auto out = run(p, in);
  auto lse = [&](int64_t b, int64_t h, int64_t i) { return out[1].get((b * 4 + h) * 2 + i); };
  for (int64_t h = 0; h < 4; ++h) {
    EXPECT_EQ(lse(0, h, 0), std::numeric_limits<double>::infinity());
    EXPECT_EQ(lse(0, h, 1), std::numeric_limits<double>::infinity());
    EXPECT_EQ(lse(1, h, 0), std::numeric_limits<double>::infinity());
    for (int64_t e = 0; e < kLatent; ++e) EXPECT_EQ(out[0].get(((0 * 2 + 0) * 4 + h) * kLatent + e), 0.0);
  }
  const int32_t page = in[2].span<int32_t>()[1 * in[2].dim(1)];
  double tok[kQk];
  decode_token(CacheFmt::bf16, static_cast<const uint8_t*>(in[1].raw()) + page * kPage * kQk * 2, tok);
  for (int64_t h = 0; h < 4; ++h) {
    double score = 0;
    for (int64_t e = 0; e < kQk; ++e) score += in[0].get(((1 * 2 + 1) * 4 + h) * kQk + e) * tok[e];
    EXPECT_FLOAT_EQ(static_cast<float>(lse(1, h, 1)), static_cast<float>(score * v3_softmax_scale()));
    for (int64_t e = 0; e < kLatent; ++e) EXPECT_EQ(out[0].get(((1 * 2 + 1) * 4 + h) * kLatent + e), tok[e]);
  }
}

TEST(MlaDecode, TwoQueryTokensSeeOneKeyApart) {
  // With s_q 2 the second query token sees one more key than the first: the first query's result
  // equals a decode of the same query over a cache one token shorter.
  Params p2 = decode({130}, 2, 8);
  const auto in2 = make_inputs(p2);
  const auto o2 = run(p2, in2);
  Params p1 = decode({129}, 1, 8);
  std::vector<Tensor> in1 = make_inputs(p1);
  std::memcpy(in1[0].raw(), in2[0].raw(), in1[0].nbytes());  // query token 0 of p2
  std::memcpy(in1[1].raw(), in2[1].raw(), std::min(in1[1].nbytes(), in2[1].nbytes()));
  std::memcpy(in1[2].raw(), in2[2].raw(), in1[2].nbytes());
  ASSERT_EQ(in1[1].nbytes(), in2[1].nbytes());
  const auto o1 = run(p1, in1);
  for (int64_t h = 0; h < 8; ++h) {
    EXPECT_EQ(o1[1].get(h), o2[1].get(h * 2)) << h;
    for (int64_t e = 0; e < kLatent; ++e) EXPECT_EQ(o1[0].get(h * kLatent + e), o2[0].get(h * kLatent + e));
  }
}

TEST(MlaDecode, BadInputIsNamed) {
  const Params p = decode({70, 3});
  std::vector<Tensor> in = make_inputs(p);
  std::vector<Tensor> out = allocate(output_specs(p));
  auto expect_message = [&](const std::string& needle) {
    try {
      run_reference(p, in, out);
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  in[2].span<int32_t>()[1] = 9999;
  expect_message("block_table[0, 1] = 9999");
  in = make_inputs(p);
  in[3].span<int32_t>()[1] = -1;
  expect_message("seqlens[1] = -1 is negative");
  in = make_inputs(p);
  in[3].span<int32_t>()[1] = 64 * 10;
  expect_message("needs 10 pages");
  Params wrong = p;
  wrong.heads = 32;  // q has 16 heads
  in = make_inputs(p);
  EXPECT_THROW(run_reference(wrong, in, out), ShapeError);
  Params neg = decode({-1});
  EXPECT_THROW(neg.validate(), std::invalid_argument);
  Params sq3 = decode({5}, 3);
  EXPECT_THROW(sq3.validate(), std::invalid_argument);
}

TEST(MlaDecode, OneAndFourThreadsGiveIdenticalOutputs) {
  const Params p = decode({0, 1, 63, 64, 65, 130, 200, 257}, 2, 16, CacheFmt::fp8);
  EXPECT_EQ(first_thread_dependent_output(p, make_inputs(p)), "");
}

TEST(MlaPrefill, CausalFirstRowIsItsOwnValue) {
  Params p;
  p.op = Op::prefill; p.batch = 1; p.s_q = 70; p.heads = 2;
  const auto in = make_inputs(p);
  const auto out = run(p, in);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t e = 0; e < kHeadV; ++e) EXPECT_EQ(out[0].get(h * kHeadV + e), in[2].get(h * kHeadV + e)) << "row 0 sees only key 0";
}

TEST(MlaRounding, Bf16FromF64RoundsOnce) {
  // 1 + 2^-8 + 2^-30: above the BF16 midpoint 1 + 2^-8 by a hair; FP32 would round it to the midpoint
  // (1 + 2^-8), and RNE would then give 1.0. One correct rounding gives 1 + 2^-7.
  EXPECT_EQ(bf16_to_f32(bf16_from_f64(1.0 + 0x1p-8 + 0x1p-30)), 1.0f + 0x1p-7f);
  EXPECT_EQ(bf16_to_f32(bf16_from_f64(1.0 + 0x1p-8)), 1.0f);  // a true tie: to even
  EXPECT_EQ(bf16_to_f32(bf16_from_f64(-3.0)), -3.0f);
}

}  // namespace
}  // namespace dsv3::mla
