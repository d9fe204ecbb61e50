// The model component: the full V3-architecture forward of a seeded checkpoint, prefill (ref)
// against step-by-step decode, with the MTP module (reference/model.hpp).
//
// A case: a config, a prompt of T seeded tokens, the weights' storage (BF16, or FP8 projections),
// the cache format, with or without the MTP module (mtp_depth 1 forced on), optionally the config
// with q_lora_rank 0 (V2-Lite's plain wq). Outputs: logits f32 [T, V]; hidden bf16 [L + 1, T, dim]
// (the embedding and every layer's output); with MTP, mtp_logits f32 [T - 1, V] (position i
// predicts token i + 2 from token i + 1). The weights are generated from the case's model and
// storage and kept for the process (the tiny config's are ~2 MB).
#include <map>
#include <mutex>
#include <sstream>

#include "core/registry.hpp"
#include "reference/model.hpp"

namespace dsv3::model {
namespace {

struct Params {
  std::string model = "tiny-test";
  int64_t tokens = 8;
  bool fp8 = false;          // projections stored as F8_E4M3 with 128x128 scales
  CacheFmt cache = CacheFmt::bf16;
  bool mtp = false;          // the depth-1 MTP module (mtp_depth forced to 1)
  bool no_q_lora = false;    // q_lora_rank 0: the plain wq projection
  bool v3_latent = false;    // kv_lora_rank 512 and qk_rope_head_dim 64: V3's cached width (the FP8 cache needs it)
  std::string to_string() const {
    std::ostringstream os;
    os << "forward " << model << " T=" << tokens << " w=" << (fp8 ? "fp8" : "bf16") << " cache=" << cache_fmt_name(cache);
    if (mtp) os << " mtp";
    if (no_q_lora) os << " q_lora=0";
    if (v3_latent) os << " latent=576";
    return os.str();
  }
  ModelConfig config() const {
    ModelConfig c = find_model(model);
    if (mtp) c.mtp_depth = 1;
    if (no_q_lora) c.q_lora_rank = 0;
    if (v3_latent) {
      c.kv_lora_rank = 512;
      c.qk_rope_head_dim = 64;
    }
    if (tokens < 1) throw std::invalid_argument("model: tokens must be >= 1");
    if (mtp && tokens < 2) throw std::invalid_argument("model: the MTP check needs >= 2 tokens");
    return c;
  }
};

const Weights& weights_of(const Params& p) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Weights>> cache;
  const ModelConfig c = p.config();
  const std::string key = p.model + (p.fp8 ? " fp8" : " bf16") + (p.mtp ? " mtp" : "") + (p.no_q_lora ? " q_lora=0" : "") +
                          (p.v3_latent ? " latent=576" : "");
  std::lock_guard<std::mutex> lock(mu);
  auto& w = cache[key];
  if (!w) {
    Checkpoint ck;
    ck.add(SafetensorsFile{"(generated " + key + ")", {}, random_checkpoint(c, seed_from(key), p.fp8)});
    w = std::make_unique<Weights>(load_weights(c, ck));
  }
  return *w;
}

std::vector<TensorSpec> input_specs(const Params& p) { return {{"tokens", DType::i32, {p.tokens}}}; }

std::vector<TensorSpec> output_specs(const Params& p) {
  const ModelConfig c = p.config();
  std::vector<TensorSpec> s = {{"logits", DType::f32, {p.tokens, c.vocab_size}}, {"hidden", DType::bf16, {c.n_layers + 1, p.tokens, c.dim}}};
  if (p.mtp) s.push_back({"mtp_logits", DType::f32, {p.tokens - 1, c.vocab_size}});
  return s;
}

std::vector<Tensor> make_inputs(const Params& p) {
  std::vector<Tensor> in = allocate(input_specs(p));
  Rng rng(seed_from(p.to_string()));
  const ModelConfig c = p.config();
  for (int32_t& t : in[0].span<int32_t>()) t = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(c.vocab_size));
  return in;
}

double bytes_moved(const Params& p) { return spec_bytes(input_specs(p)) + spec_bytes(output_specs(p)); }

// Checks the case's tensors (ShapeError naming `variant`) and returns its weights.
const Weights& checked_weights(const Params& p, const Io& io, const std::string& variant) {
  require_tensors(io.in, input_specs(p), variant + " inputs");
  require_tensors(io.out, output_specs(p), variant + " outputs");
  return weights_of(p);
}

std::vector<int32_t> tokens_of(const Io& io) {
  const auto s = io.in[0].span<const int32_t>();
  return {s.begin(), s.end()};
}

// Writes one step's results for tokens t0 .. t0 + n - 1 into the outputs.
void store(const Weights& w, const StepOut& o, int64_t t0, int64_t n, int64_t T, Io& io) {
  const int64_t V = w.cfg.vocab_size, D = w.cfg.dim;
  std::copy(o.logits.begin(), o.logits.end(), io.out[0].span<float>().begin() + t0 * V);
  auto hid = io.out[1].span<uint16_t>();
  for (int64_t l = 0; l <= w.layers; ++l)
    std::copy_n(o.hidden.begin() + l * n * D, n * D, hid.begin() + (l * T + t0) * D);
}

void run_prefill(const Params& p, Io& io) {
  const Weights& w = checked_weights(p, io, "model/ref");
  const std::vector<int32_t> tokens = tokens_of(io);
  Session s(w, p.cache);
  const StepOut o = forward(w, s, tokens);
  store(w, o, 0, p.tokens, p.tokens, io);
  if (p.mtp) {
    const std::vector<uint16_t> hf(o.final_hidden.begin(), o.final_hidden.end() - w.cfg.dim);
    const std::vector<float> m = mtp_forward(w, s, hf, std::vector<int32_t>(tokens.begin() + 1, tokens.end()), 0);
    std::copy(m.begin(), m.end(), io.out[2].span<float>().begin());
  }
}

void run_decode(const Params& p, Io& io) {
  const Weights& w = checked_weights(p, io, "model/decode");
  const std::vector<int32_t> tokens = tokens_of(io);
  Session s(w, p.cache);
  std::vector<uint16_t> prev_final;
  const int64_t V = w.cfg.vocab_size;
  for (int64_t t = 0; t < p.tokens; ++t) {
    const StepOut o = forward(w, s, {tokens[static_cast<std::size_t>(t)]});
    store(w, o, t, 1, p.tokens, io);
    if (p.mtp && t >= 1) {  // token t is known: the MTP module runs at position t - 1
      const std::vector<float> m = mtp_forward(w, s, prev_final, {tokens[static_cast<std::size_t>(t)]}, t - 1);
      std::copy(m.begin(), m.end(), io.out[2].span<float>().begin() + (t - 1) * V);
    }
    prev_final = o.final_hidden;
  }
}

Case model_case(int64_t tokens, bool fp8 = false, CacheFmt cache = CacheFmt::bf16, bool mtp = false, bool no_q_lora = false,
               bool v3_latent = false) {
  Params p;
  p.tokens = tokens; p.fp8 = fp8; p.cache = cache; p.mtp = mtp; p.no_q_lora = no_q_lora; p.v3_latent = v3_latent;
  p.config();
  return make_case(p);
}

std::vector<Case> eval_cases() {
  // One token; a prompt inside one cache page; one crossing a page (64 tokens); FP8-stored
  // projections; the exact cache; the MTP module; the plain wq projection; FlashMLA's FP8 latent
  // cache at V3's cached width (512 + 64).
  return {model_case(1), model_case(9), model_case(70), model_case(12, true), model_case(12, false, CacheFmt::f64),
          model_case(12, false, CacheFmt::bf16, true), model_case(12, true, CacheFmt::bf16, true), model_case(7, false, CacheFmt::bf16, false, true),
          model_case(12, false, CacheFmt::fp8, true, false, true)};
}

}  // namespace

void register_component() {
  Component c;
  c.name = "model";
  c.description = "full V3-architecture forward (MLA, dense and MoE layers, head, MTP) of a seeded checkpoint: prefill vs step-by-step decode";
  c.eval_cases = eval_cases;
  c.perf_cases = [] { return std::vector<Case>{}; };
  bind_case_hooks<Params>(c);
  Registry::instance().add(std::move(c));

  add_reference_variants(
      "model", "CPU reference: prefill, one forward over the prompt (reference/model.cpp)",
      [](const Case& k, Io& io) { run_prefill(k.as<Params>(), io); },
      "threads split output rows and (token, head) pairs; every output is one fixed-order FP64 sum");
  Variant v;
  v.component = "model";
  v.name = "decode";
  v.description = "CPU reference, one token per forward over the paged latent cache (and the MTP module one position behind)";
  v.prepare = [](const Case& k, Io& io) { return make_cpu_runner([k, &io] { run_decode(k.as<Params>(), io); }); };
  v.tolerances["*"] = Tolerance::bit_exact(
      "every output is a fixed-order FP64 sum per token over the same cached values, whether the tokens come "
      "together or one by one");
  Registry::instance().add(std::move(v));
}

}  // namespace dsv3::model

void dsv3_register_model_ref() { dsv3::model::register_component(); }
