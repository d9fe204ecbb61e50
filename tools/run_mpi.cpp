// dsv3 run's MPI phase: the expert-parallel case over MPI processes (dsv3_ep_mpi) and the MPI
// all-to-all bench (dsv3_mpi_alltoall), each launched with mpirun, their JSON kept in the bundle
// ("mpi", docs/bundle-schema.md) and their logs beside it (<out>/mpi/). docs/ep.md says what the
// figures are; on one machine the processes share its cores and memory, so they measure the
// reference and the MPI library's shared-memory path, not a network.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sys/wait.h>

#include "core/json_file.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {
namespace {

struct MpiJob {
  std::string item;                  // "ep/mpi/<name>": what --filter matches
  std::string tool;                  // an executable beside dsv3
  int processes;
  std::vector<std::string> args;
};

// The jobs: V3's sizes (7168 channels, 4096 tokens per rank, top-8 of 256, issue 11) on 2 and 4
// processes, FP8 and BF16 dispatch, and the all-to-all sweep to 256 MB; --quick: the same jobs at
// 256 tokens of 1024 channels and to 1 MB.
std::vector<MpiJob> mpi_jobs(bool quick) {
  const std::vector<std::string> size = quick ? std::vector<std::string>{"--tokens", "256", "--dim", "1024"}
                                              : std::vector<std::string>{"--tokens", "4096", "--dim", "7168"};
  auto ep = [&](const std::string& name, int np, const std::string& per_node, const std::string& wire) {
    MpiJob j{"ep/mpi/" + name, "dsv3_ep_mpi", np, {"--ranks-per-node", per_node, "--wire", wire, "--timeout", "600"}};
    j.args.insert(j.args.end(), size.begin(), size.end());
    return j;
  };
  return {ep("np2 2x1 fp8", 2, "1", "fp8"), ep("np4 2x2 fp8", 4, "2", "fp8"), ep("np4 2x2 bf16", 4, "2", "bf16"),
          {"ep/mpi/alltoall np4", "dsv3_mpi_alltoall", 4,
           {"--min-bytes", "8", "--max-bytes", quick ? "1048576" : "268435456"}}};
}

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string last_lines(const std::filesystem::path& log, int n) {
  std::ifstream f(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(line);
  std::string tail;
  for (std::size_t i = lines.size() > static_cast<std::size_t>(n) ? lines.size() - n : 0; i < lines.size(); ++i)
    tail += lines[i] + "\n";
  return tail;
}

}  // namespace

nlohmann::json run_mpi_phase(const std::filesystem::path& out, const std::string& filter, bool quick) {
  const std::string mpirun = DSV3_MPIEXEC;
  const std::filesystem::path bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  nlohmann::json phase = {{"jobs", nlohmann::json::array()}};
  if (mpirun.empty() || !std::filesystem::exists(bin / "dsv3_ep_mpi")) {
    phase["skipped"] = "not built: CMake found no MPI library (install one, e.g. Debian's libopenmpi-dev, and rebuild)";
    std::cerr << "mpi: skipped, " << phase["skipped"].get<std::string>() << "\n";
    return phase;
  }
  const std::regex re(filter.empty() ? ".*" : filter);
  std::filesystem::create_directories(out / "mpi");
  for (const MpiJob& job : mpi_jobs(quick)) {
    if (!filter.empty() && !std::regex_search(job.item, re)) continue;
    const std::string stem = std::regex_replace(job.item.substr(7), std::regex("[^A-Za-z0-9]+"), "_");
    const std::filesystem::path json = out / "mpi" / (stem + ".json"), log = out / "mpi" / (stem + ".log");
    std::filesystem::remove(json);
    // OpenMPI's flags: root is allowed (containers), and more processes than cores.
    std::string cmd = quoted(mpirun) + " --allow-run-as-root --oversubscribe -np " + std::to_string(job.processes) + " " +
                      quoted((bin / job.tool).string());
    for (const std::string& a : job.args) cmd += " " + quoted(a);
    cmd += " --json " + quoted(json.string());
    std::cerr << "mpi: " << job.item << " (" << job.processes << " processes; log " << log.string() << ")\n";
    const int status = std::system((cmd + " > " + quoted(log.string()) + " 2>&1").c_str());
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    nlohmann::json row = {{"item", job.item}, {"tool", job.tool}, {"processes", job.processes}, {"args", job.args},
                          {"exit_status", code}, {"log", std::filesystem::relative(log, out).string()}};
    if (std::filesystem::exists(json)) row["result"] = load_json_file(json);  // also when a check failed
    if (code != 0 || !row.contains("result")) {
      row["error"] = "exit status " + std::to_string(code) + (std::filesystem::exists(json) ? "" : ", no JSON written") +
                     "; the log ends:\n" + last_lines(log, 8);
      std::cerr << "mpi: " << job.item << " FAILED (" << row["error"].get<std::string>() << ")\n";
    }
    phase["jobs"].push_back(row);
  }
  return phase;
}

}  // namespace dsv3::cli
