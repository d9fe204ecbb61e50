// The full MLA layer in FP64 (v3-facts §2.1, §2.2; V3-TR eqs 1-11; model.py MLA.forward), in
// both forms, for the equivalence test and as the high-precision side of the layer checks:
//   naive     K and V materialised per head through wkv_b (MHA form, prefill)
//   absorbed  W_UK folded into the query and W_UV into the output (MQA form over the 576-wide
//             latent, decode)
// The two are the same function by associativity; computed in FP64 they agree to rounding
// (the test asserts 1e-12 relative). Every intermediate stays FP64: the BF16/FP8 roundings of a
// real pipeline (cache storage, projections) are measured elsewhere against this.
//
// Dimensions come from a model config (kv_lora_rank, qk_nope/rope/v head dims, heads, dim,
// q_lora_rank; q_lora_rank 0 = V2-Lite's plain wq). Weights use the Hugging Face / model.py
// shapes [out_features, in_features]:
//   wq_a [q_lora, dim], q_norm [q_lora], wq_b [H (nope + rope), q_lora]   (or wq [H (nope + rope), dim])
//   wkv_a [kv_lora + rope, dim], kv_norm [kv_lora], wkv_b [H (nope + v), kv_lora], wo [dim, H v]
// RMSNorm here is x / sqrt(mean(x^2) + eps) * w in FP64; RoPE rotates adjacent pairs with the
// reference/rope.hpp table values (FP32 cos/sin, YaRN on) promoted to FP64; positions
// start_pos .. start_pos + S - 1; causal.
#pragma once

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/model_config.hpp"

namespace dsv3::mla {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct LayerDims {
  int64_t dim = 0, heads = 0, q_lora = 0, kv_lora = 0, nope = 0, rope = 0, v = 0;
  double eps = 1e-6;
  static LayerDims from(const ModelConfig& m);  // throws std::invalid_argument for non-MLA configs
  int64_t qk() const { return nope + rope; }
};

struct LayerWeights {
  MatrixD wq_a, wq_b, wq, wkv_a, wkv_b, wo;  // wq used when q_lora == 0, else wq_a and wq_b
  Eigen::VectorXd q_norm, kv_norm;
};

// Seeded weights with BF16-representable values ~ N(0, 1/fan_in), norms 1 + N(0, 0.1^2).
LayerWeights random_layer_weights(const LayerDims& d, uint64_t seed);

// Seeded [rows, cols] matrix of BF16-representable values ~ N(0, 1/cols) (a projection weight).
MatrixD random_bf16_matrix(int64_t rows, int64_t cols, uint64_t seed);

// One row's FP64 RMSNorm: y = x / sqrt(mean(x^2) + eps) * w (the squares summed in order).
void rms_norm_row(const double* x, const double* w, int64_t n, double eps, double* y);
// RoPE of one vector's adjacent pairs with cos/sin `cs` (rope::cos_sin of its position), in FP64.
void rotate_pairs(double* x, int64_t rope, const float* cs);
// The layer's RoPE frequencies (reference/rope.hpp, V3's YaRN settings at width d.rope).
std::vector<float> rope_frequencies(const LayerDims& d);

enum class Form : uint8_t { naive, absorbed };
std::string_view form_name(Form f);

// What attention takes from S tokens at positions start_pos .. start_pos + S - 1:
//   q         [S, H * (nope + rope)]  per head [q^C | RoPE(q^R)]
//   latent    [S, kv_lora]            kv_norm(c^KV)
//   rope_key  [S, rope]               RoPE(k^R), shared by all heads
struct Projected {
  MatrixD q, latent, rope_key;
};
Projected project(const LayerDims& d, const LayerWeights& w, const MatrixD& h, int64_t start_pos = 0);

// One sequence's KV cache for keys at positions 0 .. len - 1, in either form:
//   absorbed  kv [L, kv_lora + rope] = [kv_norm(c^KV) | RoPE(k^R)]: the 576-wide latent cache
//   naive     per head k [L, nope + rope] = [c W_UK^T | k^R] and v [L, v] = c W_UV^T: K and V
//             materialised, model.py's attn_impl "naive" cache
// (only wkv_b of the weights is used).
struct LayerCache {
  Form form = Form::absorbed;
  int64_t len = 0;
  MatrixD kv;                 // absorbed
  std::vector<MatrixD> k, v;  // naive, one per head
};
LayerCache make_cache(const LayerDims& d, const LayerWeights& w, const MatrixD& latent, const MatrixD& rope_key, Form form);
// Bytes of one token's cache entry with BF16 storage (model.py's cache dtype): absorbed
// (kv_lora + rope) * 2, naive H (nope + rope + v) * 2.
int64_t cache_bf16_bytes_per_token(const LayerDims& d, Form form);
// FLOPs per cached token of one query token's attention: absorbed 2 H (kv_lora + rope + kv_lora)
// (scores over the 576-wide latent, then sum p c), naive 2 H (nope + rope + v).
int64_t attention_flops_per_token(const LayerDims& d, Form form);

// Attention of the S queries q (rows at positions q_pos .. q_pos + S - 1, causal: query i sees
// keys 0 .. q_pos + i) over the cache: per-head outputs [S, H * v] before wo. The absorbed form
// folds W_UK into the queries and applies W_UV to the latent output. Keys are taken in fixed
// chunks of kAttendChunk, threaded over chunks, each chunk's FP64 online-softmax state merged in
// chunk order: identical results for any thread count.
constexpr int64_t kAttendChunk = 512;
MatrixD attend(const LayerDims& d, const LayerWeights& w, const MatrixD& q, const LayerCache& cache, int64_t q_pos);

// Study rows "mla_decode_forms": one V3 decode step (batch 1, one query, 128 heads) over a cache
// of 1K..16K tokens in each form: BF16 cache bytes and FLOPs per cached token, the FP64 step's
// time and its ratio to the absorbed form's, the forms' agreement (reference/mla_studies.cpp).
nlohmann::json decode_forms_study(bool quick);

// h [S, dim] -> u [S, dim] for one sequence, positions start at 0, causal:
// wo(attend(project(h).q, make_cache(project(h)), 0)).
MatrixD layer_forward(const LayerDims& d, const LayerWeights& w, const MatrixD& h, Form form);

}  // namespace dsv3::mla
