// dsv3 run: the suite's main job on whatever hardware is present.
//   ceilings -> check -> studies -> bench -> MPI jobs -> calibrated models -> results/<date>_<device>/bundle.json -> plots + REPORT.md
// Numerics (check, studies) come before the benchmarks, the longest phase on a GPU host: a run cut
// short keeps its verdicts.
// The bundle is rewritten atomically after every phase and, in the bench phase, after every case;
// --resume continues an interrupted run (a bench phase at its first unmeasured case).
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>

#include "core/bundle.hpp"
#include "core/device_guard.hpp"
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "reference/netmodel.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

std::string python() {
  const std::filesystem::path venv = std::filesystem::path(DSV3_SOURCE_DIR) / ".venv" / "bin" / "python";
  return std::filesystem::exists(venv) ? venv.string() : "python3";
}

int run_script(const std::string& script, const std::string& args) {
  const std::string cmd = python() + " " + (std::filesystem::path(DSV3_SOURCE_DIR) / "scripts" / script).string() + " " + args;
  std::cerr << "run: " << cmd << "\n";
  return std::system(cmd.c_str());
}

// One entry of the bundle's "quarantine" array (docs/bundle-schema.md).
void add_quarantine(nlohmann::json& doc, const std::string& item, const std::string& phase, const std::string& why) {
  doc["quarantine"].push_back({{"variant", guard::variant_of(item)}, {"item", item}, {"phase", phase}, {"reason", why}});
}

// The variants earlier invocations quarantined (doc["quarantine"]), and the item a dead one left in
// the in-flight marker: that item is recorded as failed in its phase (a hang or a crash is a
// failure) and its variant quarantined, so this invocation does not run it again.
void restore_quarantine(nlohmann::json& doc, const std::filesystem::path& marker) {
  if (auto stale = guard::take_stale_marker(marker)) {
    const std::string item = stale->value("item", "unknown"), phase = stale->value("phase", "unknown");
    const std::string why = "the previous invocation ended while this ran: " +
                            stale->value("why", std::string("a crash, or killed from outside (see its log)"));
    std::cerr << "run: " << phase << " of " << item << ": " << why << "; " << guard::variant_of(item)
              << " is quarantined\n";
    add_quarantine(doc, item, phase, why);
    const std::string variant = guard::variant_of(item);  // "<component>/<variant>"
    if (phase == "check" && variant.size() < item.size()) {
      CaseResult failed;
      failed.component = variant.substr(0, variant.find('/'));
      failed.variant = variant.substr(failed.component.size() + 1);
      failed.case_id = item.substr(variant.size() + 1);
      failed.status = Status::fail;
      failed.reason = why;
      doc["correctness"].push_back(to_json(failed));
    } else if (phase == "bench") {
      doc["benchmarks"].push_back({{"name", item}, {"run_name", item}, {"error_occurred", true}, {"error_message", why}});
    }
  }
  for (const auto& q : doc["quarantine"]) {
    const std::string item = q.value("item", ""), reason = q.value("reason", "");
    guard::quarantine(q.value("variant", ""), reason.find(item) != std::string::npos ? reason : item + ": " + reason);
  }
}

// After a CUDA case lost the context: records its variant's quarantine, saves the bundle and ends
// the process with kRestartExit; `dsv3 run --resume` continues in a new process.
[[noreturn]] void restart_for_lost_context(BundleWriter& bundle, const std::string& phase) {
  const std::string item = guard::context_lost_in();
  add_quarantine(bundle.doc(), item, phase, guard::context_lost());
  bundle.flush();
  std::cerr << "run: " << guard::context_lost() << ". The bundle is saved and " << guard::variant_of(item)
            << " quarantined; continue in a new process with: dsv3 run --resume --out " << bundle.path().parent_path().string()
            << " (exit " << guard::kRestartExit << ")\n";
  throw Exit{guard::kRestartExit};
}

}  // namespace

void add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Ceilings, check, numerics studies, benchmarks, then the MPI jobs (ep over processes, all-to-all); writes a result bundle, plots and REPORT.md");
  auto out = std::make_shared<std::string>();
  auto filter = std::make_shared<std::string>();
  auto quick = std::make_shared<bool>(false);
  auto resume = std::make_shared<bool>(false);
  auto no_plots = std::make_shared<bool>(false);
  auto no_validate = std::make_shared<bool>(false);
  auto run = std::make_shared<BenchRun>();
  cmd->add_option("--out", *out, "Output directory (default: results/<YYYY-MM-DD>_<device>)");
  cmd->add_option("--filter", *filter, "ECMAScript regex on '<component>/<variant>/<case>' for check and bench");
  cmd->add_flag("--quick", *quick, "Smaller ceilings, one benchmark repetition, smaller studies and MPI jobs");
  cmd->add_flag("--resume", *resume, "Continue the bundle in --out: completed phases, and check cases and benchmarks already in it, are not re-run");
  cmd->add_flag("--no-plots", *no_plots, "Do not call scripts/plot.py and scripts/report.py");
  cmd->add_flag("--no-validate", *no_validate,
                "Bench: skip the check of each variant against the reference before timing (the check phase "
                "still runs); recorded in the bundle's invocations");
  cmd->add_option("--cpu-max-bytes", run->options.cpu_max_bytes, "CPU variants skip larger perf cases")->capture_default_str();
  auto deadline = add_gpu_deadline_option(cmd);
  cmd->footer(
      "Exit status: 0 when every check passed or was skipped, 1 when a check or an MPI job failed, 2 on errors, 75 when a CUDA\n"
      "case faulted (the CUDA context is lost) or hung past --gpu-deadline: the bundle keeps what finished, and\n"
      "--resume continues in a new process with that variant quarantined (its rows say why).\n"
      "<out>/inflight.json names the CUDA case running at any moment; a run resumed after a crash reads it.");
  cmd->callback([=] {
    const std::filesystem::path dir = out->empty() ? std::filesystem::path("results") / (utc_now("%Y-%m-%d") + "_" + device_slug())
                                                   : std::filesystem::path(*out);
    BundleWriter bundle(dir / "bundle.json", *resume);
    auto& doc = bundle.doc();
    const std::filesystem::path marker = dir / "inflight.json";
    if (!doc.contains("quarantine")) doc["quarantine"] = nlohmann::json::array();
    if (*resume) restore_quarantine(doc, marker);
    else std::filesystem::remove(marker);  // an old run's: this bundle starts afresh
    guard::configure(marker, *deadline);
    if (!bundle.done("environment")) {
      doc["created_utc"] = utc_now();
      doc["git"] = git_json();
      doc["host"] = host_json();
      doc["device"] = device_json();
      doc["toolchain"] = toolchain_json();
      doc["config"] = {{"filter", *filter}, {"out", dir.string()}, {"quick", *quick}};
      bundle.mark_done("environment");
    }
    // Every invocation that wrote to this bundle, with its options: a resumed run may differ.
    doc["invocations"].push_back({{"utc", utc_now()}, {"git", git_json()}, {"filter", *filter},
                                  {"quick", *quick}, {"resume", *resume}, {"validate", !*no_validate}});
    bundle.flush();
    bench::Ceilings ceilings;
    if (!bundle.done("ceilings")) {
      ceilings = measure_ceilings(*quick);
      doc["ceilings"] = ceilings.rows;
      bundle.mark_done("ceilings");
    } else {
      for (const auto& r : doc["ceilings"]) {
        const std::string name = r.value("name", "");
        const double v = r.value("value", 0.0);
        if (name == "cpu_memcpy_bandwidth") ceilings.cpu_memcpy_gbs = v;
        if (name == "gpu_copy_bandwidth") ceilings.gpu_copy_gbs = v;
        if (name == "cpu_eigen_gemm_f64_threads") ceilings.cpu_gemm_f64_threads_gflops = v;
        if (name == "gpu_cublaslt_fp8_gemm") ceilings.gpu_fp8_tflops = v;
      }
      ceilings.rows = doc["ceilings"];
    }
    if (!bundle.done("check")) {
      // Results are kept as they come (saved every few seconds and before a restart), so a resumed
      // check phase starts at its first unchecked case.
      if (!doc.contains("correctness")) doc["correctness"] = nlohmann::json::array();
      std::set<std::string> checked;
      for (const auto& r : doc["correctness"])
        checked.insert(r.value("component", "") + "/" + r.value("variant", "") + "/" + r.value("case", ""));
      auto saved = std::chrono::steady_clock::now();
      CheckHooks hooks;
      hooks.done = [&checked](const std::string& item) { return checked.count(item) > 0; };
      hooks.after = [&](const CaseResult& r) {
        doc["correctness"].push_back(to_json(r));
        if (!guard::context_lost().empty()) restart_for_lost_context(bundle, "check");
        if (std::chrono::steady_clock::now() - saved > std::chrono::seconds(10)) {
          bundle.flush();
          saved = std::chrono::steady_clock::now();
        }
        return true;
      };
      run_checks(*filter, true, hooks);
      std::vector<CaseResult> all;  // the summary and the failures, from every invocation's rows
      for (const auto& r : doc["correctness"]) {
        const std::string status = r.value("status", "");
        all.push_back({r.value("component", ""), r.value("variant", ""), r.value("case", ""),
                       status_from_name(status),
                       r.value("reason", ""), {}});
      }
      print_check_table(all, true);
      bundle.mark_done("check");
    }
    if (!bundle.done("studies")) {
      doc["studies"] = nlohmann::json::object();
      set_study_artifact_dir(dir);  // trained weights land beside the bundle
      for (const auto& comp : Registry::instance().components()) {
        if (!comp.study) continue;
        std::cerr << "study: " << comp.name << "\n";
        const nlohmann::json rows = comp.study(*quick);
        for (auto& [k, v] : rows.items()) doc["studies"][k] = v;
      }
      std::cerr << "study: netmodel calculators (decode_limit, topology, train_cost, node_limit)\n";
      const nlohmann::json netmodel_rows = netmodel::netmodel_study_rows();  // named: items() of a temporary dangles
      for (auto& [k, v] : netmodel_rows.items()) doc["studies"][k] = v;
      for (const auto& st : Registry::instance().studies()) {
        std::string skip;
        if (!st.fn) skip = "not built (the study's CUDA side is not compiled in this build)";
        else if (st.backend == Backend::cuda && !cuda_presence().available) skip = "no GPU: " + cuda_presence().reason;
        if (!skip.empty()) {
          std::cerr << "study: " << st.name << " skipped (" << skip << ")\n";
          doc["studies"][st.name] = nlohmann::json::array({{{"skipped", true}, {"reason", skip}}});
          continue;
        }
        const std::string item = "study/" + st.name;
        if (st.backend == Backend::cuda) skip = guard::cuda_skip_reason(item);
        if (!skip.empty()) {
          doc["studies"][st.name] = nlohmann::json::array({{{"error", skip}}});
          continue;
        }
        std::cerr << "study: " << st.name << "\n";
        try {
          std::optional<guard::Scope> on_device;
          if (st.backend == Backend::cuda) on_device.emplace(item, "study");
          doc["studies"][st.name] = st.fn(*quick);
        } catch (const std::exception& e) {  // a failing device study must not lose the bundle
          doc["studies"][st.name] = nlohmann::json::array({{{"error", e.what()}}});
          if (st.backend == Backend::cuda && guard::note_failure(item)) restart_for_lost_context(bundle, "study");
        }
      }
      set_study_artifact_dir({});
      bundle.mark_done("studies");
    }
    if (!bundle.done("bench")) {
      run->options.filter = *filter;
      run->options.validate = !*no_validate;
      run->repetitions = *quick ? 1 : 3;
      // The bundle is saved after every case: an interrupted bench phase resumes at the next case.
      auto store = [&doc](const nlohmann::json& b) {
        doc["benchmarks"] = b["benchmarks"];
        doc["benchmark_context"] = b["context"];
        doc["bench_validation"] = b["validation"];
      };
      nlohmann::json prior = nlohmann::json::object();
      if (doc.contains("benchmarks"))
        prior = {{"context", doc.value("benchmark_context", nlohmann::json::object())},
                 {"benchmarks", doc["benchmarks"]},
                 {"validation", doc.value("bench_validation", nlohmann::json::array())}};
      store(run_benchmarks(ceilings, *run, prior, [&](const nlohmann::json& b) {
        store(b);
        bundle.flush();
        if (!guard::context_lost().empty()) restart_for_lost_context(bundle, "bench");
      }));
      bundle.mark_done("bench");
    }
    if (!bundle.done("mpi")) {  // one process per rank: the ep case and the all-to-all bench (tools/run_mpi.cpp)
      doc["mpi"] = run_mpi_phase(dir, *filter, *quick);
      bundle.mark_done("mpi");
    }
    if (!bundle.done("calibrated")) {  // models that need this run's own measurements
      std::cerr << "study: calibrated models (decode_limit_calibrated, pipeline_overlap) from this bundle's benchmarks\n";
      const nlohmann::json rows = netmodel::calibrated_study_rows(doc, bundle.path().string());
      for (auto& [k, v] : rows.items()) doc["studies"][k] = v;
      bundle.mark_done("calibrated");
    }
    std::cerr << "run: wrote " << bundle.path().string() << "\n";
    if (!*no_plots) {
      const std::string b = bundle.path().string();
      if (run_script("plot.py", "'" + b + "' --out '" + (dir / "plots").string() + "'") != 0 ||
          run_script("report.py", "'" + b + "' --out '" + (dir / "REPORT.md").string() + "' --plots '" +
                                     (dir / "plots").string() + "'") != 0)
        throw std::runtime_error("plotting/report failed (install scripts/requirements.txt; see README) - the bundle is complete");
    }
    for (const auto& r : doc["correctness"])
      if (r.value("status", "") == "fail") throw Exit{1};
    for (const auto& j : doc.value("mpi", nlohmann::json::object()).value("jobs", nlohmann::json::array()))
      if (j.contains("error")) throw Exit{1};
  });
}

}  // namespace dsv3::cli
