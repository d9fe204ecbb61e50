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

#include <cstdint>

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

enum class Form : uint8_t { naive, absorbed };
// h [S, dim] -> u [S, dim] for one sequence, positions start at 0, causal.
MatrixD layer_forward(const LayerDims& d, const LayerWeights& w, const MatrixD& h, Form form);

}  // namespace dsv3::mla
