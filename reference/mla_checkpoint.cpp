// Loading and writing one MLA layer in the Hugging Face checkpoint layout (reference/mla_checkpoint.hpp).
#include "reference/mla_checkpoint.hpp"

#include <memory>

#include "reference/fp8_quant.hpp"

namespace dsv3::mla {

std::string layer_tensor_name(int64_t layer, const std::string& module) {
  return "model.layers." + std::to_string(layer) + ".self_attn." + module + ".weight";
}

namespace {

std::string shape_str(const Shape& s) { return shape_to_string(s); }

// A [rows, cols] projection as FP64; `why` says which config fields give the shape.
MatrixD load_matrix(const SafetensorsFile& f, const std::string& name, int64_t rows, int64_t cols, const std::string& why) {
  const Tensor& t = f.get(name);
  const std::string at = f.path.string() + ": " + name;
  if (t.shape() != Shape{rows, cols})
    throw InputError(at + ": expected shape " + shape_str({rows, cols}) + " (" + why + "), got " + shape_str(t.shape()));
  MatrixD m(rows, cols);
  if (t.dtype() == DType::e4m3) {
    const Fp8Weight w = get_fp8_weight(f, name);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        m(r, c) = w.weight.get(r * cols + c) * w.scale_inv.get((r / kFp8WeightBlock) * w.scale_inv.dim(1) + c / kFp8WeightBlock);
    return m;
  }
  if (t.dtype() != DType::bf16 && t.dtype() != DType::f32)
    throw InputError(at + ": dtype " + std::string(dtype_name(t.dtype())) + " is not a weight format here (F8_E4M3 with _scale_inv, BF16 or F32)");
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = t.get(i);
  return m;
}

Eigen::VectorXd load_norm(const SafetensorsFile& f, const std::string& name, int64_t n, const std::string& why) {
  const Tensor& t = f.get(name);
  const std::string at = f.path.string() + ": " + name;
  if (t.shape() != Shape{n}) throw InputError(at + ": expected shape " + shape_str({n}) + " (" + why + "), got " + shape_str(t.shape()));
  if (t.dtype() != DType::bf16 && t.dtype() != DType::f32)
    throw InputError(at + ": dtype " + std::string(dtype_name(t.dtype())) + " is not a norm weight format (BF16 or F32)");
  Eigen::VectorXd v(n);
  for (int64_t i = 0; i < n; ++i) v(i) = t.get(i);
  return v;
}

}  // namespace

LayerWeights load_layer_weights(const SafetensorsFile& f, int64_t layer, const LayerDims& d) {
  auto name = [&](const char* m) { return layer_tensor_name(layer, m); };
  const std::string qk = "n_heads " + std::to_string(d.heads) + " x (qk_nope_head_dim " + std::to_string(d.nope) +
                         " + qk_rope_head_dim " + std::to_string(d.rope) + ")";
  const std::string dim = "dim " + std::to_string(d.dim);
  LayerWeights w;
  if (d.q_lora > 0) {
    const std::string ql = "q_lora_rank " + std::to_string(d.q_lora);
    w.wq_a = load_matrix(f, name("q_a_proj"), d.q_lora, d.dim, ql + ", " + dim);
    w.q_norm = load_norm(f, name("q_a_layernorm"), d.q_lora, ql);
    w.wq_b = load_matrix(f, name("q_b_proj"), d.heads * d.qk(), d.q_lora, qk + ", " + ql);
  } else {
    w.wq = load_matrix(f, name("q_proj"), d.heads * d.qk(), d.dim, qk + ", " + dim);
  }
  const std::string kl = "kv_lora_rank " + std::to_string(d.kv_lora);
  w.wkv_a = load_matrix(f, name("kv_a_proj_with_mqa"), d.kv_lora + d.rope, d.dim,
                        kl + " + qk_rope_head_dim " + std::to_string(d.rope) + ", " + dim);
  w.kv_norm = load_norm(f, name("kv_a_layernorm"), d.kv_lora, kl);
  w.wkv_b = load_matrix(f, name("kv_b_proj"), d.heads * (d.nope + d.v), d.kv_lora,
                        "n_heads " + std::to_string(d.heads) + " x (qk_nope_head_dim " + std::to_string(d.nope) +
                            " + v_head_dim " + std::to_string(d.v) + "), " + kl);
  w.wo = load_matrix(f, name("o_proj"), d.dim, d.heads * d.v,
                     dim + ", n_heads " + std::to_string(d.heads) + " x v_head_dim " + std::to_string(d.v));
  return w;
}

void write_layer_weights(const std::filesystem::path& path, int64_t layer, const LayerDims& d, const LayerWeights& w, bool fp8) {
  std::vector<std::unique_ptr<Tensor>> owned;
  auto add_bf16 = [&](const std::string& n, const double* data, const Shape& s) -> Tensor& {
    owned.push_back(std::make_unique<Tensor>(n, DType::bf16, s));
    auto span = owned.back()->span<uint16_t>();
    for (std::size_t i = 0; i < span.size(); ++i) span[i] = f32_to_bf16(static_cast<float>(data[i]));
    return *owned.back();
  };
  auto add_matrix = [&](const char* module, const MatrixD& m) {
    const std::string n = layer_tensor_name(layer, module);
    const Tensor& bf = add_bf16(n, m.data(), {m.rows(), m.cols()});
    if (!fp8) return;
    Fp8Weight q = fp8::checkpoint_fp8_weight(bf);
    owned.pop_back();  // the BF16 copy is replaced by the FP8 pair
    owned.push_back(std::make_unique<Tensor>(std::move(q.weight)));
    owned.push_back(std::make_unique<Tensor>(std::move(q.scale_inv)));
  };
  if (d.q_lora > 0) {
    add_matrix("q_a_proj", w.wq_a);
    add_bf16(layer_tensor_name(layer, "q_a_layernorm"), w.q_norm.data(), {d.q_lora});
    add_matrix("q_b_proj", w.wq_b);
  } else {
    add_matrix("q_proj", w.wq);
  }
  add_matrix("kv_a_proj_with_mqa", w.wkv_a);
  add_bf16(layer_tensor_name(layer, "kv_a_layernorm"), w.kv_norm.data(), {d.kv_lora});
  add_matrix("kv_b_proj", w.wkv_b);
  add_matrix("o_proj", w.wo);
  std::vector<const Tensor*> ptrs;
  for (const auto& t : owned) ptrs.push_back(t.get());
  write_safetensors(path, ptrs, {{"format", "pt"}, {"written_by", "dsv3bench write_layer_weights"}});
}

}  // namespace dsv3::mla
