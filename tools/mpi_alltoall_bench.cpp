// dsv3_mpi_alltoall: an all-to-all collective bench over MPI processes in nccl-tests' form
// (alltoall_perf; sizes, rows and pattern: tools/alltoall_common.hpp): for each size S, doubling
// from --min-bytes to --max-bytes, MPI_Alltoall is timed over --iters calls after --warmup. Every
// received byte is checked against the pattern its sender wrote: the #wrong column, summed over
// ranks. The GPU version over NCCL: tools/nccl_alltoall_bench.cpp.
//   mpirun -np 4 build/dsv3_mpi_alltoall --min-bytes 8 --max-bytes 268435456
// --json F writes the rows (rank 0, atomically). Exit status 0 when no byte was wrong, 1 otherwise,
// 2 on bad input.
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/json_file.hpp"
#include "tools/alltoall_common.hpp"

namespace {

using dsv3::alltoall::pattern;

int run(int argc, char** argv, int rank, int n) {
  CLI::App app{"MPI all-to-all bench in nccl-tests' form (algbw, busbw, data checked)"};
  dsv3::alltoall::Options o;
  dsv3::alltoall::add_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (rank == 0) app.exit(e);
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  if (const std::string why = dsv3::alltoall::invalid(o); !why.empty()) {
    if (rank == 0) std::fprintf(stderr, "dsv3_mpi_alltoall: %s\n", why.c_str());
    return 2;
  }
  const int64_t iters = o.iters, warmup = o.warmup;
  if (rank == 0) dsv3::alltoall::print_header("MPI processes", n);
  nlohmann::json rows = nlohmann::json::array();
  int64_t wrong_total = 0;
  for (int64_t size = o.min_bytes; size <= o.max_bytes; size *= 2) {
    const int64_t per = size / n;
    if (per < 1) continue;
    if (per > INT32_MAX) break;
    std::vector<uint8_t> send(static_cast<std::size_t>(per * n)), recv(send.size(), 0);
    for (int64_t d = 0; d < n; ++d)
      for (int64_t i = 0; i < per; ++i) send[static_cast<std::size_t>(d * per + i)] = pattern(rank, d, i);
    const int64_t calls = dsv3::alltoall::calls_for(size, iters);
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
    if (rank == 0) rows.push_back(dsv3::alltoall::print_row(n, per, slowest, all_wrong, calls));
  }
  if (rank == 0) {
    std::printf("# all data checked: %lld wrong\n", static_cast<long long>(wrong_total));
    if (!o.json.empty()) dsv3::write_json_atomic(o.json, {{"bench", "mpi_alltoall"}, {"rows", rows}});
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
