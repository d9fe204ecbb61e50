// The full forward (reference/model.hpp) against the component references, stage by stage: each
// main layer of the tiny config with BF16- and with FP8-stored weights, and the MTP module (its
// concatenation and eh_proj, its transformer block, its shared head). Every stage is fed the
// model's own input for it (teacher-forced), so a difference does not accumulate and each
// stage's tolerance follows from that stage alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "correctness/model_test_util.hpp"
#include "correctness/reference_run.hpp"
#include "reference/mla_checkpoint.hpp"
#include "reference/moe.hpp"
#include "reference/rmsnorm.hpp"

namespace dsv3::model {
namespace {

using mla::MatrixD;
using test::max_ulps;
using test::prompt;
using test::tiny;

std::vector<uint16_t> rms(const std::vector<uint16_t>& h, const Tensor& w, int64_t T, int64_t dim) {
  rmsnorm::Params p;
  p.rows = T; p.dim = dim;
  std::vector<Tensor> in = allocate(rmsnorm::input_specs(p));
  std::memcpy(in[0].raw(), h.data(), in[0].nbytes());
  std::memcpy(in[1].raw(), w.raw(), in[1].nbytes());
  const std::vector<Tensor> out = run_reference_poisoned(p, in);
  const auto s = out[0].span<const uint16_t>();
  return {s.begin(), s.end()};
}

std::vector<uint16_t> to_codes(const MatrixD& m) {
  std::vector<uint16_t> c(static_cast<std::size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) c[static_cast<std::size_t>(i)] = bf16_from_f64(m.data()[i]);
  return c;
}

MatrixD from_codes(const std::vector<uint16_t>& c, int64_t rows, int64_t cols) {
  MatrixD m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = bf16_to_f32(c[static_cast<std::size_t>(i)]);
  return m;
}

std::vector<uint16_t> add_rounded(const std::vector<uint16_t>& h, const MatrixD& u) {
  std::vector<uint16_t> r(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) r[i] = bf16_from_f64(bf16_to_f32(h[i]) + static_cast<double>(bf16_to_f32(bf16_from_f64(u.data()[i]))));
  return r;
}

// A stored weight matrix in FP64 by this test's own path: BF16 / F32 values as stored; an F8_E4M3
// matrix as each code times the FP32 scale of its 128x128 block, found through get_fp8_weight
// (core/safetensors), not through the model's Linear.
MatrixD stored_matrix(const SafetensorsFile& f, const std::string& name) {
  const Tensor& t = f.get(name);
  const int64_t rows = t.dim(0), cols = t.dim(1);
  MatrixD m(rows, cols);
  if (t.dtype() != DType::e4m3) {
    for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = t.get(i);
    return m;
  }
  const Fp8Weight q = get_fp8_weight(f, name);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m(r, c) = q.weight.get(r * cols + c) * q.scale_inv.get((r / 128) * q.scale_inv.dim(1) + c / 128);
  return m;
}

// w2 (silu(w1 x) * w3 x) with Eigen products, FP64.
MatrixD swiglu(const SafetensorsFile& f, const std::string& prefix, const MatrixD& x) {
  const MatrixD g = x * stored_matrix(f, prefix + ".gate_proj.weight").transpose();
  const MatrixD u = x * stored_matrix(f, prefix + ".up_proj.weight").transpose();
  const MatrixD act = (g.array() / (1 + (-g.array()).exp()) * u.array()).matrix();
  return act * stored_matrix(f, prefix + ".down_proj.weight").transpose();
}

// The MoE layer of an FP8 checkpoint: the moe component's layer reference takes BF16 experts, and
// code x scale is not a BF16 value, so the routing (the moe_gate reference's indices and BF16
// weights, through moe::layer_routing) comes from the component and the experts from swiglu
// above: sum_j g_j FFN_j(x) + FFN_shared(x) in FP64.
MatrixD fp8_moe(const ModelConfig& c, const SafetensorsFile& f, const std::string& prefix, const std::vector<uint16_t>& x_codes, int64_t T) {
  moe::Params p;
  p.op = moe::Op::layer; p.model = c.id; p.tokens = T;
  std::vector<Tensor> in = allocate(moe::input_specs(p));
  std::memcpy(in[0].raw(), x_codes.data(), in[0].nbytes());
  std::memcpy(in[1].raw(), f.get(prefix + ".gate.weight").raw(), in[1].nbytes());
  if (c.has_router_bias()) std::memcpy(in[2].raw(), f.get(prefix + ".gate.e_score_correction_bias").raw(), in[2].nbytes());
  const moe::LayerRouting r = moe::layer_routing(p, in);
  const MatrixD x = from_codes(x_codes, T, c.dim);
  MatrixD y = swiglu(f, prefix + ".shared_experts", x);
  const int64_t k = c.n_activated_experts;
  for (int64_t t = 0; t < T; ++t) {
    MatrixD routed = MatrixD::Zero(1, c.dim);
    for (int64_t j = 0; j < k; ++j) {
      const auto q = static_cast<std::size_t>(t * k + j);
      routed += bf16_to_f32(r.weights[q]) * swiglu(f, prefix + ".experts." + std::to_string(r.indices[q]), x.row(t));
    }
    y.row(t) += routed;
  }
  return y;
}

// Layer l (a main layer, or the MTP module's block at l = n_layers) composed from the component
// references on the given input: rmsnorm, mla::layer_forward (naive form, Eigen products, exact
// latent; mla::load_layer_weights dequantizes FP8 projections by its own path), the residual,
// rmsnorm, then the dense SwiGLU or the MoE layer (the moe component's reference for BF16
// experts, fp8_moe for FP8 ones).
std::vector<uint16_t> composed_layer(const ModelConfig& c, const SafetensorsFile& f, int64_t l, const std::vector<uint16_t>& h, int64_t T) {
  const int64_t D = c.dim;
  const std::string prefix = "model.layers." + std::to_string(l) + ".";
  const std::vector<uint16_t> a_in = rms(h, f.get(prefix + "input_layernorm.weight"), T, D);
  const mla::LayerDims d = mla::LayerDims::from(c);
  const MatrixD a = mla::layer_forward(d, mla::load_layer_weights(f, l, d), from_codes(a_in, T, D), mla::Form::naive);
  const std::vector<uint16_t> h1 = add_rounded(h, a);
  const std::vector<uint16_t> f_in = rms(h1, f.get(prefix + "post_attention_layernorm.weight"), T, D);
  if (l < c.n_dense_layers) return add_rounded(h1, swiglu(f, prefix + "mlp", from_codes(f_in, T, D)));
  if (f.get(prefix + "mlp.experts.0.gate_proj.weight").dtype() == DType::e4m3) return add_rounded(h1, fp8_moe(c, f, prefix + "mlp", f_in, T));
  moe::Params p;
  p.op = moe::Op::layer; p.model = c.id; p.tokens = T;
  std::vector<Tensor> in = allocate(moe::input_specs(p));
  std::memcpy(in[0].raw(), f_in.data(), in[0].nbytes());
  std::memcpy(in[1].raw(), f.get(prefix + "mlp.gate.weight").raw(), in[1].nbytes());
  const std::size_t w0 = c.has_router_bias() ? 3 : 2;  // the first expert input
  if (c.has_router_bias()) std::memcpy(in[2].raw(), f.get(prefix + "mlp.gate.e_score_correction_bias").raw(), in[2].nbytes());
  const int64_t E = c.n_routed_experts, I = c.moe_inter_dim;
  const char* names[3] = {"gate_proj", "up_proj", "down_proj"};  // w1, w3, w2
  for (std::size_t m = 0; m < 3; ++m) {
    for (int64_t e = 0; e < E; ++e) {
      const Tensor& w = f.get(prefix + "mlp.experts." + std::to_string(e) + "." + names[m] + ".weight");
      std::memcpy(static_cast<char*>(in[w0 + m].raw()) + e * I * D * 2, w.raw(), w.nbytes());
    }
    const Tensor& s = f.get(prefix + "mlp.shared_experts." + names[m] + ".weight");
    std::memcpy(in[w0 + 3 + m].raw(), s.raw(), s.nbytes());
  }
  const std::vector<Tensor> out = run_reference_poisoned(p, in);
  MatrixD y(T, D);
  for (int64_t i = 0; i < T * D; ++i) y.data()[i] = out[0].get(i);
  return add_rounded(h1, y);
}

// Both sides compute in FP64 in other orders (Eigen blocks vs fixed-order dots): the values before
// each BF16 rounding agree to ~1e-15 relative, so a rounding may fall either side of a boundary:
// one BF16 ulp where the module output is rounded and one more in the residual sum.
constexpr double kLayerUlps = 2.0;

void check_main_layers(bool fp8, uint64_t seed) {
  const ModelConfig c = tiny();
  const SafetensorsFile f{"(test)", {}, random_checkpoint(c, seed, fp8)};
  ASSERT_EQ(f.get("model.layers.1.mlp.experts.3.down_proj.weight").dtype(), fp8 ? DType::e4m3 : DType::bf16);
  Checkpoint ck;
  ck.add(f);
  const Weights w = load_weights(c, ck);
  const int64_t T = 20, D = c.dim;
  Session s(w, CacheFmt::f64);  // the exact cache: the naive FP64 MLA is the same function
  const StepOut o = forward(w, s, prompt(c, T, 3));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::vector<uint16_t> in(o.hidden.begin() + l * T * D, o.hidden.begin() + (l + 1) * T * D);
    const std::vector<uint16_t> got(o.hidden.begin() + (l + 1) * T * D, o.hidden.begin() + (l + 2) * T * D);
    const double ulps = max_ulps(got, composed_layer(c, f, l, in, T));
    EXPECT_LE(ulps, kLayerUlps) << "layer " << l << (fp8 ? " (FP8 weights)" : "");
    ::testing::Test::RecordProperty(std::string(fp8 ? "fp8_" : "") + "layer" + std::to_string(l) + "_max_ulps", std::to_string(ulps));
  }
}

TEST(ModelLayers, EachLayerMatchesTheComponentReferences) { check_main_layers(false, 11); }

// Every projection of attention and the MLPs stored as E4M3 with 128x128 scales (the tiny
// config's matrices span 1 to 4 blocks, partial and non-square: q_b [192, 128], kv_a [144, 256]).
// Both sides dequantize exactly (a 4-bit significand times an FP32 scale fits FP64), so the
// tolerance is the BF16 check's.
TEST(ModelLayers, EachLayerMatchesWithFp8StoredWeights) { check_main_layers(true, 11); }

// The MTP module at positions 0 .. T - 1 of a T + 1 token prompt, against the composition of
// v3-facts §5: enorm(embed(t_{i+1})) and hnorm(hf_i) by the rmsnorm reference, concatenated
// embedding first, eh_proj (Eigen), the block (composed_layer), shared_head.norm, the head.
TEST(ModelLayers, MtpModuleMatchesAnIndependentComposition) {
  const ModelConfig c = tiny(true);
  const SafetensorsFile f{"(test)", {}, random_checkpoint(c, 13, false)};
  Checkpoint ck;
  ck.add(f);
  const Weights w = load_weights(c, ck);
  ASSERT_TRUE(w.mtp.has_value());
  const int64_t T = 20, D = c.dim, V = c.vocab_size, L = c.n_layers;
  const std::vector<int32_t> toks = prompt(c, T + 1, 4);
  Session s(w, CacheFmt::f64);
  const StepOut o = forward(w, s, toks);
  const std::vector<uint16_t> hf(o.final_hidden.begin(), o.final_hidden.begin() + T * D);
  MtpTrace trace;
  const std::vector<float> logits = mtp_forward(w, s, hf, std::vector<int32_t>(toks.begin() + 1, toks.end()), 0, &trace);
  auto t = [&](const std::string& rest) -> const Tensor& { return f.get("model.layers." + std::to_string(L) + "." + rest); };

  // Stage 1: eh_proj [enorm(embed(t_{i+1})) ; hnorm(hf_i)], rounded once to BF16. Both sides take
  // the same BF16 norm outputs (one rmsnorm reference), so only eh_proj's FP64 summation order
  // differs: at most one BF16 ulp where its rounding falls the other way.
  const Tensor& embed = f.get("model.embed_tokens.weight");
  std::vector<uint16_t> e(static_cast<std::size_t>(T * D));
  for (int64_t i = 0; i < T; ++i) std::memcpy(&e[static_cast<std::size_t>(i * D)], embed.span<const uint16_t>().data() + toks[static_cast<std::size_t>(i + 1)] * D, D * 2);
  const MatrixD en = from_codes(rms(e, t("enorm.weight"), T, D), T, D), hn = from_codes(rms(hf, t("hnorm.weight"), T, D), T, D);
  const MatrixD eh = stored_matrix(f, "model.layers." + std::to_string(L) + ".eh_proj.weight");
  auto block_input = [&](bool hidden_first) {
    MatrixD cat(T, 2 * D);
    cat << (hidden_first ? hn : en), (hidden_first ? en : hn);
    return to_codes(cat * eh.transpose());
  };
  const double stage1 = max_ulps(trace.block_in, block_input(false));
  EXPECT_LE(stage1, 1.0);
  // The mutation: the halves swapped (hidden first, eq 21's written order) must fail the check.
  const double swapped = max_ulps(trace.block_in, block_input(true));
  EXPECT_GT(swapped, 1.0) << "the concatenation order is not what the check can see";
  RecordProperty("eh_proj_max_ulps", std::to_string(stage1));
  RecordProperty("eh_proj_swapped_halves_max_ulps", std::to_string(swapped));

  // Stage 2: the block, as the main layers are checked.
  const double stage2 = max_ulps(trace.block_out, composed_layer(c, f, L, trace.block_in, T));
  EXPECT_LE(stage2, kLayerUlps);
  RecordProperty("mtp_block_max_ulps", std::to_string(stage2));

  // Stage 3: shared_head.norm (the rmsnorm reference: the same BF16 codes as the model's), then
  // the shared head in FP64 (Eigen). The model rounds its fixed-order FP64 sum to FP32 once: half
  // an FP32 ulp, plus the two FP64 orders' difference (< dim 2^-52 sum |x w|).
  const MatrixD normed = from_codes(rms(trace.block_out, t("shared_head.norm.weight"), T, D), T, D);
  const MatrixD head = stored_matrix(f, "lm_head.weight");
  const MatrixD ref = normed * head.transpose(), mag = normed.cwiseAbs() * head.cwiseAbs().transpose();
  int64_t outside = 0;
  for (int64_t i = 0; i < T * V; ++i) {
    const double r = ref.data()[i], got = logits[static_cast<std::size_t>(i)];
    const double bound = 0.5 * std::ldexp(1.0, std::ilogb(static_cast<float>(r)) - 23) + static_cast<double>(D) * std::ldexp(mag.data()[i], -52);
    outside += std::fabs(got - r) > bound;
  }
  EXPECT_EQ(outside, 0) << "MTP logits outside half an FP32 ulp of the FP64 head";
}

}  // namespace
}  // namespace dsv3::model
