// The FP64 MLA layer (reference/mla_layer.hpp): the naive (K, V materialised) and absorbed
// (latent) forms are one function, over a whole prefill and over a decode step's cache; the
// split-KV attention is the same for any thread count; positions and bad input are checked.
#include <gtest/gtest.h>

#include <cstring>

#include "core/fill.hpp"
#include "core/model_config.hpp"
#include "core/parallel.hpp"
#include "reference/mla_layer.hpp"

namespace dsv3::mla {
namespace {

// V3's head dims (kv_lora 512, nope 128, rope 64, v 128) with 4 heads and a 256-wide hidden state.
LayerDims small_v3() {
  LayerDims d = LayerDims::from(find_model("deepseek-v3-671b"));
  d.heads = 4;
  d.dim = 256;
  return d;
}

MatrixD hidden(int64_t rows, int64_t dim, uint64_t seed) {
  MatrixD h(rows, dim);
  const std::vector<float> g = draw(Dist::normal, seed, h.size(), dim);
  for (Eigen::Index i = 0; i < h.size(); ++i) h.data()[i] = g[static_cast<std::size_t>(i)];
  return h;
}

// Largest |a - b| over the largest |a|: FP64 rounding of these sums stays far below 1e-12
// (hundreds of terms of O(1) values, each step 2^-53 relative).
double rel_diff(const MatrixD& a, const MatrixD& b) { return (a - b).cwiseAbs().maxCoeff() / a.cwiseAbs().maxCoeff(); }

TEST(MlaLayer, NaiveAndAbsorbedFormsAgreeToFp64Rounding) {
  // The tiny test config, and a V3-shaped config with fewer heads and a smaller hidden size.
  LayerDims tiny = LayerDims::from(find_model("tiny-test"));
  const LayerDims v3 = small_v3();
  for (const LayerDims& d : {tiny, v3}) {
    const LayerWeights w = random_layer_weights(d, 42);
    const MatrixD h = hidden(37, d.dim, 7);
    const MatrixD a = layer_forward(d, w, h, Form::naive), b = layer_forward(d, w, h, Form::absorbed);
    ASSERT_EQ(a.rows(), 37);
    ASSERT_EQ(a.cols(), d.dim);
    EXPECT_GT(a.cwiseAbs().maxCoeff(), 1e-3);
    EXPECT_LE(rel_diff(a, b), 1e-12) << "kv_lora " << d.kv_lora;
  }
}

TEST(MlaLayer, V2LiteWithoutQueryCompressionRuns) {
  LayerDims d = LayerDims::from(find_model("deepseek-v2-lite-16b"));
  ASSERT_EQ(d.q_lora, 0);
  d.heads = 2;
  d.dim = 256;
  const LayerWeights w = random_layer_weights(d, 3);
  MatrixD h = MatrixD::Random(5, d.dim);
  EXPECT_LE((layer_forward(d, w, h, Form::naive) - layer_forward(d, w, h, Form::absorbed)).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_THROW(LayerDims::from(find_model("qwen2.5-72b")), std::invalid_argument);
}

TEST(MlaLayer, DecodeStepEqualsTheLastRowsOfThePrefill) {
  // A cache of 1100 tokens (three 512-key chunks, the last partial); the last s tokens are the
  // step's queries at positions 1100 - s .. 1099, projected from their own start position.
  const LayerDims d = small_v3();
  const LayerWeights w = random_layer_weights(d, 5);
  const MatrixD h = hidden(1100, d.dim, 9);
  const Projected all = project(d, w, h, 0);
  for (Form form : {Form::naive, Form::absorbed}) {
    const LayerCache cache = make_cache(d, w, all.latent, all.rope_key, form);
    const MatrixD full = attend(d, w, all.q, cache, 0);
    for (int64_t s : {1, 2}) {
      const Projected step = project(d, w, h.bottomRows(s), 1100 - s);
      EXPECT_LE(rel_diff(all.q.bottomRows(s), step.q), 1e-12) << "RoPE at start_pos";
      const MatrixD o = attend(d, w, step.q, cache, 1100 - s);
      EXPECT_LE(rel_diff(full.bottomRows(s), o), 1e-12) << form_name(form) << " s=" << s;
    }
  }
  // The two forms over the same long cache: the step's outputs agree to FP64 rounding.
  const Projected step = project(d, w, h.bottomRows(2), 1098);
  const MatrixD naive = attend(d, w, step.q, make_cache(d, w, all.latent, all.rope_key, Form::naive), 1098);
  const MatrixD absorbed = attend(d, w, step.q, make_cache(d, w, all.latent, all.rope_key, Form::absorbed), 1098);
  EXPECT_LE(rel_diff(naive, absorbed), 1e-12);
  // Causal within the step: the first query does not see the second token's key.
  const MatrixD first = attend(d, w, step.q.topRows(1), make_cache(d, w, all.latent.topRows(1099), all.rope_key.topRows(1099), Form::absorbed), 1098);
  EXPECT_LE(rel_diff(absorbed.topRows(1), first), 1e-12);
}

TEST(MlaLayer, AttendIsIdenticalForOneAndFourThreads) {
  const LayerDims d = small_v3();
  const LayerWeights w = random_layer_weights(d, 6);
  const Projected x = project(d, w, hidden(1300, d.dim, 10), 0);
  for (Form form : {Form::naive, Form::absorbed}) {
    const LayerCache cache = make_cache(d, w, x.latent, x.rope_key, form);
    const MatrixD q = x.q.bottomRows(2);
    set_thread_count(1);
    const MatrixD a = attend(d, w, q, cache, 1298);
    set_thread_count(4);
    const MatrixD b = attend(d, w, q, cache, 1298);
    set_thread_count(0);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)), 0) << form_name(form);
  }
}

TEST(MlaLayer, CacheSizesAndBadInput) {
  const LayerDims v3 = LayerDims::from(find_model("deepseek-v3-671b"));
  EXPECT_EQ(cache_bf16_bytes_per_token(v3, Form::absorbed), 1152);        // 576 BF16 values
  EXPECT_EQ(cache_bf16_bytes_per_token(v3, Form::naive), 128 * 320 * 2);  // K 192 + V 128 per head
  EXPECT_EQ(attention_flops_per_token(v3, Form::naive), 2 * 128 * 320);
  EXPECT_EQ(attention_flops_per_token(v3, Form::absorbed), 2 * 128 * 1088);
  const LayerDims d = small_v3();
  const LayerWeights w = random_layer_weights(d, 7);
  const Projected x = project(d, w, hidden(8, d.dim, 11), 0);
  const LayerCache cache = make_cache(d, w, x.latent, x.rope_key, Form::absorbed);
  EXPECT_THROW(attend(d, w, x.q.bottomRows(2), cache, 7), std::invalid_argument);  // second query past the cache
  EXPECT_THROW(attend(d, w, x.q, cache, -1), std::invalid_argument);
  EXPECT_THROW(make_cache(d, w, x.latent.leftCols(100), x.rope_key, Form::naive), std::invalid_argument);
  EXPECT_THROW(project(d, w, hidden(2, 128, 1), 0), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3::mla
