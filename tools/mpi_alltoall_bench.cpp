// dsv3_mpi_alltoall: an all-to-all collective bench over MPI processes in nccl-tests' form
// (alltoall_perf): for each size S (bytes each rank sends in total, S / n to every rank, doubling
// from --min-bytes to --max-bytes), MPI_Alltoall is timed over --iters calls after --warmup, and
//   time   = the slowest rank's mean time per call
//   algbw  = S / time
//   busbw  = algbw (n - 1) / n        (nccl-tests' all-to-all factor: the share that crosses ranks)
// Every received byte is checked against the pattern its sender wrote (byte i of the block from
// rank s to rank d is (s * 131 + d * 31 + i) mod 251): the #wrong column, summed over ranks.
//   mpirun -np 4 build/dsv3_mpi_alltoall --min-bytes 8 --max-bytes 268435456
// --json F writes the rows (rank 0, atomically). Exit status 0 when no byte was wrong, 1 otherwise,
// 2 on bad input.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/json_file.hpp"

namespace {

uint8_t pattern(int64_t s, int64_t d, int64_t i) { return static_cast<uint8_t>((s * 131 + d * 31 + i) % 251); }

int run(int argc, char** argv, int rank, int n) {
  CLI::App app{"MPI all-to-all bench in nccl-tests' form (algbw, busbw, data checked)"};
  int64_t min_bytes = 8, max_bytes = 64 << 20, iters = 20, warmup = 2;
  std::string json;
  app.add_option("--min-bytes", min_bytes, "Smallest total bytes sent per rank")->capture_default_str();
  app.add_option("--max-bytes", max_bytes, "Largest total bytes sent per rank (sizes double)")->capture_default_str();
  app.add_option("--iters", iters, "Timed calls per size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed calls per size")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--json", json, "Write the rows here (JSON, rank 0)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (rank == 0) app.exit(e);
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  if (min_bytes < 1 || max_bytes < min_bytes) {
    if (rank == 0) std::fprintf(stderr, "dsv3_mpi_alltoall: need 1 <= --min-bytes <= --max-bytes\n");
    return 2;
  }
  if (rank == 0)
    std::printf("# all-to-all over %d MPI processes; size = bytes each rank sends in total\n"
                "# %12s %12s %10s %10s %10s %8s\n",
                n, "size (B)", "per peer (B)", "time (us)", "algbw GB/s", "busbw GB/s", "#wrong");
  nlohmann::json rows = nlohmann::json::array();
  int64_t wrong_total = 0;
  for (int64_t size = min_bytes; size <= max_bytes; size *= 2) {
    const int64_t per = size / n;
    if (per < 1) continue;
    if (per > INT32_MAX) break;
    std::vector<uint8_t> send(static_cast<std::size_t>(per * n)), recv(send.size(), 0);
    for (int64_t d = 0; d < n; ++d)
      for (int64_t i = 0; i < per; ++i) send[static_cast<std::size_t>(d * per + i)] = pattern(rank, d, i);
    const int64_t calls = size >= (64 << 20) ? std::max<int64_t>(2, iters / 4) : iters;
    for (int64_t w = 0; w < warmup; ++w)
      MPI_Alltoall(send.data(), static_cast<int>(per), MPI_BYTE, recv.data(), static_cast<int>(per), MPI_BYTE, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    for (int64_t it = 0; it < calls; ++it)
      MPI_Alltoall(send.data(), static_cast<int>(per), MPI_BYTE, recv.data(), static_cast<int>(per), MPI_BYTE, MPI_COMM_WORLD);
    double t = (MPI_Wtime() - t0) / static_cast<double>(calls), slowest = 0;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int64_t wrong = 0, all_wrong = 0;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t i = 0; i < per; ++i) wrong += recv[static_cast<std::size_t>(s * per + i)] != pattern(s, rank, i);
    MPI_Allreduce(&wrong, &all_wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    wrong_total += all_wrong;
    const double bytes = static_cast<double>(per * n), algbw = bytes / slowest / 1e9, busbw = algbw * (n - 1) / n;
    if (rank == 0) {
      std::printf("  %12lld %12lld %10.2f %10.3f %10.3f %8lld\n", static_cast<long long>(per * n), static_cast<long long>(per),
                  slowest * 1e6, algbw, busbw, static_cast<long long>(all_wrong));
      rows.push_back({{"ranks", n}, {"size_bytes", per * n}, {"bytes_per_peer", per}, {"time_us", slowest * 1e6},
                      {"algbw_gbs", algbw}, {"busbw_gbs", busbw}, {"wrong", all_wrong}, {"calls", calls}});
    }
  }
  if (rank == 0) {
    std::printf("# all data checked: %lld wrong\n", static_cast<long long>(wrong_total));
    if (!json.empty()) dsv3::write_json_atomic(json, {{"bench", "mpi_alltoall"}, {"rows", rows}});
  }
  return wrong_total ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  int code = 0;
  try {
    code = run(argc, argv, rank, n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv3_mpi_alltoall: rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return code;
}
