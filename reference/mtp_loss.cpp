// The MTP training loss (reference/mtp_loss.hpp).
#include "reference/mtp_loss.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv3::mtp {

namespace {

// -log softmax(row)[target] in FP64 from FP32 logits, the maximum subtracted first.
double neg_log_prob(const float* row, int64_t vocab, int32_t target) {
  const double mx = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  return std::log(sum) - (static_cast<double>(row[target]) - mx);
}

}  // namespace

MtpLoss mtp_loss(const std::vector<std::vector<float>>& depth_logits, const std::vector<int32_t>& tokens, int64_t sequences, int64_t vocab,
                 double lambda) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("mtp loss: " + what); };
  const auto D = static_cast<int64_t>(depth_logits.size());
  if (D < 1) bad("no depth given (D must be >= 1)");
  if (sequences < 1 || vocab < 1) bad("sequences and vocab must be >= 1");
  if (!(lambda >= 0 && std::isfinite(lambda))) bad("lambda must be finite and >= 0, got " + std::to_string(lambda));
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  if (n_tokens % sequences != 0) bad(std::to_string(n_tokens) + " tokens do not split into " + std::to_string(sequences) + " sequences");
  const int64_t N = n_tokens / sequences;
  if (N < D + 2)
    bad("sequences of " + std::to_string(N) + " tokens leave depth " + std::to_string(D) + " no target (it predicts " + std::to_string(D + 1) +
        " tokens ahead; N must be >= D + 2)");
  for (int64_t i = 0; i < n_tokens; ++i)
    if (tokens[static_cast<std::size_t>(i)] < 0 || tokens[static_cast<std::size_t>(i)] >= vocab)
      bad("token " + std::to_string(tokens[static_cast<std::size_t>(i)]) + " of sequence " + std::to_string(i / N) + " at position " +
          std::to_string(i % N) + " is outside the vocabulary of " + std::to_string(vocab));
  MtpLoss out;
  for (int64_t k = 1; k <= D; ++k) {
    const std::vector<float>& logits = depth_logits[static_cast<std::size_t>(k - 1)];
    const auto size = static_cast<int64_t>(logits.size());
    const int64_t targets = N - k - 1;  // per sequence
    if (size % (sequences * vocab) != 0 || size / (sequences * vocab) < targets)
      bad("depth " + std::to_string(k) + " has " + std::to_string(size) + " logits; it needs [" + std::to_string(sequences) + ", R, " +
          std::to_string(vocab) + "] with R >= " + std::to_string(targets) + " rows per sequence (one per position with a token " +
          std::to_string(k + 1) + " ahead)");
    const int64_t R = size / (sequences * vocab);
    double sum = 0;
    for (int64_t b = 0; b < sequences; ++b)
      for (int64_t i = 0; i < targets; ++i)
        sum += neg_log_prob(&logits[static_cast<std::size_t>((b * R + i) * vocab)], vocab, tokens[static_cast<std::size_t>(b * N + i + k + 1)]);
    out.per_depth.push_back(sum / static_cast<double>(sequences * targets));
  }
  double total = 0;
  for (double ce : out.per_depth) total += ce;
  out.total = lambda / static_cast<double>(D) * total;
  return out;
}

}  // namespace dsv3::mtp
