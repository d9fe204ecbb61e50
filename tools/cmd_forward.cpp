// dsv3 forward: the full V3-architecture forward (reference/model.hpp) of a Hugging Face checkpoint
// (one safetensors file or a directory of shards; the first --layers blocks when the whole model
// does not fit) or of a seeded random checkpoint: prefill of a prompt, then (with --decode) the
// same tokens one at a time, which must give the same logits bit for bit, and the MTP module's
// draft when the checkpoint has it (one note line when the config has an MTP module that the
// checkpoint lacks, or that --layers leaves out). Prints each layer's hidden-state RMS at the last
// token, the top tokens and the times. --save-checkpoint writes the seeded checkpoint as shards
// (the MTP layer in its own), so a checkpoint directory can be made and edited for tests.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/json_file.hpp"
#include "reference/model.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

std::vector<int32_t> parse_tokens(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw InputError("--tokens: '" + item + "' is not an integer token id (expected a comma-separated list such as 1,2,3)");
    }
  }
  if (out.empty()) throw InputError("--tokens: no token ids given");
  return out;
}

std::vector<int32_t> top_k(const float* logits, int64_t V, int k) {
  std::vector<int32_t> idx(static_cast<std::size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  const auto n = static_cast<std::ptrdiff_t>(std::min<int64_t>(k, V));
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  idx.resize(static_cast<std::size_t>(n));
  return idx;
}

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

double secs(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The seeded checkpoint's tensors as two shards in `dir`: the main model, and layer
// num_hidden_layers (the MTP module; that shard is written only when the config has it).
void save_shards(const ModelConfig& cfg, const std::vector<Tensor>& tensors, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const std::string mtp_prefix = "model.layers." + std::to_string(cfg.n_layers) + ".";
  std::vector<const Tensor*> main, mtp;
  for (const Tensor& t : tensors) (t.name().compare(0, mtp_prefix.size(), mtp_prefix) == 0 ? mtp : main).push_back(&t);
  write_safetensors(dir / "model-00001-of-00002.safetensors", main);
  if (!mtp.empty()) write_safetensors(dir / "model-00002-of-00002.safetensors", mtp);
  std::printf("wrote %zu tensors to %s (%zu in the MTP shard)\n", main.size() + mtp.size(), dir.string().c_str(), mtp.size());
}

}  // namespace

void add_forward(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "forward",
      "Run the full V3-architecture forward (docs/mtp.md) of a Hugging Face checkpoint or of seeded random weights: "
      "prefill, optionally step-by-step decode (must equal prefill bit for bit), and the MTP draft");
  struct Opts {
    std::string checkpoint, model = "tiny-test", tokens, cache = "bf16", json, save;
    int64_t layers = -1, prompt = 8;
    uint64_t seed = 1;
    bool decode = false, mtp = false, fp8 = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("checkpoint", o->checkpoint,
                  "A .safetensors file or a directory of shards with Hugging Face names (model.layers.N.*, FP8 with "
                  "weight_scale_inv); omit for a seeded random checkpoint of --model");
  cmd->add_option("--model", o->model, "Model config id (datasets/models)")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Run the first N main layers only (default: all; the MTP module needs all)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tokens", o->tokens, "Prompt token ids, comma-separated (default: --prompt seeded ids)");
  cmd->add_option("--prompt", o->prompt, "Length of the seeded prompt when --tokens is not given")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "Seed of the prompt (and of random weights)")->capture_default_str();
  cmd->add_option("--cache", o->cache, "Latent cache storage: bf16 (model.py's), f64 (exact) or fp8 (FlashMLA's, V3's 512 + 64 width)")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "f64", "fp8"}));
  cmd->add_flag("--decode", o->decode, "Also run the prompt one token at a time; exit 1 if any logit differs from the prefill");
  cmd->add_flag("--mtp", o->mtp,
                "Force the config's mtp_depth to 1: random weights include the depth-1 MTP module, a checkpoint is expected "
                "to hold it as layer num_hidden_layers (a note says when it does not)");
  cmd->add_flag("--fp8", o->fp8, "Random weights: store the projections as F8_E4M3 with 128x128 scales");
  cmd->add_option("--json", o->json, "Also write the result as JSON (atomically)");
  cmd->add_option("--save-checkpoint", o->save,
                  "Random weights: also write them to this directory as Hugging Face-named shards, "
                  "model-00001-of-00002.safetensors (the main model) and model-00002-of-00002.safetensors (the MTP layer, with --mtp)");
  cmd->footer("Exit status: 0 on success, 1 when --decode differs from the prefill, 2 on bad input (a tensor whose shape "
              "disagrees with the config is named with both shapes).");
  cmd->callback([o] {
    ModelConfig cfg = find_model(o->model);
    if (o->mtp) cfg.mtp_depth = 1;
    if (!o->save.empty() && !o->checkpoint.empty()) throw InputError("--save-checkpoint writes random weights; it cannot be given with a checkpoint");
    const auto t0 = std::chrono::steady_clock::now();
    model::Checkpoint ck;
    if (o->checkpoint.empty()) {
      std::vector<Tensor> tensors = model::random_checkpoint(cfg, o->seed, o->fp8);
      if (!o->save.empty()) save_shards(cfg, tensors, o->save);
      ck.add(SafetensorsFile{"(random " + cfg.id + " seed " + std::to_string(o->seed) + ")", {}, std::move(tensors)});
    } else {
      ck = model::open_checkpoint(o->checkpoint, o->layers);  // only the layers asked for are read
    }
    const model::Weights w = model::load_weights(cfg, ck, o->layers);
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<int32_t> tokens;
    if (!o->tokens.empty()) {
      tokens = parse_tokens(o->tokens);
    } else {
      Rng rng(o->seed);
      for (int64_t i = 0; i < o->prompt; ++i) tokens.push_back(static_cast<int32_t>(rng.next() % static_cast<uint64_t>(cfg.vocab_size)));
    }
    const auto T = static_cast<int64_t>(tokens.size());
    const model::CacheFmt fmt = o->cache == "f64" ? model::CacheFmt::f64 : o->cache == "fp8" ? model::CacheFmt::fp8 : model::CacheFmt::bf16;
    model::Session s(w, fmt);
    const model::StepOut out = model::forward(w, s, tokens);
    const auto t2 = std::chrono::steady_clock::now();
    const int64_t V = cfg.vocab_size, D = cfg.dim;
    std::printf("model %s: %lld of %lld layers%s from %s (%.2f s); prompt of %lld tokens, cache %s\n", cfg.id.c_str(),
                static_cast<long long>(w.layers), static_cast<long long>(cfg.n_layers), w.mtp ? " + MTP" : "",
                o->checkpoint.empty() ? "random weights" : o->checkpoint.c_str(), secs(t0, t1), static_cast<long long>(T), o->cache.c_str());
    if (!w.mtp_note.empty()) std::printf("note: %s\n", w.mtp_note.c_str());
    nlohmann::json layers = nlohmann::json::array();
    for (int64_t l = 0; l <= w.layers; ++l) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) {
        const double v = bf16_to_f32(out.hidden[static_cast<std::size_t>((l * T + T - 1) * D + i)]);
        ss += v * v;
      }
      const double rms = std::sqrt(ss / static_cast<double>(D));
      std::printf("  %-10s hidden RMS at the last token %.6g\n", l == 0 ? "embedding" : ("layer " + std::to_string(l - 1)).c_str(), rms);
      layers.push_back(rms);
    }
    const float* last = &out.logits[static_cast<std::size_t>((T - 1) * V)];
    const std::vector<int32_t> top = top_k(last, V, 5);
    std::printf("prefill %.3f s (%.1f ms/token); top tokens after the prompt: %s\n", secs(t1, t2), 1e3 * secs(t1, t2) / static_cast<double>(T),
                join(top).c_str());
    nlohmann::json result = {{"model", cfg.id}, {"checkpoint", o->checkpoint}, {"layers", w.layers}, {"tokens", tokens}, {"cache", o->cache},
                             {"hidden_rms_last_token", layers}, {"top_tokens", top}, {"seconds_load", secs(t0, t1)},
                             {"seconds_prefill", secs(t1, t2)}};
    bool same = true;
    if (o->decode) {
      model::Session d(w, fmt);
      std::size_t differ = 0;
      const auto t3 = std::chrono::steady_clock::now();
      for (int64_t t = 0; t < T; ++t) {
        const model::StepOut step = model::forward(w, d, {tokens[static_cast<std::size_t>(t)]});
        differ += static_cast<std::size_t>(std::memcmp(step.logits.data(), &out.logits[static_cast<std::size_t>(t * V)], static_cast<std::size_t>(V) * 4) != 0);
      }
      const auto t4 = std::chrono::steady_clock::now();
      same = differ == 0;
      std::printf("decode %.3f s (%.1f ms/token): logits %s\n", secs(t3, t4), 1e3 * secs(t3, t4) / static_cast<double>(T),
                  same ? "identical to the prefill at every position" : (std::to_string(differ) + " positions DIFFER from the prefill").c_str());
      result.update({{"seconds_decode", secs(t3, t4)}, {"decode_identical", same}});
    }
    if (w.mtp && T >= 2) {  // the MTP module over positions 0 .. T-2 (its own cache), its last row
      const std::vector<uint16_t> hf(out.final_hidden.begin(), out.final_hidden.end() - D);
      const std::vector<float> m = model::mtp_forward(w, s, hf, std::vector<int32_t>(tokens.begin() + 1, tokens.end()), 0);
      const std::vector<int32_t> draft = top_k(&m[static_cast<std::size_t>((T - 2) * V)], V, 5);
      std::printf("MTP at position %lld (given token %d): top drafts for the token after next: %s\n", static_cast<long long>(T - 2),
                  tokens.back(), join(draft).c_str());
      result["mtp_top_tokens"] = draft;
    }
    if (!w.mtp_note.empty()) result["mtp_note"] = w.mtp_note;
    if (!o->json.empty()) write_json_atomic(o->json, result);
    if (!same) throw Exit{1};
  });
}

}  // namespace dsv3::cli
