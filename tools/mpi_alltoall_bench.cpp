// dsv3_mpi_alltoall: an all-to-all collective bench over MPI processes in nccl-tests' form
// (alltoall_perf; sizes, rows and pattern: tools/alltoall_common.hpp): for each size S, doubling
// from --min-bytes to --max-bytes, the all-to-all is timed over --iters calls after --warmup. Every
// received byte is checked against the pattern its sender wrote: the #wrong column, summed over
// ranks. The GPU version over NCCL: tools/nccl_alltoall_bench.cpp.
//   mpirun -np 4 build/dsv3_mpi_alltoall --min-bytes 8 --max-bytes 268435456
// No wait is without a deadline (--timeout): the barriers before each size's warm-up and timed
// calls and the reductions after them are MPI_Ibarrier and MPI_Iallreduce waited for with arrival
// notes (tools/mpi_deadline.hpp), so a rank that stops answering between sizes is named. The timed
// calls stay the blocking MPI_Alltoall, the call applications make: Open MPI's MPI_Ialltoall is
// another implementation (libnbc), 1.2-1.7x slower on this machine (4 processes, 64 B to 256 KB),
// so timing it would time something else. A watchdog thread gives them the deadline instead: a
// call that has not returned within --timeout ends the job with the size named, though not the
// rank (a blocking collective cannot say which).
// --json F writes the rows (rank 0, atomically). Exit status 0 when no byte was wrong, 1 otherwise,
// 2 on bad input, 3 when a rank did not answer within --timeout (the job is aborted).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/json_file.hpp"
#include "tools/alltoall_common.hpp"
#include "tools/mpi_deadline.hpp"

namespace {

using dsv3::alltoall::pattern;
using dsv3::mpi_deadline::barrier;
using dsv3::mpi_deadline::g_world;
using dsv3::mpi_deadline::wait_collective;

// Ends the process (exit status 3, which makes mpirun end the job) when the blocking calls of a
// size make no progress for --timeout: armed around them, told of each return. It makes no MPI
// call (the process asks for MPI_THREAD_FUNNELED); it looks every 50 ms, far below any timeout.
class CallWatchdog {
 public:
  CallWatchdog() : thread_([this] { watch(); }) {}
  ~CallWatchdog() {
    stop_ = true;
    thread_.join();
  }
  void arm(int64_t size) {
    size_ = size;
    progress_.fetch_add(1, std::memory_order_relaxed);
    armed_ = true;
  }
  void returned() { progress_.fetch_add(1, std::memory_order_relaxed); }
  void disarm() { armed_ = false; }

 private:
  void watch() {
    int64_t seen = -1;
    auto since = std::chrono::steady_clock::now();
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const auto now = std::chrono::steady_clock::now();
      const int64_t p = progress_.load(std::memory_order_relaxed);
      if (!armed_ || p != seen) {
        seen = p;
        since = now;
      } else if (now - since > std::chrono::duration<double>(g_world.timeout)) {
        std::fprintf(stderr,
                     "%s: rank %d: an MPI_Alltoall of %lld bytes did not return within %f s (a rank exited early or is stuck; a "
                     "blocking collective does not say which)\n",
                     g_world.tool, g_world.rank, static_cast<long long>(size_.load()), g_world.timeout);
        std::fflush(stderr);
        std::_Exit(3);
      }
    }
  }
  std::atomic<bool> stop_{false}, armed_{false};
  std::atomic<int64_t> progress_{0}, size_{0};
  std::thread thread_;
};

template <class T> T all_reduce(T value, MPI_Datatype type, MPI_Op op, const char* what) {
  T result{};
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Iallreduce(&value, &result, 1, type, op, MPI_COMM_WORLD, &req);
  wait_collective(req, what);
  return result;
}

int run(int argc, char** argv, int rank, int n) {
  CLI::App app{"MPI all-to-all bench in nccl-tests' form (algbw, busbw, data checked)"};
  dsv3::alltoall::Options o;
  dsv3::alltoall::add_options(app, o);
  int stall_rank = -1;
  std::string stall_at = "start";
  app.add_option("--timeout", g_world.timeout, "Seconds to wait for the other ranks before aborting the job")->capture_default_str();
  app.add_option("--stall-rank", stall_rank, "Fault injection: this rank sleeps past --timeout (at --stall-at)");
  app.add_option("--stall-at", stall_at, "Where the stall strikes: start (before the first size) or calls (the first size's timed calls)")
      ->capture_default_str()
      ->check(CLI::IsMember({"start", "calls"}));
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
  if (rank == stall_rank && stall_at == "start") dsv3::mpi_deadline::stall_past_the_deadline();
  CallWatchdog watchdog;
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
    barrier("waiting for every rank before a size");
    watchdog.arm(per * n);
    for (int64_t w = 0; w < warmup; ++w) {
      MPI_Alltoall(send.data(), static_cast<int>(per), MPI_BYTE, recv.data(), static_cast<int>(per), MPI_BYTE, MPI_COMM_WORLD);
      watchdog.returned();
    }
    watchdog.disarm();
    barrier("waiting for every rank before the timed calls");
    if (rank == stall_rank && stall_at == "calls") {
      dsv3::mpi_deadline::stall_past_the_deadline();
      stall_rank = -1;
    }
    watchdog.arm(per * n);
    const double t0 = MPI_Wtime();
    for (int64_t it = 0; it < calls; ++it) {
      MPI_Alltoall(send.data(), static_cast<int>(per), MPI_BYTE, recv.data(), static_cast<int>(per), MPI_BYTE, MPI_COMM_WORLD);
      watchdog.returned();
    }
    const double t1 = MPI_Wtime();
    watchdog.disarm();
    const double slowest = all_reduce((t1 - t0) / static_cast<double>(calls), MPI_DOUBLE, MPI_MAX, "reducing the times");
    int64_t wrong = 0;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t i = 0; i < per; ++i) wrong += recv[static_cast<std::size_t>(s * per + i)] != pattern(s, rank, i);
    const int64_t all_wrong = all_reduce(wrong, MPI_INT64_T, MPI_SUM, "summing the wrong bytes");
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
  int provided = 0;  // the watchdog thread makes no MPI call: FUNNELED is enough
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  g_world.tool = "dsv3_mpi_alltoall";
  int code = 0;
  try {
    code = run(argc, argv, g_world.rank, g_world.size);
  } catch (const std::exception& e) {
    dsv3::mpi_deadline::abort_job(e.what(), 2);
  }
  MPI_Finalize();
  return code;
}
