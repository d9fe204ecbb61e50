// `dsv3` subcommands. Each add_*() declares its options on the CLI11 app and its callback.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "benches/harness.hpp"
#include "core/checker.hpp"
#include "core/hardware_profile.hpp"

namespace dsv3::cli {

// Thrown by a command to end the program with `code` (e.g. 1 when a check failed).
struct Exit {
  int code;
};

void add_list(CLI::App& app);
void add_check(CLI::App& app);
void add_bench(CLI::App& app);
void add_run(CLI::App& app);
void add_model(CLI::App& app);
// `dsv3 model decode-limit | topology | train-cost` (tools/cmd_model_netmodel.cpp), added by add_model.
void add_model_netmodel(CLI::App& model);
// `dsv3 model node-limit` (tools/cmd_model_node_limit.cpp), added by add_model.
void add_model_node_limit(CLI::App& model);
// `dsv3 model pipeline | pipeline-overlap` (tools/cmd_model_pipeline.cpp), added by add_model.
void add_model_pipeline(CLI::App& model);
// An id from datasets/hardware, or a path to a profile file (contains '/' or ends in .json).
HardwareProfile hardware_by_id_or_file(const std::string& s);
void add_mla_layer(CLI::App& app);
void add_train_lm(CLI::App& app);
void add_forward(CLI::App& app);

// Shared by check and run: runs every eval case of every matching variant (the "ref" variant is
// the comparison baseline and is not checked against itself). `filter` is an ECMAScript regex
// on "<component>/<variant>/<case>". Prints a progress line every few seconds when `progress`.
// dsv3 run's hooks: `done` skips items ("<component>/<variant>/<case>") a resumed bundle already
// has; `after` sees each result as it comes (to save it) and may stop the phase (returns false).
struct CheckHooks {
  std::function<bool(const std::string& item)> done;
  std::function<bool(const CaseResult&)> after;
};
std::vector<CaseResult> run_checks(const std::string& filter, bool progress, const CheckHooks& hooks = {});
void print_check_table(const std::vector<CaseResult>& results, bool failures_only);

// Shared by bench and run: runs Google Benchmark over the registered perf cases and returns its
// JSON document ({"context", "benchmarks"}); skipped rows are appended with "skipped": reason.
struct BenchRun {
  bench::Options options;
  int repetitions = 3;
  std::vector<std::string> extra_args;
};
// Runs the planned benchmarks one case at a time; returns {"context", "benchmarks", "validation"}.
// Rows of `prior` (an earlier, interrupted run's return value) are kept and their benchmarks not
// re-run; after_batch, when given, sees the result so far after every case (to save it).
nlohmann::json run_benchmarks(const bench::Ceilings& ceilings, const BenchRun& run,
                              nlohmann::json prior = nlohmann::json::object(),
                              const std::function<void(const nlohmann::json&)>& after_batch = {});
bench::Ceilings measure_ceilings(bool quick);

// dsv3 run's MPI phase (tools/run_mpi.cpp): runs the MPI jobs whose item ("ep/mpi/<name>") matches
// `filter` with mpirun, logs and JSON under <out>/mpi/; returns the bundle's "mpi" object, where a
// job that exited non-zero (a check failed, or MPI could not start) has an "error".
nlohmann::json run_mpi_phase(const std::filesystem::path& out, const std::string& filter, bool quick);

// --gpu-deadline (check, bench, run): seconds a CUDA case may go without progress before the
// watchdog of core/device_guard.hpp ends the process (a hang cannot be stopped any other way).
// Returns the option's storage, default kGpuDeadlineDefault.
inline constexpr double kGpuDeadlineDefault = 120;
std::shared_ptr<double> add_gpu_deadline_option(CLI::App* cmd);

// Environment descriptors for the bundle (tools/environment.cpp).
nlohmann::json host_json();
nlohmann::json device_json();
nlohmann::json toolchain_json();
nlohmann::json git_json();
std::string device_slug();  // "nvidia-h100-80gb-hbm3" or "cpu-only"

}  // namespace dsv3::cli
