// Tests of the KV-cache calculator (core/kv_cache.hpp) on the shipped model configs: the golden
// numbers of v3-facts §11 asserted exactly (G1-G5 ISCA Table 1, G32 FlashMLA's FP8 latent cache),
// V2 / V2-Lite (v3-facts §2.3), bytes per sequence, the baseline rule, "n/a" for the FP8 format
// where it does not apply, rejected context lengths, and the bundle study rows.
#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <stdexcept>

#include "core/kv_cache.hpp"

namespace {

using dsv3::find_model;
using dsv3::KvCacheFigures;
using dsv3::KvCacheTable;

const KvCacheFigures& figures(const KvCacheTable& t, const std::string& id) {
  for (const auto& f : t.models)
    if (f.id == id) return f;
  throw std::runtime_error("no figures for " + id);
}

KvCacheTable isca_table() {
  return dsv3::kv_cache_table({find_model("deepseek-v3-671b"), find_model("qwen2.5-72b"), find_model("llama-3.1-405b"),
                               find_model("deepseek-v2-236b"), find_model("deepseek-v2-lite-16b")});
}

TEST(KvCache, IscaTable1BytesPerToken) {
  const KvCacheTable t = isca_table();
  EXPECT_EQ(t.baseline, "deepseek-v3-671b");
  const auto& v3 = figures(t, "deepseek-v3-671b");
  EXPECT_EQ(v3.elems_per_token_per_layer, 576);           // G1
  EXPECT_EQ(v3.bf16_bytes_per_token_per_layer, 1152);     // v3-facts §2.2
  EXPECT_EQ(v3.bf16_bytes_per_token, 70272);              // G2
  EXPECT_EQ(v3.ratio_to_baseline, 1.0);
  EXPECT_EQ(figures(t, "qwen2.5-72b").bf16_bytes_per_token, 327680);     // G3
  EXPECT_EQ(figures(t, "llama-3.1-405b").bf16_bytes_per_token, 516096);  // G4
  EXPECT_EQ(figures(t, "qwen2.5-72b").elems_per_token_per_layer, 2048);  // 2 * 8 * 128
  EXPECT_EQ(figures(t, "deepseek-v2-236b").bf16_bytes_per_token, 69120);     // v3-facts §2.3
  EXPECT_EQ(figures(t, "deepseek-v2-lite-16b").bf16_bytes_per_token, 31104);  // v3-facts §2.3
}

TEST(KvCache, IscaTable1Ratios) {
  const KvCacheTable t = isca_table();
  EXPECT_NEAR(figures(t, "qwen2.5-72b").ratio_to_baseline, 4.6630, 1e-4);     // G5; ISCA prints 4.66x
  EXPECT_NEAR(figures(t, "llama-3.1-405b").ratio_to_baseline, 7.3443, 1e-4);  // G5; ISCA prints 7.28x (§12 item 1)
  EXPECT_DOUBLE_EQ(figures(t, "qwen2.5-72b").ratio_to_baseline, 327680.0 / 70272.0);
}

TEST(KvCache, Fp8LatentCacheMatchesFlashMla) {
  const KvCacheTable t = isca_table();
  const auto& v3 = figures(t, "deepseek-v3-671b");
  ASSERT_TRUE(v3.fp8_latent_bytes_per_token_per_layer.has_value()) << v3.fp8_latent_na;
  EXPECT_EQ(*v3.fp8_latent_bytes_per_token_per_layer, 656);  // G32: 512 + 16 + 128
  EXPECT_EQ(*v3.fp8_latent_bytes_per_token, 40016);          // 656 * 61
  EXPECT_DOUBLE_EQ(v3.fp8_latent_ratio_to_bf16(), 656.0 / 1152.0);
  EXPECT_TRUE(v3.fp8_latent_na.empty());
  EXPECT_EQ(*figures(t, "deepseek-v2-236b").fp8_latent_bytes_per_token, 656 * 60);
  EXPECT_EQ(*figures(t, "deepseek-v2-lite-16b").fp8_latent_bytes_per_token, 656 * 27);
  EXPECT_EQ(dsv3::fp8_latent_bytes_per_token_per_layer(find_model("tiny-test")).value(), 128 + 4 + 32);
}

TEST(KvCache, Fp8LatentIsNotApplicableWithAReason) {
  const KvCacheTable t = isca_table();
  const auto& llama = figures(t, "llama-3.1-405b");
  EXPECT_FALSE(llama.fp8_latent_bytes_per_token.has_value());
  EXPECT_NE(llama.fp8_latent_na.find("gqa_dense"), std::string::npos) << llama.fp8_latent_na;
  EXPECT_EQ(llama.fp8_latent_ratio_to_bf16(), 0.0);

  dsv3::ModelConfig odd = find_model("deepseek-v3-671b");
  odd.kv_lora_rank = 200;  // not a multiple of the 128-value scale block
  std::string why;
  EXPECT_FALSE(dsv3::fp8_latent_bytes_per_token_per_layer(odd, &why).has_value());
  EXPECT_NE(why.find("kv_lora_rank 200 is not a multiple of 128"), std::string::npos) << why;
  const KvCacheTable t2 = dsv3::kv_cache_table({odd});  // n/a, not an error: the BF16 figures stay
  EXPECT_EQ(t2.models[0].bf16_bytes_per_token, (200 + 64) * 61 * 2);
  EXPECT_EQ(t2.models[0].fp8_latent_na, why);
}

TEST(KvCache, SequenceBytesAreBytesPerTokenTimesContext) {
  const auto& v3 = figures(isca_table(), "deepseek-v3-671b");
  EXPECT_EQ(dsv3::kv_cache_sequence_bytes(v3.bf16_bytes_per_token, 32768), 70272LL * 32768);
  EXPECT_EQ(dsv3::kv_cache_sequence_bytes(*v3.fp8_latent_bytes_per_token, 32768), 40016LL * 32768);
  EXPECT_EQ(dsv3::kv_cache_sequence_bytes(v3.bf16_bytes_per_token, 1), 70272);
  EXPECT_EQ(dsv3::kv_cache_default_contexts(), (std::vector<int64_t>{4096, 32768, 131072, 163840}));
}

TEST(KvCache, BadContextLengthsAreRejected) {
  const std::vector<dsv3::ModelConfig> v3{find_model("deepseek-v3-671b")};
  for (int64_t bad : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW((void)dsv3::kv_cache_sequence_bytes(70272, bad), std::invalid_argument);
    try {
      (void)dsv3::kv_cache_table(v3, {4096, bad});
      ADD_FAILURE() << "no error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("must be >= 1"), std::string::npos) << e.what();
    }
  }
  const int64_t huge = std::numeric_limits<int64_t>::max() / 70272 + 1;  // bytes overflow int64
  EXPECT_THROW((void)dsv3::kv_cache_sequence_bytes(70272, huge), std::invalid_argument);
  EXPECT_THROW((void)dsv3::kv_cache_table(v3, {huge}), std::invalid_argument);
  EXPECT_NO_THROW((void)dsv3::kv_cache_sequence_bytes(70272, huge - 1));
  EXPECT_THROW((void)dsv3::kv_cache_table(v3, {}), std::invalid_argument);
  EXPECT_THROW((void)dsv3::kv_cache_table({}), std::invalid_argument);
}

TEST(KvCache, BaselineIsV3ElseTheFirstModel) {
  const KvCacheTable t = dsv3::kv_cache_table({find_model("qwen2.5-72b"), find_model("llama-3.1-405b")});
  EXPECT_EQ(t.baseline, "qwen2.5-72b");
  EXPECT_EQ(figures(t, "qwen2.5-72b").ratio_to_baseline, 1.0);
  EXPECT_DOUBLE_EQ(figures(t, "llama-3.1-405b").ratio_to_baseline, 516096.0 / 327680.0);
  const KvCacheTable later = dsv3::kv_cache_table({find_model("qwen2.5-72b"), find_model("deepseek-v3-671b")});
  EXPECT_EQ(later.baseline, "deepseek-v3-671b");  // V3 wins wherever it is in the list
}

TEST(KvCache, StudyRowsCoverEveryModelFormatAndContext) {
  const nlohmann::json rows = dsv3::kv_cache_study_rows(true);
  ASSERT_TRUE(rows.is_array());
  EXPECT_EQ(rows, dsv3::kv_cache_study_rows(false));  // quick changes nothing
  const auto ids = dsv3::list_models();
  const size_t contexts = dsv3::kv_cache_default_contexts().size();
  size_t mla = 0;
  for (const auto& id : ids) mla += find_model(id).is_mla_moe();
  EXPECT_EQ(rows.size(), (ids.size() + mla) * contexts);  // bf16 for all, fp8_latent for MLA

  std::set<std::string> models;
  bool saw_v3_fp8 = false;
  for (const auto& r : rows) {
    models.insert(r.at("model").get<std::string>());
    EXPECT_EQ(r.at("baseline"), "deepseek-v3-671b");
    EXPECT_EQ(r.at("bytes").get<int64_t>(), r.at("bytes_per_token").get<int64_t>() * r.at("context").get<int64_t>());
    EXPECT_EQ(r.at("bytes_per_token").get<int64_t>(),
              r.at("bytes_per_token_per_layer").get<int64_t>() * r.at("n_layers").get<int64_t>());
    const std::string format = r.at("format");
    EXPECT_TRUE(format == "bf16" || format == "fp8_latent") << format;
    if (format == "bf16") {
      EXPECT_EQ(r.at("ratio_to_bf16").get<double>(), 1.0);
    }
    if (r.at("model") == "deepseek-v3-671b" && format == "fp8_latent" && r.at("context") == 32768) {
      saw_v3_fp8 = true;
      EXPECT_EQ(r.at("bytes_per_token_per_layer"), 656);  // G32
      EXPECT_EQ(r.at("bytes"), 40016LL * 32768);
      EXPECT_DOUBLE_EQ(r.at("ratio_to_bf16").get<double>(), 656.0 / 1152.0);
      EXPECT_DOUBLE_EQ(r.at("ratio_to_baseline").get<double>(), 40016.0 / 70272.0);
    }
    if (r.at("model") == "llama-3.1-405b") {
      EXPECT_EQ(format, "bf16");
      EXPECT_NEAR(r.at("ratio_to_baseline").get<double>(), 7.3443, 1e-4);  // G5
    }
  }
  EXPECT_TRUE(saw_v3_fp8);
  EXPECT_EQ(models, std::set<std::string>(ids.begin(), ids.end()));
}

}  // namespace
