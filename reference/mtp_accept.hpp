// Speculative decoding with MTP drafts: the verification rules (V3-TR §5.4.3; v3-facts §5;
// Leviathan et al. 2023 / Chen et al. 2023 for rejection sampling).
//
// One sequence's verification step with K drafted tokens:
//   p [K + 1, V]  the main model's probabilities at the K draft positions and at the one after them
//   q [K, V]      the draft model's (the MTP head's) probabilities at the K draft positions
//   draft [K]     the drafted tokens (greedy: argmax of q; sample: drawn from q)
//   bits [K + 1]  random 32-bit words (the sample rule's only randomness)
// -> accepted in 0..K and the emitted tokens: the accepted drafts, then one more (the correction at
//    the first rejection, or the bonus token from p[K] when all K were accepted); 1 + accepted tokens.
//
// greedy  draft j is accepted while it equals argmax p[j] (the lowest index among equal maxima);
//         the token after the accepted prefix is argmax p[accepted]. The output is the main
//         model's own greedy continuation: exactly the agreeing prefix is kept.
// sample  draft j (token d) is accepted when u_j q[j][d] < p[j][d], u_j = (bits[j] >> 8) 2^-24:
//         probability min(1, p/q) up to the 2^-24 grid of u (the product of a 24-bit u and an FP32
//         q is exact in FP64, so the comparison is exact). At the first rejection the correction is
//         drawn with bits[K] from the residual max(0, p[j] - q[j]), normalised; after K acceptances
//         the bonus is drawn with bits[K] from p[K]. The emitted tokens are then distributed as the
//         main model samples them (tested with a G-test, correctness/mtp_test.cpp).
//
// Drawing from a weight vector (sample_index): each weight max(0, p - q) is formed in FP64 (the
// FP64 difference of two FP32 values, rounded once) and floored onto the grid 2^-46 as an integer
// (exact: a power-of-two scaling and a truncation); the integer weights are summed exactly (the
// sum is < V 2^46 <= 2^63 for V <= 2^17, so V3's 129280-token vocabulary fits); the token is the
// first x whose running sum exceeds floor(total * bits / 2^32). Integer sums are associative, so
// a GPU's parallel prefix sum reaches the same token from the same bits: identical decisions, not
// merely close ones. The grid drops weights below 2^-46 (at most V 2^-46 < 2e-9 of the mass).
// Should the residual be empty on the grid (p <= q everywhere, possible only through the
// rounding of probabilities that sum to 1 within their tolerance), the correction is drawn from
// p[j] itself.
//
// Input rules (InputError naming sequence, position and token): probabilities finite and >= 0,
// each distribution summing to 1 within 1e-3 (FP32 softmax rounding over a large vocabulary stays
// well inside it; an unnormalised row is a caller's bug); drafts inside the vocabulary; under the
// sample rule q[j][draft j] > 0 (a draft q could not have drawn); V <= 2^17.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::mtp {

enum class Rule : uint8_t { greedy, sample };
std::string_view rule_name(Rule r);
Rule rule_from_name(const std::string& s);  // throws std::invalid_argument listing the rules

constexpr int64_t kMaxVocab = int64_t{1} << 17;
constexpr int kWeightBits = 46;        // the sampling grid 2^-46
constexpr double kSumTolerance = 1e-3;  // |sum of a distribution - 1| allowed

// The 24-bit uniform in [0, 1) a word stands for under the sample rule.
inline double unit_of(uint32_t bits) { return static_cast<double>(bits >> 8) * 0x1p-24; }
// A token's weight on the grid: floor(max(0, p - q) 2^46) (q = 0: the weight of p).
uint64_t grid_weight(float p, float q);
// The token drawn from the weights max(0, p - q) (q may be null: drawn from p) with `bits`;
// -1 when every weight is 0 on the grid.
int32_t sample_index(const float* p, const float* q_or_null, int64_t vocab, uint32_t bits);
// The lowest index of the largest value (inputs validated finite).
int32_t argmax(const float* p, int64_t vocab);
// A distribution for the rules from n logits (FP32 or FP64): softmax in FP64 with the maximum
// subtracted, each probability rounded once to FP32.
template <class T>
void softmax_f32(const T* logits, int64_t n, float* p) {
  double mx = static_cast<double>(logits[0]), z = 0;
  for (int64_t x = 1; x < n; ++x) mx = std::max(mx, static_cast<double>(logits[x]));
  for (int64_t x = 0; x < n; ++x) z += std::exp(static_cast<double>(logits[x]) - mx);
  for (int64_t x = 0; x < n; ++x) p[x] = static_cast<float>(std::exp(static_cast<double>(logits[x]) - mx) / z);
}

// One sequence (shapes above); writes 1 + accepted tokens and -1 in the rest of tokens[K + 1];
// returns accepted. Validates its inputs (InputError; `where` names the sequence).
int64_t verify(Rule rule, const float* p, const float* q, const int32_t* draft, const uint32_t* bits, int64_t drafts,
               int64_t vocab, int32_t* tokens, const std::string& where = "sequence 0");

// Accepted-length statistics over many verification steps: the histogram of accepted counts
// (0..K), the mean acceptance per draft position and the tokens emitted per step (1 + mean
// accepted).
struct AcceptStats {
  std::vector<int64_t> histogram;  // [K + 1]
  int64_t steps = 0;
  double mean_accepted() const;
  double tokens_per_step() const { return 1 + mean_accepted(); }
  // P(draft j accepted | drafts 0..j-1 accepted), j = 0..K-1 (NaN where no step reached j).
  std::vector<double> conditional_acceptance() const;
  void add(int64_t accepted);
};

}  // namespace dsv3::mtp
