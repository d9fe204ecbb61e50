// Multi-head Latent Attention (v3-facts §2): the attention cores a GPU kernel is held to, over
// V3's sizes (kv_lora_rank 512, RoPE 64: the cached latent is 576 wide; nope 128, v 128).
//
// Ops (Params::op):
//   decode   absorbed attention (MQA form, FlashMLA's "MQA mode") over a paged latent cache:
//              q           bf16 [B, s_q, H, 576]  absorbed queries: [W_UK^T q^C (512) | q^R (64)]
//              kv_cache    bf16 [NB, 64, 576]     pages of 64 tokens: [kv_norm(c^KV) | RoPE(k^R)]
//                       or u8   [NB, 64, 656]     FlashMLA's FP8 latent cache (reference/mla_cache.hpp)
//              block_table i32  [B, max_blocks]   page of each sequence's 64-token block
//              seqlens     i32  [B]               cache length of each sequence (the s_q new tokens included)
//            -> out bf16 [B, s_q, H, 512] (sum_j p_j c_j, before W_UV), lse f32 [B, H, s_q]
//   prefill  naive attention (MHA form) with K and V materialised, causal:
//              q bf16 [B, S, H, 192], k bf16 [B, S, H, 192], v bf16 [B, S, H, 128]
//            -> out bf16 [B, S, H, 128], lse f32 [B, H, S]
//
// Semantics, both ops: scores = softmax_scale * q . k with V3's scale 0.1352338 (1/sqrt(192)
// times YaRN's mscale^2; the absorbed form keeps the naive form's scale, as model.py does);
// causal: query i of the s_q new tokens of a sequence of length L sits at position L - s_q + i
// and sees keys 0 .. L - s_q + i (decode), or keys 0 .. i (prefill). Everything is computed in
// FP64 from the stored BF16/FP8 values (online softmax over 64-key blocks with FP64 rescaling),
// then out is rounded once to BF16 (RNE) and lse = max + ln(sum exp(s - max)) (natural log of the
// scaled scores, as FlashMLA returns it) once to FP32. A query that sees no key (length 0, or
// s_q = 2 with L = 1 for the first query) gets out = 0 and lse = +Inf: FlashAttention's convention
// for an empty row, so exp(s - lse) = 0 wherever the LSE is used to merge splits.
// Pages: only the first L tokens of a sequence's pages are read; cases poison every other token
// (tails of last pages, unused pages, block-table entries past a sequence's last page point to a
// poisoned page) with NaN, so a kernel that reads one fails the check.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compare.hpp"
#include "core/fill.hpp"
#include "core/tensor.hpp"

namespace dsv3::mla {

constexpr int64_t kLatent = 512;     // kv_lora_rank: the value width of the absorbed form
constexpr int64_t kRope = 64;        // qk_rope_head_dim
constexpr int64_t kQk = kLatent + kRope;  // 576: the cached width, the absorbed query/key width
constexpr int64_t kNope = 128;       // qk_nope_head_dim
constexpr int64_t kHeadQk = kNope + kRope;  // 192: naive q/k head width
constexpr int64_t kHeadV = 128;      // v_head_dim
constexpr int64_t kPage = 64;        // tokens per cache page (FlashMLA's block size)

enum class Op : uint8_t { decode, prefill };
enum class CacheFmt : uint8_t { bf16, fp8 };
std::string_view cache_fmt_name(CacheFmt f);

// V3's softmax scale, 1/sqrt(192) * mscale^2 (reference/rope.hpp): 0.1352338.
double v3_softmax_scale();

struct Params {
  Op op = Op::decode;
  int64_t batch = 1;            // B sequences
  int64_t s_q = 1;              // decode: new query tokens per sequence (1, or 2 = MTP verification); prefill: S
  int64_t heads = 128;          // H query heads (128, or a tensor-parallel slice: 64, 32, 16)
  CacheFmt cache = CacheFmt::bf16;   // decode only
  std::vector<int64_t> lens;    // decode: cache length per sequence; empty = drawn from mean_len
  int64_t mean_len = 0;         // decode, lens empty: every length = mean_len, or with varlen ~N(mean, mean/2) >= s_q
  bool varlen = false;
  int64_t spare_pages = 2;      // decode: unused, poisoned pages in the cache
  Dist dist = Dist::normal;     // q and cache contents
  std::string to_string() const;  // "decode b=4 sq=1 h=128 bf16 lens=0,1,63,64" / "... len~4096 varlen"
  void validate() const;          // throws std::invalid_argument naming the field
  std::vector<int64_t> seq_lens() const;  // decode: the B lengths (seeded when drawn)
  int64_t max_pages() const;      // decode: block-table width = max over sequences of ceil(L/64), plus 1
};

std::string_view op_name(Op o);
// A decode case over the given sequence lengths (batch = their count).
Params decode_params(std::vector<int64_t> lens, int64_t s_q, int64_t heads, CacheFmt fmt, Dist dist = Dist::normal);

std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
// Checks shapes, seqlens (>= 0, pages within the table), block-table entries (in [0, NB)) and
// throws std::invalid_argument naming the field, then computes out and lse. Threaded over
// (sequence, head) blocks; identical results for any thread count.
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);
// The same before the final roundings: out and lse in FP64, laid out as the outputs; with
// `magnitude`, also sum_j p_j |v_j| per output element (what a kernel's rounding of p to BF16
// can move out by, times 2^-8: the bound behind the CUDA variants' tolerances) and, laid out as
// lse, the two scales of a kernel's LSE error: score_magnitude = max over the row's visible keys
// of scale * sum_i |q_i k_i| (an FP32 dot product of 576 terms errs by a multiple of it) and
// visible = the number of keys the row sees (the FP32 running sum of exp(s - max) errs by a
// multiple of it, relative).
struct F64Outputs {
  std::vector<double> out, lse, magnitude, score_magnitude, visible;
};
F64Outputs run_reference_f64(const Params& p, const std::vector<Tensor>& in, bool magnitude = false);
// The scales a decode kernel with FP32 scores and an FP32 running sum errs by (check aids
// bound_fp32_scores:out and :lse of decode cases; optimized/mla_decode.cu derives its eps from
// them), rounded up to FP32:
//   out: magnitude * (1 + M / 256 + n / 131072)   the rounding of p moves out by a multiple of
//        sum p|v| (magnitude); a score error ds moves the normalised weights by <= 2 |ds|, with
//        |ds| a multiple of the row's score magnitude M; the FP32 accumulation of p v over the n
//        visible keys errs by a multiple of n times the magnitude
//   lse: M + n / 1024 + 1            lse errs by max |ds| (a multiple of M) plus the relative
//        error of the running sum over the n visible keys (a multiple of n, plus a constant)
double out_error_scale(double magnitude, double score_magnitude, double visible);
double lse_error_scale(double score_magnitude, double visible);
// The tolerances of a decode kernel with that arithmetic (BF16 tensor-core products with FP32
// accumulation, FP32 softmax, P rounded to BF16, FP32 split merge): out and lse, each bounded by
// eps times the aid above, with the derivation (optimized/mla_decode.cu uses them).
std::map<std::string, Tolerance> fp32_score_decode_tolerances();
void validate_decode_inputs(const Params& p, const std::vector<Tensor>& in);

double flops(const Params& p);  // FlashMLA's count (decode) / causal naive count (prefill)
double bytes_moved(const Params& p);  // FlashMLA's count: q, the cache read once, out

// Study rows "mla_cache_error": the decode core over a BF16 and an FP8 latent cache against the
// same core over the unrounded FP64 latents, per context length (docs/bundle-schema.md).
nlohmann::json cache_error_study(bool quick);

}  // namespace dsv3::mla
