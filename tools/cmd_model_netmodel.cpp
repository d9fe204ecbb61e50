// dsv3 model decode-limit | topology | train-cost: the network and training-cost calculators
// (reference/netmodel_*.hpp; docs/netmodel.md). Each prints a table with the paper's figures beside
// the computed ones, and --json writes the rows.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hardware_profile.hpp"
#include "core/json_file.hpp"
#include "core/model_config.hpp"
#include "reference/netmodel_decode_limit.hpp"
#include "reference/netmodel_topology.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

using namespace dsv3::netmodel;

// An id from datasets/hardware, or a path to a profile file (contains '/' or ends in .json).
HardwareProfile hardware_by_id_or_file(const std::string& s) {
  const bool file = s.find('/') != std::string::npos || (s.size() > 5 && s.substr(s.size() - 5) == ".json");
  return file ? load_hardware_profile(s) : find_hardware(s);
}

void write_rows(const std::string& path, const nlohmann::json& rows, const char* cmd) {
  if (path.empty()) return;
  write_json_atomic(path, rows);
  std::cerr << "model " << cmd << ": wrote " << path << "\n";
}

// ---- decode-limit ----------------------------------------------------------------------------

void print_decode_limit(const std::vector<DecodeLimitResult>& rs) {
  const DecodeLimitInputs& in = rs.front().in;
  std::printf("Decode speed limit, ISCA §2.3.2 (v3-facts §7.3): EP all-to-all time only, computation hidden\n\n");
  std::printf("Inputs (defaults are the paper's):\n");
  std::printf("  tokens_per_device        %8lld  tokens per device per EP step (\"about 32\")\n",
              static_cast<long long>(in.tokens_per_device));
  std::printf("  experts_per_token        %8lld  experts per token (8 routed + 1 shared)\n",
              static_cast<long long>(in.experts_per_token));
  std::printf("  hidden                   %8lld  elements per token (paper \"7K\" = 7000; V3's dim is 7168)\n",
              static_cast<long long>(in.hidden));
  std::printf("  dispatch_bytes_per_elem  %8g  FP8 dispatch\n", in.dispatch_bytes_per_elem);
  std::printf("  combine_bytes_per_elem   %8g  BF16 combine\n", in.combine_bytes_per_elem);
  std::printf("  n_layers                 %8lld  layers on the critical path (V3: 61, 58 of them MoE)\n",
              static_cast<long long>(in.n_layers));
  std::printf("  micro_batches            %8lld  dual micro-batch overlap: per layer = micro_batches x step\n",
              static_cast<long long>(in.micro_batches));
  std::printf("  latency_us               %8g  added to each all-to-all (paper: ignored)\n", in.latency_us);
  std::printf("  ep_devices               %8lld  one expert per device (only for the NVLink-domain check)\n\n",
              static_cast<long long>(in.ep_devices));
  const DecodeLimitResult& f = rs.front();
  std::printf("Bytes per EP step per device: dispatch %lld x %lld x %lld x %g B = %.0f B; combine x %g B = %.0f B; "
              "total %.0f B\n\n",
              static_cast<long long>(in.tokens_per_device), static_cast<long long>(in.experts_per_token),
              static_cast<long long>(in.hidden), in.dispatch_bytes_per_elem, f.dispatch_bytes,
              in.combine_bytes_per_elem, f.combine_bytes, f.step_bytes);

  for (const DecodeLimitResult& r : rs) {
    if (!r.c.paper) continue;
    const auto& p = *r.c.paper;
    std::printf("%s (%s, %.0f GB/s):\n", r.c.id.c_str(), r.c.label.c_str(), r.c.bandwidth_gbs);
    std::printf("  all-to-alls  %.0f B / %g GB/s = %.3f us dispatch + %.3f us combine = %.3f us   (paper %.2f us)\n",
                r.step_bytes, r.c.bandwidth_gbs, r.dispatch_us, r.combine_us, r.step_us, p.step_us);
    std::printf("  per layer    %lld x %.3f us = %.3f us   (paper %.2f us)\n", static_cast<long long>(r.in.micro_batches),
                r.step_us, r.layer_us, p.layer_us);
    std::printf("  TPOT         %lld x %.3f us = %.5f ms   (paper %.2f ms)\n", static_cast<long long>(r.in.n_layers),
                r.layer_us, r.tpot_ms, p.tpot_ms);
    std::printf("  tokens/s     1 / TPOT = %.2f   (paper %g)\n\n", r.tokens_per_s, p.tokens_per_s);
  }

  std::printf("%-28s %-9s %7s %10s %10s %10s %10s %9s %9s %9s\n", "case", "link", "GB/s", "disp us", "comb us",
              "step us", "layer us", "TPOT ms", "tok/s", "EP in NVL");
  for (const DecodeLimitResult& r : rs) {
    std::printf("%-28s %-9s %7.1f %10.3f %10.3f %10.3f %10.3f %9.4f %9.1f %9s\n", r.c.id.c_str(), r.c.link.c_str(),
                r.c.bandwidth_gbs, r.dispatch_us, r.combine_us, r.step_us, r.layer_us, r.tpot_ms, r.tokens_per_s,
                !r.fits_nvlink_domain ? "-" : (*r.fits_nvlink_domain ? "yes" : "no"));
  }
  std::printf("\nscale_out: nic_gbps / 8 x nics_per_gpu; scale_up: nvlink_bandwidth_gbs (per GPU, one direction).\n"
              "EP in NVL: whether ep_devices (%lld) fit one NVLink domain; \"no\" means a real deployment's\n"
              "all-to-all would leave NVLink, so the scale_up row is a bound the machine cannot reach (the paper's\n"
              "GB200 case makes this assumption: 72 GPUs per NVL72).\n",
              static_cast<long long>(in.ep_devices));
}

void add_decode_limit(CLI::App& model) {
  auto* cmd = model.add_subcommand("decode-limit", "Theoretical decode speed limit from EP all-to-all time (ISCA §2.3.2)");
  cmd->footer(
      "Reproduces ISCA §2.3.2 step by step: bytes one device sends per EP step (FP8 dispatch + BF16\n"
      "combine of tokens_per_device x experts_per_token x hidden elements), the two all-to-alls' time at\n"
      "the case's bandwidth, the time per layer with dual micro-batch overlap (computation assumed fully\n"
      "hidden), TPOT over n_layers and its inverse in tokens/s. Cases: the paper's two (400 Gbps IB,\n"
      "GB200 NVL72), then for each hardware profile a scale-out (NIC) and a scale-up (NVLink) row.\n"
      "Every input flag defaults to the paper's value; --model takes hidden, experts_per_token, n_layers\n"
      "and ep_devices from a config instead (flags given explicitly still win).\n"
      "Formulas and sources: reference/netmodel_decode_limit.hpp, docs/netmodel.md.\n\n"
      "Examples:\n"
      "  dsv3 model decode-limit                               paper cases + every profile\n"
      "  dsv3 model decode-limit --hardware h800-sxm --hidden 7168 --latency-us 3.7\n"
      "  dsv3 model decode-limit --model deepseek-v3-671b --bandwidth-gbs 100 --json dl.json");
  struct Opts {
    std::vector<std::string> hardware;
    std::vector<double> bandwidths;
    std::string model, json;
    DecodeLimitInputs in;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--hardware", o->hardware,
                  "Hardware profile ids or profile JSON files (default: every file in datasets/hardware)");
  cmd->add_option("--bandwidth-gbs", o->bandwidths, "Also evaluate these per-device bandwidths, GB/s (> 0)");
  cmd->add_option("--model", o->model, "Take hidden, experts_per_token, n_layers, ep_devices from this model config");
  cmd->add_option("--tokens-per-device", o->in.tokens_per_device, "Tokens per device per EP step")->capture_default_str();
  auto* experts = cmd->add_option("--experts-per-token", o->in.experts_per_token,
                                  "Experts per token (routed + shared)")->capture_default_str();
  auto* hidden = cmd->add_option("--hidden", o->in.hidden, "Elements per token (paper: 7K = 7000)")->capture_default_str();
  cmd->add_option("--dispatch-bytes", o->in.dispatch_bytes_per_elem, "Bytes per element, dispatch (FP8)")
      ->capture_default_str();
  cmd->add_option("--combine-bytes", o->in.combine_bytes_per_elem, "Bytes per element, combine (BF16)")
      ->capture_default_str();
  auto* layers = cmd->add_option("--layers", o->in.n_layers, "Layers (n_layers)")->capture_default_str();
  cmd->add_option("--micro-batches", o->in.micro_batches, "Overlapped micro-batches per layer")->capture_default_str();
  cmd->add_option("--latency-us", o->in.latency_us, "Latency added to each all-to-all, us")->capture_default_str();
  auto* ep = cmd->add_option("--ep-devices", o->in.ep_devices, "Devices in the EP group (NVLink-domain check)")
                 ->capture_default_str();
  cmd->add_option("--json", o->json, "Also write the rows (docs/netmodel.md \"decode_limit\") to this JSON file");
  cmd->callback([=] {
    DecodeLimitInputs in = o->in;
    if (!o->model.empty()) {
      const DecodeLimitInputs m = decode_limit_inputs_for(find_model(o->model), o->in);
      if (!hidden->count()) in.hidden = m.hidden;
      if (!experts->count()) in.experts_per_token = m.experts_per_token;
      if (!layers->count()) in.n_layers = m.n_layers;
      if (!ep->count()) in.ep_devices = m.ep_devices;
    }
    in.validate();
    std::vector<DecodeLimitCase> cases = decode_limit_paper_cases();
    for (const auto& id : o->hardware.empty() ? list_hardware() : o->hardware)
      for (const auto& c : decode_limit_hardware_cases(hardware_by_id_or_file(id))) cases.push_back(c);
    for (double b : o->bandwidths) cases.push_back(decode_limit_custom_case(b));
    std::vector<DecodeLimitResult> rs;  // all computed first: a bad case fails before any output
    for (const auto& c : cases) rs.push_back(decode_limit(in, c));
    print_decode_limit(rs);
    write_rows(o->json, decode_limit_rows(rs), "decode-limit");
  });
}


// ---- topology --------------------------------------------------------------------------------

std::string paper_or_dash(const std::optional<IscaTable3Row>& p, double IscaTable3Row::*field, const char* fmt) {
  if (!p) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, (*p).*field);
  return buf;
}

void print_topology(const std::vector<TopologyCost>& t, const PriceModel& p, const PriceModel& fit) {
  std::printf("Cluster topologies, ISCA Table 3 (§5.1; v3-facts §7.4). Links: switch-to-switch.\n");
  std::printf("%-5s %-38s %6s %6s %9s %8s %9s %10s %10s %11s %11s\n", "", "topology", "radix", "planes", "endpoints",
              "switches", "links", "cost M$", "paper M$", "k$/endpt", "paper k$/e");
  for (const TopologyCost& c : t) {
    const TopologyCounts& k = c.counts;
    std::printf("%-5s %-38s %6s %6lld %9lld %8lld %9lld %10.2f %10s %11.3f %11s\n", k.id.c_str(), k.name.c_str(),
                k.from_paper ? "-" : std::to_string(k.radix).c_str(), static_cast<long long>(k.planes),
                static_cast<long long>(k.endpoints), static_cast<long long>(k.switches),
                static_cast<long long>(k.links), c.cost_usd / 1e6,
                paper_or_dash(c.paper, &IscaTable3Row::cost_musd, "%.0f").c_str(), c.cost_per_endpoint_usd / 1e3,
                paper_or_dash(c.paper, &IscaTable3Row::cost_per_endpoint_kusd, "%g").c_str());
  }
  std::printf("\nCounts: FT2 k^2/2 endpoints, 3k/2 switches, k^2/2 links; MPFT = planes x FT2; FT3 k^3/4 endpoints,\n"
              "5k^2/4 switches, k^3/2 links. SF and DF: the paper's counts as given (not computed here).\n");
  const bool fitted = p.switch_usd == fit.switch_usd && p.link_usd == fit.link_usd;
  std::printf("\nCost = switches x %.2f $ + links x %.2f $ (%s).\n", p.switch_usd, p.link_usd,
              fitted ? "the fit below" : p.source.c_str());
  std::printf("Price fit: ISCA states no prices (Table 3 follows the Slim Fly paper's cost methodology, which\n"
              "prices cables by type and length), so the model is FITTED, not recovered: two prices solved\n"
              "exactly from FT2's 4.39 k$/endpoint and FT3's 491 M$ give %.2f $ per switch and %.2f $ per link.\n"
              "FT2, MPFT and FT3 then match the table's rounding; SF and DF are an out-of-sample check:",
              fit.switch_usd, fit.link_usd);
  for (const TopologyCost& c : topology_table(kIscaSwitchRadix, kIscaPlanes, fit))
    if (c.counts.from_paper && c.paper)
      std::printf(" %s %.1f vs %.0f M$ (%+.1f %%)", c.counts.id.c_str(), c.cost_usd / 1e6, c.paper->cost_musd,
                  (c.cost_usd / (c.paper->cost_musd * 1e6) - 1) * 100);
  std::printf(".\n");
}

void add_topology(CLI::App& model) {
  auto* cmd = model.add_subcommand("topology", "Fat-tree, multi-plane fat-tree and 3-layer fat-tree counts and cost (ISCA Table 3)");
  cmd->footer(
      "Endpoints, switches and switch-to-switch links of a two-layer fat-tree (FT2), a multi-plane fat-tree\n"
      "(MPFT: `planes` independent FT2s, one NIC per endpoint per plane, as V3's 8-plane cluster) and a\n"
      "three-layer fat-tree (FT3) built from switches of `radix` ports, plus ISCA Table 3's Slim Fly and\n"
      "Dragonfly columns as given. Cost = switches x switch price + links x link price; the default prices\n"
      "are a fit to Table 3 (the paper states none), printed with the fit. The paper's columns are shown\n"
      "wherever the counts match them (radix 64, 8 planes).\n"
      "Formulas and sources: reference/netmodel_topology.hpp, docs/netmodel.md.\n\n"
      "Examples:\n"
      "  dsv3 model topology                                  ISCA Table 3\n"
      "  dsv3 model topology --radix 128 --planes 4 --switch-price 60000 --link-price 1200 --json topo.json");
  struct Opts {
    int64_t radix = kIscaSwitchRadix, planes = kIscaPlanes;
    double switch_price = -1, link_price = -1;
    std::string json;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--radix", o->radix, "Switch ports, even (ISCA: 64-port 400G IB switches)")->capture_default_str();
  cmd->add_option("--planes", o->planes, "MPFT planes (V3: 8, one per GPU-NIC pair)")->capture_default_str();
  auto* sp = cmd->add_option("--switch-price", o->switch_price, "Price of one switch, $ (default: the Table 3 fit)");
  auto* lp = cmd->add_option("--link-price", o->link_price, "Price of one switch-to-switch link, $ (default: the fit)");
  cmd->add_option("--json", o->json, "Also write the rows (docs/netmodel.md \"topology\") to this JSON file");
  cmd->callback([=] {
    const PriceModel fit = isca_table3_price_fit();
    PriceModel p = fit;
    if (sp->count() || lp->count()) {
      if (sp->count()) p.switch_usd = o->switch_price;
      if (lp->count()) p.link_usd = o->link_price;
      p.source = std::string(sp->count() && lp->count() ? "given" : "given, the other from the fit");
    }
    p.validate();
    const auto t = topology_table(o->radix, o->planes, p);
    print_topology(t, p, fit);
    write_rows(o->json, topology_rows(t, p), "topology");
  });
}

}  // namespace

void add_model_netmodel(CLI::App& model) {
  add_decode_limit(model);
  add_topology(model);
}

}  // namespace dsv3::cli
