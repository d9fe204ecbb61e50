// Per-layer times of the overlap view from a hardware profile or a bundle
// (reference/pipeline_overlap_profile.hpp).
#include "reference/pipeline_overlap_profile.hpp"

#include <algorithm>
#include <cmath>
#include <regex>
#include <stdexcept>

#include "core/json_file.hpp"
#include "reference/netmodel_node_limit.hpp"

namespace dsv3::pipeline {
namespace {

using netmodel::num;

double d(int64_t v) { return static_cast<double>(v); }

// Attention's matmul parameters per token and layer (train_flops_per_token's count, norms excluded).
double attention_params(const ModelConfig& m) {
  const double h = d(m.n_heads), qk = d(m.qk_nope_head_dim + m.qk_rope_head_dim);
  const double q = m.q_lora_rank > 0 ? d(m.dim) * d(m.q_lora_rank) + d(m.q_lora_rank) * h * qk : d(m.dim) * h * qk;
  return q + d(m.dim) * d(m.kv_lora_rank + m.qk_rope_head_dim) + d(m.kv_lora_rank) * h * d(m.qk_nope_head_dim + m.v_head_dim) +
         h * d(m.v_head_dim) * d(m.dim);
}

int64_t experts_per_token(const ModelConfig& m) { return m.n_activated_experts + m.n_shared_experts; }

void need_moe(const ModelConfig& m) {
  if (!m.is_mla_moe()) throw std::invalid_argument("pipeline-overlap: model '" + m.id + "' has no MoE layers (family " + m.family + ")");
}

void need_rate(double v, const HardwareProfile& h, const char* field) {
  if (!(v > 0) || !std::isfinite(v))
    throw std::invalid_argument("pipeline-overlap: hardware profile '" + h.id + "' has " + field + " = " + num(v) + " (needs > 0)");
}

// The dispatch and combine terms: the node-limited path of the config's router at its own limit.
void add_communication(OverlapProfile& p, const ModelConfig& m, const HardwareProfile& h) {
  const bool network = p.work.ranks > p.work.ranks_per_node, nvlink = p.work.ranks_per_node > 1;
  if (network) need_rate(h.scale_out_bytes_per_s(), h, "nic_gbps x nics_per_gpu");
  if (nvlink) need_rate(h.nvlink_bytes_per_s(), h, "nvlink_bandwidth_gbs");
  netmodel::NodeLimitInputs ni;
  ni.model = m.id;
  ni.ranks = p.work.ranks;
  ni.ranks_per_node = p.work.ranks_per_node;  // resolved by base()
  ni.dispatch_overhead_bytes = d(m.dim) / 128 * 4;  // 1x128 FP32 scales (DeepEP, v3-facts §9.1)
  const netmodel::NodeLimitResult r = netmodel::node_limit_table(ni);
  const auto row = std::find_if(r.rows.begin(), r.rows.end(), [&](const auto& x) { return x.limit == r.routing.topk_groups; });
  if (row == r.rows.end()) throw std::logic_error("pipeline-overlap: no node-limit row at the gate's limit");
  const double t = d(p.work.tokens), ib = h.scale_out_bytes_per_s(), nv = h.nvlink_bytes_per_s();
  for (const auto& [piece, send] : {std::pair{"dispatch", row->dispatch_send_bytes}, std::pair{"combine", row->combine_send_bytes}}) {
    const double ib_bytes = t * row->mean_remote_nodes * send, nv_bytes = t * row->mean_nvlink_sends * send;
    const double ib_us = network ? ib_bytes / ib * 1e6 : 0, nv_us = nvlink ? nv_bytes / nv * 1e6 : 0;
    if (network)
      p.terms.push_back({piece, "IB", ib_bytes,
                         num(row->mean_remote_nodes) + " sends/token x " + num(send) + " B at " + num(ib / 1e9) + " GB/s", ib_us});
    if (nvlink)
      p.terms.push_back({piece, "NVLink", nv_bytes,
                         num(row->mean_nvlink_sends) + " sends/token x " + num(send) + " B at " + num(nv / 1e9) + " GB/s", nv_us});
    (std::string(piece) == "dispatch" ? p.in.dispatch : p.in.combine) = std::max(ib_us, nv_us);
  }
}

OverlapProfile base(const ModelConfig& m, const HardwareProfile& h, const OverlapWorkload& w) {
  w.validate();
  need_moe(m);
  OverlapProfile p;
  p.hardware = h.id;
  p.model = m.id;
  p.work = w;
  p.in.layers = (m.n_layers + w.pp - 1) / w.pp;
  if (h.sms < 1) throw std::invalid_argument("pipeline-overlap: hardware profile '" + h.id + "' has sms = " + std::to_string(h.sms));
  p.in.sms = h.sms;
  p.in.comm_sms = std::min(w.comm_sms, h.sms - 1);
  if (p.work.ranks_per_node == 0) p.work.ranks_per_node = std::min(h.nvlink_domain_gpus, w.ranks);
  if (p.work.ranks_per_node < 1 || w.ranks % p.work.ranks_per_node != 0)
    throw std::invalid_argument("pipeline-overlap: ranks_per_node (" + std::to_string(p.work.ranks_per_node) +
                                ", from the profile's nvlink_domain_gpus when not given) must divide ranks (" + std::to_string(w.ranks) + ")");
  return p;
}

}  // namespace

void OverlapWorkload::validate() const {
  auto pos = [](int64_t v, const char* f) {
    if (v < 1) throw std::invalid_argument(std::string("pipeline-overlap: ") + f + " must be >= 1, got " + std::to_string(v));
  };
  pos(tokens, "tokens");
  pos(seq_len, "seq_len");
  pos(pp, "pp");
  pos(gpus, "gpus");
  pos(seqs_per_step, "seqs_per_step");
  pos(ranks, "ranks");
  if (ranks_per_node < 0) throw std::invalid_argument("pipeline-overlap: ranks_per_node must be >= 0 (0: the profile's NVLink domain)");
  if (tokens % seq_len != 0)
    throw std::invalid_argument("pipeline-overlap: tokens (" + std::to_string(tokens) + ") must be a multiple of seq_len (" +
                                std::to_string(seq_len) + "): a micro-batch holds whole sequences");
  if (gpus % pp != 0) throw std::invalid_argument("pipeline-overlap: gpus must be a multiple of pp");
  if (comm_sms < 0) throw std::invalid_argument("pipeline-overlap: comm_sms must be >= 0");
  if (!(compute_efficiency > 0 && compute_efficiency <= 1))
    throw std::invalid_argument("pipeline-overlap: compute_efficiency must be in (0, 1], got " + num(compute_efficiency));
  if (micro_batches() < 2)
    throw std::invalid_argument("pipeline-overlap: seqs_per_step / (gpus / pp) / (tokens / seq_len) gives " +
                                std::to_string(micro_batches()) + " micro-batches; the schedules need at least 2");
}

int64_t OverlapWorkload::micro_batches() const { return seqs_per_step / (gpus / pp) / (tokens / seq_len); }

OverlapProfile overlap_from_profile(const ModelConfig& m, const HardwareProfile& h, const OverlapWorkload& w) {
  OverlapProfile p = base(m, h, w);
  p.compute = "profile";
  need_rate(h.dense_fp8_tflops, h, "dense_fp8_tflops");
  need_rate(h.dense_bf16_tflops, h, "dense_bf16_tflops");
  const double fp8 = h.dense_fp8_tflops * 1e12 * w.compute_efficiency, bf16 = h.dense_bf16_tflops * 1e12 * w.compute_efficiency;
  const std::string at8 = "at " + num(w.compute_efficiency) + " x " + num(h.dense_fp8_tflops) + " TFLOPS (FP8)";
  const std::string at16 = "at " + num(w.compute_efficiency) + " x " + num(h.dense_bf16_tflops) + " TFLOPS (BF16)";
  const double t = d(w.tokens);
  const double proj = 2 * t * attention_params(m);
  const double core = t * d(w.seq_len) * d(m.n_heads) * d(m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim);
  const double experts = 2 * t * d(experts_per_token(m)) * 3 * d(m.dim) * d(m.moe_inter_dim);
  const double router = 2 * t * d(m.dim) * d(m.n_routed_experts);
  p.terms = {{"attn", "projections (FP8 GEMMs)", proj, at8, proj / fp8 * 1e6},
             {"attn", "causal core (BF16)", core, at16, core / bf16 * 1e6},
             {"mlp", "experts (FP8 GEMMs)", experts, at8, experts / fp8 * 1e6},
             {"mlp", "router (BF16)", router, at16, router / bf16 * 1e6}};
  p.in.attn = p.terms[0].us + p.terms[1].us;
  p.in.mlp = p.terms[2].us + p.terms[3].us;
  add_communication(p, m, h);
  p.in.validate();
  return p;
}

OverlapProfile with_measured_compute(const OverlapProfile& modelled, const ModelConfig& m, const nlohmann::json& bundle,
                                     const std::string& path) {
  if (m.id != modelled.model) throw std::logic_error("pipeline-overlap: model " + m.id + " is not the profile's " + modelled.model);
  const OverlapWorkload& w = modelled.work;
  OverlapProfile p = modelled;
  p.compute = "bundle (" + netmodel::bundle_device(bundle) + ")";
  p.terms.clear();
  const std::vector<netmodel::BenchRow> rows = netmodel::bench_rows(bundle);
  auto add = [&](const char* piece, const netmodel::ComputeTerm& c, double times) {
    p.terms.push_back({piece, c.what, 0, c.variant + ": " + c.how + " [" + c.rows + "]" + (times != 1 ? " x " + num(times) : ""),
                       c.us * times});
  };

  static const std::regex prefill_re(R"(^prefill b=1 s=(\d+) h=(\d+)\b.*)");
  const netmodel::PointsByKey mla = netmodel::points_by_key(rows, "mla", prefill_re, 2, 1);  // variant -> heads -> s
  const auto [v_mla, pts_mla] = netmodel::pick_variant(mla, {"cublas_prefill"}, m.n_heads);
  if (v_mla.empty())
    throw InputError(path + ": no mla prefill benchmark rows \"prefill b=1 s=S h=" + std::to_string(m.n_heads) +
                     "\"; run `dsv3 bench mla` or `dsv3 run` first");
  add("attn", netmodel::term_from_points("causal core (MLA prefill)", v_mla, pts_mla, d(w.seq_len), "s", 2),
      d(w.tokens / w.seq_len));

  const netmodel::GemmPoints gemm = netmodel::fp8_gemm_dense_points(rows);
  const int64_t h_ = m.n_heads;
  const struct {
    const char* piece;
    const char* what;
    std::pair<int64_t, int64_t> nk;
    int64_t rows;
  } shapes[] = {
      {"attn", "wq_a|wkv_a", {m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim, m.dim}, w.tokens},
      {"attn", "wq_b", {h_ * (m.qk_nope_head_dim + m.qk_rope_head_dim), m.q_lora_rank}, w.tokens},
      {"attn", "wkv_b", {h_ * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank}, w.tokens},
      {"attn", "wo", {m.dim, h_ * m.v_head_dim}, w.tokens},
      {"mlp", "experts gate+up", {2 * m.moe_inter_dim, m.dim}, w.tokens * experts_per_token(m)},
      {"mlp", "experts down", {m.dim, m.moe_inter_dim}, w.tokens * experts_per_token(m)},
  };
  for (const auto& s : shapes) {
    if (s.nk.second < 1) throw InputError(path + ": model '" + m.id + "' has no " + s.what + " projection (q_lora_rank 0)");
    const auto [v, pts] = netmodel::pick_variant(gemm, netmodel::fp8_gemm_prefer(), s.nk);
    const std::string shape = "n=" + std::to_string(s.nk.first) + " k=" + std::to_string(s.nk.second);
    if (v.empty())
      throw InputError(path + ": no dense fp8_gemm benchmark rows of the " + s.what + " shape " + shape + " (" + m.id +
                       "); run `dsv3 bench fp8_gemm` or `dsv3 run` first");
    add(s.piece, netmodel::term_from_points(std::string(s.what) + " (" + shape + ")", v, pts, d(s.rows), "m"), 1);
  }
  p.in.attn = p.in.mlp = 0;
  for (const auto& t : p.terms) (t.piece == "attn" ? p.in.attn : p.in.mlp) += t.us;
  for (const auto& t : modelled.terms)  // communication stays the profile's
    if (t.piece != "attn" && t.piece != "mlp") p.terms.push_back(t);
  p.in.validate();
  return p;
}

OverlapRun run_overlap(const OverlapProfile& p) {
  OverlapRun r{chunk_overlap(p.in), {}};
  r.steps = step_overlaps(r.chunk, p.work.pp, p.work.micro_batches());
  return r;
}

nlohmann::json overlap_profile_rows(const OverlapProfile& p, const OverlapRun& run) {
  nlohmann::json rows = overlap_rows(run.chunk, run.steps);
  for (const auto& t : p.terms)
    rows.push_back({{"table", "term"}, {"piece", t.piece}, {"what", t.what}, {"amount", t.amount}, {"how", t.how}, {"us", t.us}});
  for (auto& r : rows) {
    r["hardware"] = p.hardware;
    r["model"] = p.model;
    r["compute"] = p.compute;
    r["tokens"] = p.work.tokens;
    r["seq_len"] = p.work.seq_len;
    r["compute_efficiency"] = p.work.compute_efficiency;  // used by "profile" rows only
    r["ranks"] = p.work.ranks;
    r["ranks_per_node"] = p.work.ranks_per_node;
  }
  return rows;
}

nlohmann::json overlap_study_rows(const nlohmann::json& bundle, const std::string& path) {
  const OverlapWorkload w;
  const ModelConfig m = find_model(w.model);
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& id : list_hardware()) {
    const OverlapProfile modelled = overlap_from_profile(m, find_hardware(id), w);
    for (auto& r : overlap_profile_rows(modelled, run_overlap(modelled))) rows.push_back(std::move(r));
    try {
      const OverlapProfile measured = with_measured_compute(modelled, m, bundle, path);
      for (auto& r : overlap_profile_rows(measured, run_overlap(measured))) rows.push_back(std::move(r));
    } catch (const InputError& e) {
      rows.push_back({{"table", "skipped"}, {"hardware", id}, {"compute", "bundle"}, {"reason", e.what()}});
    }
  }
  return rows;
}

}  // namespace dsv3::pipeline
