// dsv3 bench: measured ceilings, then Google Benchmark over every perf case of every variant.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <regex>
#include <set>
#include <unistd.h>

#include "core/device_guard.hpp"
#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

bench::Ceilings measure_ceilings(bool quick) {
  // Load every perf case list first: a malformed shapes file should fail before minutes of measuring.
  for (const auto& comp : Registry::instance().components()) comp.perf_cases();
  bench::Ceilings c;
  std::cerr << "ceilings: CPU memcpy and Eigen GEMM...\n";
  bench::measure_cpu_ceilings(c, quick);
  if (cuda_presence().available) std::cerr << "ceilings: GPU copy and cuBLASLt GEMM...\n";
  bench::measure_gpu_ceilings_into(c, quick);
  for (const auto& r : c.rows)
    std::cerr << "  " << r.value("name", "") << ": " << r.value("value", 0.0) << " " << r.value("unit", "") << "\n";
  return c;
}

namespace {

// Google Benchmark's console output with the context block ("Run on ... CPU Caches ...") and
// the column header printed once, not once per batch.
class OnceConsoleReporter : public benchmark::ConsoleReporter {
 public:
  OnceConsoleReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Color : OO_None) {}
  bool ReportContext(const Context& context) override {
    if (!reported_) return reported_ = ConsoleReporter::ReportContext(context);
    name_field_width_ = std::max(name_field_width_, context.name_field_width);
    return true;
  }

 private:
  bool reported_ = false;
};

}  // namespace

nlohmann::json run_benchmarks(const bench::Ceilings& ceilings, const BenchRun& run, nlohmann::json prior,
                              const std::function<void(const nlohmann::json&)>& after_batch) {
  const std::vector<bench::Planned> plan = bench::plan_benchmarks(run.options);
  nlohmann::json out = {{"context", prior.value("context", nlohmann::json::object())},
                        {"benchmarks", prior.value("benchmarks", nlohmann::json::array())},
                        {"validation", prior.value("validation", nlohmann::json::array())}};
  std::set<std::string> measured;
  for (const auto& row : out["benchmarks"]) {  // run_name is "<benchmark name>/manual_time"
    std::string name = row.value("run_name", row.value("name", ""));
    if (const auto slash = name.rfind("/manual_time"); slash != std::string::npos && slash + 12 == name.size())
      name.resize(slash);
    measured.insert(name);
  }
  std::vector<const bench::Planned*> todo;
  std::size_t n_skip = 0;
  for (const auto& p : plan) {
    if (!p.skip_reason.empty()) ++n_skip;
    else if (!measured.count(p.name)) todo.push_back(&p);
  }
  std::cerr << "bench: " << todo.size() << " benchmarks to run";
  if (plan.size() - n_skip > todo.size()) std::cerr << " (" << plan.size() - n_skip - todo.size() << " already in the bundle)";
  std::cerr << ", " << n_skip << " skipped\n";
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / ("dsv3_bench_" + std::to_string(::getpid()) + ".json");
  std::vector<std::string> args = {"dsv3", "--benchmark_out=" + tmp.string(), "--benchmark_out_format=json",
                                   "--benchmark_repetitions=" + std::to_string(run.repetitions)};
  args.insert(args.end(), run.extra_args.begin(), run.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  benchmark::Initialize(&argc, argv.data());
  if (benchmark::ReportUnrecognizedArguments(argc, argv.data())) throw std::invalid_argument("unrecognized benchmark argument");
  // One batch per case: its rows reach the caller (the bundle) before the next case starts.
  OnceConsoleReporter console;
  const std::regex min_time_part("/min_time:[0-9.]+");
  for (std::size_t first = 0; first < todo.size();) {
    std::size_t last = first + 1;
    while (last < todo.size() && todo[last]->batch == todo[first]->batch) ++last;
    const std::vector<const bench::Planned*> batch(todo.begin() + static_cast<std::ptrdiff_t>(first),
                                                   todo.begin() + static_cast<std::ptrdiff_t>(last));
    bench::register_planned(batch, first, todo.size(), ceilings, run.options);
    benchmark::RunSpecifiedBenchmarks(&console);
    benchmark::ClearRegisteredBenchmarks();
    const nlohmann::json got = load_json_file(tmp);
    std::filesystem::remove(tmp);
    if (out["context"].empty()) out["context"] = got.value("context", nlohmann::json::object());
    for (auto row : got.value("benchmarks", nlohmann::json::array())) {
      // Google Benchmark puts the per-benchmark min_time into the names: keep them as registered.
      for (const char* key : {"name", "run_name"})
        if (row.contains(key)) row[key] = std::regex_replace(row[key].get<std::string>(), min_time_part, "");
      out["benchmarks"].push_back(std::move(row));
    }
    for (auto& v : bench::take_validation_results()) out["validation"].push_back(std::move(v));
    if (after_batch) after_batch(out);
    first = last;
  }
  for (const auto& p : plan)
    if (!p.skip_reason.empty()) out["benchmarks"].push_back({{"name", p.name}, {"run_name", p.name}, {"skipped", p.skip_reason}});
  return out;
}

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure ceilings, then benchmark every perf case (Google Benchmark JSON out)");
  auto run = std::make_shared<BenchRun>();
  auto out = std::make_shared<std::string>("bench.json");
  auto quick = std::make_shared<bool>(false);
  auto no_validate = std::make_shared<bool>(false);
  cmd->add_option("filter", run->options.filter, "ECMAScript regex on '<component>/<variant>/<case>' (default: all)");
  cmd->add_option("--out", *out, "Where to write the JSON (Google Benchmark rows + ceilings)")->capture_default_str();
  cmd->add_option("--repetitions", run->repetitions, "Repetitions per benchmark (median and spread reported)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--cpu-max-bytes", run->options.cpu_max_bytes,
                  "CPU variants skip cases moving more bytes than this (a CPU reference at V3 sizes takes seconds to minutes per call)")
      ->capture_default_str();
  cmd->add_option("--min-time", run->options.min_time,
                  "Seconds of timed work per benchmark (CUDA: of GPU time; see benches/harness.hpp)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--quick", *quick, "Smaller ceiling measurements and one repetition");
  cmd->add_flag("--no-validate", *no_validate, "Skip the one-time check against the reference before timing");
  cmd->add_flag("--flush-l2", run->options.flush_l2, "Flush L2 before every timed CUDA launch (cold cache)");
  auto deadline = add_gpu_deadline_option(cmd);
  cmd->add_option("--benchmark-arg", run->extra_args, "Passed to Google Benchmark as is (repeatable; --benchmark_min_time is overridden: use --min-time)");
  cmd->footer("Counters per row: GBps (component bytes / time), frac_ceiling (of the measured copy bandwidth),\n"
              "TFLOPps where the component declares flops.");
  cmd->callback([=] {
    if (*quick) run->repetitions = 1;
    run->options.validate = !*no_validate;
    guard::configure({}, *deadline);
    const bench::Ceilings c = measure_ceilings(*quick);
    nlohmann::json j = run_benchmarks(c, *run);
    j["ceilings"] = c.rows;
    write_json_atomic(*out, j);
    std::cerr << "bench: wrote " << *out << "\n";
  });
}

}  // namespace dsv3::cli
