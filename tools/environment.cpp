// Environment descriptors written into every bundle: host, device, toolchain, git.
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "core/cuda_probe.hpp"
#include "tools/commands.hpp"
#if DSV3_HAVE_CUDA
#include <cublasLt.h>
#endif
#if DSV3_HAVE_NCCL
#include <nccl.h>
#endif

namespace dsv3::cli {
namespace {

std::string shell(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) return out;
  std::array<char, 256> buf{};
  while (fgets(buf.data(), buf.size(), p.get())) out += buf.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string proc_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

}  // namespace

nlohmann::json host_json() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  utsname u{};
  uname(&u);
  const std::string mem_kb = proc_field("/proc/meminfo", "MemTotal");
  return {{"hostname", host},
          {"cpu_model", proc_field("/proc/cpuinfo", "model name")},
          {"logical_cores", std::thread::hardware_concurrency()},
          {"memory_gib", mem_kb.empty() ? 0.0 : std::stod(mem_kb) / (1024.0 * 1024.0)},
          {"os", std::string(u.sysname) + " " + u.release + " " + u.machine}};
}

nlohmann::json device_json() {
  const DeviceInfo d = device_info();
  nlohmann::json j = {{"present", d.present}, {"driver_version", d.driver_version}, {"runtime_version", d.runtime_version}};
  if (!d.present) {
    j["reason"] = d.reason;
    return j;
  }
  j.update({{"name", d.name}, {"compute_capability", d.compute_capability}, {"sms", d.sms},
            {"memory_gib", static_cast<double>(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0)},
            {"memory_clock_mhz", d.memory_clock_mhz}, {"memory_bus_bits", d.memory_bus_bits},
            {"sm_clock_mhz", d.sm_clock_mhz}, {"l2_bytes", d.l2_bytes}});
  return j;
}

nlohmann::json toolchain_json() {
  nlohmann::json j = {{"cxx", DSV3_CXX_COMPILER},
                      {"cuda_enabled", built_with_cuda()},
                      {"nvcc", DSV3_CUDA_COMPILER},
                      {"cuda_architectures", DSV3_CUDA_ARCHS},
                      {"build_type", DSV3_BUILD_TYPE},
                      {"eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                    std::to_string(EIGEN_MINOR_VERSION)},
                      {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                                            std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                                            std::to_string(NLOHMANN_JSON_VERSION_PATCH)}};
#if DSV3_HAVE_CUDA
  const std::size_t v = cublasLtGetVersion();
  j["cublaslt"] = std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
#endif
#if DSV3_HAVE_NCCL
  int nv = 0;
  if (ncclGetVersion(&nv) == ncclSuccess)
    j["nccl"] = std::to_string(nv / 10000) + "." + std::to_string((nv / 100) % 100) + "." + std::to_string(nv % 100);
#endif
  return j;
}

nlohmann::json git_json() {
  const std::string dir = DSV3_SOURCE_DIR;
  const std::string commit = shell("git -C '" + dir + "' rev-parse HEAD 2>/dev/null");
  const std::string status = shell("git -C '" + dir + "' status --porcelain --untracked-files=no 2>/dev/null");
  if (commit.empty()) return {{"commit", nullptr}, {"dirty", nullptr}, {"note", "not a git checkout"}};
  return {{"commit", commit}, {"dirty", !status.empty()}};
}

std::string device_slug() {
  const DeviceInfo d = device_info();
  if (!d.present) return "cpu-only";
  std::string s;
  for (char c : d.name) {
    if (std::isalnum(static_cast<unsigned char>(c))) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!s.empty() && s.back() != '-') s += '-';
  }
  while (!s.empty() && s.back() == '-') s.pop_back();
  return s.empty() ? "gpu" : s;
}

}  // namespace dsv3::cli
