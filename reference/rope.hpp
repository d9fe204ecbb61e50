// Rotary position embedding with YaRN as DeepSeek-V3 applies it (v3-facts §1.2; model.py
// precompute_freqs_cis / apply_rotary_emb), and the softmax scale YaRN implies (v3-facts §2.1).
//
// MLA applies RoPE only to the decoupled 64-wide parts: each head's q^R and the one shared k^R.
// The vector is read as 32 ADJACENT pairs (x[2i], x[2i+1]) = complex numbers, each multiplied by
// cis(angle(t, i)) in FP32 and cast back to BF16 (not rotate-half: that layout needs a permutation).
//
// The frequency table, each step an FP32 operation as model.py's float32 tensors compute it
// (RN = round to nearest even in FP32):
//   f_i      = RN(1 / RN(theta^(2i/D)))                     i = 0..D/2-1, D = 64, theta = 10000
//   YaRN (applied when the model's max_seq_len exceeds original_seq_len 4096; V3's 16384 does):
//   low      = floor(c(beta_fast)), high = ceil(c(beta_slow)), clamped to [0, D-1], with
//              c(r) = D ln(original_seq_len / (2 pi r)) / (2 ln theta)   (FP64; V3: 10 and 23)
//   ramp_i   = clamp(RN(RN(i - low) / RN(high - low)), 0, 1),  smooth_i = RN(1 - ramp_i)
//   f'_i     = RN(RN(RN(f_i / factor) * RN(1 - smooth_i)) + RN(f_i * smooth_i))   factor 40
//   angle    = RN(t * f'_i) (t the position as FP32; torch.outer)
//   (c, s)   = (RN(cos angle), RN(sin angle))  computed in FP64 and rounded once (torch.polar in
//              FP32 may differ from the correctly rounded value by an ulp: not modelled)
// Rotation of a pair (x0, x1), then RNE to BF16 (the textbook complex product, each op rounded):
//   y0 = RN(RN(x0 c) - RN(x1 s)),  y1 = RN(RN(x0 s) + RN(x1 c))
// theta^(2i/D) is taken as correctly rounded (FP64 pow, then RN); torch's FP32 pow is not
// checked bit for bit against it.
//
// Softmax scale (model.py MLA.__init__): qk_head_dim^-0.5, times mscale^2 when YaRN is on, with
// mscale = 0.1 * mscale_arg * ln(factor) + 1 (V3: mscale_arg 1.0 -> 1.3688879, scale 0.1352338;
// V2-Lite: mscale_arg 0.707 -> scale 0.1147214).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/fill.hpp"
#include "core/tensor.hpp"

namespace dsv3::rope {

// RoPE/YaRN settings; the defaults are V3's (model.py ModelArgs defaults; v3-facts §1.2).
struct Yarn {
  bool enabled = true;          // model.py: max_seq_len (16384) > original_seq_len
  double theta = 10000;         // rope_theta
  int64_t dim = 64;             // qk_rope_head_dim
  double factor = 40;           // rope_factor (s)
  double beta_fast = 32;
  double beta_slow = 1;
  int64_t original_seq_len = 4096;
  double mscale = 1.0;          // V3 1.0; V2-Lite 0.707
};

// (low, high) correction range (V3: 10, 23).
std::pair<int64_t, int64_t> correction_range(const Yarn& y);
// f'_i, i = 0..dim/2-1 (plain f_i when !y.enabled).
std::vector<float> frequencies(const Yarn& y);
// cos and sin of position t: out[2i] = c_i, out[2i+1] = s_i, i = 0..dim/2-1.
void cos_sin(const std::vector<float>& freqs, int64_t t, float* out);
// The whole table for positions 0..positions-1: [positions, dim/2, 2] floats (what kernels read).
std::vector<float> cos_sin_table(const Yarn& y, int64_t positions);
// model.py's softmax scale for a qk head dim (V3: 192 -> 0.1352338).
double softmax_scale(int64_t qk_head_dim, const Yarn& y);

struct Params {
  int64_t tokens = 1;       // T
  int64_t heads = 1;        // H vectors per token (128 for q^R, 1 for the shared k^R)
  int64_t max_pos = 16384;  // positions are drawn from [0, max_pos); the table has max_pos rows
  bool yarn = true;         // V3's YaRN (Yarn{}); false: plain RoPE (Yarn{.enabled = false})
  Dist dist = Dist::normal; // distribution of x
  std::string to_string() const;  // "t=4096 h=128 pos<163840 yarn normal"
  void validate() const;
  Yarn settings() const;
};

// Inputs x bf16 [T, H, 64], positions i32 [T] (the first is 0 and the last max_pos - 1, the rest
// uniform); output y bf16 [T, H, 64].
std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
// Throws std::invalid_argument naming the token when a position is outside [0, max_pos).
void check_positions(const Params& p, const Tensor& positions);
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);
// x read, y written, positions read, one cos/sin table row per token.
double bytes_moved(const Params& p);

// Rotates one pair as defined above (shared by the MLA reference).
inline void rotate_pair(float x0, float x1, float c, float s, float& y0, float& y1) {
  const float a = x0 * c, b = x1 * s, d = x0 * s, e = x1 * c;
  y0 = a - b;
  y1 = d + e;
}

}  // namespace dsv3::rope
