// The verification rules of speculative decoding (reference/mtp_accept.hpp).
#include "reference/mtp_accept.hpp"

#include <cmath>
#include <stdexcept>

#include "core/json_file.hpp"

namespace dsv3::mtp {

std::string_view rule_name(Rule r) { return r == Rule::greedy ? "greedy" : "sample"; }

Rule rule_from_name(const std::string& s) {
  if (s == "greedy") return Rule::greedy;
  if (s == "sample") return Rule::sample;
  throw std::invalid_argument("rule must be greedy or sample, got '" + s + "'");
}

uint64_t grid_weight(float p, float q) {
  const double r = static_cast<double>(p) - static_cast<double>(q);  // one FP64 rounding
  if (!(r > 0)) return 0;
  return static_cast<uint64_t>(std::ldexp(r, kWeightBits));  // truncation = floor for r > 0; r <= 1 fits
}

int32_t sample_index(const float* p, const float* q_or_null, int64_t vocab, uint32_t bits) {
  uint64_t total = 0;
  for (int64_t x = 0; x < vocab; ++x) total += grid_weight(p[x], q_or_null ? q_or_null[x] : 0.0f);
  if (total == 0) return -1;
  const auto threshold = static_cast<uint64_t>((static_cast<unsigned __int128>(total) * bits) >> 32);  // < total
  uint64_t run = 0;
  for (int64_t x = 0; x < vocab; ++x) {
    run += grid_weight(p[x], q_or_null ? q_or_null[x] : 0.0f);
    if (run > threshold) return static_cast<int32_t>(x);
  }
  return static_cast<int32_t>(vocab - 1);  // unreachable: run reaches total > threshold
}

int32_t argmax(const float* p, int64_t vocab) {
  int64_t best = 0;
  for (int64_t x = 1; x < vocab; ++x)
    if (p[x] > p[best]) best = x;
  return static_cast<int32_t>(best);
}

namespace {

void check_distribution(const float* p, int64_t vocab, const std::string& what) {
  double sum = 0;
  for (int64_t x = 0; x < vocab; ++x) {
    if (!std::isfinite(p[x]) || p[x] < 0)
      throw InputError(what + ": probability of token " + std::to_string(x) + " is " + std::to_string(p[x]) +
                       " (must be finite and >= 0)");
    sum += p[x];
  }
  if (std::fabs(sum - 1) > kSumTolerance)
    throw InputError(what + ": probabilities sum to " + std::to_string(sum) + ", not 1 within " + std::to_string(kSumTolerance));
}

}  // namespace

int64_t verify(Rule rule, const float* p, const float* q, const int32_t* draft, const uint32_t* bits, int64_t drafts,
               int64_t vocab, int32_t* tokens, const std::string& where) {
  if (vocab < 1 || vocab > kMaxVocab)
    throw InputError(where + ": vocabulary of " + std::to_string(vocab) + " tokens (1.." + std::to_string(kMaxVocab) +
                     " supported: the integer sampling weights must sum below 2^63)");
  if (drafts < 0) throw InputError(where + ": negative draft count");
  for (int64_t j = 0; j <= drafts; ++j) check_distribution(p + j * vocab, vocab, where + ", p at draft position " + std::to_string(j));
  for (int64_t j = 0; j < drafts; ++j) {
    const std::string at = where + ", draft position " + std::to_string(j);
    if (draft[j] < 0 || draft[j] >= vocab)
      throw InputError(at + ": draft token " + std::to_string(draft[j]) + " is outside the vocabulary of " + std::to_string(vocab));
    if (rule == Rule::sample) {
      check_distribution(q + j * vocab, vocab, at + ", q");
      if (!(q[j * vocab + draft[j]] > 0))
        throw InputError(at + ": q gives the draft token " + std::to_string(draft[j]) + " probability 0, so q cannot have drawn it");
    }
  }
  for (int64_t j = 0; j <= drafts; ++j) tokens[j] = -1;
  for (int64_t j = 0; j < drafts; ++j) {
    const float* pj = p + j * vocab;
    const int32_t d = draft[j];
    bool accept = false;
    if (rule == Rule::greedy) {
      accept = argmax(pj, vocab) == d;
    } else {
      accept = unit_of(bits[j]) * static_cast<double>(q[j * vocab + d]) < static_cast<double>(pj[d]);  // exact product
    }
    if (accept) {
      tokens[j] = d;
      continue;
    }
    if (rule == Rule::greedy) {
      tokens[j] = argmax(pj, vocab);
    } else {
      int32_t t = sample_index(pj, q + j * vocab, vocab, bits[drafts]);
      if (t < 0) t = sample_index(pj, nullptr, vocab, bits[drafts]);  // empty residual on the grid
      tokens[j] = t;
    }
    return j;
  }
  const float* pk = p + drafts * vocab;
  tokens[drafts] = rule == Rule::greedy ? argmax(pk, vocab) : sample_index(pk, nullptr, vocab, bits[drafts]);
  return drafts;
}

double AcceptStats::mean_accepted() const {
  if (steps == 0) return 0;
  double s = 0;
  for (std::size_t a = 0; a < histogram.size(); ++a) s += static_cast<double>(a) * static_cast<double>(histogram[a]);
  return s / static_cast<double>(steps);
}

std::vector<double> AcceptStats::conditional_acceptance() const {
  const std::size_t K = histogram.empty() ? 0 : histogram.size() - 1;
  std::vector<double> out(K);
  for (std::size_t j = 0; j < K; ++j) {
    int64_t reached = 0, passed = 0;  // steps whose first j drafts were accepted; of those, draft j too
    for (std::size_t a = j; a < histogram.size(); ++a) reached += histogram[a];
    for (std::size_t a = j + 1; a < histogram.size(); ++a) passed += histogram[a];
    out[j] = reached ? static_cast<double>(passed) / static_cast<double>(reached) : std::nan("");
  }
  return out;
}

void AcceptStats::add(int64_t accepted) {
  if (accepted < 0 || accepted >= static_cast<int64_t>(histogram.size()))
    throw std::invalid_argument("AcceptStats: accepted count " + std::to_string(accepted) + " outside 0.." +
                                std::to_string(histogram.size() - 1));
  ++histogram[static_cast<std::size_t>(accepted)];
  ++steps;
}

}  // namespace dsv3::mtp
