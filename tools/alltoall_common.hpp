// What the all-to-all benches (tools/mpi_alltoall_bench.cpp over MPI processes,
// tools/nccl_alltoall_bench.cpp over the GPUs of one process) share, in nccl-tests' alltoall_perf
// form: the options, the sizes, the data pattern every received byte is checked against, and the
// rows (printed and as JSON) with
//   size   S = the bytes each rank sends in total, S / n to every rank (itself included)
//   time   the slowest rank's mean time per call
//   algbw  S / time
//   busbw  algbw (n - 1) / n        (nccl-tests' all-to-all factor: the share of S that crosses ranks)
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace dsv3::alltoall {

// Byte i of the block rank s sends to rank d.
inline uint8_t pattern(int64_t s, int64_t d, int64_t i) { return static_cast<uint8_t>((s * 131 + d * 31 + i) % 251); }

struct Options {
  int64_t min_bytes = 8, max_bytes = int64_t{64} << 20, iters = 20, warmup = 2;
  std::string json;
};

inline void add_options(CLI::App& app, Options& o) {
  app.add_option("--min-bytes", o.min_bytes, "Smallest total bytes sent per rank")->capture_default_str();
  app.add_option("--max-bytes", o.max_bytes, "Largest total bytes sent per rank (sizes double)")->capture_default_str();
  app.add_option("--iters", o.iters, "Timed calls per size (a quarter, at least 2, from 64 MiB)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "Untimed calls per size")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--json", o.json, "Write the rows here (JSON, written atomically)");
}

// Empty when the options are usable, else what is wrong.
inline std::string invalid(const Options& o) {
  if (o.min_bytes < 1 || o.max_bytes < o.min_bytes) return "need 1 <= --min-bytes <= --max-bytes";
  return {};
}

inline int64_t calls_for(int64_t size, int64_t iters) {
  return size >= (int64_t{64} << 20) ? std::max<int64_t>(2, iters / 4) : iters;
}

inline void print_header(const char* over, int n) {
  std::printf("# all-to-all over %d %s; size = bytes each rank sends in total\n"
              "# %12s %12s %10s %10s %10s %8s\n",
              n, over, "size (B)", "per peer (B)", "time (us)", "algbw GB/s", "busbw GB/s", "#wrong");
}

// Prints one size's row and returns it as JSON.
inline nlohmann::json print_row(int n, int64_t per, double seconds, int64_t wrong, int64_t calls) {
  const double bytes = static_cast<double>(per * n), algbw = bytes / seconds / 1e9, busbw = algbw * (n - 1) / n;
  std::printf("  %12lld %12lld %10.2f %10.3f %10.3f %8lld\n", static_cast<long long>(per * n), static_cast<long long>(per),
              seconds * 1e6, algbw, busbw, static_cast<long long>(wrong));
  std::fflush(stdout);
  return {{"ranks", n},         {"size_bytes", per * n}, {"bytes_per_peer", per}, {"time_us", seconds * 1e6},
          {"algbw_gbs", algbw}, {"busbw_gbs", busbw},    {"wrong", wrong},        {"calls", calls}};
}

}  // namespace dsv3::alltoall
