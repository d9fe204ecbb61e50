// Loading one MLA layer from a Hugging Face-named safetensors file (reference/mla_checkpoint.hpp):
// small generated files, BF16 and FP8 (128x128 scales); missing or mis-shaped tensors are named.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "core/model_config.hpp"
#include "reference/mla_checkpoint.hpp"

namespace dsv3::mla {
namespace {

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("dsv3_mla_" + std::to_string(::getpid()) + "_" + name);
}

LayerDims tiny() { return LayerDims::from(find_model("tiny-test")); }

MatrixD bf16_rounded(const MatrixD& m) {
  MatrixD r = m;
  for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = bf16_to_f32(f32_to_bf16(static_cast<float>(r.data()[i])));
  return r;
}

TEST(MlaCheckpoint, Bf16LayerRoundTripsAndRunsTheSameLayer) {
  const LayerDims d = tiny();
  const LayerWeights w = random_layer_weights(d, 11);  // BF16-representable already
  const auto path = temp_file("bf16.safetensors");
  write_layer_weights(path, 3, d, w, false);
  const LayerWeights back = load_layer_weights(read_safetensors(path), 3, d);
  EXPECT_EQ(back.wq_a, w.wq_a);
  EXPECT_EQ(back.wq_b, w.wq_b);
  EXPECT_EQ(back.wkv_a, w.wkv_a);
  EXPECT_EQ(back.wkv_b, w.wkv_b);
  EXPECT_EQ(back.wo, w.wo);
  EXPECT_EQ(back.q_norm, bf16_rounded(w.q_norm));
  EXPECT_EQ(back.kv_norm, bf16_rounded(w.kv_norm));
  const MatrixD h = MatrixD::Random(6, d.dim);
  EXPECT_EQ(layer_forward(d, back, h, Form::absorbed), layer_forward(d, w, h, Form::absorbed));
  std::filesystem::remove(path);
}

TEST(MlaCheckpoint, Fp8ProjectionsAreDequantizedExactly) {
  const LayerDims d = tiny();
  const LayerWeights w = random_layer_weights(d, 12);
  const auto path = temp_file("fp8.safetensors");
  write_layer_weights(path, 0, d, w, true);
  const SafetensorsFile f = read_safetensors(path);
  ASSERT_EQ(f.get(layer_tensor_name(0, "kv_b_proj")).dtype(), DType::e4m3);
  const LayerWeights back = load_layer_weights(f, 0, d);
  const Fp8Weight q = get_fp8_weight(f, layer_tensor_name(0, "kv_b_proj"));
  for (Eigen::Index r = 0; r < back.wkv_b.rows(); r += 37)
    for (Eigen::Index c = 0; c < back.wkv_b.cols(); c += 5) {
      const double expect = q.weight.get(r * back.wkv_b.cols() + c) * q.scale_inv.get((r / 128) * q.scale_inv.dim(1) + c / 128);
      EXPECT_EQ(back.wkv_b(r, c), expect);
      // E4M3 keeps 3 mantissa bits: within 2^-4 relative of the BF16 weight, or the subnormal step.
      EXPECT_LE(std::fabs(back.wkv_b(r, c) - w.wkv_b(r, c)), std::fabs(w.wkv_b(r, c)) * 0x1p-4 + q.scale_inv.get((r / 128) * q.scale_inv.dim(1) + c / 128) * 0x1p-10);
    }
  std::filesystem::remove(path);
}

TEST(MlaCheckpoint, MissingAndMisShapedTensorsAreNamed) {
  const LayerDims d = tiny();
  const LayerWeights w = random_layer_weights(d, 13);
  const auto path = temp_file("bad.safetensors");
  write_layer_weights(path, 1, d, w, false);
  const SafetensorsFile f = read_safetensors(path);
  try {
    load_layer_weights(f, 2, d);  // no layer 2 in the file
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.2.self_attn.q_a_proj.weight"), std::string::npos) << e.what();
  }
  LayerDims wrong = d;
  wrong.heads = d.heads * 2;  // a config that does not match the file
  try {
    load_layer_weights(f, 1, wrong);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("q_b_proj.weight: expected shape"), std::string::npos) << msg;
    EXPECT_NE(msg.find("n_heads 8"), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace dsv3::mla
