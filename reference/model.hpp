// The full DeepSeek-V3-architecture forward (issue: multi-token prediction; v3-facts §1-§3, §5;
// model.py Transformer / Block, Hugging Face modeling_deepseek names): embedding, the first dense
// layers (MLA + dense SwiGLU), the MoE layers (MLA + the MoE layer), final RMSNorm, output head,
// with prefill and step-by-step decode over a paged latent cache, for any MLA config in
// datasets/models; weights read from Hugging Face-named safetensors (FP8 with weight_scale_inv).
//
// Precision (the references' conventions, composed as model.py composes its modules):
//   residual stream  BF16 values; h = RN_bf16(h + module(h)) (the exact sum rounded once;
//                    model.py adds in BF16 through FP32, which can round twice: not modelled)
//   norms            attn_norm, ffn_norm, final norm: reference/rmsnorm.hpp (BF16 in and out)
//   attention        FP64 from the BF16 normed input (reference/mla_layer.hpp's math in the
//                    absorbed form), q_norm / kv_norm in FP64; the cache holds the latent and the
//                    roped key as BF16 (model.py's cache dtype) or exactly (f64, for the checks);
//                    the module's output rounded once to BF16
//   dense MLP        FP64, w2 (silu(w1 x) * w3 x), output rounded once to BF16
//   MoE              the moe component's layer: gate logits as FP64 sums of BF16 products rounded
//                    to FP32, sigmoid / softmax scores, routing and BF16 weights from
//                    reference/moe_gate.hpp; routed and shared experts in FP64; the sum rounded once
//   head             logits in FP64 from the BF16 final norm, rounded to FP32
//   weights          as stored: BF16 / F32 as their values, F8_E4M3 as code * scale_inv (FP64,
//                    exact); activations are not quantized (this is the exact-math reference, not
//                    a replica of an FP8 inference kernel)
// Every matrix-vector product is one fixed-order FP64 dot product per output (core of Linear
// below), so a token's result does not depend on how many tokens are processed together or on the
// thread count: prefill logits equal step-by-step decode logits bit for bit (tested).
//
// MTP (depth 1, stored as layer num_hidden_layers; V3-TR eqs 21-23, the checkpoint's order):
//   c_i = eh_proj [RMSNorm_enorm(embed(t_{i+1})) ; RMSNorm_hnorm(hf_i)]   (embedding first)
//   g_i = Block_L(c_i) (its own MLA cache, positions as the main model's), then shared_head:
//   P_mtp(t_{i+2}) = softmax(head(RMSNorm_shared(g_i)))                   (the main model's head)
// hf_i is the main model's final normed hidden state (what its head sees; vLLM's deepseek_mtp).
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/model_config.hpp"
#include "core/safetensors.hpp"
#include "core/tensor.hpp"
#include "reference/mla_layer.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::model {

// A weight matrix [out, in] as stored: BF16 / F32 values, or E4M3 codes with FP32 128x128 block
// scales (model.py Linear's weight and scale_inv).
struct Linear {
  Tensor w;
  std::optional<Tensor> scale_inv;
  int64_t out() const { return w.dim(0); }
  int64_t in() const { return w.dim(1); }
  void row(int64_t o, double* dst) const;  // row o dequantized to FP64 (exact)
};
// y[t, o] = sum_i x[t, i] w[o, i] for the T rows of x ([T, in] row-major FP64), each a fixed-order
// FP64 dot product: independent of T and of the thread count (threaded over output rows).
std::vector<double> apply(const Linear& l, const std::vector<double>& x, int64_t T);

struct Mlp {
  Linear gate, up, down;  // w1, w3, w2
};
struct Attention {
  Linear q_a, q_b, q, kv_a, kv_b, o;  // q when q_lora_rank == 0, else q_a and q_b
  std::vector<double> q_norm, kv_norm;
};
struct Moe {
  Linear gate;                 // bf16 [E, dim] (never FP8)
  std::optional<Tensor> bias;  // f32 [E] (e_score_correction_bias) when the config has one
  std::vector<Mlp> experts;
  std::optional<Mlp> shared;
};
struct Block {
  std::vector<uint16_t> attn_norm, ffn_norm;  // BF16 codes [dim]
  Attention attn;
  std::optional<Mlp> mlp;  // dense layers
  std::optional<Moe> moe;  // MoE layers
};
struct MtpModule {
  std::vector<uint16_t> enorm, hnorm, shared_norm;  // BF16 codes [dim]
  Linear eh_proj;                                   // [dim, 2 dim]
  Block block;
};
struct Weights {
  ModelConfig cfg;
  int64_t layers = 0;     // main layers loaded (the first `layers` of cfg.n_layers)
  Tensor embed;           // bf16 [V, dim]
  std::vector<Block> blocks;
  std::vector<uint16_t> final_norm;
  Linear head;            // [V, dim]
  std::optional<MtpModule> mtp;
  // One line for the user when the config's MTP modules are not all here: why `mtp` is empty
  // although the config has mtp_depth >= 1 (the layer is absent from the checkpoint, or not
  // loaded), or that only depth 1 runs when mtp_depth > 1; empty otherwise.
  std::string mtp_note;
};

// Tensors of a checkpoint, looked up by name across one or more safetensors files.
struct Checkpoint {
  Checkpoint() = default;
  Checkpoint(Checkpoint&&) = default;  // moves keep the tensors where they are (deque blocks move whole)
  Checkpoint& operator=(Checkpoint&&) = default;
  Checkpoint(const Checkpoint&) = delete;  // the index points into this object's files
  Checkpoint& operator=(const Checkpoint&) = delete;
  void add(SafetensorsFile f);  // a name already held is an InputError naming both files
  const Tensor* find(const std::string& name) const;
  bool has_layer(int64_t layer) const;  // any tensor named model.layers.<layer>.*
  std::string where(const std::string& name) const;  // "<file>: <name>" or the files searched

 private:
  std::deque<SafetensorsFile> files_;  // a deque: adding a file moves no tensor
  std::unordered_map<std::string, std::pair<std::size_t, const Tensor*>> index_;  // name -> (file, tensor)
};
// One .safetensors file, or a directory of them (every *.safetensors, in name order). With
// `layers` >= 0 only the tensors load_weights(cfg, ck, layers) needs are read (model.layers.N.* for
// N < layers, and every tensor outside model.layers), so the first layers of a checkpoint larger than
// memory can run; the MTP layer is then not read.
Checkpoint open_checkpoint(const std::filesystem::path& path, int64_t layers = -1);

// Loads the config's weights by their Hugging Face names, checking presence, dtype and the shape
// each config field implies (InputError naming the tensor, both shapes and the fields). `layers`
// < 0 loads every main layer; a smaller count loads the first ones (the head and final norm still
// load, so a vendor can run the layers that fit). The MTP layer loads when the config has
// mtp_depth >= 1, all main layers are loaded and with_mtp. A checkpoint with no tensor of layer
// num_hidden_layers loads the main model and says so in mtp_note (not an error: the main model
// runs, the MTP outputs are unavailable); one with part of that layer is an InputError naming the
// first missing tensor. An MLA config whose rope_theta is not V3's 10000 is an InputError: the
// forward applies V3's RoPE/YaRN settings (rope::Yarn{}) to every config.
Weights load_weights(const ModelConfig& cfg, const Checkpoint& ck, int64_t layers = -1, bool with_mtp = true);
// The MTP module alone (InputError "checkpoint has no MTP layer: no tensor model.layers.<L>.* ..." when absent).
MtpModule load_mtp(const ModelConfig& cfg, const Checkpoint& ck);

// A seeded checkpoint of a config (tests, examples): BF16 matrices ~ N(0, 1/fan_in), norms
// 1 + N(0, 0.1^2), router bias N(0, 0.05^2); with `fp8` every projection of the attention and the
// MLPs is stored as F8_E4M3 with 128x128 scales (the gate, embedding and head stay BF16, as V3's
// checkpoint keeps them). Includes the MTP layer when cfg.mtp_depth >= 1.
std::vector<Tensor> random_checkpoint(const ModelConfig& cfg, uint64_t seed, bool fp8);

// bf16: model.py's cache dtype; f64: exact (for the layer checks); fp8: FlashMLA's FP8 latent cache
// (reference/mla_cache.hpp: 512 E4M3 codes with 4 power-of-two scales, 64 BF16 RoPE values; only
// for the latent width it is defined for, kv_lora_rank 512 + qk_rope_head_dim 64).
enum class CacheFmt : uint8_t { bf16, f64, fp8 };
std::string_view cache_fmt_name(CacheFmt f);

// One sequence's latent cache for every layer: per layer, pages of kPageTokens tokens of
// (kv_lora + rope) values taken from a shared pool through a block table (pages are handed out
// in the order tokens arrive, layer by layer, so a layer's pages are not contiguous). A token is
// stored in the cache format and kept as the FP64 values a reader decodes from it.
constexpr int64_t kPageTokens = 64;
class LatentCache {
 public:
  LatentCache(int64_t layers, int64_t width, CacheFmt fmt);  // fp8 needs width 576 (InputError otherwise)
  int64_t len(int64_t layer) const { return lens_[static_cast<std::size_t>(layer)]; }
  void append(int64_t layer, const double* values);   // stored in the cache format
  const double* token(int64_t layer, int64_t pos) const;  // the stored values of one token
  CacheFmt fmt() const { return fmt_; }
  int64_t pages_used() const { return static_cast<int64_t>(pool_.size()); }

 private:
  int64_t width_;
  CacheFmt fmt_;
  std::vector<int64_t> lens_;
  std::vector<std::vector<int32_t>> table_;  // per layer: page indices into pool_
  std::vector<std::unique_ptr<double[]>> pool_;
};

// A running sequence: its caches (main layers, and the MTP layer's) and position.
struct Session {
  LatentCache cache;
  std::optional<LatentCache> mtp_cache;
  int64_t pos = 0;
  Session(const Weights& w, CacheFmt fmt);
};

// What one forward call returns for its T new tokens.
struct StepOut {
  std::vector<float> logits;        // [T, V] FP32
  std::vector<uint16_t> hidden;     // [layers + 1, T, dim] BF16: the embedding, then each layer's output
  std::vector<uint16_t> final_hidden;  // [T, dim] BF16: the final norm's output (the MTP input)
};
// Runs tokens at positions s.pos .. s.pos + T - 1 through the main model, appending to the cache;
// prefill is one call with the prompt, decode one call per token. Token ids are checked
// (InputError naming the position).
StepOut forward(const Weights& w, Session& s, const std::vector<int32_t>& tokens);

// The MTP module's intermediate values, for the layer checks: the block's input (eh_proj's output
// rounded to BF16) and its output, [T, dim] BF16 each.
struct MtpTrace {
  std::vector<uint16_t> block_in, block_out;
};
// The MTP module at positions p .. p + T - 1 (appending to its cache): final_hidden [T, dim] from
// the main model at those positions and next_tokens [T] (the token after each position) ->
// logits [T, V] for the token after next. Weights without the module are an InputError that
// names the missing layer (w.mtp_note). With `trace`, the block's input and output are kept there.
std::vector<float> mtp_forward(const Weights& w, Session& s, const std::vector<uint16_t>& final_hidden,
                               const std::vector<int32_t>& next_tokens, int64_t start_pos, MtpTrace* trace = nullptr);

// One transformer block (a main layer's or the MTP module's): h [T, dim] BF16 at positions
// start .. start + T - 1, appended to `cache`'s `layer`; returns the block's output.
std::vector<uint16_t> block_forward(const ModelConfig& cfg, const Block& b, LatentCache& cache, int64_t layer,
                                    const std::vector<uint16_t>& h, int64_t start_pos);

}  // namespace dsv3::model
