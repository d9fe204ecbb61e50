// The tiny LM's corpus (the Debian package fortunes) and its training study: both recipes per seed,
// the loss curves, the relative FP8 - BF16 gap, the MTP acceptance (fp8_train_lm.hpp).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>

#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/fp8_train_lm.hpp"

namespace dsv3::fp8train {

std::filesystem::path default_corpus_dir() {
  if (const char* env = std::getenv("DSV3_CORPUS_DIR"); env && *env) return env;
  return "/usr/share/games/fortunes";
}

Corpus load_corpus(const std::filesystem::path& dir_in) {
  const std::filesystem::path dir = dir_in.empty() ? default_corpus_dir() : dir_in;
  const std::string install = " (the tiny LM trains on the Debian package 'fortunes': apt-get install fortunes, "
                              "which scripts/setup.sh does; or set DSV3_CORPUS_DIR to a directory of fortune files)";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw InputError("corpus directory " + dir.string() + " not found" + install);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && !e.is_symlink() && !e.path().has_extension()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Corpus c;
  c.source = "fortunes (" + dir.string() + ", " + std::to_string(files.size()) + " files)";
  int64_t index = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw InputError("corpus file " + f.string() + " could not be read");
    if (text.find('\0') != std::string::npos) throw InputError("corpus file " + f.string() + " is corrupt: it holds NUL bytes");
    if (text.size() > 0 && text.find("\n%\n") == std::string::npos)
      throw InputError("corpus file " + f.string() + " is corrupt: no '%' line separates its fortunes");
    std::size_t at = 0;
    while (at < text.size()) {  // one fortune, with its separator
      std::size_t end = text.find("\n%\n", at);
      end = end == std::string::npos ? text.size() : end + 3;
      auto& dst = index % 10 == 9 ? c.heldout : c.train;
      dst.insert(dst.end(), text.begin() + static_cast<std::ptrdiff_t>(at), text.begin() + static_cast<std::ptrdiff_t>(end));
      at = end;
      ++index;
    }
  }
  if (c.train.size() < 4096 || c.heldout.size() < 4096)
    throw InputError("corpus directory " + dir.string() + " holds too little text (" + std::to_string(c.train.size() + c.heldout.size()) +
                     " bytes in " + std::to_string(files.size()) + " files)" + install);
  c.source += ", " + std::to_string(index) + " fortunes, " + std::to_string(c.train.size()) + " training and " +
              std::to_string(c.heldout.size()) + " held-out bytes";
  return c;
}

namespace {

nlohmann::json eval_json(const EvalResult& e) {
  return {{"heldout_main", e.loss_main}, {"heldout_mtp", e.loss_mtp}, {"mtp_acceptance", e.mtp_acceptance},
          {"mtp_acceptance_t1", e.mtp_acceptance_t1}, {"mtp_acceptance_t1_expected", e.mtp_acceptance_t1_expected},
          {"main_accuracy", e.main_accuracy}};
}

// Mean of the training main loss over the last tenth of the steps (at least one).
double tail_mean(const TrainResult& r) {
  const std::size_t n = std::max<std::size_t>(1, r.log.size() / 10);
  double s = 0;
  for (std::size_t i = r.log.size() - n; i < r.log.size(); ++i) s += r.log[i].train_main;
  return s / static_cast<double>(n);
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {  // sample standard deviation; 0 for one value
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

}  // namespace

nlohmann::json lm_training_study(bool quick) {
  const Corpus corpus = load_corpus();
  const LmConfig mc;
  TrainConfig base;
  base.steps = quick ? 60 : 300;  // 300 x 512 tokens: the held-out loss is within 1% of its 500-step value
  base.eval_every = quick ? 20 : 25;
  const std::vector<uint64_t> seeds = quick ? std::vector<uint64_t>{1} : std::vector<uint64_t>{1, 2, 3};
  nlohmann::json rows = nlohmann::json::array();
  std::vector<double> train_gaps, heldout_gaps, accept[2], accept_t1[2];
  for (uint64_t seed : seeds) {
    TrainResult res[2];
    for (Recipe r : {Recipe::bf16, Recipe::fp8}) {
      TrainConfig t = base;
      t.recipe = r;
      t.seed = seed;
      std::filesystem::path weights;
      if (!study_artifact_dir().empty() && seed == seeds.front())  // one model per recipe for the MTP issue
        weights = study_artifact_dir() / ("tiny_lm_" + std::string(recipe_name(r)) + "_seed" + std::to_string(seed) + ".safetensors");
      const TrainResult tr = train_lm(mc, t, corpus, &std::cerr, weights);
      for (const StepLog& s : tr.log) {
        nlohmann::json row = {{"kind", "step"}, {"recipe", recipe_name(r)}, {"seed", seed}, {"step", s.step}, {"lr", s.lr},
                              {"train_loss", s.train_loss}, {"train_main", s.train_main}, {"train_mtp", s.train_mtp},
                              {"skipped", s.skipped}};
        if (s.evaluated) row.update(eval_json(s.heldout));
        rows.push_back(row);
      }
      nlohmann::json run = {{"kind", "run"}, {"recipe", recipe_name(r)}, {"seed", seed}, {"steps", t.steps},
                            {"tokens", tr.tokens}, {"seconds", tr.seconds}, {"tokens_per_s", tr.tokens / tr.seconds},
                            {"skipped_steps", std::count_if(tr.log.begin(), tr.log.end(), [](const StepLog& s) { return s.skipped; })},
                            {"weights", weights.empty() ? nlohmann::json(nullptr) : nlohmann::json(weights.filename().string())},
                            {"corpus", corpus.source},
                            {"model", {{"dim", mc.dim}, {"inter", mc.inter}, {"layers", mc.layers}, {"seq", mc.seq}, {"batch", mc.batch},
                                       {"mtp_lambda", mc.mtp_lambda}, {"lr", t.lr}, {"warmup", t.warmup}}}};
      run.update(eval_json(tr.final_eval));
      rows.push_back(run);
      res[r == Recipe::fp8 ? 1 : 0] = tr;
    }
    const double tg = (tail_mean(res[1]) - tail_mean(res[0])) / tail_mean(res[0]);
    const double hg = (res[1].final_eval.loss_main - res[0].final_eval.loss_main) / res[0].final_eval.loss_main;
    train_gaps.push_back(tg);
    heldout_gaps.push_back(hg);
    accept[0].push_back(res[0].final_eval.mtp_acceptance);
    accept[1].push_back(res[1].final_eval.mtp_acceptance);
    accept_t1[0].push_back(res[0].final_eval.mtp_acceptance_t1_expected);
    accept_t1[1].push_back(res[1].final_eval.mtp_acceptance_t1_expected);
    rows.push_back({{"kind", "gap"}, {"seed", seed}, {"train_gap_rel", tg}, {"heldout_gap_rel", hg},
                    {"last_steps", std::max<std::size_t>(1, res[0].log.size() / 10)}});
  }
  rows.push_back({{"kind", "summary"}, {"seeds", seeds.size()}, {"steps", base.steps}, {"train_gap_rel_mean", mean(train_gaps)},
                  {"train_gap_rel_std", stddev(train_gaps)}, {"heldout_gap_rel_mean", mean(heldout_gaps)},
                  {"heldout_gap_rel_std", stddev(heldout_gaps)}, {"mtp_acceptance_bf16", mean(accept[0])},
                  {"mtp_acceptance_fp8", mean(accept[1])}, {"mtp_acceptance_t1_bf16", mean(accept_t1[0])},
                  {"mtp_acceptance_t1_fp8", mean(accept_t1[1])}, {"v3_loss_gap_claim", "< 0.25% (V3-TR §3.3, Fig. 10)"},
                  {"v3_acceptance_claim", "85-90% (V3-TR §5.4.3)"}});
  return rows;
}

}  // namespace dsv3::fp8train
