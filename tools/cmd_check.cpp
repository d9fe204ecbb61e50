// dsv3 check: every eval case of every variant against the reference, as a table.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <regex>

#include "core/bundle.hpp"
#include "core/device_guard.hpp"
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

std::vector<CaseResult> run_checks(const std::string& filter, bool progress, const CheckHooks& hooks) {
  const std::regex re(filter.empty() ? std::string(".*") : filter);
  auto& reg = Registry::instance();
  struct Item { const Component* comp; const Variant* v; const Case* c; };
  std::vector<std::vector<Case>> all_cases;
  all_cases.reserve(reg.components().size());
  std::vector<Item> items;
  for (const auto& comp : reg.components()) {
    all_cases.push_back(comp.eval_cases());
    // Case-major order, so the checker's reference cache serves every variant of a case.
    for (const auto& c : all_cases.back())
      for (const Variant* v : reg.variants(comp.name))
        if (const std::string item = comp.name + "/" + v->name + "/" + c.id;
            v->name != "ref" && std::regex_search(item, re) && !(hooks.done && hooks.done(item)))
          items.push_back({&comp, v, &c});
  }
  std::vector<CaseResult> results;
  results.reserve(items.size());
  Checker checker;
  auto last = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < items.size(); ++i) {
    results.push_back(checker.check(*items[i].comp, *items[i].v, *items[i].c));
    if (hooks.after && !hooks.after(results.back())) break;
    const auto now = std::chrono::steady_clock::now();
    if (progress && (now - last > std::chrono::seconds(3) || i + 1 == items.size())) {
      std::cerr << "check: " << i + 1 << "/" << items.size() << " cases\n";
      last = now;
    }
  }
  return results;
}

void print_check_table(const std::vector<CaseResult>& results, bool failures_only) {
  std::size_t n[3] = {0, 0, 0};
  std::printf("%-58s %-12s %-9s %10s %10s %10s  %-28s %s\n", "case", "variant", "output", "max_abs", "max_rel",
              "cos_dist", "tolerance", "verdict");
  for (const auto& r : results) {
    ++n[static_cast<int>(r.status)];
    if (failures_only && r.status != Status::fail) continue;
    if (r.outputs.empty()) {
      std::printf("%-58s %-12s %-9s %10s %10s %10s  %-28s %s: %s\n", r.case_id.c_str(), r.variant.c_str(), "-", "-",
                  "-", "-", "-", std::string(status_name(r.status)).c_str(), r.reason.c_str());
      continue;
    }
    for (const auto& o : r.outputs) {
      const std::string metric = o.metric.empty() ? "" : " (" + o.metric + " " + std::to_string(o.metric_value) + ")";
      std::printf("%-58s %-12s %-9s %10.3g %10.3g %10.3g  %-28s %s%s%s%s\n", r.case_id.c_str(), r.variant.c_str(),
                  o.name.c_str(), o.max_abs, o.max_rel, o.cos_dist, o.tolerance.c_str(), o.pass ? "pass" : "FAIL",
                  metric.c_str(), o.pass ? "" : ": ", o.message.c_str());
    }
  }
  std::printf("\n%zu pass, %zu fail, %zu skip\n", n[0], n[1], n[2]);
  if (n[2] > 0) {
    std::map<std::string, std::size_t> reasons;
    for (const auto& r : results)
      if (r.status == Status::skip) ++reasons[r.variant + ": " + r.reason];
    for (const auto& [why, count] : reasons) std::printf("  skipped %zu x %s\n", count, why.c_str());
  }
}

std::shared_ptr<double> add_gpu_deadline_option(CLI::App* cmd) {
  auto deadline = std::make_shared<double>(kGpuDeadlineDefault);
  cmd->add_option("--gpu-deadline", *deadline,
                  "Seconds a CUDA case may run without progress before the process is stopped with exit status 75 "
                  "(a kernel that hangs cannot be interrupted otherwise); 0 turns the watchdog off")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  return deadline;
}

void add_check(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "Run the correctness cases of every variant against the CPU reference");
  auto filter = std::make_shared<std::string>();
  auto json_out = std::make_shared<std::string>();
  auto failures_only = std::make_shared<bool>(false);
  cmd->add_option("filter", *filter, "ECMAScript regex on '<component>/<variant>/<case>' (default: all)");
  cmd->add_option("--json", *json_out, "Also write the per-case reports (errors per output) to this JSON file");
  cmd->add_flag("--failures-only", *failures_only, "Print only failing rows (the summary is always printed)");
  auto deadline = add_gpu_deadline_option(cmd);
  cmd->footer(
      "Exit status: 0 when nothing failed (skips are not failures), 1 when a case failed, 2 on bad input,\n"
      "75 when a CUDA case hung past --gpu-deadline.\n"
      "CUDA variants are skipped, with the reason, on machines without a usable GPU. A kernel fault loses the\n"
      "process's CUDA context: that case fails and every later CUDA case is skipped, naming it.");
  cmd->callback([=] {
    guard::configure({}, *deadline);
    const std::vector<CaseResult> results = run_checks(*filter, true);
    if (results.empty()) throw std::invalid_argument("no case matches the filter '" + *filter + "' (see dsv3 list)");
    print_check_table(results, *failures_only);
    if (!json_out->empty()) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& r : results) j.push_back(to_json(r));
      write_json_atomic(*json_out, j);
    }
    if (const std::string lost = guard::context_lost(); !lost.empty())
      std::cerr << "check: " << lost << ": the CUDA cases after it were skipped; check them in a new process, e.g. "
                << "dsv3 check '" << *filter << "' with " << guard::variant_of(guard::context_lost_in())
                << " left out of the filter\n";
    for (const auto& r : results)
      if (r.status == Status::fail) throw Exit{1};
  });
}

}  // namespace dsv3::cli
