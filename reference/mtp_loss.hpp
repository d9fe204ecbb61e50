// The MTP training loss (V3-TR eqs 24-25; v3-facts §5) for D prediction depths:
//   L_MTP = lambda / D * sum_{k=1..D} CE_k
//   CE_k  = mean over the positions i that have a target of -log softmax(logits_k[i])[t_{i+k+1}]
// Depth k's module at position i predicts the token k + 1 ahead: the main model at i predicts
// t_{i+1}, depth 1 predicts t_{i+2} (from t_{i+1} and the main model's hidden state at i).
//
// Shapes: B sequences of N tokens, tokens i32 [B, N]; depth k's logits f32 [B, R_k, V], row i of a
// sequence being position i. Position i has a target when i + k + 1 < N, so depth k has
// N - k - 1 targets per sequence and needs R_k >= N - k - 1 rows; rows past the last target
// (positions whose token k + 1 ahead is beyond the sequence) are ignored. CE_k is the mean over
// the B (N - k - 1) targets, each -log p computed in FP64 from the FP32 logits (max subtracted).
//
// Normalisation: eq 24 writes L^k = -(1/T) sum_{i=2+k}^{T+1} log P^k_i[t_i], a sum of T - k terms
// divided by T; CE_k here is their mean (divided by T - k), as the tiny LM's training loss
// (reference/fp8_train_lm.cpp) computes it. The two differ by the factor (T - k) / T
// (0.99976 for T = 4096, k = 1).
// V3 trains with D = 1 and lambda 0.3 for the first 10T tokens, 0.1 for the last 4.8T (V3-TR §4.2).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv3::mtp {

struct MtpLoss {
  double total = 0;               // lambda / D * sum_k CE_k
  std::vector<double> per_depth;  // CE_k, k = 1..D
};

// depth_logits[k - 1]: depth k's logits [B, R_k, V] (R_k from the size); tokens [B, N].
// std::invalid_argument naming the depth (or sequence and position) for a size that is not
// B R_k V with R_k >= N - k - 1, a token outside the vocabulary, no depth, N < D + 2 (a depth
// without a target), or lambda not finite and >= 0.
MtpLoss mtp_loss(const std::vector<std::vector<float>>& depth_logits, const std::vector<int32_t>& tokens, int64_t sequences, int64_t vocab,
                 double lambda);

}  // namespace dsv3::mtp
