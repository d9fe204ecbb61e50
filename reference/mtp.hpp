// The mtp component (issue: multi-token prediction): the batched verification step of speculative
// decoding with MTP drafts (reference/mtp_accept.hpp has the rules).
//
// Op accept, per case (B sequences, K drafts each, vocabulary V):
//   p      f32 [B, K + 1, V]  main-model probabilities at the draft positions and the one after
//   q      f32 [B, K, V]      draft probabilities
//   draft  i32 [B, K]         greedy: argmax q; sample: drawn from q with the reference's sampler
//   bits   i32 [B, K + 1]     random 32-bit words (stored as i32, read as uint32)
// -> accepted i32 [B] (0..K), tokens i32 [B, K + 1] (1 + accepted emitted tokens, then -1).
// The inputs are seeded from the case: logits ~ N(0, sharpness^2) per row, softmax in FP64 rounded
// to FP32; q from p by `draw`: far (independent logits), close (p's logits plus N(0, 0.7^2)
// noise: mostly agreeing drafts), equal (q = p: every draft accepted under both rules).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/mtp_accept.hpp"

namespace dsv3::mtp {

enum class Draw : uint8_t { far, close, equal };
std::string_view draw_name(Draw d);
Draw draw_from_name(const std::string& s);

struct Params {
  Rule rule = Rule::greedy;
  int64_t batch = 1;        // B sequences
  int64_t drafts = 1;       // K drafted tokens per sequence (V3's MTP: depth 1)
  int64_t vocab = 129280;   // V (V3's vocabulary)
  Draw draw = Draw::close;  // how q relates to p
  double sharpness = 4;     // standard deviation of the logits (larger: peakier distributions)
  std::string to_string() const;  // "accept sample B=32 K=1 V=129280 close"
  void validate() const;          // throws std::invalid_argument naming the field
};

std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
// Checks shapes (ShapeError naming the tensor) and values (InputError naming sequence and
// position), then verifies every sequence; threaded over sequences (identical for any thread count).
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);
double bytes_moved(const Params& p);  // p and q read once (every row may be needed), the rest once

}  // namespace dsv3::mtp
