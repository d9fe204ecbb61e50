// The mla component's studies (docs/bundle-schema.md): the FP8 latent cache's error against the
// BF16 cache, and the absorbed decode against the naive one at long contexts.
#include <chrono>

#include "core/compare.hpp"
#include "core/fill.hpp"
#include "core/parallel.hpp"
#include "reference/mla.hpp"
#include "reference/mla_layer.hpp"

namespace dsv3::mla {

nlohmann::json cache_error_study(bool quick) {
  nlohmann::json rows = nlohmann::json::array();
  const std::vector<int64_t> contexts = quick ? std::vector<int64_t>{64, 1024} : std::vector<int64_t>{64, 1024, 8192};
  for (Dist d : {Dist::normal, Dist::outlier_channels})
    for (int64_t len : contexts) {
      Params p;
      p.op = Op::decode; p.batch = 2; p.heads = 128; p.mean_len = len; p.dist = d;
      const F64Outputs ref = run_reference_f64(p, make_inputs(p));
      Params q = p;
      q.cache = CacheFmt::fp8;
      const F64Outputs fp8 = run_reference_f64(q, make_inputs(q));
      Agreement out_fp8, lse_fp8, out_round;
      for (std::size_t i = 0; i < ref.out.size(); ++i) {
        out_fp8.add(fp8.out[i], ref.out[i]);
        out_round.add(bf16_to_f32(bf16_from_f64(ref.out[i])), ref.out[i]);
      }
      for (std::size_t i = 0; i < ref.lse.size(); ++i) lse_fp8.add(fp8.lse[i], ref.lse[i]);
      auto row = [&](const char* pair, const Agreement& a, const char* output) {
        return nlohmann::json{{"context", len}, {"dist", dist_name(d)}, {"heads", p.heads}, {"pair", pair},
                              {"output", output}, {"rel_l2", a.rel_l2()}, {"cos_dist", a.cos_dist()},
                              {"max_abs", a.max_abs}, {"rms_ref", a.rms_ref()}};
      };
      rows.push_back(row("fp8_cache_vs_bf16_cache", out_fp8, "out"));
      rows.push_back(row("fp8_cache_vs_bf16_cache", lse_fp8, "lse"));
      rows.push_back(row("bf16_output_rounding", out_round, "out"));
    }
  return rows;
}

nlohmann::json decode_forms_study(bool quick) {
  // One V3 layer's decode step (one sequence, one query token, 128 heads) over a cache of L
  // tokens in each form. Only wkv_b matters to attention: the queries, latents and RoPE keys are
  // drawn directly (N(0, 1)) instead of projected from hidden states.
  const LayerDims d = LayerDims::from(find_model("deepseek-v3-671b"));
  LayerWeights w;
  w.wkv_b = random_bf16_matrix(d.heads * (d.nope + d.v), d.kv_lora, seed_from("mla_decode_forms wkv_b"));
  const std::vector<int64_t> contexts = quick ? std::vector<int64_t>{1024, 4096} : std::vector<int64_t>{1024, 4096, 16384};
  const int reps = quick ? 2 : 3;
  auto normal = [](int64_t rows, int64_t cols, const std::string& what) {
    const std::vector<float> g = draw(Dist::normal, seed_from("mla_decode_forms " + what), rows * cols, cols);
    MatrixD m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = g[static_cast<std::size_t>(i)];
    return m;
  };
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t len : contexts) {
    const MatrixD latent = normal(len, d.kv_lora, "latent " + std::to_string(len));
    const MatrixD rope_key = normal(len, d.rope, "rope_key " + std::to_string(len));
    const MatrixD q = normal(1, d.heads * d.qk(), "q " + std::to_string(len));
    MatrixD outs[2];
    double times[2], builds[2];
    for (Form form : {Form::absorbed, Form::naive}) {
      const int f = static_cast<int>(form);
      const auto t0 = Clock::now();
      const LayerCache cache = make_cache(d, w, latent, rope_key, form);
      builds[f] = secs(t0, Clock::now());
      times[f] = 1e300;
      for (int r = 0; r < reps; ++r) {
        const auto t1 = Clock::now();
        outs[f] = attend(d, w, q, cache, len - 1);
        times[f] = std::min(times[f], secs(t1, Clock::now()));
      }
    }
    const int abs = static_cast<int>(Form::absorbed);
    const double agree = (outs[0] - outs[1]).cwiseAbs().maxCoeff() / outs[abs].cwiseAbs().maxCoeff();
    for (Form form : {Form::absorbed, Form::naive}) {
      const int f = static_cast<int>(form);
      const double flops = static_cast<double>(attention_flops_per_token(d, form) * len);
      rows.push_back({{"context", len}, {"form", form_name(form)}, {"heads", d.heads}, {"threads", thread_count()},
                      {"cache_bf16_bytes_per_token", cache_bf16_bytes_per_token(d, form)},
                      {"flops_per_token", attention_flops_per_token(d, form)}, {"step_s", times[f]},
                      {"ns_per_cached_token", times[f] / static_cast<double>(len) * 1e9}, {"gflops", flops / times[f] / 1e9},
                      {"step_time_vs_absorbed", times[f] / times[abs]}, {"cache_build_s", builds[f]},
                      {"max_rel_diff_naive_vs_absorbed", agree}});
    }
  }
  return rows;
}

}  // namespace dsv3::mla
