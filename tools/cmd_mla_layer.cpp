// dsv3 mla-layer: one MLA layer through the FP64 references, from a Hugging Face checkpoint
// shard (reference/mla_checkpoint.hpp) or seeded random weights: runs the naive (K, V
// materialised) and absorbed (latent) forms on seeded hidden states and reports their agreement,
// which must be FP64 rounding (1e-12 of the output's largest magnitude), and the time of each.
#include <chrono>
#include <cstdio>

#include "core/fill.hpp"
#include "core/json_file.hpp"
#include "core/model_config.hpp"
#include "reference/mla_checkpoint.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

void add_mla_layer(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "mla-layer",
      "Run one MLA layer (FP64, naive and absorbed forms) from a safetensors checkpoint or random weights; "
      "exit 1 when the forms disagree beyond FP64 rounding");
  struct Opts {
    std::string checkpoint, model = "deepseek-v3-671b", json;
    int64_t layer = 0, tokens = 16;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("checkpoint", o->checkpoint,
                  "safetensors file holding model.layers.<L>.self_attn.* (HF names; FP8 with weight_scale_inv or BF16); "
                  "omit for seeded random weights");
  cmd->add_option("--model", o->model, "Model config id (datasets/models) giving the layer's dims")->capture_default_str();
  cmd->add_option("--layer", o->layer, "Layer index L in the tensor names")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--tokens", o->tokens, "Tokens S of the causal prefill (positions 0..S-1)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "Seed of the hidden states (and of random weights)")->capture_default_str();
  cmd->add_option("--json", o->json, "Also write the result as JSON (atomically)");
  cmd->callback([o] {
    const ModelConfig m = find_model(o->model);
    const mla::LayerDims d = mla::LayerDims::from(m);
    const auto t0 = std::chrono::steady_clock::now();
    const mla::LayerWeights w = o->checkpoint.empty() ? mla::random_layer_weights(d, o->seed)
                                                      : mla::load_layer_weights(read_safetensors(o->checkpoint), o->layer, d);
    const auto t1 = std::chrono::steady_clock::now();
    mla::MatrixD h(o->tokens, d.dim);
    const std::vector<float> g = draw(Dist::normal, o->seed, h.size(), d.dim);
    for (Eigen::Index i = 0; i < h.size(); ++i) h.data()[i] = bf16_to_f32(f32_to_bf16(g[static_cast<std::size_t>(i)]));
    const mla::MatrixD naive = mla::layer_forward(d, w, h, mla::Form::naive);
    const auto t2 = std::chrono::steady_clock::now();
    const mla::MatrixD absorbed = mla::layer_forward(d, w, h, mla::Form::absorbed);
    const auto t3 = std::chrono::steady_clock::now();
    const double scale = naive.cwiseAbs().maxCoeff(), diff = (naive - absorbed).cwiseAbs().maxCoeff();
    const double rel = scale > 0 ? diff / scale : diff;
    const bool agree = rel <= 1e-12;
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::printf("model %s, layer %lld (%s), %lld tokens: output rms %.6g, max |u| %.6g\n", m.id.c_str(),
                static_cast<long long>(o->layer), o->checkpoint.empty() ? "random weights" : o->checkpoint.c_str(),
                static_cast<long long>(o->tokens), std::sqrt(naive.squaredNorm() / static_cast<double>(naive.size())), scale);
    std::printf("naive vs absorbed: max |diff| / max |u| = %.3g (FP64 rounding bound 1e-12): %s\n", rel,
                agree ? "agree" : "DISAGREE");
    std::printf("time: weights %.2f s, naive %.3f s, absorbed %.3f s\n", secs(t0, t1), secs(t1, t2), secs(t2, t3));
    if (!o->json.empty())
      write_json_atomic(o->json, {{"model", m.id}, {"layer", o->layer}, {"checkpoint", o->checkpoint}, {"tokens", o->tokens},
                                  {"seed", o->seed}, {"max_abs_output", scale}, {"naive_vs_absorbed_rel", rel},
                                  {"agree", agree}, {"seconds_naive", secs(t1, t2)}, {"seconds_absorbed", secs(t2, t3)}});
    if (!agree) throw Exit{1};
  });
}

}  // namespace dsv3::cli
