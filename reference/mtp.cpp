// The batched verification step (reference/mtp.hpp).
#include "reference/mtp.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "core/fill.hpp"
#include "core/parallel.hpp"

namespace dsv3::mtp {

std::string_view draw_name(Draw d) { return d == Draw::far ? "far" : d == Draw::close ? "close" : "equal"; }

Draw draw_from_name(const std::string& s) {
  if (s == "far") return Draw::far;
  if (s == "close") return Draw::close;
  if (s == "equal") return Draw::equal;
  throw std::invalid_argument("draw must be far, close or equal, got '" + s + "'");
}

std::string Params::to_string() const {
  std::ostringstream os;
  os << "accept " << rule_name(rule) << " B=" << batch << " K=" << drafts << " V=" << vocab << ' ' << draw_name(draw);
  if (sharpness != 4) os << " sharp=" << sharpness;
  return os.str();
}

void Params::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("mtp accept: " + what); };
  if (batch < 1) bad("batch must be >= 1, got " + std::to_string(batch));
  if (drafts < 1) bad("drafts must be >= 1, got " + std::to_string(drafts));
  if (vocab < 2 || vocab > kMaxVocab) bad("vocab must be in 2.." + std::to_string(kMaxVocab) + ", got " + std::to_string(vocab));
  if (!(sharpness > 0 && std::isfinite(sharpness))) bad("sharpness must be finite and > 0");
}

std::vector<TensorSpec> input_specs(const Params& p) {
  p.validate();
  const int64_t B = p.batch, K = p.drafts, V = p.vocab;
  return {{"p", DType::f32, {B, K + 1, V}}, {"q", DType::f32, {B, K, V}}, {"draft", DType::i32, {B, K}}, {"bits", DType::i32, {B, K + 1}}};
}

std::vector<TensorSpec> output_specs(const Params& p) {
  p.validate();
  return {{"accepted", DType::i32, {p.batch}}, {"tokens", DType::i32, {p.batch, p.drafts + 1}}};
}

std::vector<Tensor> make_inputs(const Params& p) {
  std::vector<Tensor> in = allocate(input_specs(p));
  const int64_t B = p.batch, K = p.drafts, V = p.vocab;
  const uint64_t seed = seed_from(p.to_string());
  auto P = in[0].span<float>();
  auto Q = in[1].span<float>();
  auto D = in[2].span<int32_t>();
  auto W = in[3].span<int32_t>();
  // Rows are drawn per sequence from their own stream, threaded over sequences.
  parallel_for(B, [&](int64_t b0, int64_t b1) {
    std::vector<double> lp(static_cast<std::size_t>(V)), lq(static_cast<std::size_t>(V));
    for (int64_t b = b0; b < b1; ++b) {
      Rng rng(seed + 1000003 * static_cast<uint64_t>(b + 1));
      for (int64_t j = 0; j <= K; ++j) {
        for (double& l : lp) l = p.sharpness * rng.normal();
        float* prow = &P[static_cast<std::size_t>((b * (K + 1) + j) * V)];
        softmax_f32(lp.data(), V, prow);
        if (j == K) break;
        float* qrow = &Q[static_cast<std::size_t>((b * K + j) * V)];
        if (p.draw == Draw::equal) {
          std::copy(prow, prow + V, qrow);
        } else {
          for (std::size_t x = 0; x < lq.size(); ++x) lq[x] = p.draw == Draw::far ? p.sharpness * rng.normal() : lp[x] + 0.7 * rng.normal();
          softmax_f32(lq.data(), V, qrow);
        }
      }
      for (int64_t j = 0; j <= K; ++j) W[static_cast<std::size_t>(b * (K + 1) + j)] = static_cast<int32_t>(static_cast<uint32_t>(rng.next() >> 32));
      for (int64_t j = 0; j < K; ++j) {
        const float* qrow = &Q[static_cast<std::size_t>((b * K + j) * V)];
        D[static_cast<std::size_t>(b * K + j)] =
            p.rule == Rule::greedy ? argmax(qrow, V) : sample_index(qrow, nullptr, V, static_cast<uint32_t>(rng.next() >> 32));
      }
    }
  });
  return in;
}

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  require_tensors(in, input_specs(p), "mtp/ref accept inputs");
  require_tensors(out, output_specs(p), "mtp/ref accept outputs");
  const int64_t K = p.drafts, V = p.vocab;
  const float* P = in[0].span<const float>().data();
  const float* Q = in[1].span<const float>().data();
  const int32_t* D = in[2].span<const int32_t>().data();
  const auto* W = reinterpret_cast<const uint32_t*>(in[3].span<const int32_t>().data());
  int32_t* A = out[0].span<int32_t>().data();
  int32_t* T = out[1].span<int32_t>().data();
  parallel_for(p.batch, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      A[b] = static_cast<int32_t>(verify(p.rule, P + b * (K + 1) * V, Q + b * K * V, D + b * K, W + b * (K + 1), K, V, T + b * (K + 1),
                                         "sequence " + std::to_string(b)));
  });
}

double bytes_moved(const Params& p) {
  const auto B = static_cast<double>(p.batch), K = static_cast<double>(p.drafts), V = static_cast<double>(p.vocab);
  const double qbytes = p.rule == Rule::sample ? 4 * B * K * V : 0;  // greedy never reads q (the draft is given)
  return 4 * B * (K + 1) * V + qbytes + 4 * B * K + 4 * B * (K + 1) + 4 * B + 4 * B * (K + 1);
}

}  // namespace dsv3::mtp
