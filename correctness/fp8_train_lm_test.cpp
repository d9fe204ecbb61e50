// The tiny LM of reference/fp8_train_lm.hpp: its corpus (and the errors for a missing or corrupt
// one), its gradients against finite differences, and a short training run in both recipes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "core/json_file.hpp"
#include "core/safetensors.hpp"
#include "reference/fp8_train_lm.hpp"

namespace dsv3::fp8train {
namespace {

const Corpus& corpus() {
  static const Corpus c = load_corpus();
  return c;
}

TEST(TinyLmCorpus, SplitsEveryTenthFortuneOff) {
  const Corpus& c = corpus();
  const double share = static_cast<double>(c.heldout.size()) / static_cast<double>(c.train.size() + c.heldout.size());
  EXPECT_GT(c.train.size(), 1000000u);  // fortunes ships about 2.5 MB of text
  EXPECT_NEAR(share, 0.1, 0.03);        // every tenth fortune, of varying length
}

TEST(TinyLmCorpus, MissingOrCorruptCorpusIsAClearError) {
  const auto dir = std::filesystem::temp_directory_path() / ("dsv3_corpus_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  try {
    load_corpus(dir);
    FAIL() << "a missing corpus was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fortunes"), std::string::npos) << e.what();  // names the package
  }
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "quotes") << std::string("a\0b\n%\n", 6);
  try {
    load_corpus(dir);
    FAIL() << "a corpus file with NUL bytes was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "quotes") << std::string(4000, 'x') + "\n";
  try {
    load_corpus(dir);
    FAIL() << "a corpus file without '%' separators was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("quotes"), std::string::npos) << e.what();  // names the file
  }
  std::ofstream(dir / "quotes") << "one fortune\n%\nanother\n%\n";
  EXPECT_THROW(load_corpus(dir), InputError);  // too little text
  std::filesystem::remove_all(dir);
}

Batch first_windows(const LmConfig& c) {
  Batch b;
  for (int64_t s = 0; s < c.batch; ++s)
    for (int64_t i = 0; i <= c.seq; ++i) b.tokens.push_back(corpus().train[static_cast<std::size_t>(1000 * s + i)]);
  return b;
}

// Per parameter tensor, the loss's derivative along its own gradient g equals |g|: central
// differences over a step that changes the loss by about 1e-2, far above the BF16 rounding noise
// of the activations (about 1e-5 over these 62 positions); a missing or wrong path into a tensor
// (the MTP's gradient into the main model, the shared head, the embedding's two uses) moves it by
// more than the 5% allowed.
TEST(TinyLm, GradientsMatchFiniteDifferences) {
  LmConfig c;
  c.dim = 128; c.inter = 128; c.layers = 1; c.seq = 32; c.batch = 2;
  Lm m = init_lm(c, 3);
  const Batch b = first_windows(c);
  run_pass(m, Recipe::bf16, b, true);
  std::vector<Param*> all = m.matrices();
  for (Param* p : m.vectors()) all.push_back(p);
  for (Param* p : all) {
    double norm = 0;
    for (float g : p->grad) norm += static_cast<double>(g) * g;
    norm = std::sqrt(norm);
    ASSERT_GT(norm, 0) << p->name;
    const double eps = 1e-2 / norm;  // loss change ~ eps |g| = 1e-2
    const std::vector<float> w0 = p->w, g = p->grad;
    auto loss_at = [&](double t) {
      for (std::size_t i = 0; i < w0.size(); ++i) p->w[i] = static_cast<float>(w0[i] + t * g[i] / norm);
      const double l = run_pass(m, Recipe::bf16, b, false).loss;
      p->w = w0;
      return l;
    };
    const double fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    EXPECT_NEAR(fd / norm, 1.0, 0.05) << p->name << ": directional derivative " << fd << ", |grad| " << norm;
  }
}

// Byte unigram cross-entropy of the held-out text under the training text's frequencies: what a
// model that learned no context reaches.
double unigram_entropy() {
  std::map<int, double> f;
  for (uint8_t t : corpus().train) f[t] += 1;
  double h = 0;
  for (uint8_t t : corpus().heldout) h -= std::log((f.count(t) ? f[t] : 0.5) / static_cast<double>(corpus().train.size()));
  return h / static_cast<double>(corpus().heldout.size());
}

// The ctest version of the training study: 60 steps in each recipe from the same seed. Both beat
// the unigram baseline (they learned context), and FP8's held-out loss is within 3% of BF16's
// (the study measures the gap properly over more steps and seeds: docs/fp8-train.md).
TEST(TinyLm, ShortRunLearnsInBothRecipes) {
  LmConfig c;
  c.layers = 1;
  c.batch = 8;
  TrainConfig t;
  t.steps = 60;
  t.eval_every = 60;
  t.eval_windows = 16;
  double loss[2];
  for (Recipe r : {Recipe::bf16, Recipe::fp8}) {
    t.recipe = r;
    const TrainResult res = train_lm(c, t, corpus(), nullptr);
    ASSERT_EQ(res.log.size(), 60u);
    EXPECT_LT(res.log.back().train_main, res.log.front().train_main - 1.0) << recipe_name(r);
    for (const StepLog& s : res.log) EXPECT_FALSE(s.skipped);
    loss[r == Recipe::fp8 ? 1 : 0] = res.final_eval.loss_main;
  }
  const double base = unigram_entropy();
  EXPECT_LT(loss[0], base) << "BF16 held-out loss vs unigram " << base;
  EXPECT_LT(loss[1], base) << "FP8 held-out loss vs unigram " << base;
  EXPECT_NEAR(loss[1] / loss[0], 1.0, 0.03);
}

// The trained weights as the MTP issue loads them: Hugging Face DeepSeek-V3 names and shapes
// (reference/fp8_train_lm.hpp's table), BF16, the shared head written twice with the same bytes,
// and the run's recipe, seed and config in the metadata.
TEST(TinyLm, WeightsAreWrittenWithHuggingFaceNames) {
  LmConfig c;
  c.layers = 2;
  c.batch = 2;
  TrainConfig t;
  t.recipe = Recipe::fp8;
  t.steps = 2;
  t.eval_every = 2;
  t.eval_windows = 2;
  const auto path = std::filesystem::temp_directory_path() / ("dsv3_tiny_lm_" + std::to_string(::getpid()) + ".safetensors");
  train_lm(c, t, corpus(), nullptr, path);
  const SafetensorsFile f = read_safetensors(path);
  std::filesystem::remove(path);
  const int64_t V = c.vocab, d = c.dim, F = c.inter;
  std::map<std::string, Shape> want = {{"model.embed_tokens.weight", {V, d}}, {"model.norm.weight", {d}}, {"lm_head.weight", {V, d}}};
  for (int64_t l = 0; l <= c.layers; ++l) {  // layer c.layers is the MTP module's block
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    want[pre + "post_attention_layernorm.weight"] = {d};
    want[pre + "mlp.gate_proj.weight"] = {F, d};
    want[pre + "mlp.up_proj.weight"] = {F, d};
    want[pre + "mlp.down_proj.weight"] = {d, F};
  }
  const std::string mtp = "model.layers." + std::to_string(c.layers) + ".";
  want[mtp + "enorm.weight"] = {d};
  want[mtp + "hnorm.weight"] = {d};
  want[mtp + "eh_proj.weight"] = {d, 2 * d};
  want[mtp + "shared_head.norm.weight"] = {d};
  want[mtp + "shared_head.head.weight"] = {V, d};
  std::map<std::string, Shape> got;
  for (const Tensor& x : f.tensors) {
    EXPECT_EQ(x.dtype(), DType::bf16) << x.name();
    got[x.name()] = x.shape();
  }
  EXPECT_EQ(got, want);
  const Tensor &head = f.get("lm_head.weight"), &copy = f.get(mtp + "shared_head.head.weight");
  EXPECT_EQ(std::memcmp(head.raw(), copy.raw(), head.nbytes()), 0) << "the shared head's two copies differ";
  EXPECT_EQ(f.metadata.at("recipe"), "fp8");
  EXPECT_EQ(f.metadata.at("seed"), "1");
  const nlohmann::json cfg = nlohmann::json::parse(f.metadata.at("config"));
  EXPECT_EQ(cfg.at("layers"), c.layers);
  EXPECT_EQ(cfg.at("num_nextn_predict_layers"), 1);
}

}  // namespace
}  // namespace dsv3::fp8train
