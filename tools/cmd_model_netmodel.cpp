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
#include "reference/netmodel_decode_calibrate.hpp"
#include "reference/netmodel_decode_limit.hpp"
#include "reference/netmodel_topology.hpp"
#include "reference/netmodel_train_cost.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

HardwareProfile hardware_by_id_or_file(const std::string& s) {
  const bool file = s.find('/') != std::string::npos || (s.size() > 5 && s.substr(s.size() - 5) == ".json");
  return file ? load_hardware_profile(s) : find_hardware(s);
}

namespace {

using namespace dsv3::netmodel;

void write_rows(const std::string& path, const nlohmann::json& rows, const char* cmd) {
  if (path.empty()) return;
  write_json_atomic(path, rows);
  std::cerr << "model " << cmd << ": wrote " << path << "\n";
}

// ---- decode-limit ----------------------------------------------------------------------------

void print_decode_limit(const std::vector<DecodeLimitResult>& rs) {
  const DecodeLimitInputs& in = rs.front().in;
  std::printf("Decode speed limit, ISCA §2.3.2 (v3-facts §7.3): EP all-to-all time%s\n\n",
              rs.front().in.compute_us > 0 ? ", with the given compute time per micro-batch" : " only, computation hidden");
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
  std::printf("  ep_devices               %8lld  one expert per device (only for the NVLink-domain check)\n",
              static_cast<long long>(in.ep_devices));
  std::printf("  compute_us               %8g  compute per micro-batch and layer (0 = hidden, the paper)\n\n", in.compute_us);
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

  std::printf("%-28s %-9s %7s %10s %10s %10s %10s %10s %-8s %9s %9s %9s\n", "case", "link", "GB/s", "disp us", "comb us",
              "step us", "compute us", "layer us", "bound", "TPOT ms", "tok/s", "EP in NVL");
  for (const DecodeLimitResult& r : rs) {
    char tps[32];  // one decimal, or three significant digits below 0.1 (compute-bound CPU figures)
    std::snprintf(tps, sizeof tps, r.tokens_per_s >= 0.1 ? "%.1f" : "%.3g", r.tokens_per_s);
    std::printf("%-28s %-9s %7.1f %10.3f %10.3f %10.3f %10.3f %10.3f %-8s %9.4f %9s %9s\n", r.c.id.c_str(), r.c.link.c_str(),
                r.c.bandwidth_gbs, r.dispatch_us, r.combine_us, r.step_us, r.in.compute_us, r.layer_us, r.bound.c_str(), r.tpot_ms,
                tps, !r.fits_nvlink_domain ? "-" : (*r.fits_nvlink_domain ? "yes" : "no"));
  }
  std::printf("\nbound: hidden = computation assumed hidden (the paper); with a compute time, each layer takes\n"
              "micro_batches x max(step, compute): network when the all-to-alls are the longer, compute otherwise.\n");
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
      "  dsv3 model decode-limit --model deepseek-v3-671b --bandwidth-gbs 100 --json dl.json\n"
      "  dsv3 model decode-limit --bundle results/<run>/bundle.json --hardware h100-sxm   compute measured there\n\n"
      "--bundle takes the compute time of one micro-batch from a result bundle's benchmarks (MLA decode at\n"
      "b = tokens_per_device, the expert's FP8 GEMMs at m = tokens_per_device x experts_per_token, V3's\n"
      "shapes; reference/netmodel_decode_calibrate.hpp) and says per case whether the layer is compute- or\n"
      "network-bound.");
  struct Opts {
    std::vector<std::string> hardware;
    std::vector<double> bandwidths;
    std::string model, json, bundle;
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
  auto* compute = cmd->add_option("--compute-us", o->in.compute_us, "Compute per micro-batch and layer, us (0 = hidden)")
                      ->capture_default_str();
  cmd->add_option("--bundle", o->bundle, "Take --compute-us from this result bundle's MLA decode and FP8 GEMM benchmarks")
      ->excludes(compute);
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
    std::optional<ComputeCalibration> cal;
    if (!o->bundle.empty()) {
      cal = calibrate_compute(load_json_file(o->bundle), o->bundle, in,
                                                       find_model(o->model.empty() ? "deepseek-v3-671b" : o->model));
      std::printf("Compute per micro-batch from %s (%s):\n", o->bundle.c_str(), cal->device.c_str());
      for (const ComputeTerm& t : cal->terms)
        std::printf("  %-48s %10.3f us  %s, %s at %g\n      rows: %s\n", t.what.c_str(), t.us, t.variant.c_str(), t.how.c_str(),
                    t.wanted, t.rows.c_str());
      std::printf("  %-48s %10.3f us\n\n", "total", cal->compute_us);
      in.compute_us = cal->compute_us;
    }
    in.validate();
    std::vector<DecodeLimitCase> cases = decode_limit_paper_cases();
    for (const auto& id : o->hardware.empty() ? list_hardware() : o->hardware)
      for (const auto& c : decode_limit_hardware_cases(hardware_by_id_or_file(id))) cases.push_back(c);
    for (double b : o->bandwidths) cases.push_back(decode_limit_custom_case(b));
    std::vector<DecodeLimitResult> rs;  // all computed first: a bad case fails before any output
    for (const auto& c : cases) rs.push_back(decode_limit(in, c));
    print_decode_limit(rs);
    write_rows(o->json, cal ? calibrated_rows(rs, *cal) : decode_limit_rows(rs), "decode-limit");
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

// ---- train-cost ------------------------------------------------------------------------------

void print_train_cost(const std::vector<TrainFlopsPerToken>& fs, const std::vector<TrainStepFigures>& steps,
                      const std::string& step_model, const std::string& peak_from) {
  std::printf("Training GFLOPs per token, ISCA Table 2 (§2.2.1; v3-facts §8.1), sequence length %lld\n",
              static_cast<long long>(fs.empty() ? kIscaTrainSeqLen : fs.front().seq_len));
  std::printf("  F = 6 x N_mm + 3 x L x s x n_h x (d_qk + d_v)   (causal attention: average context s/2)\n");
  std::printf("%-22s %-10s %16s %10s %10s %10s %10s %8s\n", "model", "family", "N_mm", "6 N_mm", "attention",
              "F causal", "non-causal", "paper");
  for (const auto& f : fs)
    std::printf("%-22s %-10s %16lld %10.3f %10.3f %10.3f %10.3f %8s\n", f.id.c_str(), f.family.c_str(),
                static_cast<long long>(f.matmul_params), f.matmul_gflops, f.attention_gflops, f.total_gflops,
                f.noncausal_gflops, f.paper_gflops ? std::to_string(static_cast<long long>(*f.paper_gflops)).c_str() : "-");
  std::printf("\nN_mm: activated matmul parameters per token (projections, activated + shared experts, router,\n"
              "LM head; not the input embedding, norms or router bias). Attention: QK^T and PV, MLA in its\n"
              "naive training form (d_qk = nope + rope). GFLOPs = 1e9 FLOPs.\n");
  for (const auto& f : fs)
    if (!f.verdict.empty()) std::printf("  %s: %s.\n", f.id.c_str(), f.verdict.c_str());

  std::printf("\nISCA Table 4 cross-check (v3-facts §8.1, G19, G20), F of %s, peak %s:\n", step_model.c_str(),
              peak_from.c_str());
  std::printf("  tokens/step = seqs x seq_len; tokens/day = tokens/step x 86400 / step_s;\n"
              "  TFLOPS = F x tokens/step / (gpus x step_s); MFU = TFLOPS / peak\n");
  std::printf("%-18s %8s %6s %12s %14s %9s %9s %8s %8s\n", "case", "step s", "gpus", "tokens/step", "tokens/day B",
              "TFLOPS c", "TFLOPS nc", "MFU c", "MFU nc");
  for (const auto& r : steps) {
    std::printf("%-18s %8.3f %6lld %12lld %14.3f %9.1f %9.1f %7.2f%% %7.2f%%\n", r.in.id.c_str(), r.in.step_s,
                static_cast<long long>(r.in.gpus), static_cast<long long>(r.tokens_per_step), r.tokens_per_day / 1e9,
                r.tflops_causal, r.tflops_noncausal, r.mfu_causal * 100, r.mfu_noncausal * 100);
    if (!r.paper) continue;
    auto v = [](const std::optional<double>& x, const char* f, double scale = 1) {
      char buf[32];
      if (!x) return std::string("-");
      std::snprintf(buf, sizeof buf, f, *x * scale);
      return std::string(buf);
    };
    std::printf("%-18s %8s %6s %12s %14.2f %9s %9s %8s %8s\n", "  paper", "", "", "", r.paper->tokens_per_day_b,
                v(r.paper->tflops_causal, "%.0f").c_str(), v(r.paper->tflops_noncausal, "%.0f").c_str(), "-",
                v(r.paper->mfu_noncausal, "%.2f%%", 100).c_str());
  }
  std::printf("c: causal F, nc: non-causal F (twice the attention term). The paper's own F behind Table 4 is not\n"
              "printed; Table 2's rounded 250 gives %.1f causal TFLOPS for the first case.\n",
              steps.empty() ? 0.0 : train_step_figures(steps.front().in, 250.0, 250.0).tflops_causal);
}

void add_train_cost(CLI::App& model) {
  auto* cmd = model.add_subcommand("train-cost", "Training GFLOPs per token (ISCA Table 2) and Table 4's tokens/day, TFLOPS, MFU");
  cmd->footer(
      "GFLOPs per training token from each model config, with the formula written out: 6 x activated\n"
      "matmul parameters + the causal attention term; V2 and V3 reproduce ISCA Table 2, LLaMA-3.1-405B and\n"
      "Qwen2.5-72B do not, and the reason is printed. Then ISCA Table 4's tokens/day, per-GPU TFLOPS and\n"
      "MFU from the step time (MPFT 19.926 s, MRFT 19.946 s; or --step-s), 2048 GPUs, 15360 x 4096 tokens\n"
      "per step, the peak of a hardware profile (h800-sxm) or --peak-tflops.\n"
      "Formulas and sources: reference/netmodel_train_cost.hpp, docs/netmodel.md.\n\n"
      "Examples:\n"
      "  dsv3 model train-cost\n"
      "  dsv3 model train-cost deepseek-v3-671b --step-s 15 --gpus 4096 --hardware b200 --json tc.json");
  struct Opts {
    std::vector<std::string> ids;
    std::string model = "deepseek-v3-671b", hardware = "h800-sxm", json;
    int64_t seq_len = kIscaTrainSeqLen;
    TrainStepInputs step;
    double peak = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("ids", o->ids, "Model ids for the GFLOPs table (default: every file in datasets/models)");
  cmd->add_option("--seq-len", o->seq_len, "Sequence length (Table 2: 4096)")->capture_default_str();
  cmd->add_option("--model", o->model, "Model whose F the step figures use")->capture_default_str();
  auto* step = cmd->add_option("--step-s", o->step.step_s, "Seconds per step (default: Table 4's MPFT and MRFT)");
  cmd->add_option("--gpus", o->step.gpus, "GPUs")->capture_default_str();
  cmd->add_option("--seqs-per-step", o->step.seqs_per_step, "Sequences per step")->capture_default_str();
  cmd->add_option("--hardware", o->hardware, "Hardware profile (id or JSON file) whose dense_bf16_tflops is the peak")
      ->capture_default_str();
  auto* peak = cmd->add_option("--peak-tflops", o->peak, "Peak TFLOPS per GPU (instead of the profile's)");
  cmd->add_option("--json", o->json, "Also write the rows (docs/netmodel.md \"train_cost\") to this JSON file");
  cmd->callback([=] {
    std::string peak_from = std::to_string(o->peak) + " TFLOPS (--peak-tflops)";
    double peak_tflops = o->peak;
    if (!peak->count()) {
      const HardwareProfile h = hardware_by_id_or_file(o->hardware);
      peak_tflops = h.dense_bf16_tflops;
      char buf[128];
      std::snprintf(buf, sizeof buf, "%g TFLOPS (%s dense_bf16_tflops)", peak_tflops, h.id.c_str());
      peak_from = buf;
    }
    std::vector<TrainFlopsPerToken> fs;
    for (const auto& id : o->ids.empty() ? list_models() : o->ids)
      fs.push_back(train_flops_per_token(find_model(id), o->seq_len));
    const TrainFlopsPerToken f = train_flops_per_token(find_model(o->model), o->step.seq_len);
    std::vector<TrainStepInputs> cases;
    if (step->count()) {
      TrainStepInputs in = o->step;
      in.id = "given";
      in.peak_tflops = peak_tflops;
      cases.push_back(in);
    } else {
      cases = isca_table4_cases(peak_tflops);
      for (auto& c : cases) c.gpus = o->step.gpus, c.seqs_per_step = o->step.seqs_per_step;
    }
    std::vector<TrainStepFigures> steps;
    for (const auto& c : cases) steps.push_back(train_step_figures(c, f.total_gflops, f.noncausal_gflops));
    print_train_cost(fs, steps, o->model, peak_from);
    write_rows(o->json, train_cost_rows(fs, steps), "train-cost");
  });
}

}  // namespace

void add_model_netmodel(CLI::App& model) {
  add_decode_limit(model);
  add_topology(model);
  add_train_cost(model);
}

}  // namespace dsv3::cli
