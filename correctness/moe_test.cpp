// The MoE layer references (reference/moe.hpp): the permutation on a hand-worked routing,
// permute then combine as the identity, the layer against a token-by-token recomputation,
// empty experts, NaN padding never read, NaN in one token's input kept to that token, thread
// invariance, and named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "core/dtype.hpp"
#include "correctness/reference_run.hpp"
#include "reference/moe.hpp"

namespace dsv3::moe {
namespace {

Params tiny(Op op, int64_t tokens) {
  Params p;
  p.op = op; p.model = "tiny-test"; p.tokens = tokens;
  return p;
}

TEST(MoePermute, HandWorkedRoutingWithAlignmentFour) {
  Params p = tiny(Op::permute, 3);  // 16 experts, top-4
  p.align = 4;
  std::vector<Tensor> in = allocate(input_specs(p));
  auto x = in[0].span<uint16_t>();
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = f32_to_bf16(static_cast<float>(i / 256));  // row t holds t
  const std::vector<int32_t> idx = {5, 0, 3, 9, 0, 5, 1, 2, 15, 5, 0, 4};
  std::copy(idx.begin(), idx.end(), in[1].span<int32_t>().begin());
  // Counts: e0 3, e1 1, e2 1, e3 1, e4 1, e5 3, e9 1, e15 1 -> 8 segments of 4 rows: R = 32.
  EXPECT_EQ(segment_starts(idx, 16, 4).back(), 32);
  std::vector<Tensor> out = allocate({{"xp", DType::bf16, {32, 256}}, {"group_index", DType::i32, {32}}, {"row_of", DType::i32, {3, 4}}});
  run_reference(p, in, out);
  const auto gi = out[1].span<const int32_t>();
  const auto row_of = out[2].span<const int32_t>();
  // Expert 0's segment holds tokens 0, 1, 2 (ascending) then one padding row.
  EXPECT_EQ(row_of[1], 0); EXPECT_EQ(row_of[4], 1); EXPECT_EQ(row_of[10], 2);
  EXPECT_EQ(gi[0], 0); EXPECT_EQ(gi[2], 0); EXPECT_EQ(gi[3], -1);
  // Expert 5 (segment 5, rows 20..23): tokens 0, 1, 2.
  EXPECT_EQ(row_of[0], 20); EXPECT_EQ(row_of[5], 21); EXPECT_EQ(row_of[9], 22);
  EXPECT_EQ(row_of[8], 28);  // token 2's expert 15: the last segment
  const auto xp = out[0].span<const uint16_t>();
  for (int64_t q = 0; q < 12; ++q) EXPECT_EQ(bf16_to_f32(xp[static_cast<std::size_t>(row_of[static_cast<std::size_t>(q)]) * 256 + 7]), static_cast<float>(q / 4));
  for (int64_t row = 0; row < 32; ++row) {
    if (gi[static_cast<std::size_t>(row)] < 0) {
      EXPECT_EQ(xp[static_cast<std::size_t>(row) * 256], 0) << "padding row " << row << " is zero";
    }
  }
}

TEST(MoePermute, OneTokenLeavesEmptyExpertsRowless) {
  Params p;
  p.op = Op::permute; p.tokens = 1;  // V3: 8 of 256 experts get one row each, padded to 128
  const auto out = run_reference_poisoned(p, make_inputs(p));
  ASSERT_EQ(out[0].dim(0), 8 * kAlign);
  int64_t real = 0;
  for (int32_t g : out[1].span<const int32_t>()) real += g >= 0;
  EXPECT_EQ(real, 8);
}

TEST(MoeCombine, PermuteThenCombineWithQuarterWeightsIsTheIdentity) {
  // Four choices of weight 0.25 each: sum_j 0.25 x_t = x_t exactly, so combine(permute(x)) = x.
  const Params pp = tiny(Op::permute, 50);
  const auto in = make_inputs(pp);
  const auto perm = run_reference_poisoned(pp, in);
  std::vector<Tensor> cin = {perm[0], perm[2], Tensor("weights", DType::bf16, {50, 4})};
  for (auto& w : cin[2].span<uint16_t>()) w = f32_to_bf16(0.25f);
  std::vector<Tensor> y = allocate({{"y", DType::bf16, {50, 256}}});
  Params same = pp;
  same.op = Op::combine;
  run_reference(same, cin, y);
  EXPECT_EQ(std::memcmp(y[0].raw(), in[0].raw(), in[0].nbytes()), 0);
}

TEST(MoeCombine, NanPaddingRowsAreNeverRead) {
  Params p;
  p.op = Op::combine; p.tokens = 7;  // most of each 128-row segment is NaN padding
  const auto out = run_reference_poisoned(p, make_inputs(p));
  for (uint16_t v : out[0].span<const uint16_t>()) ASSERT_FALSE(std::isnan(bf16_to_f32(v)));
}

TEST(MoeLayer, EqualsATokenByTokenRecomputation) {
  const Params p = tiny(Op::layer, 9);
  const auto in = make_inputs(p);
  const auto out = run_reference_poisoned(p, in);
  // Route with the gate reference, then for each token: sum_j g_j FFN_e(x) + shared, directly.
  moe_gate::Params gp;
  gp.model = "tiny-test"; gp.tokens = 9;
  std::vector<Tensor> gin = allocate(moe_gate::input_specs(gp));
  for (std::size_t i = 0; i < gin.size(); ++i) std::memcpy(gin[i].raw(), in[i].raw(), gin[i].nbytes());
  const auto g = run_reference_poisoned(gp, gin);
  const int64_t d = 256, I = 128, k = 4;
  auto ffn = [&](const Tensor& w1, const Tensor& w3, const Tensor& w2, int64_t e, int64_t inter, int64_t t, int64_t c) {
    double y = 0;
    for (int64_t i = 0; i < inter; ++i) {
      double a = 0, b = 0;
      for (int64_t m = 0; m < d; ++m) {
        a += w1.get((e * inter + i) * d + m) * in[0].get(t * d + m);
        b += w3.get((e * inter + i) * d + m) * in[0].get(t * d + m);
      }
      y += w2.get((e * d + c) * inter + i) * (a / (1 + std::exp(-a)) * b);
    }
    return y;
  };
  for (int64_t t = 0; t < 9; ++t)
    for (int64_t c : {0, 77, 255}) {
      double y = ffn(in[6], in[7], in[8], 0, I, t, c);  // shared expert (n_shared 1)
      for (int64_t j = 0; j < k; ++j)
        y += bf16_to_f32(g[0].span<const uint16_t>()[static_cast<std::size_t>(t * k + j)]) *
             ffn(in[3], in[4], in[5], g[1].span<const int32_t>()[static_cast<std::size_t>(t * k + j)], I, t, c);
      // The same FP64 value up to summation order (~1e-15 relative), then one BF16 rounding
      // (unit roundoff 2^-8); the 1.0001 covers the order's difference.
      const double got = bf16_to_f32(out[0].span<const uint16_t>()[static_cast<std::size_t>(t * d + c)]);
      EXPECT_GT(std::fabs(y), 0.0);
      EXPECT_LE(std::fabs(got - y), std::ldexp(std::fabs(y), -8) * 1.0001) << "t " << t << " c " << c;
    }
}

// moe/cublas_bf16's tolerance (layer_error_bound, moe.hpp) against an emulation of that path's
// arithmetic on the CPU: FP32 dot products (sequential: one of the orders the bound covers), FP32
// SiLU, BF16 a and expert outputs, FP32 fmaf combine plus the shared output, BF16 y. Every element
// must lie within 1.01 B + 1.01 2^-8 |ref|; the emulation uses a fraction of it (printed), so the
// bound is neither violated by the documented arithmetic nor vacuous.
float dot_f32(const Tensor& w, int64_t row, const std::vector<float>& v) {
  float acc = 0;
  for (std::size_t m = 0; m < v.size(); ++m) acc = std::fmaf(static_cast<float>(w.get(row * static_cast<int64_t>(v.size()) + static_cast<int64_t>(m))), v[m], acc);
  return acc;
}

std::vector<float> ffn_emulated(const Tensor& w1, const Tensor& w3, const Tensor& w2, int64_t e, int64_t inter, int64_t d,
                                const std::vector<float>& x) {
  std::vector<float> a(static_cast<std::size_t>(inter)), o(static_cast<std::size_t>(d));
  for (int64_t i = 0; i < inter; ++i) {
    const float h1 = dot_f32(w1, e * inter + i, x), h3 = dot_f32(w3, e * inter + i, x);
    a[static_cast<std::size_t>(i)] = bf16_to_f32(f32_to_bf16(h1 / (1.0f + std::exp(-h1)) * h3));
  }
  for (int64_t c = 0; c < d; ++c) o[static_cast<std::size_t>(c)] = bf16_to_f32(f32_to_bf16(dot_f32(w2, e * d + c, a)));
  return o;
}

TEST(MoeLayer, CublasPathBoundCoversItsArithmetic) {
  for (const auto& [model, tokens, dim, inter] :
       {std::tuple<std::string, int64_t, int64_t, int64_t>{"tiny-test", 9, 0, 0}, {"deepseek-v3-671b", 16, 256, 64}}) {
    Params p;
    p.op = Op::layer; p.model = model; p.tokens = tokens; p.dim = dim; p.inter = inter;
    const auto in = make_inputs(p);
    const auto ref = run_reference_poisoned(p, in);
    const Tensor bound = layer_error_bound(p, in);
    const moe_gate::Routing r = p.routing();
    const int64_t d = r.dim, k = r.topk, I = p.inter_dim(), Is = p.shared_inter();
    const std::size_t w0 = r.bias ? 3 : 2;
    const LayerRouting routing = layer_routing(p, in);
    double worst = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<float> x(static_cast<std::size_t>(d));
      for (int64_t m = 0; m < d; ++m) x[static_cast<std::size_t>(m)] = static_cast<float>(in[0].get(t * d + m));
      std::vector<float> acc(static_cast<std::size_t>(d), 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const std::size_t q = static_cast<std::size_t>(t * k + j);
        const std::vector<float> o = ffn_emulated(in[w0], in[w0 + 1], in[w0 + 2], routing.indices[q], I, d, x);
        for (int64_t c = 0; c < d; ++c)
          acc[static_cast<std::size_t>(c)] = std::fmaf(bf16_to_f32(routing.weights[q]), o[static_cast<std::size_t>(c)], acc[static_cast<std::size_t>(c)]);
      }
      const std::vector<float> shared = Is > 0 ? ffn_emulated(in[w0 + 3], in[w0 + 4], in[w0 + 5], 0, Is, d, x) : std::vector<float>(static_cast<std::size_t>(d), 0.0f);
      for (int64_t c = 0; c < d; ++c) {
        const double got = bf16_to_f32(f32_to_bf16(acc[static_cast<std::size_t>(c)] + shared[static_cast<std::size_t>(c)]));
        const double want = ref[0].get(t * d + c), b = bound.get(t * d + c);
        const double allowed = 1.01 * b + 1.01 * 0x1p-7 * std::fabs(want);  // moe/cublas_bf16's tolerance
        ASSERT_LE(std::fabs(got - want), allowed) << model << " t " << t << " c " << c << " bound " << b;
        if (allowed > 0) worst = std::max(worst, std::fabs(got - want) / allowed);
      }
    }
    std::printf("%s: the emulated cuBLAS path uses %.3f of its tolerance at worst\n", model.c_str(), worst);
    EXPECT_GT(worst, 0.0);  // it does round somewhere: the bound is exercised
  }
}

TEST(MoeLayer, NanInOneTokenStaysInThatToken) {
  // The documented behaviour (moe.hpp): no error; a NaN in token t's x makes t's gate scores NaN
  // (the gate then routes it to experts 0-3 with NaN weights) and t's shared-expert output NaN, so
  // all of y[t] is NaN; every other token is computed from its own row only and is unchanged.
  const Params p = tiny(Op::layer, 5);
  const auto in = make_inputs(p);
  const auto clean = run_reference_poisoned(p, in);
  auto poisoned_in = make_inputs(p);
  poisoned_in[0].span<uint16_t>()[2 * 256 + 13] = 0x7FC0;  // token 2, channel 13
  const LayerRouting routing = layer_routing(p, poisoned_in);
  EXPECT_EQ(std::vector<int32_t>(routing.indices.begin() + 8, routing.indices.begin() + 12), (std::vector<int32_t>{0, 1, 2, 3}));
  const auto y = run_reference_poisoned(p, poisoned_in);
  const auto yc = clean[0].span<const uint16_t>(), yn = y[0].span<const uint16_t>();
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t c = 0; c < 256; ++c) {
      const auto i = static_cast<std::size_t>(t * 256 + c);
      if (t == 2) {
        ASSERT_TRUE(std::isnan(bf16_to_f32(yn[i]))) << "c " << c;
      } else {
        ASSERT_EQ(yn[i], yc[i]) << "t " << t << " c " << c;  // bit for bit: rows never mix
      }
    }
}

TEST(MoeLayer, OneAndFourThreadsGiveIdenticalOutputs) {
  Params p;
  p.op = Op::layer; p.tokens = 40; p.dim = 256; p.inter = 64;
  EXPECT_EQ(first_thread_dependent_output(p, make_inputs(p)), "");
}

TEST(MoeBadInput, DuplicatesRangesAndShapesAreNamed) {
  Params p = tiny(Op::permute, 2);
  auto in = make_inputs(p);
  auto idx = in[1].span<int32_t>();
  idx[1] = idx[0];  // token 0 chooses one expert twice
  std::vector<Tensor> out = allocate(output_specs(p));
  try {
    run_reference(p, in, out);
    ADD_FAILURE() << "duplicate accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
  }
  idx[1] = 16;  // past the 16 experts
  EXPECT_THROW(run_reference(p, in, out), std::invalid_argument);
  Params c = tiny(Op::combine, 3);
  auto cin = make_inputs(c);
  cin[1].span<int32_t>()[2] = static_cast<int32_t>(cin[0].dim(0));  // a row past expert_out
  std::vector<Tensor> cout = allocate(output_specs(c));
  EXPECT_THROW(run_reference(c, cin, cout), std::invalid_argument);
  Params l = tiny(Op::layer, 2);
  auto lin = make_inputs(l);
  lin[3] = Tensor("w1", DType::bf16, {16, 64, 256});  // wrong intermediate size
  std::vector<Tensor> lout = allocate(output_specs(l));
  EXPECT_THROW(run_reference(l, lin, lout), ShapeError);
}

}  // namespace
}  // namespace dsv3::moe
