// Model config loader, validation and derived counts; see model_config.hpp.
#include "core/model_config.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "core/json_file.hpp"

namespace dsv3 {
namespace {

using nlohmann::json;

const std::set<std::string> kCommonFields{"id",        "name",       "family",     "dim",
                                          "n_layers",  "n_heads",    "vocab_size", "inter_dim",
                                          "dtype",     "rope_theta", "rms_norm_eps", "sources"};
const std::set<std::string> kMlaFields{"n_dense_layers",   "q_lora_rank",      "kv_lora_rank",
                                       "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                                       "moe_inter_dim",    "n_routed_experts", "n_shared_experts",
                                       "n_activated_experts", "n_expert_groups", "n_limited_groups",
                                       "route_scale",      "score_func",       "topk_method",
                                       "mtp_depth"};
const std::set<std::string> kGqaFields{"n_kv_heads", "head_dim"};

// Strict integer: 7168.0 or "7168" are rejected rather than converted.
template <class T>
void require(bool ok, const std::string& where, const std::string& f, T value, const std::string& rule) {
  if (ok) return;
  std::string got;
  if constexpr (std::is_convertible_v<T, std::string>) got = "'" + std::string(value) + "'";
  else got = json(value).dump();
  throw InputError(where + ": field '" + f + "' " + rule + ", got " + got);
}

void require_positive(int64_t v, const std::string& where, const std::string& f) {
  require(v > 0, where, f, v, "must be positive");
}

void check_keys(const json& j, const std::string& family, const std::string& where) {
  const bool mla = family == "mla_moe";
  for (const auto& [k, v] : j.items()) {
    if (kCommonFields.count(k) || (mla ? kMlaFields : kGqaFields).count(k)) continue;
    if ((mla ? kGqaFields : kMlaFields).count(k))
      throw InputError(where + ": field '" + k + "' belongs to the other family, not to " + family);
    throw InputError(where + ": unknown field '" + k + "' (see datasets/README.md for the schema)");
  }
}

void load_mla_fields(const json& j, const std::string& w, ModelConfig& c) {
  c.n_dense_layers = json_int(j, "n_dense_layers", w);
  c.q_lora_rank = json_int(j, "q_lora_rank", w);
  c.kv_lora_rank = json_int(j, "kv_lora_rank", w);
  c.qk_nope_head_dim = json_int(j, "qk_nope_head_dim", w);
  c.qk_rope_head_dim = json_int(j, "qk_rope_head_dim", w);
  c.v_head_dim = json_int(j, "v_head_dim", w);
  c.moe_inter_dim = json_int(j, "moe_inter_dim", w);
  c.n_routed_experts = json_int(j, "n_routed_experts", w);
  c.n_shared_experts = json_int(j, "n_shared_experts", w);
  c.n_activated_experts = json_int(j, "n_activated_experts", w);
  c.n_expert_groups = json_int(j, "n_expert_groups", w);
  c.n_limited_groups = json_int(j, "n_limited_groups", w);
  c.route_scale = json_real(j, "route_scale", w);
  c.score_func = json_field<std::string>(j, "score_func", w);
  c.topk_method = json_field_or<std::string>(j, "topk_method", "greedy", w);
  c.mtp_depth = json_int(j, "mtp_depth", w);

  require(c.n_dense_layers >= 0 && c.n_dense_layers <= c.n_layers, w, "n_dense_layers", c.n_dense_layers,
          "must be in [0, n_layers = " + std::to_string(c.n_layers) + "]");
  require(c.q_lora_rank >= 0, w, "q_lora_rank", c.q_lora_rank, "must be >= 0 (0 = no query compression)");
  require_positive(c.kv_lora_rank, w, "kv_lora_rank");
  require_positive(c.qk_nope_head_dim, w, "qk_nope_head_dim");
  require(c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0, w, "qk_rope_head_dim", c.qk_rope_head_dim,
          "must be positive and even (RoPE rotates pairs)");
  require_positive(c.v_head_dim, w, "v_head_dim");
  require_positive(c.moe_inter_dim, w, "moe_inter_dim");
  require_positive(c.n_routed_experts, w, "n_routed_experts");
  require(c.n_shared_experts >= 0, w, "n_shared_experts", c.n_shared_experts, "must be >= 0");
  require(c.n_expert_groups > 0 && c.n_routed_experts % c.n_expert_groups == 0, w, "n_expert_groups",
          c.n_expert_groups, "must be positive and divide n_routed_experts = " + std::to_string(c.n_routed_experts));
  require(c.n_limited_groups > 0 && c.n_limited_groups <= c.n_expert_groups, w, "n_limited_groups",
          c.n_limited_groups, "must be in [1, n_expert_groups = " + std::to_string(c.n_expert_groups) + "]");
  const int64_t reachable = c.n_limited_groups * (c.n_routed_experts / c.n_expert_groups);
  require(c.n_activated_experts > 0 && c.n_activated_experts <= reachable, w, "n_activated_experts",
          c.n_activated_experts,
          "must be in [1, " + std::to_string(reachable) + "] (experts in the n_limited_groups allowed groups)");
  require(c.route_scale > 0, w, "route_scale", c.route_scale, "must be positive");
  require(c.score_func == "sigmoid" || c.score_func == "softmax", w, "score_func", c.score_func,
          "must be \"sigmoid\" or \"softmax\"");
  require(c.topk_method == "noaux_tc" || c.topk_method == "group_limited_greedy" || c.topk_method == "greedy", w,
          "topk_method", c.topk_method, "must be \"noaux_tc\", \"group_limited_greedy\" or \"greedy\" (absent = greedy)");
  // Hugging Face's V3 gate (noaux_tc) computes sigmoid scores only; its V2 "greedy" is one top-k
  // over all experts, which would ignore the groups that model.py (and the references) apply.
  require(c.topk_method != "noaux_tc" || c.score_func == "sigmoid", w, "topk_method", c.topk_method,
          "is only valid with score_func \"sigmoid\" (the biased V3 gate; score_func is \"" + c.score_func + "\")");
  require(c.topk_method != "greedy" || c.n_expert_groups == 1, w, "topk_method", c.topk_method,
          "ignores expert groups (\"greedy\", also the default when absent) but n_expert_groups = " +
              std::to_string(c.n_expert_groups) + "; use \"group_limited_greedy\" or \"noaux_tc\"");
  require(c.mtp_depth >= 0, w, "mtp_depth", c.mtp_depth, "must be >= 0");
}

void load_gqa_fields(const json& j, const std::string& w, ModelConfig& c) {
  c.n_kv_heads = json_int(j, "n_kv_heads", w);
  c.head_dim = json_int(j, "head_dim", w);
  require(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, w, "n_kv_heads", c.n_kv_heads,
          "must be positive and divide n_heads = " + std::to_string(c.n_heads));
  require_positive(c.head_dim, w, "head_dim");
}

}  // namespace

ModelConfig load_model_config(const std::filesystem::path& path) {
  const json j = load_json_file(path);
  const std::string w = path.string();
  if (!j.is_object()) throw InputError(w + ": top level must be a JSON object, got " + std::string(j.type_name()));
  ModelConfig c;
  c.source = path;
  c.id = json_field<std::string>(j, "id", w);
  c.name = json_field<std::string>(j, "name", w);
  c.family = json_field<std::string>(j, "family", w);
  require(!c.id.empty(), w, "id", c.id, "must not be empty");
  require(c.family == "mla_moe" || c.family == "gqa_dense", w, "family", c.family,
          "must be \"mla_moe\" or \"gqa_dense\"");
  check_keys(j, c.family, w);

  c.dim = json_int(j, "dim", w);
  c.n_layers = json_int(j, "n_layers", w);
  c.n_heads = json_int(j, "n_heads", w);
  c.vocab_size = json_int(j, "vocab_size", w);
  c.inter_dim = json_int(j, "inter_dim", w);
  c.dtype = json_field<std::string>(j, "dtype", w);
  c.rope_theta = json_real(j, "rope_theta", w);
  c.rms_norm_eps = json_real(j, "rms_norm_eps", w);
  for (const auto& [f, v] : {std::pair<const char*, int64_t>{"dim", c.dim}, {"n_layers", c.n_layers},
                              {"n_heads", c.n_heads}, {"vocab_size", c.vocab_size}, {"inter_dim", c.inter_dim}})
    require_positive(v, w, f);
  require(c.dtype == "fp8" || c.dtype == "bf16", w, "dtype", c.dtype, "must be \"fp8\" or \"bf16\"");
  require(c.rope_theta > 0, w, "rope_theta", c.rope_theta, "must be positive");
  require(c.rms_norm_eps > 0 && c.rms_norm_eps < 1, w, "rms_norm_eps", c.rms_norm_eps, "must be in (0, 1)");

  if (c.is_mla_moe()) load_mla_fields(j, w, c);
  else load_gqa_fields(j, w, c);
  c.sources = json_sources(j, w);
  return c;
}

std::vector<std::string> list_models() { return list_json_stems(datasets_dir() / "models"); }

ModelConfig find_model(const std::string& id) {
  const auto dir = datasets_dir() / "models";
  const auto path = dir / (id + ".json");
  // Parsed once per file and process: the cases' Params ask for their config on every call,
  // timed paths included (the files do not change while the suite runs).
  static std::mutex mutex;
  static std::map<std::string, ModelConfig> parsed;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (const auto it = parsed.find(path.string()); it != parsed.end()) return it->second;
  }
  std::error_code ec;
  if (id.empty() || id.find('/') != std::string::npos || !std::filesystem::is_regular_file(path, ec))
    throw InputError(path.string() + ": no model config '" + id + "'; available: " + available_json_stems(dir));
  ModelConfig c = load_model_config(path);
  if (c.id != id)
    throw InputError(path.string() + ": field 'id' is '" + c.id + "', but the file name says '" + id + "'");
  const std::lock_guard<std::mutex> lock(mutex);
  parsed.emplace(path.string(), c);
  return c;
}

int64_t ModelConfig::kv_cache_elems_per_token_per_layer() const {
  return is_mla_moe() ? kv_lora_rank + qk_rope_head_dim : 2 * n_kv_heads * head_dim;
}

int64_t ModelConfig::kv_cache_bytes_per_token(int bytes_per_elem) const {
  return kv_cache_elems_per_token_per_layer() * n_layers * bytes_per_elem;
}

namespace {
void require_mla(const ModelConfig& c, const char* what) {
  if (!c.is_mla_moe())
    throw std::invalid_argument(std::string(what) + " is defined for mla_moe models only; '" + c.id + "' is " +
                                c.family + " (its schema lacks biases etc. for an exact count)");
}
}  // namespace

int64_t ModelConfig::attention_params_per_layer() const {
  require_mla(*this, "attention_params_per_layer");
  const int64_t qk_head = qk_nope_head_dim + qk_rope_head_dim;
  const int64_t q = q_lora_rank > 0 ? dim * q_lora_rank + q_lora_rank + q_lora_rank * n_heads * qk_head
                                    : dim * n_heads * qk_head;
  const int64_t kv = dim * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
                     kv_lora_rank * n_heads * (qk_nope_head_dim + v_head_dim);
  return q + kv + n_heads * v_head_dim * dim;
}

int64_t ModelConfig::dense_ffn_params() const { return 3 * dim * inter_dim; }
int64_t ModelConfig::expert_params() const { return 3 * dim * moe_inter_dim; }

int64_t ModelConfig::moe_ffn_params(bool activated_only) const {
  require_mla(*this, "moe_ffn_params");
  const int64_t experts = (activated_only ? n_activated_experts : n_routed_experts) + n_shared_experts;
  return experts * expert_params() + n_routed_experts * dim + (has_router_bias() ? n_routed_experts : 0);
}

int64_t ModelConfig::total_params() const {
  const int64_t layer = attention_params_per_layer() + 2 * dim;
  return n_dense_layers * (layer + dense_ffn_params()) + n_moe_layers() * (layer + moe_ffn_params(false)) + dim +
         2 * vocab_size * dim;
}

int64_t ModelConfig::activated_params() const {
  const int64_t layer = attention_params_per_layer() + 2 * dim;
  return n_dense_layers * (layer + dense_ffn_params()) + n_moe_layers() * (layer + moe_ffn_params(true)) + dim +
         2 * vocab_size * dim;
}

int64_t ModelConfig::mtp_params() const {
  // Each module: enorm, hnorm (dim each), eh_proj [dim, 2*dim], one MoE block, its own final norm.
  const int64_t block = attention_params_per_layer() + 2 * dim + moe_ffn_params(false);
  return mtp_depth * (block + 2 * dim * dim + 3 * dim);
}

}  // namespace dsv3
