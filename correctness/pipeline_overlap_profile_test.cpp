// The overlap view's per-layer times from a hardware profile and from a bundle
// (reference/pipeline_overlap_profile.hpp): the FLOP and byte counts against their closed forms and
// the training-cost model, row selection and scaling from a bundle, named errors; and the
// calibrated studies `dsv3 run` writes after its benchmarks (reference/netmodel.hpp).
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/json_file.hpp"
#include "reference/netmodel.hpp"
#include "reference/netmodel_node_limit.hpp"
#include "reference/netmodel_train_cost.hpp"
#include "reference/pipeline_overlap_profile.hpp"

namespace dsv3::pipeline {
namespace {

const OverlapTerm& term(const OverlapProfile& p, const std::string& piece, const std::string& what_prefix) {
  for (const auto& t : p.terms)
    if (t.piece == piece && t.what.rfind(what_prefix, 0) == 0) return t;
  throw std::logic_error("no term " + piece + " " + what_prefix);
}

TEST(PipelineOverlapProfile, V3OnH800CountsTheClosedForms) {
  const ModelConfig m = find_model("deepseek-v3-671b");
  const HardwareProfile h = find_hardware("h800-sxm");
  const OverlapWorkload w;
  EXPECT_EQ(w.micro_batches(), 120);  // 15360 / (2048 / 16) / 1
  const OverlapProfile p = overlap_from_profile(m, h, w);
  EXPECT_EQ(p.in.layers, 4);  // ceil(61 / 16)
  EXPECT_EQ(p.in.sms, 132);
  EXPECT_EQ(p.in.comm_sms, 20);
  // wq_a 7168x1536, wq_b 1536x(128x192), wkv_a 7168x576, wkv_b 512x(128x256), wo (128x128)x7168.
  const double p_attn = 7168.0 * 1536 + 1536.0 * 128 * 192 + 7168.0 * 576 + 512.0 * 128 * 256 + 128.0 * 128 * 7168;
  EXPECT_DOUBLE_EQ(term(p, "attn", "projections").amount, 2 * 4096 * p_attn);
  EXPECT_DOUBLE_EQ(term(p, "attn", "projections").us, 2 * 4096 * p_attn / (0.6 * 1979e12) * 1e6);
  // The causal core, x3 for training and over all layers, is train_cost's attention term.
  const netmodel::TrainFlopsPerToken f = netmodel::train_flops_per_token(m);
  EXPECT_NEAR(3 * term(p, "attn", "causal core").amount / 4096 * 61 / 1e9, f.attention_gflops, 1e-9);
  EXPECT_DOUBLE_EQ(term(p, "mlp", "experts").amount, 2.0 * 4096 * 9 * 3 * 7168 * 2048);
  EXPECT_DOUBLE_EQ(term(p, "mlp", "router").amount, 2.0 * 4096 * 7168 * 256);
  EXPECT_DOUBLE_EQ(p.in.attn, term(p, "attn", "projections").us + term(p, "attn", "causal core").us);
  // Communication: the node-limit model's sends at the gate's limit (4), FP8 tokens with 1x128 scales.
  netmodel::NodeLimitInputs ni;
  ni.dispatch_overhead_bytes = 224;
  const netmodel::NodeLimitResult nl = netmodel::node_limit_table(ni);
  const netmodel::NodeLimitRow& r4 = nl.rows.at(3);
  ASSERT_EQ(r4.limit, 4);
  const double ib_us = 4096 * r4.mean_remote_nodes * (7168 + 224) / 50e9 * 1e6;
  const double nv_us = 4096 * r4.mean_nvlink_sends * (7168 + 224) / 200e9 * 1e6;
  EXPECT_DOUBLE_EQ(term(p, "dispatch", "IB").us, ib_us);
  EXPECT_DOUBLE_EQ(term(p, "dispatch", "NVLink").us, nv_us);
  EXPECT_DOUBLE_EQ(p.in.dispatch, std::max(ib_us, nv_us));
  EXPECT_DOUBLE_EQ(p.in.combine, std::max(term(p, "combine", "IB").us, term(p, "combine", "NVLink").us));
  EXPECT_DOUBLE_EQ(term(p, "combine", "IB").us, 4096 * r4.mean_remote_nodes * 2 * 7168 / 50e9 * 1e6);
  // V3-TR §3.2.1: computation and communication roughly 1 : 1 on this setup.
  const double ratio = (p.in.attn + p.in.mlp) / (p.in.dispatch + p.in.combine);
  EXPECT_GT(ratio, 0.5);
  EXPECT_LT(ratio, 2.0);
}

TEST(PipelineOverlapProfile, OneNvlinkDomainSendsNothingOverTheNetwork) {
  // GB200 NVL72: the 64 EP ranks fit one NVLink domain (72), so dispatch and combine are NVLink only.
  const OverlapProfile p = overlap_from_profile(find_model("deepseek-v3-671b"), find_hardware("gb200-nvl72"), OverlapWorkload{});
  EXPECT_EQ(p.work.ranks_per_node, 64);
  for (const auto& t : p.terms) EXPECT_NE(t.what, "IB");
  EXPECT_DOUBLE_EQ(p.in.dispatch, term(p, "dispatch", "NVLink").us);
  // Every other GPU among a token's targets is one NVLink send: the mean of (distinct GPUs - 1 if
  // the source holds one of them) is below the 8 experts.
  EXPECT_GT(term(p, "dispatch", "NVLink").amount, 0);
  EXPECT_LT(term(p, "dispatch", "NVLink").amount, 4096.0 * 8 * (7168 + 224));
  // The H800's 8-GPU nodes put the same step on IB.
  const OverlapProfile q = overlap_from_profile(find_model("deepseek-v3-671b"), find_hardware("h800-sxm"), OverlapWorkload{});
  EXPECT_EQ(q.work.ranks_per_node, 8);
  EXPECT_GT(q.in.dispatch, p.in.dispatch);
}

nlohmann::json row(const std::string& name, double t) {
  return {{"name", name + "/manual_time"}, {"run_name", name + "/manual_time"}, {"real_time", t}, {"time_unit", "us"}};
}

nlohmann::json gpu_bundle() {
  nlohmann::json b = {{"device", {{"present", true}, {"name", "Test GPU"}}}};
  b["benchmarks"] = {row("mla/cublas_prefill/prefill b=1 s=1024 h=128 normal", 100),
                     row("mla/cublas_prefill/prefill b=1 s=2048 h=128 normal", 300),
                     row("mla/ref/prefill b=1 s=4096 h=128 normal", 1e6),  // the CPU reference: the GPU variant wins
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=2112 k=7168 f32 out=bf16 normal", 10),
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=24576 k=1536 f32 out=bf16 normal", 20),
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=32768 k=512 f32 out=bf16 normal", 30),
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=7168 k=16384 f32 out=bf16 normal", 40),
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=4096 k=7168 f32 out=bf16 normal", 50),
                     row("fp8_gemm/cublaslt_block/dense m=4096 n=7168 k=2048 f32 out=bf16 normal", 60)};
  return b;
}

TEST(PipelineOverlapProfile, BundleTakesMeasuredComputeAndScalesIt) {
  const ModelConfig m = find_model("deepseek-v3-671b");
  const HardwareProfile h = find_hardware("h100-sxm");
  const OverlapProfile p = with_measured_compute(overlap_from_profile(m, h, OverlapWorkload{}), m, gpu_bundle(), "b.json");
  EXPECT_EQ(p.compute, "bundle (Test GPU)");
  // Core: s = 4096 beyond the largest measured 2048, scaled by (4096 / 2048)^2; one sequence.
  EXPECT_DOUBLE_EQ(term(p, "attn", "causal core").us, 300 * 4);
  EXPECT_NE(term(p, "attn", "causal core").how.find("cublas_prefill"), std::string::npos);
  // Projections at m = 4096 measured; experts at m = 4096 x 9 scaled in proportion.
  EXPECT_DOUBLE_EQ(p.in.attn, 1200 + 10 + 20 + 30 + 40);
  EXPECT_DOUBLE_EQ(p.in.mlp, (50 + 60) * 9.0);
  // Communication stays the profile's.
  const OverlapProfile q = overlap_from_profile(m, h, OverlapWorkload{});
  EXPECT_DOUBLE_EQ(p.in.dispatch, q.in.dispatch);
  EXPECT_DOUBLE_EQ(p.in.combine, q.in.combine);
  // Two sequences of 2048 per micro-batch: twice the measured s = 2048 point.
  OverlapWorkload two;
  two.seq_len = 2048;
  EXPECT_DOUBLE_EQ(term(with_measured_compute(overlap_from_profile(m, h, two), m, gpu_bundle(), "b.json"), "attn", "causal core").us, 600);
}

TEST(PipelineOverlapProfile, MissingRowsAndBadInputsAreNamed) {
  const ModelConfig m = find_model("deepseek-v3-671b");
  const HardwareProfile h = find_hardware("h100-sxm");
  nlohmann::json b = gpu_bundle();
  b["benchmarks"].erase(b["benchmarks"].begin() + 7);  // experts gate+up
  try {
    with_measured_compute(overlap_from_profile(m, h, OverlapWorkload{}), m, b, "b.json");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("n=4096 k=7168"), std::string::npos) << e.what();
  }
  try {
    with_measured_compute(overlap_from_profile(m, h, OverlapWorkload{}), m, nlohmann::json::object(), "empty.json");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("mla prefill"), std::string::npos) << e.what();
  }
  auto named = [&](OverlapWorkload w, const HardwareProfile& hw, const char* field) {
    try {
      overlap_from_profile(m, hw, w);
      ADD_FAILURE() << "no error for " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  OverlapWorkload w;
  w.tokens = 1000;
  named(w, h, "seq_len");
  w = {};
  w.compute_efficiency = 0;
  named(w, h, "compute_efficiency");
  w = {};
  w.seqs_per_step = 128;  // one micro-batch per pipeline
  named(w, h, "micro-batches");
  HardwareProfile no_ib = h;
  no_ib.nic_gbps = 0;
  named({}, no_ib, "nic_gbps");
  EXPECT_THROW(overlap_from_profile(find_model("llama-3.1-405b"), h, OverlapWorkload{}), std::invalid_argument);
}

TEST(PipelineOverlapProfile, CalibratedStudiesFromABundle) {
  nlohmann::json b = gpu_bundle();
  b["benchmarks"].push_back(row("mla/cuda/decode b=32 sq=1 h=128 bf16 len~4096 normal", 40));
  b["benchmarks"].push_back(row("fp8_gemm/cublaslt_block/dense m=128 n=4096 k=7168 f32 out=bf16 normal", 5));
  b["benchmarks"].push_back(row("fp8_gemm/cublaslt_block/dense m=128 n=7168 k=2048 f32 out=bf16 normal", 5));
  const nlohmann::json s = netmodel::calibrated_study_rows(b, "b.json");
  const auto& dl = s.at("decode_limit_calibrated");
  ASSERT_FALSE(dl.empty());
  for (const auto& r : dl) {
    EXPECT_EQ(r.at("compute_device"), "Test GPU");
    EXPECT_EQ(r.at("compute_terms").size(), 3u);
    EXPECT_GT(r.at("compute_us").get<double>(), 40);
  }
  const auto& po = s.at("pipeline_overlap");
  int bundle_steps = 0, profile_steps = 0;
  for (const auto& r : po) {
    EXPECT_NE(r.at("table"), "skipped") << r.dump();
    if (r.at("table") == "step") ++(r.at("compute") == "profile" ? profile_steps : bundle_steps);
  }
  EXPECT_EQ(profile_steps, static_cast<int>(4 * list_hardware().size()));
  EXPECT_EQ(bundle_steps, profile_steps);
  // A bundle without the rows: skipped with the reason, the profile rows still there.
  const nlohmann::json e = netmodel::calibrated_study_rows(nlohmann::json::object(), "empty.json");
  EXPECT_TRUE(e.at("decode_limit_calibrated").at(0).at("skipped").get<bool>());
  int skipped = 0;
  for (const auto& r : e.at("pipeline_overlap")) skipped += r.at("table") == "skipped";
  EXPECT_EQ(skipped, static_cast<int>(list_hardware().size()));
}

}  // namespace
}  // namespace dsv3::pipeline
