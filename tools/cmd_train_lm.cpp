// dsv3 train-lm: trains the tiny byte-level LM with its MTP module (reference/fp8_train_lm.hpp) in
// the BF16 or the FP8 recipe on the fortunes corpus, prints progress, and writes the weights
// (safetensors, Hugging Face DeepSeek-V3 names) and the per-step log (JSON) when asked.
#include <cstdio>
#include <iostream>

#include "core/json_file.hpp"
#include "reference/fp8_train_lm.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

void add_train_lm(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train-lm",
      "Train the tiny byte-level LM with one MTP module (docs/fp8-train.md) in the BF16 or FP8 recipe on the "
      "fortunes corpus; print held-out loss and MTP acceptance as it goes");
  struct Opts {
    std::string recipe = "fp8", corpus, weights, json;
    fp8train::LmConfig m;
    fp8train::TrainConfig t;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--recipe", o->recipe, "bf16 or fp8: the recipe of the MLPs and eh_proj (fp8_train.hpp)")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "fp8"}));
  cmd->add_option("--steps", o->t.steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->t.seed, "Seed of the initial weights and of the batches")->capture_default_str();
  cmd->add_option("--lr", o->t.lr, "Peak learning rate (linear warmup, cosine to a tenth)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->t.warmup, "Warmup steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--eval-every", o->t.eval_every, "Held-out evaluation every N steps (and after the last)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dim", o->m.dim, "Model width d")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--inter", o->m.inter, "SwiGLU intermediate size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--layers", o->m.layers, "Main-model blocks (the MTP block comes on top)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->m.seq, "Positions per sequence")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--batch", o->m.batch, "Sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--corpus", o->corpus, "Directory of fortune files (default: DSV3_CORPUS_DIR or /usr/share/games/fortunes)");
  cmd->add_option("--weights", o->weights, "Write the trained weights here (safetensors, BF16, HF names)");
  cmd->add_option("--json", o->json, "Write the per-step log and the final evaluation here (JSON, atomically)");
  cmd->footer("Exit status: 0 on success, 2 on bad input (a missing or corrupt corpus names the problem).");
  cmd->callback([o] {
    o->t.recipe = fp8train::recipe_from_name(o->recipe);
    const fp8train::Corpus corpus = fp8train::load_corpus(o->corpus);
    std::cout << "corpus: " << corpus.source << "\n" << std::flush;
    const fp8train::TrainResult r = fp8train::train_lm(o->m, o->t, corpus, &std::cout, o->weights);
    const fp8train::EvalResult& e = r.final_eval;
    std::printf("done: %lld tokens in %.1f s (%.0f tokens/s); held-out loss %.4f, MTP loss %.4f, MTP acceptance %.3f "
                "greedy, %.3f at temperature 1, next-byte accuracy %.3f\n",
                static_cast<long long>(r.tokens), r.seconds, static_cast<double>(r.tokens) / r.seconds, e.loss_main, e.loss_mtp,
                e.mtp_acceptance, e.mtp_acceptance_t1_expected, e.main_accuracy);
    if (!o->weights.empty()) std::printf("weights: %s\n", o->weights.c_str());
    if (!o->json.empty()) {
      nlohmann::json steps = nlohmann::json::array();
      for (const auto& s : r.log) {
        nlohmann::json row = {{"step", s.step}, {"lr", s.lr}, {"train_loss", s.train_loss}, {"train_main", s.train_main},
                              {"train_mtp", s.train_mtp}, {"skipped", s.skipped}};
        if (s.evaluated)
          row.update({{"heldout_main", s.heldout.loss_main}, {"heldout_mtp", s.heldout.loss_mtp},
                      {"mtp_acceptance", s.heldout.mtp_acceptance},
                      {"mtp_acceptance_t1", s.heldout.mtp_acceptance_t1}, {"mtp_acceptance_t1_expected", s.heldout.mtp_acceptance_t1_expected},
                      {"main_accuracy", s.heldout.main_accuracy}});
        steps.push_back(row);
      }
      write_json_atomic(o->json, {{"recipe", o->recipe}, {"seed", o->t.seed}, {"corpus", corpus.source}, {"tokens", r.tokens},
                                  {"seconds", r.seconds}, {"steps", steps}});
    }
  });
}

}  // namespace dsv3::cli
