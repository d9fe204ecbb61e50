// The verification rules of speculative decoding (reference/mtp_accept.hpp): greedy keeps exactly
// the agreeing prefix; rejection sampling emits tokens distributed as the main model's (G-tests);
// the integer-grid sampler's boundaries; accepted-length statistics; named errors for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/fill.hpp"
#include "core/json_file.hpp"
#include "reference/mtp_accept.hpp"

namespace dsv3::mtp {
namespace {

// Q(df/2, g/2): the chi-square survival function, from the series of the regularized lower
// incomplete gamma P(a, x) = e^-x x^a / Gamma(a + 1) sum_n x^n / ((a + 1)...(a + n)).
double chi2_sf(double g, int df) {
  const double a = df / 2.0, x = g / 2.0;
  if (x <= 0) return 1;
  double term = 1, sum = 1;
  for (int n = 1; n < 10000 && term > 1e-17 * sum; ++n) {
    term *= x / (a + n);
    sum += term;
  }
  return 1 - std::exp(-x + a * std::log(x) - std::lgamma(a + 1)) * sum;
}

TEST(MtpChi2, SurvivalFunctionMatchesKnownQuantiles) {
  // chi-square quantiles from the closed forms: df 2 has Q = e^(-g/2); df 1 at 3.841459 is 0.05.
  EXPECT_NEAR(chi2_sf(2 * std::log(1000.0), 2), 1e-3, 1e-12);
  EXPECT_NEAR(chi2_sf(3.841458820694124, 1), 0.05, 1e-9);  // 1.959964^2, the two-sided 5% normal point
}

// G = 2 sum O ln(O / E) over the tokens with E > 0; a token observed where E = 0 fails outright.
double g_test_pvalue(const std::vector<int64_t>& observed, const std::vector<double>& expected_p, int64_t n) {
  double g = 0;
  int cells = 0;
  for (std::size_t x = 0; x < observed.size(); ++x) {
    if (expected_p[x] <= 0) {
      if (observed[x] != 0) return 0;
      continue;
    }
    ++cells;
    if (observed[x] > 0) g += 2 * static_cast<double>(observed[x]) * std::log(static_cast<double>(observed[x]) / (expected_p[x] * static_cast<double>(n)));
  }
  return chi2_sf(g, cells - 1);
}

std::vector<float> normalised(std::vector<double> w) {
  double s = 0;
  for (double v : w) s += v;
  std::vector<float> p(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) p[i] = static_cast<float>(w[i] / s);
  return p;
}

std::vector<double> as_double(const std::vector<float>& p) { return std::vector<double>(p.begin(), p.end()); }

TEST(MtpGreedy, KeepsExactlyTheAgreeingPrefix) {
  const int64_t V = 10, K = 4;
  const std::vector<int32_t> best = {3, 7, 1, 9, 5};  // argmax of p at positions 0..K
  std::vector<float> p(static_cast<std::size_t>((K + 1) * V), 0.05f);
  for (int64_t j = 0; j <= K; ++j) p[static_cast<std::size_t>(j * V + best[static_cast<std::size_t>(j)])] = 0.55f;
  std::vector<int32_t> tokens(K + 1);
  auto run = [&](std::vector<int32_t> draft) { return verify(Rule::greedy, p.data(), nullptr, draft.data(), nullptr, K, V, tokens.data()); };

  EXPECT_EQ(run({3, 7, 2, 9}), 2);  // the third draft disagrees: two kept, then the main model's token
  EXPECT_EQ(tokens, (std::vector<int32_t>{3, 7, 1, -1, -1}));
  EXPECT_EQ(run({3, 7, 1, 9}), 4);  // all agree: the bonus token from p[K]
  EXPECT_EQ(tokens, (std::vector<int32_t>{3, 7, 1, 9, 5}));
  EXPECT_EQ(run({0, 7, 1, 9}), 0);  // the first disagrees: later agreement does not count
  EXPECT_EQ(tokens, (std::vector<int32_t>{3, -1, -1, -1, -1}));
}

TEST(MtpGreedy, TiesGoToTheLowestIndex) {
  std::vector<float> p = {0.1f, 0.4f, 0.1f, 0.4f, /* bonus row */ 0.25f, 0.25f, 0.25f, 0.25f};
  std::vector<int32_t> tokens(2);
  const int32_t draft_hi = 3, draft_lo = 1;
  EXPECT_EQ(verify(Rule::greedy, p.data(), nullptr, &draft_hi, nullptr, 1, 4, tokens.data()), 0);
  EXPECT_EQ(tokens[0], 1);
  EXPECT_EQ(verify(Rule::greedy, p.data(), nullptr, &draft_lo, nullptr, 1, 4, tokens.data()), 1);
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 0}));
}

TEST(MtpSampler, IntegerGridBoundaries) {
  // p = (0.25, 0.75): weights 2^44 and 3 2^44, total 2^46; threshold = floor(total bits / 2^32) =
  // bits 2^14, so token 0 exactly for bits < 2^30.
  const std::vector<float> p = {0.25f, 0.75f};
  EXPECT_EQ(sample_index(p.data(), nullptr, 2, 0), 0);
  EXPECT_EQ(sample_index(p.data(), nullptr, 2, (1u << 30) - 1), 0);
  EXPECT_EQ(sample_index(p.data(), nullptr, 2, 1u << 30), 1);
  EXPECT_EQ(sample_index(p.data(), nullptr, 2, 0xFFFFFFFFu), 1);
  // Weights below the grid are never drawn; the residual max(0, p - q) drops tokens with p <= q.
  const std::vector<float> tiny = {1e-15f, 1.0f, 0.0f};
  EXPECT_EQ(grid_weight(1e-15f, 0), 0u);
  EXPECT_EQ(sample_index(tiny.data(), nullptr, 3, 0), 1);
  const std::vector<float> pp = {0.5f, 0.3f, 0.2f}, qq = {0.6f, 0.1f, 0.3f};
  for (uint32_t bits : {0u, 0x7FFFFFFFu, 0xFFFFFFFFu}) EXPECT_EQ(sample_index(pp.data(), qq.data(), 3, bits), 1);
  const std::vector<float> same = {0.5f, 0.5f};
  EXPECT_EQ(sample_index(same.data(), same.data(), 2, 0), -1);  // empty residual
}

// Many verification steps of one (p, q) pair with seeded bits; drafts drawn from q with the
// reference's sampler. Returns the first emitted token's counts and, for steps that accepted
// every draft, the bonus token's counts.
struct Trials {
  std::vector<int64_t> first, bonus;
  int64_t accepted_all = 0, accepted_first = 0, n = 0;
};
Trials run_trials(const std::vector<float>& p, const std::vector<float>& q, int64_t K, int64_t V, int64_t n, uint64_t seed) {
  Trials t;
  t.first.assign(static_cast<std::size_t>(V), 0);
  t.bonus.assign(static_cast<std::size_t>(V), 0);
  t.n = n;
  Rng rng(seed);
  std::vector<int32_t> draft(static_cast<std::size_t>(K)), tokens(static_cast<std::size_t>(K + 1));
  std::vector<uint32_t> bits(static_cast<std::size_t>(K + 1));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < K; ++j) draft[static_cast<std::size_t>(j)] = sample_index(q.data() + j * V, nullptr, V, static_cast<uint32_t>(rng.next() >> 32));
    for (auto& b : bits) b = static_cast<uint32_t>(rng.next() >> 32);
    const int64_t a = verify(Rule::sample, p.data(), q.data(), draft.data(), bits.data(), K, V, tokens.data());
    ++t.first[static_cast<std::size_t>(tokens[0])];
    if (a >= 1) ++t.accepted_first;
    if (a == K) {
      ++t.accepted_all;
      ++t.bonus[static_cast<std::size_t>(tokens[static_cast<std::size_t>(K)])];
    }
  }
  return t;
}

// Significance 1e-3: a correct sampler fails a given seed's test with probability 1e-3; the seeds
// are fixed, so the outcome is reproducible. N = 200000 trials detect a shift of 0.005 in a
// token's probability (G's non-centrality N delta^2 / p ~ 25 for p ~ 0.2).
constexpr double kAlpha = 1e-3;

TEST(MtpSample, EmittedTokensFollowTheMainModelWhenQIsFar) {
  const int64_t V = 8, K = 1, n = 200000;
  std::vector<float> p = normalised({0.30, 0.02, 0.15, 0.0, 0.25, 0.08, 0.05, 0.15});
  const std::vector<float> q = normalised({0.02, 0.30, 0.05, 0.20, 0.03, 0.20, 0.10, 0.10});
  const std::vector<float> bonus = normalised({1, 2, 3, 4, 5, 6, 7, 8});
  p.insert(p.end(), bonus.begin(), bonus.end());
  const Trials t = run_trials(p, q, K, V, n, 20261123);
  const std::vector<double> p0(p.begin(), p.begin() + V);
  const double pv = g_test_pvalue(t.first, p0, n);
  EXPECT_GT(pv, kAlpha) << "first emitted token does not follow p: G-test p-value " << pv;
  EXPECT_EQ(t.first[3], 0) << "a token with p = 0 was emitted";
  // Acceptance rate = sum min(p, q) (= 1 - total variation); 5 binomial standard deviations.
  double expect = 0;
  for (int64_t x = 0; x < V; ++x) expect += std::min<double>(p[static_cast<std::size_t>(x)], q[static_cast<std::size_t>(x)]);
  const double rate = static_cast<double>(t.accepted_first) / n;
  EXPECT_NEAR(rate, expect, 5 * std::sqrt(expect * (1 - expect) / n));
  const double pb = g_test_pvalue(t.bonus, as_double(bonus), t.accepted_all);
  EXPECT_GT(pb, kAlpha) << "bonus token after an accepted draft does not follow p[K]: p-value " << pb;
}

TEST(MtpSample, EqualDistributionsAcceptEveryDraft) {
  const int64_t V = 6, K = 3, n = 50000;
  std::vector<float> p;
  for (int64_t j = 0; j <= K; ++j) {
    const std::vector<float> row = normalised({1.0 + j, 2, 3, 4 - 0.5 * j, 5, 0.5});
    p.insert(p.end(), row.begin(), row.end());
  }
  const std::vector<float> q(p.begin(), p.begin() + K * V);
  const Trials t = run_trials(p, q, K, V, n, 7);
  EXPECT_EQ(t.accepted_all, n);  // u q < p with u < 1 and q = p > 0
  const double pv = g_test_pvalue(t.first, std::vector<double>(p.begin(), p.begin() + V), n);
  EXPECT_GT(pv, kAlpha) << "p-value " << pv;
}

TEST(MtpSample, CloseDraftsOverSeveralPositions) {
  // K = 2 drafts over a 40-token vocabulary: the first emitted token follows p[0] whichever
  // position rejects.
  const int64_t V = 40, K = 2, n = 200000;
  Rng rng(99);
  std::vector<float> p, q;
  for (int64_t j = 0; j <= K; ++j) {
    std::vector<double> lp(V), lq(V);
    for (int64_t x = 0; x < V; ++x) {
      lp[static_cast<std::size_t>(x)] = std::exp(1.5 * rng.normal());
      lq[static_cast<std::size_t>(x)] = lp[static_cast<std::size_t>(x)] * std::exp(0.8 * rng.normal());
    }
    const std::vector<float> rp = normalised(lp), rq = normalised(lq);
    p.insert(p.end(), rp.begin(), rp.end());
    if (j < K) q.insert(q.end(), rq.begin(), rq.end());
  }
  const Trials t = run_trials(p, q, K, V, n, 5);
  const double pv = g_test_pvalue(t.first, std::vector<double>(p.begin(), p.begin() + V), n);
  EXPECT_GT(pv, kAlpha) << "p-value " << pv;
  EXPECT_GT(t.accepted_all, 0);
  EXPECT_LT(t.accepted_all, n);
}

TEST(MtpStats, HistogramMeanAndConditionalAcceptance) {
  AcceptStats s;
  s.histogram.assign(3, 0);
  for (int64_t a : {0, 1, 1, 2, 2, 2, 2, 0}) s.add(a);
  EXPECT_EQ(s.steps, 8);
  EXPECT_DOUBLE_EQ(s.mean_accepted(), 10.0 / 8);
  EXPECT_DOUBLE_EQ(s.tokens_per_step(), 1 + 10.0 / 8);
  const std::vector<double> c = s.conditional_acceptance();
  EXPECT_DOUBLE_EQ(c[0], 6.0 / 8);  // 6 of 8 steps accepted draft 0
  EXPECT_DOUBLE_EQ(c[1], 4.0 / 6);  // of those 6, 4 accepted draft 1
  EXPECT_THROW(s.add(3), std::invalid_argument);
}

TEST(MtpVerify, BadInputIsNamed) {
  const int64_t V = 4;
  std::vector<float> p = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
  std::vector<float> q = {0.5f, 0.5f, 0.0f, 0.0f};
  std::vector<int32_t> tokens(2);
  const uint32_t bits[2] = {1, 2};
  auto message = [&](int32_t d) {
    try {
      verify(Rule::sample, p.data(), q.data(), &d, bits, 1, V, tokens.data(), "sequence 5");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(2).find("probability 0"), std::string::npos) << message(2);
  EXPECT_NE(message(4).find("outside the vocabulary"), std::string::npos) << message(4);
  p[3] = std::nanf("");
  EXPECT_NE(message(0).find("token 3"), std::string::npos) << message(0);
  EXPECT_NE(message(0).find("sequence 5"), std::string::npos) << message(0);
  p[3] = 0.15f;
  EXPECT_NE(message(0).find("sum to"), std::string::npos) << message(0);
  EXPECT_THROW(verify(Rule::greedy, p.data(), nullptr, tokens.data(), nullptr, 1, kMaxVocab + 1, tokens.data()), InputError);
  EXPECT_THROW(rule_from_name("beam"), std::invalid_argument);
}

}  // namespace
}  // namespace dsv3::mtp
