// Waits with a deadline for the MPI tools (tools/ep_mpi.cpp, tools/ep_nccl.cpp,
// tools/mpi_alltoall_bench.cpp): point-to-point messages and collectives are started non-blocking
// (MPI_Isend/MPI_Irecv, MPI_Ibarrier, MPI_Iallgather, MPI_Ireduce, MPI_Ibcast, MPI_Iallreduce) and
// waited for here; at the deadline (--timeout) the job is aborted (exit status 3) with the ranks
// that never answered named. (The all-to-all bench's timed MPI_Alltoall calls stay blocking, under
// a watchdog thread: tools/mpi_alltoall_bench.cpp.)
//   wait_all         requests with the peer each one waits for: the peers not heard from are named
//   wait_collective  a collective's request: it does not say which rank is missing, so every rank
//                    also sends every peer an arrival note; the peers whose note never came are named
//   barrier          MPI_Barrier through wait_collective
// Built over tools/mpi_single.hpp (world size 1) with -DDSV3_MPI_SINGLE=1.
#pragma once

#if DSV3_MPI_SINGLE
#include "tools/mpi_single.hpp"  // no MPI library: world size 1
#else
#include <mpi.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dsv3::mpi_deadline {

struct World {
  int rank = 0, size = 1;
  double timeout = 60;  // seconds to wait for a peer
  const char* tool = "dsv3_mpi";
};
inline World g_world;

// Tag of the arrival notes (the tools' own messages use tags 1-3).
inline constexpr int kArrivalTag = 9;

[[noreturn]] inline void abort_job(const std::string& why, int code) {
  std::fprintf(stderr, "%s: rank %d: %s\n", g_world.tool, g_world.rank, why.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

// Waits for `reqs` until --timeout; then aborts the job naming the peers (peer[i] >= 0) whose
// request never completed. A peer of -1 marks a request that waits for no one rank (a collective):
// if only those are missing the message says the operation did not complete. The first 2 ms poll
// without a pause, so a short wait costs what MPI_Wait's own polling does (the all-to-all bench
// times calls of a few microseconds); after that every 50 us, so a long wait leaves the cores to
// the other processes (the tests run oversubscribed).
inline void wait_all(std::vector<MPI_Request>& reqs, const std::vector<int>& peer, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  const auto spin_until = start + std::chrono::milliseconds(2);
  const auto deadline = start + std::chrono::duration<double>(g_world.timeout);
  while (true) {
    int done = 0;
    MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (done) return;
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) {
      std::set<int> silent;  // a peer may hold several requests (a receive and a send)
      for (std::size_t i = 0; i < reqs.size(); ++i) {
        int flag = 0;
        if (reqs[i] != MPI_REQUEST_NULL) MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE);
        if (reqs[i] != MPI_REQUEST_NULL && !flag && peer[i] >= 0) silent.insert(peer[i]);
      }
      std::string missing;
      for (int r : silent) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      if (missing.empty())
        abort_job(std::string(what) + ": did not complete within " + std::to_string(g_world.timeout) +
                      " s (a rank exited early or is stuck; the operation does not say which)", 3);
      abort_job(std::string(what) + ": no answer within " + std::to_string(g_world.timeout) + " s from rank(s) " + missing +
                    " (exited early or stuck)", 3);
    }
    if (now > spin_until) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// Waits for the non-blocking collective `req` (started by the caller) until --timeout. Every rank
// also sends each peer a note that it has reached this collective and waits for the peers' notes:
// at the deadline the peers whose note never came are named (a rank that is stuck before the
// collective, or that exited). Every rank runs the same collectives in the same order and messages
// between two ranks with one tag arrive in order, so the k-th note from a peer is its k-th
// collective's. n - 1 one-int messages per rank: kept out of timed loops.
inline void wait_collective(MPI_Request req, const char* what) {
  const int n = g_world.size;
  static const int note = 0;  // the content does not matter; a send buffer that outlives the wait
  std::vector<int> sink(static_cast<std::size_t>(n));
  std::vector<MPI_Request> reqs{req};
  std::vector<int> peer{-1};
  for (int i = 0; i < n; ++i) {
    if (i == g_world.rank) continue;
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Irecv(&sink[static_cast<std::size_t>(i)], 1, MPI_INT, i, kArrivalTag, MPI_COMM_WORLD, &reqs.back());
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Isend(&note, 1, MPI_INT, i, kArrivalTag, MPI_COMM_WORLD, &reqs.back());
  }
  wait_all(reqs, peer, what);
}

// MPI_Barrier with the deadline: an MPI_Ibarrier waited for by wait_collective.
inline void barrier(const char* what) {
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  wait_collective(req, what);
}

// The sleep of a --stall-rank fault: past the deadline, so the peers give up first.
inline void stall_past_the_deadline() { std::this_thread::sleep_for(std::chrono::duration<double>(g_world.timeout + 30)); }

}  // namespace dsv3::mpi_deadline
