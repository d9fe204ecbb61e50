// Decode speed limit (ISCA §2.3.2); formulas and sources in netmodel_decode_limit.hpp.
#include "reference/netmodel_decode_limit.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dsv3::netmodel {
namespace {

void require_positive(int64_t v, const char* field) {
  if (v <= 0) throw std::invalid_argument(std::string(field) + " must be positive, got " + std::to_string(v));
}

void require_positive(double v, const char* field) {
  if (!(v > 0) || !std::isfinite(v))
    throw std::invalid_argument(std::string(field) + " must be positive and finite, got " + nlohmann::json(v).dump());
}

// ISCA §2.3.2's printed figures (v3-facts §7.3).
constexpr DecodeLimitCase::Paper kPaperIb{120.96, 241.92, 14.76, 67};
constexpr DecodeLimitCase::Paper kPaperNvl72{6.72, 13.44, 0.82, 1200};
// Per-device bandwidths of the two cases: a 400 Gbps NIC = 400 / 8 = 50 GB/s; GB200 NVL72 "900 GB/s
// unidirectional" per GPU (ISCA §2.3.2).
constexpr double kPaperIbGbs = 400.0 / 8.0;
constexpr double kPaperNvl72Gbs = 900.0;

}  // namespace

void DecodeLimitInputs::validate() const {
  require_positive(tokens_per_device, "tokens_per_device");
  require_positive(experts_per_token, "experts_per_token");
  require_positive(hidden, "hidden");
  require_positive(dispatch_bytes_per_elem, "dispatch_bytes_per_elem");
  require_positive(combine_bytes_per_elem, "combine_bytes_per_elem");
  require_positive(n_layers, "n_layers");
  require_positive(micro_batches, "micro_batches");
  require_positive(ep_devices, "ep_devices");
  if (!(latency_us >= 0) || !std::isfinite(latency_us))
    throw std::invalid_argument("latency_us must be >= 0 and finite, got " + nlohmann::json(latency_us).dump());
  if (!(compute_us >= 0) || !std::isfinite(compute_us))
    throw std::invalid_argument("compute_us must be >= 0 and finite, got " + nlohmann::json(compute_us).dump());
}

DecodeLimitInputs decode_limit_inputs_for(const ModelConfig& m, DecodeLimitInputs base) {
  if (!m.is_mla_moe())
    throw std::invalid_argument("decode limit: model '" + m.id + "' is " + m.family +
                                "; the EP all-to-all model needs an MoE config (mla_moe)");
  base.hidden = m.dim;
  base.experts_per_token = m.n_activated_experts + m.n_shared_experts;
  base.n_layers = m.n_layers;
  base.ep_devices = m.n_routed_experts;
  return base;
}

std::vector<DecodeLimitCase> decode_limit_paper_cases() {
  DecodeLimitCase ib{"paper-ib-400g", "ISCA: 400 Gbps InfiniBand", "scale_out", "", kPaperIbGbs,
                     "ISCA §2.3.2: one 400 Gbps IB NIC per device = 50 GB/s", 0, kPaperIb};
  DecodeLimitCase nvl{"paper-gb200-nvl72", "ISCA: GB200 NVL72", "scale_up", "", kPaperNvl72Gbs,
                      "ISCA §2.3.2: GB200 NVL72, 900 GB/s unidirectional per GPU", 72, kPaperNvl72};
  return {ib, nvl};
}

std::vector<DecodeLimitCase> decode_limit_hardware_cases(const HardwareProfile& h) {
  DecodeLimitCase out{h.id + "/scale_out", h.name + ", scale-out NICs", "scale_out", h.id,
                      h.scale_out_bytes_per_s() / 1e9, "nic_gbps / 8 * nics_per_gpu", 0, std::nullopt};
  DecodeLimitCase up{h.id + "/scale_up", h.name + ", NVLink", "scale_up", h.id, h.nvlink_bandwidth_gbs,
                     "nvlink_bandwidth_gbs", h.nvlink_domain_gpus, std::nullopt};
  return {out, up};
}

DecodeLimitCase decode_limit_custom_case(double bandwidth_gbs, const std::string& link) {
  require_positive(bandwidth_gbs, "bandwidth_gbs");
  return {"custom-" + nlohmann::json(bandwidth_gbs).dump() + "gbs", "given bandwidth", link, "", bandwidth_gbs,
          "--bandwidth-gbs", 0, std::nullopt};
}

DecodeLimitResult decode_limit(const DecodeLimitInputs& in, const DecodeLimitCase& c) {
  in.validate();
  require_positive(c.bandwidth_gbs, (c.hardware.empty() ? std::string("bandwidth_gbs")
                                                        : c.hardware + ": " + c.bandwidth_from).c_str());
  DecodeLimitResult r;
  r.c = c;
  r.in = in;
  // Elements leaving one device per EP step: each of its tokens goes to experts_per_token experts.
  const double elems = static_cast<double>(in.tokens_per_device) * static_cast<double>(in.experts_per_token) *
                       static_cast<double>(in.hidden);  // 32 * 9 * 7000 = 2,016,000
  r.dispatch_bytes = elems * in.dispatch_bytes_per_elem;  // FP8: 2,016,000 B
  r.combine_bytes = elems * in.combine_bytes_per_elem;    // BF16: 4,032,000 B
  r.step_bytes = r.dispatch_bytes + r.combine_bytes;      // 6,048,000 B
  const double bytes_per_us = c.bandwidth_gbs * 1e9 / 1e6;  // GB/s -> B/us
  r.dispatch_us = r.dispatch_bytes / bytes_per_us + in.latency_us;
  r.combine_us = r.combine_bytes / bytes_per_us + in.latency_us;
  r.step_us = r.dispatch_us + r.combine_us;                             // 120.96 us at 50 GB/s
  r.layer_us = static_cast<double>(in.micro_batches) * std::max(r.step_us, in.compute_us);  // 241.92 us
  r.bound = in.compute_us == 0 ? "hidden" : in.compute_us > r.step_us ? "compute" : "network";
  r.tpot_ms = static_cast<double>(in.n_layers) * r.layer_us / 1e3;      // 14.757 ms
  r.tokens_per_s = 1e3 / r.tpot_ms;                                     // 67.76
  if (c.link == "scale_up" && c.nvlink_domain_gpus > 0) r.fits_nvlink_domain = in.ep_devices <= c.nvlink_domain_gpus;
  return r;
}

nlohmann::json decode_limit_rows(const std::vector<DecodeLimitResult>& results) {
  nlohmann::json rows = nlohmann::json::array();
  for (const DecodeLimitResult& r : results) {
    nlohmann::json row{{"case", r.c.id},
                       {"label", r.c.label},
                       {"link", r.c.link},
                       {"hardware", r.c.hardware.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.c.hardware)},
                       {"bandwidth_gbs", r.c.bandwidth_gbs},
                       {"bandwidth_from", r.c.bandwidth_from},
                       {"tokens_per_device", r.in.tokens_per_device},
                       {"experts_per_token", r.in.experts_per_token},
                       {"hidden", r.in.hidden},
                       {"dispatch_bytes_per_elem", r.in.dispatch_bytes_per_elem},
                       {"combine_bytes_per_elem", r.in.combine_bytes_per_elem},
                       {"n_layers", r.in.n_layers},
                       {"micro_batches", r.in.micro_batches},
                       {"latency_us", r.in.latency_us},
                       {"ep_devices", r.in.ep_devices},
                       {"nvlink_domain_gpus", r.c.nvlink_domain_gpus > 0 ? nlohmann::json(r.c.nvlink_domain_gpus)
                                                                         : nlohmann::json(nullptr)},
                       {"fits_nvlink_domain", r.fits_nvlink_domain ? nlohmann::json(*r.fits_nvlink_domain)
                                                                   : nlohmann::json(nullptr)},
                       {"dispatch_bytes", r.dispatch_bytes},
                       {"combine_bytes", r.combine_bytes},
                       {"step_bytes", r.step_bytes},
                       {"dispatch_us", r.dispatch_us},
                       {"combine_us", r.combine_us},
                       {"step_us", r.step_us},
                       {"layer_us", r.layer_us},
                       {"compute_us", r.in.compute_us},
                       {"bound", r.bound},
                       {"tpot_ms", r.tpot_ms},
                       {"tokens_per_s", r.tokens_per_s}};
    if (r.c.paper)
      row["paper"] = {{"step_us", r.c.paper->step_us},
                      {"layer_us", r.c.paper->layer_us},
                      {"tpot_ms", r.c.paper->tpot_ms},
                      {"tokens_per_s", r.c.paper->tokens_per_s}};
    else
      row["paper"] = nullptr;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<DecodeLimitResult> decode_limit_default_results(const DecodeLimitInputs& in) {
  std::vector<DecodeLimitResult> out;
  for (const auto& c : decode_limit_paper_cases()) out.push_back(decode_limit(in, c));
  for (const auto& id : list_hardware())
    for (const auto& c : decode_limit_hardware_cases(find_hardware(id))) out.push_back(decode_limit(in, c));
  return out;
}

}  // namespace dsv3::netmodel
