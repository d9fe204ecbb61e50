// A tiny byte-level language model with one MTP module, trained in the BF16 and the FP8 recipe
// (issue: the FP8 training step; V3-TR §2.2 MTP, §3.3 FP8; v3-facts §4.1, §5).
//
// Model (HF DeepSeek-V3 names; L = layers, the MTP module is stored as layer L):
//   h   = embed_tokens[t]                                         model.embed_tokens.weight [V, d]
//   for l < L:  h = h + MLP_l(RMSNorm_l(h))                       model.layers.l.post_attention_layernorm.weight [d]
//                                                                 model.layers.l.mlp.{gate,up,down}_proj.weight
//   hf  = RMSNorm(h)                                              model.norm.weight [d]
//   P_main(t_{i+1}) = softmax(hf_i lm_head^T)                     lm_head.weight [V, d]
// MTP, depth 1 (V3-TR eqs 21-23 with the checkpoint's order: embedding first):
//   c_i = [RMSNorm(embed_tokens[t_{i+1}]) ; RMSNorm(hf_i)]        model.layers.L.enorm.weight, .hnorm.weight
//   g_i = eh_proj c_i                                             model.layers.L.eh_proj.weight [d, 2d]
//   g_i = g_i + MLP_L(RMSNorm(g_i))                               model.layers.L.post_attention_layernorm / .mlp.*
//   P_mtp(t_{i+2}) = softmax(RMSNorm(g_i) lm_head^T)              model.layers.L.shared_head.norm.weight; the head is
//                                                                 lm_head (written again as .shared_head.head.weight)
// The MTP input hf_i is the main model's final normed hidden state, the vector its head sees (as
// vLLM's deepseek_mtp passes it). No attention: the blocks are pre-norm SwiGLU MLPs (the issue's
// model), so each token sees itself only and the MTP module its next token.
// Loss = CE_main + lambda CE_mtp (lambda 0.3, D = 1: V3-TR §4.2), means over positions.
//
// Precision, as V3 keeps it (V3-TR §3.3): the MLPs and eh_proj are Linear layers through the
// training step of fp8_train.hpp in the run's recipe; the embedding, RMSNorms, the output head
// (BF16 GEMMs) and the loss (FP64 from FP32 logits) are the same in both recipes; activations and
// activation gradients between layers are BF16 values, parameter gradients FP32, master weights
// FP32, AdamW moments BF16 (fp8_train.hpp's AdamW; weight decay on matrices only).
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/fp8_train.hpp"

namespace dsv3::fp8train {

struct LmConfig {
  int64_t vocab = 256;   // bytes
  int64_t dim = 128;     // d
  int64_t inter = 384;   // SwiGLU intermediate F
  int64_t layers = 2;    // main-model blocks
  int64_t seq = 64;      // positions per sequence
  int64_t batch = 8;     // sequences per step
  double mtp_lambda = 0.3;
  void validate() const;  // throws std::invalid_argument naming the field
};

struct TrainConfig {
  Recipe recipe = Recipe::bf16;
  int64_t steps = 300;
  uint64_t seed = 1;
  double lr = 3e-3;            // peak; linear warmup, then cosine to lr / 10
  int64_t warmup = 20;
  int64_t eval_every = 25;     // held-out evaluation every this many steps (and after the last)
  int64_t eval_windows = 32;   // held-out sequences per evaluation (fixed, the same for every run)
};

// The corpus: text split into a training and a held-out stream of bytes.
struct Corpus {
  std::string source;                   // where it came from (for the bundle)
  std::vector<uint8_t> train, heldout;
};
// Reads the Debian package `fortunes` (/usr/share/games/fortunes, or the directory in
// DSV3_CORPUS_DIR): every plain file whose name has no extension, in name order, split into
// fortunes at "\n%\n"; every tenth fortune (index % 10 == 9) is held out. Throws InputError naming
// the directory when it is missing or holds no usable text (with the package to install), and a
// file with NUL bytes or no '%' separators as corrupt.
Corpus load_corpus(const std::filesystem::path& dir = {});
std::filesystem::path default_corpus_dir();

// The model's parameters with their optimizer state.
struct Lm {
  LmConfig cfg;
  Param embed, final_norm, head;
  std::vector<Param> norms;                  // per main layer
  std::vector<std::vector<Param>> mlps;      // per main layer: gate, up, down
  Param enorm, hnorm, eh_proj, mtp_norm, shared_norm;
  std::vector<Param> mtp_mlp;                // gate, up, down

  std::vector<Param*> matrices() {
    std::vector<Param*> v = {&embed, &head, &eh_proj};
    for (auto& l : mlps)
      for (Param& p : l) v.push_back(&p);
    for (Param& p : mtp_mlp) v.push_back(&p);
    return v;
  }
  std::vector<Param*> vectors() {
    std::vector<Param*> v = {&final_norm, &enorm, &hnorm, &mtp_norm, &shared_norm};
    for (Param& p : norms) v.push_back(&p);
    return v;
  }
};

Lm init_lm(const LmConfig& c, uint64_t seed);  // matrices N(0, 0.02^2) from the seed, norms 1

struct Batch {
  std::vector<int> tokens;  // [batch, seq + 1] bytes
};
struct Pass {
  double loss = 0, loss_main = 0, loss_mtp = 0;  // loss = main + lambda mtp
  double main_accuracy = 0;
  // Evaluation passes (train false) keep the logits: main [batch, seq, V], MTP [batch, seq - 1, V].
  std::vector<float> main_logits, mtp_logits;
};
// Forward of one batch in the recipe; with `train` also the backward, gradients added into the
// parameters' grad.
Pass run_pass(Lm& m, Recipe r, const Batch& b, bool train);

struct EvalResult {
  double loss_main = 0, loss_mtp = 0;
  // Speculative acceptance of the MTP draft for position i + 2 (made at i from the true byte i + 1)
  // against the main model's distribution at i + 1, teacher-forced on held-out text, with the
  // verification rules of reference/mtp_accept.hpp:
  double mtp_acceptance = 0;     // greedy: MTP argmax at i == main argmax at i + 1
  double mtp_acceptance_t1 = 0;  // temperature 1: the draft drawn from q, accepted with min(1, p/q) (seeded draws)
  double mtp_acceptance_t1_expected = 0;  // its expectation, sum_x min(p(x), q(x)), computed exactly
  double main_accuracy = 0;   // main argmax == the true next byte
};

struct StepLog {
  int64_t step = 0;
  double lr = 0, train_loss = 0, train_main = 0, train_mtp = 0;
  bool skipped = false;
  bool evaluated = false;
  EvalResult heldout;
};

struct TrainResult {
  std::vector<StepLog> log;
  int64_t tokens = 0;           // tokens trained on (steps x batch x seq)
  double seconds = 0;           // wall time of the training steps (evaluation excluded)
  EvalResult final_eval;
};

// Trains a fresh model (initialised from t.seed) and returns its log. `progress` (may be null)
// gets one line every eval. With `weights_out` non-empty the final weights are written there as
// safetensors with the names above (atomically).
TrainResult train_lm(const LmConfig& m, const TrainConfig& t, const Corpus& corpus, std::ostream* progress,
                     const std::filesystem::path& weights_out = {});

// Bundle study "fp8_train_lm": per recipe and seed, the loss curves, the held-out evaluations,
// the relative gap and the MTP acceptance (docs/bundle-schema.md); the trained weights go to
// study_artifact_dir() when it is set. quick: fewer steps, one seed.
nlohmann::json lm_training_study(bool quick);

}  // namespace dsv3::fp8train
