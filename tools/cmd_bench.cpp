// dsv3 bench: measured ceilings, then Google Benchmark over every perf case of every variant.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <unistd.h>

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

nlohmann::json run_benchmarks(const bench::Ceilings& ceilings, const BenchRun& run) {
  const std::vector<bench::Planned> plan = bench::register_benchmarks(ceilings, run.options);
  std::size_t n_run = 0;
  for (const auto& p : plan) n_run += p.skip_reason.empty();
  std::cerr << "bench: " << n_run << " benchmarks to run, " << plan.size() - n_run << " skipped\n";
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / ("dsv3_bench_" + std::to_string(::getpid()) + ".json");
  std::vector<std::string> args = {"dsv3", "--benchmark_out=" + tmp.string(), "--benchmark_out_format=json",
                                   "--benchmark_repetitions=" + std::to_string(run.repetitions)};
  if (run.min_time > 0) args.push_back("--benchmark_min_time=" + std::to_string(run.min_time));
  args.insert(args.end(), run.extra_args.begin(), run.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  benchmark::Initialize(&argc, argv.data());
  if (benchmark::ReportUnrecognizedArguments(argc, argv.data())) throw std::invalid_argument("unrecognized benchmark argument");
  nlohmann::json out = {{"context", nlohmann::json::object()}, {"benchmarks", nlohmann::json::array()}};
  if (n_run > 0) {
    benchmark::RunSpecifiedBenchmarks();
    out = load_json_file(tmp);
    std::filesystem::remove(tmp);
  }
  benchmark::ClearRegisteredBenchmarks();
  for (const auto& p : plan)
    if (!p.skip_reason.empty()) out["benchmarks"].push_back({{"name", p.name}, {"run_name", p.name}, {"skipped", p.skip_reason}});
  out["validation"] = bench::validation_results();
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
                  "CPU variants skip cases moving more bytes than this (the reference is single-threaded)")
      ->capture_default_str();
  cmd->add_flag("--quick", *quick, "Smaller ceiling measurements and one repetition");
  cmd->add_flag("--no-validate", *no_validate, "Skip the one-time check against the reference before timing");
  cmd->add_flag("--flush-l2", run->options.flush_l2, "Flush L2 before every timed CUDA launch (cold cache)");
  cmd->add_option("--benchmark-arg", run->extra_args, "Passed to Google Benchmark as is (repeatable)");
  cmd->footer("Counters per row: GBps (component bytes / time), frac_ceiling (of the measured copy bandwidth),\n"
              "TFLOPps where the component declares flops.");
  cmd->callback([=] {
    if (*quick) run->repetitions = 1;
    run->options.validate = !*no_validate;
    const bench::Ceilings c = measure_ceilings(*quick);
    nlohmann::json j = run_benchmarks(c, *run);
    j["ceilings"] = c.rows;
    write_json_atomic(*out, j);
    std::cerr << "bench: wrote " << *out << "\n";
  });
}

}  // namespace dsv3::cli
