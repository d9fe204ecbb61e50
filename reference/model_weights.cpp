// The model's weights: stored matrices, Hugging Face names, loading with named errors, seeded
// checkpoints (reference/model.hpp).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/dtype.hpp"
#include "core/fill.hpp"
#include "core/parallel.hpp"
#include "reference/fp8_quant.hpp"
#include "reference/model.hpp"
#include "reference/rope.hpp"

namespace dsv3::model {

void Linear::row(int64_t o, double* dst) const {
  const int64_t K = in();
  if (scale_inv) {
    const int64_t kb = scale_inv->dim(1);
    for (int64_t i = 0; i < K; ++i) dst[i] = w.get(o * K + i) * scale_inv->get((o / kFp8WeightBlock) * kb + i / kFp8WeightBlock);
    return;
  }
  if (w.dtype() == DType::bf16) {
    const auto s = w.span<const uint16_t>();
    for (int64_t i = 0; i < K; ++i) dst[i] = bf16_to_f32(s[static_cast<std::size_t>(o * K + i)]);
    return;
  }
  for (int64_t i = 0; i < K; ++i) dst[i] = w.get(o * K + i);
}

namespace {

// Four partial sums over interleaved elements, combined in a fixed order: a fixed-order dot
// product the compiler can still vectorise without reassociating anything.
double dot(const double* a, const double* b, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) s[i % 4] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

std::vector<double> apply(const Linear& l, const std::vector<double>& x, int64_t T) {
  const int64_t O = l.out(), K = l.in();
  if (static_cast<int64_t>(x.size()) != T * K)
    throw std::invalid_argument("model: " + l.w.name() + " takes " + std::to_string(K) + " inputs per token, got " +
                                std::to_string(x.size()) + " values for " + std::to_string(T) + " tokens");
  std::vector<double> y(static_cast<std::size_t>(T * O));
  parallel_for(O, [&](int64_t o0, int64_t o1) {
    std::vector<double> row(static_cast<std::size_t>(K));
    for (int64_t o = o0; o < o1; ++o) {
      l.row(o, row.data());  // dequantized once for all T tokens
      for (int64_t t = 0; t < T; ++t) y[static_cast<std::size_t>(t * O + o)] = dot(row.data(), &x[static_cast<std::size_t>(t * K)], K);
    }
  }, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, K)));
  return y;
}

void Checkpoint::add(SafetensorsFile f) {
  for (const Tensor& t : f.tensors) {
    const auto it = index_.find(t.name());
    if (it != index_.end())
      throw InputError(f.path.string() + ": tensor " + t.name() + " is also in " + files_[it->second.first].path.string());
  }
  files_.push_back(std::move(f));
  for (const Tensor& t : files_.back().tensors) index_.emplace(t.name(), std::make_pair(files_.size() - 1, &t));
}

const Tensor* Checkpoint::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second.second;
}

std::string Checkpoint::where(const std::string& name) const {
  const auto it = index_.find(name);
  if (it != index_.end()) return files_[it->second.first].path.string() + ": " + name;
  std::string s = name + " (searched";
  for (const SafetensorsFile& f : files_) {
    s += ' ';
    s += f.path.string();
  }
  return s + ")";
}

namespace {

// The N of "model.layers.N.<rest>", or -1 for a tensor outside the layers.
int64_t layer_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  int64_t n = 0;
  std::size_t i = prefix.size();
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
  return i < name.size() && name[i] == '.' && i > prefix.size() ? n : -1;
}

}  // namespace

bool Checkpoint::has_layer(int64_t layer) const {
  return std::any_of(index_.begin(), index_.end(), [layer](const auto& e) { return layer_of(e.first) == layer; });
}

Checkpoint open_checkpoint(const std::filesystem::path& path, int64_t layers) {
  std::function<bool(const std::string&)> keep;
  if (layers >= 0) keep = [layers](const std::string& name) { return layer_of(name) < layers; };
  Checkpoint ck;
  if (std::filesystem::is_directory(path)) {
    std::vector<std::filesystem::path> shards;
    for (const auto& e : std::filesystem::directory_iterator(path))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path());
    std::sort(shards.begin(), shards.end());
    if (shards.empty()) throw InputError(path.string() + ": no .safetensors files in this directory");
    for (const auto& s : shards) ck.add(read_safetensors(s, keep));
  } else {
    if (!std::filesystem::exists(path)) throw InputError(path.string() + ": no such file or directory");
    ck.add(read_safetensors(path, keep));
  }
  return ck;
}

namespace {

std::string layer_name(int64_t layer, const std::string& rest) { return "model.layers." + std::to_string(layer) + "." + rest; }
std::string num(const char* field, int64_t v) { return std::string(field) + " " + std::to_string(v); }

const Tensor& need(const Checkpoint& ck, const std::string& name) {
  const Tensor* t = ck.find(name);
  if (!t) throw InputError("checkpoint has no tensor " + ck.where(name));
  return *t;
}

void check_shape(const Checkpoint& ck, const Tensor& t, const Shape& s, const std::string& why) {
  if (t.shape() != s)
    throw InputError(ck.where(t.name()) + ": expected shape " + shape_to_string(s) + " (" + why + "), got " + shape_to_string(t.shape()));
}

Linear load_linear(const Checkpoint& ck, const std::string& name, int64_t out, int64_t in, const std::string& why) {
  const Tensor& t = need(ck, name);
  check_shape(ck, t, {out, in}, why);
  Linear l;
  l.w = t;
  if (t.dtype() == DType::e4m3) {
    const std::string sname = name + "_scale_inv";
    const Tensor& s = need(ck, sname);
    if (s.dtype() != DType::f32) throw InputError(ck.where(sname) + ": scales must be F32, got " + std::string(dtype_name(s.dtype())));
    check_shape(ck, s, {fp8::tiles(out), fp8::tiles(in)}, "one scale per 128x128 block of " + name);
    l.scale_inv = s;
  } else if (t.dtype() != DType::bf16 && t.dtype() != DType::f32) {
    throw InputError(ck.where(name) + ": dtype " + std::string(dtype_name(t.dtype())) +
                     " is not a weight format here (F8_E4M3 with _scale_inv, BF16 or F32)");
  }
  return l;
}

std::vector<uint16_t> load_bf16_vector(const Checkpoint& ck, const std::string& name, int64_t n, const std::string& why) {
  const Tensor& t = need(ck, name);
  check_shape(ck, t, {n}, why);
  if (t.dtype() != DType::bf16) throw InputError(ck.where(name) + ": a norm weight must be BF16, got " + std::string(dtype_name(t.dtype())));
  const auto s = t.span<const uint16_t>();
  return {s.begin(), s.end()};
}

std::vector<double> load_f64_vector(const Checkpoint& ck, const std::string& name, int64_t n, const std::string& why) {
  const Tensor& t = need(ck, name);
  check_shape(ck, t, {n}, why);
  if (t.dtype() != DType::bf16 && t.dtype() != DType::f32)
    throw InputError(ck.where(name) + ": a norm weight must be BF16 or F32, got " + std::string(dtype_name(t.dtype())));
  std::vector<double> v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = t.get(i);
  return v;
}

Mlp load_mlp(const Checkpoint& ck, const std::string& prefix, int64_t dim, int64_t inter, const std::string& inter_why) {
  const std::string d = num("dim", dim);
  return {load_linear(ck, prefix + ".gate_proj.weight", inter, dim, inter_why + ", " + d),
          load_linear(ck, prefix + ".up_proj.weight", inter, dim, inter_why + ", " + d),
          load_linear(ck, prefix + ".down_proj.weight", dim, inter, d + ", " + inter_why)};
}

Block load_block(const ModelConfig& c, const Checkpoint& ck, int64_t layer) {
  const mla::LayerDims d = mla::LayerDims::from(c);
  auto n = [&](const std::string& rest) { return layer_name(layer, rest); };
  const std::string dim = num("dim", c.dim);
  Block b;
  b.attn_norm = load_bf16_vector(ck, n("input_layernorm.weight"), c.dim, dim);
  b.ffn_norm = load_bf16_vector(ck, n("post_attention_layernorm.weight"), c.dim, dim);
  const std::string qk = num("n_heads", d.heads) + " x (" + num("qk_nope_head_dim", d.nope) + " + " + num("qk_rope_head_dim", d.rope) + ")";
  Attention& a = b.attn;
  if (d.q_lora > 0) {
    const std::string ql = num("q_lora_rank", d.q_lora);
    a.q_a = load_linear(ck, n("self_attn.q_a_proj.weight"), d.q_lora, c.dim, ql + ", " + dim);
    a.q_norm = load_f64_vector(ck, n("self_attn.q_a_layernorm.weight"), d.q_lora, ql);
    a.q_b = load_linear(ck, n("self_attn.q_b_proj.weight"), d.heads * d.qk(), d.q_lora, qk + ", " + ql);
  } else {
    a.q = load_linear(ck, n("self_attn.q_proj.weight"), d.heads * d.qk(), c.dim, qk + ", " + dim);
  }
  const std::string kl = num("kv_lora_rank", d.kv_lora);
  a.kv_a = load_linear(ck, n("self_attn.kv_a_proj_with_mqa.weight"), d.kv_lora + d.rope, c.dim, kl + " + " + num("qk_rope_head_dim", d.rope) + ", " + dim);
  a.kv_norm = load_f64_vector(ck, n("self_attn.kv_a_layernorm.weight"), d.kv_lora, kl);
  a.kv_b = load_linear(ck, n("self_attn.kv_b_proj.weight"), d.heads * (d.nope + d.v), d.kv_lora,
                       num("n_heads", d.heads) + " x (" + num("qk_nope_head_dim", d.nope) + " + " + num("v_head_dim", d.v) + "), " + kl);
  a.o = load_linear(ck, n("self_attn.o_proj.weight"), c.dim, d.heads * d.v, dim + ", " + num("n_heads", d.heads) + " x " + num("v_head_dim", d.v));
  if (layer < c.n_dense_layers) {
    b.mlp = load_mlp(ck, n("mlp"), c.dim, c.inter_dim, num("inter_dim", c.inter_dim));
    return b;
  }
  const moe_gate::Routing r = moe_gate::Routing::from(c);
  Moe m;
  m.gate.w = need(ck, n("mlp.gate.weight"));
  check_shape(ck, m.gate.w, {r.experts, c.dim}, num("n_routed_experts", r.experts) + ", " + dim);
  if (m.gate.w.dtype() != DType::bf16)
    throw InputError(ck.where(m.gate.w.name()) + ": the gate weight must be BF16, got " + std::string(dtype_name(m.gate.w.dtype())));
  if (r.bias) {
    m.bias = need(ck, n("mlp.gate.e_score_correction_bias"));
    check_shape(ck, *m.bias, {r.experts}, num("n_routed_experts", r.experts));
    if (m.bias->dtype() != DType::f32) throw InputError(ck.where(m.bias->name()) + ": the router bias must be F32, got " + std::string(dtype_name(m.bias->dtype())));
  }
  const std::string mi = num("moe_inter_dim", c.moe_inter_dim);
  for (int64_t e = 0; e < r.experts; ++e) m.experts.push_back(load_mlp(ck, n("mlp.experts." + std::to_string(e)), c.dim, c.moe_inter_dim, mi));
  if (c.n_shared_experts > 0)
    m.shared = load_mlp(ck, n("mlp.shared_experts"), c.dim, c.n_shared_experts * c.moe_inter_dim, num("n_shared_experts", c.n_shared_experts) + " x " + mi);
  b.moe = std::move(m);
  return b;
}

}  // namespace

MtpModule load_mtp(const ModelConfig& c, const Checkpoint& ck) {
  const int64_t L = c.n_layers;
  if (!ck.has_layer(L))
    throw InputError("checkpoint has no MTP layer: no tensor " + ck.where(layer_name(L, "*")) +
                     "; the depth-1 MTP module (enorm, hnorm, eh_proj, one transformer block, shared_head.norm) is stored there");
  const std::string dim = num("dim", c.dim);
  MtpModule m;
  m.enorm = load_bf16_vector(ck, layer_name(L, "enorm.weight"), c.dim, dim);
  m.hnorm = load_bf16_vector(ck, layer_name(L, "hnorm.weight"), c.dim, dim);
  m.eh_proj = load_linear(ck, layer_name(L, "eh_proj.weight"), c.dim, 2 * c.dim, dim + ", 2 x dim (embedding, hidden)");
  m.shared_norm = load_bf16_vector(ck, layer_name(L, "shared_head.norm.weight"), c.dim, dim);
  m.block = load_block(c, ck, L);
  return m;
}

Weights load_weights(const ModelConfig& c, const Checkpoint& ck, int64_t layers, bool with_mtp) {
  if (!c.is_mla_moe()) throw InputError("model: '" + c.id + "' is not an MLA + MoE config (family " + c.family + ")");
  if (layers > c.n_layers) throw InputError("model: " + std::to_string(layers) + " layers asked for, the config has " + std::to_string(c.n_layers));
  if (const rope::Yarn v3; c.rope_theta != v3.theta) {  // attention() takes rope::Yarn{}, as the mla references do
    std::ostringstream os;
    os << "model: config '" << c.id << "' has rope_theta " << c.rope_theta << "; this forward applies V3's RoPE/YaRN settings (theta "
       << v3.theta << ", factor " << v3.factor << ", mscale " << v3.mscale << ") to every config, so it would compute another model (docs/mtp.md)";
    throw InputError(os.str());
  }
  Weights w;
  w.cfg = c;
  w.layers = layers < 0 ? c.n_layers : layers;
  const std::string vd = num("vocab_size", c.vocab_size) + ", " + num("dim", c.dim);
  w.embed = need(ck, "model.embed_tokens.weight");
  check_shape(ck, w.embed, {c.vocab_size, c.dim}, vd);
  if (w.embed.dtype() != DType::bf16) throw InputError(ck.where("model.embed_tokens.weight") + ": the embedding must be BF16");
  for (int64_t l = 0; l < w.layers; ++l) w.blocks.push_back(load_block(c, ck, l));
  w.final_norm = load_bf16_vector(ck, "model.norm.weight", c.dim, num("dim", c.dim));
  w.head = load_linear(ck, "lm_head.weight", c.vocab_size, c.dim, vd);
  if (c.mtp_depth < 1) return w;
  const std::string mtp_layer = layer_name(c.n_layers, "*");
  if (!with_mtp)
    w.mtp_note = "MTP layer " + mtp_layer + " not loaded (the main model only was asked for); MTP outputs are unavailable";
  else if (w.layers < c.n_layers)
    w.mtp_note = "MTP layer " + mtp_layer + " not loaded: only " + std::to_string(w.layers) + " of " + std::to_string(c.n_layers) +
                 " main layers are loaded, and the MTP module reads the full model's final hidden state; MTP outputs are unavailable";
  else if (!ck.has_layer(c.n_layers))
    w.mtp_note = "MTP layer absent: the checkpoint has no tensor " + mtp_layer + ", where the depth-1 MTP module is stored (config mtp_depth " +
                 std::to_string(c.mtp_depth) + "); the main model runs, MTP outputs are unavailable";
  else
    w.mtp = load_mtp(c, ck);  // a partial layer is an error naming the first missing tensor
  if (w.mtp && c.mtp_depth > 1)
    w.mtp_note = "config mtp_depth " + std::to_string(c.mtp_depth) + ": only the depth-1 MTP module (" + mtp_layer + ") is loaded and run";
  return w;
}

std::vector<Tensor> random_checkpoint(const ModelConfig& c, uint64_t seed, bool fp8) {
  const mla::LayerDims d = mla::LayerDims::from(c);
  std::vector<Tensor> out;
  uint64_t stream = seed;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, bool quantize) {
    Tensor t(name, DType::bf16, {rows, cols});
    fill(t, Dist::normal, ++stream, 1.0 / std::sqrt(static_cast<double>(cols)));
    if (!quantize) {
      out.push_back(std::move(t));
      return;
    }
    Fp8Weight q = fp8::checkpoint_fp8_weight(t);
    out.push_back(std::move(q.weight));
    out.push_back(std::move(q.scale_inv));
  };
  auto norm = [&](const std::string& name, int64_t n) {
    Tensor t(name, DType::bf16, {n});
    const std::vector<float> g = draw(Dist::normal, ++stream, n, n, 0.1);
    auto s = t.span<uint16_t>();
    for (int64_t i = 0; i < n; ++i) s[static_cast<std::size_t>(i)] = f32_to_bf16(1.0f + g[static_cast<std::size_t>(i)]);
    out.push_back(std::move(t));
  };
  auto mlp = [&](const std::string& prefix, int64_t inter) {
    matrix(prefix + ".gate_proj.weight", inter, c.dim, fp8);
    matrix(prefix + ".up_proj.weight", inter, c.dim, fp8);
    matrix(prefix + ".down_proj.weight", c.dim, inter, fp8);
  };
  auto block = [&](int64_t l) {
    auto n = [&](const std::string& rest) { return layer_name(l, rest); };
    norm(n("input_layernorm.weight"), c.dim);
    if (d.q_lora > 0) {
      matrix(n("self_attn.q_a_proj.weight"), d.q_lora, c.dim, fp8);
      norm(n("self_attn.q_a_layernorm.weight"), d.q_lora);
      matrix(n("self_attn.q_b_proj.weight"), d.heads * d.qk(), d.q_lora, fp8);
    } else {
      matrix(n("self_attn.q_proj.weight"), d.heads * d.qk(), c.dim, fp8);
    }
    matrix(n("self_attn.kv_a_proj_with_mqa.weight"), d.kv_lora + d.rope, c.dim, fp8);
    norm(n("self_attn.kv_a_layernorm.weight"), d.kv_lora);
    matrix(n("self_attn.kv_b_proj.weight"), d.heads * (d.nope + d.v), d.kv_lora, fp8);
    matrix(n("self_attn.o_proj.weight"), c.dim, d.heads * d.v, fp8);
    norm(n("post_attention_layernorm.weight"), c.dim);
    if (l < c.n_dense_layers) {
      mlp(n("mlp"), c.inter_dim);
      return;
    }
    matrix(n("mlp.gate.weight"), c.n_routed_experts, c.dim, false);
    if (c.has_router_bias()) {
      Tensor b(n("mlp.gate.e_score_correction_bias"), DType::f32, {c.n_routed_experts});
      Rng rng(++stream);
      for (float& v : b.span<float>()) v = static_cast<float>(0.05 * rng.normal());
      out.push_back(std::move(b));
    }
    for (int64_t e = 0; e < c.n_routed_experts; ++e) mlp(n("mlp.experts." + std::to_string(e)), c.moe_inter_dim);
    if (c.n_shared_experts > 0) mlp(n("mlp.shared_experts"), c.n_shared_experts * c.moe_inter_dim);
  };
  matrix("model.embed_tokens.weight", c.vocab_size, c.dim, false);
  for (int64_t l = 0; l < c.n_layers; ++l) block(l);
  norm("model.norm.weight", c.dim);
  matrix("lm_head.weight", c.vocab_size, c.dim, false);
  if (c.mtp_depth >= 1) {
    const int64_t L = c.n_layers;
    norm(layer_name(L, "enorm.weight"), c.dim);
    norm(layer_name(L, "hnorm.weight"), c.dim);
    matrix(layer_name(L, "eh_proj.weight"), c.dim, 2 * c.dim, fp8);
    block(L);
    norm(layer_name(L, "shared_head.norm.weight"), c.dim);
  }
  return out;
}

}  // namespace dsv3::model
