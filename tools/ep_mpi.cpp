// dsv3_ep_mpi: one ep case (reference/ep.hpp) executed by one MPI process per rank, e.g.
//   mpirun -np 4 build/dsv3_ep_mpi --ranks-per-node 2 --tokens 64 --dim 512
// Every process builds the case's inputs (seeded: all agree), packs its own dispatch rows, and the
// packets travel as point-to-point messages; then the combine packets travel back. Rank 0 gathers
// every rank's slices and compares them bit for bit with the simulated execution (the reference),
// then runs the order-free delivery and combine checks, and prints the dispatch and combine times
// (the slowest rank's) with the per-link bandwidths of the busiest rank (the V3 path's sends;
// reference/ep.hpp link_bandwidth), and with --json writes them. Exit status: 0 when identical and
// checked, 1 on a difference, 2 on bad input, 3 when a peer did not answer within --timeout (every
// wait, collectives included, has that deadline; the job is aborted, naming the ranks).
// A mismatched configuration across ranks (another case string) is reported with the rank.
// dsv3_ep_mpi_single is this program over tools/mpi_single.hpp (world size 1, no MPI library): the
// test of that stand-in, which the NCCL execution uses on machines without MPI.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/ep_mpi_common.hpp"

namespace {

using dsv3::ep::Packets;
using dsv3::ep_mpi::abort_job;
using dsv3::ep_mpi::g_world;

// Sends packets[peer] to every peer and returns what every peer sent here (indexed by source).
Packets exchange(const Packets& send, const char* what) {
  const int n = g_world.size;
  std::vector<uint64_t> out_sizes(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out_sizes[static_cast<std::size_t>(i)] = send[static_cast<std::size_t>(i)].size();
  const std::vector<uint64_t> in_sizes = dsv3::ep_mpi::exchange_values(out_sizes, what);  // sizes first
  Packets recv(static_cast<std::size_t>(n));
  std::vector<MPI_Request> reqs;
  std::vector<int> peer;
  for (int i = 0; i < n; ++i) {
    recv[static_cast<std::size_t>(i)].resize(in_sizes[static_cast<std::size_t>(i)]);
    if (in_sizes[static_cast<std::size_t>(i)] > static_cast<uint64_t>(INT32_MAX)) abort_job("a packet of 2 GiB or more", 2);
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Irecv(recv[static_cast<std::size_t>(i)].data(), static_cast<int>(in_sizes[static_cast<std::size_t>(i)]), MPI_BYTE, i, 2,
              MPI_COMM_WORLD, &reqs.back());
  }
  for (int i = 0; i < n; ++i) {
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Isend(send[static_cast<std::size_t>(i)].data(), static_cast<int>(out_sizes[static_cast<std::size_t>(i)]), MPI_BYTE, i, 2,
              MPI_COMM_WORLD, &reqs.back());
  }
  dsv3::ep_mpi::wait_all(reqs, peer, what);
  return recv;
}

int run(int argc, char** argv) {
  CLI::App app{"One ep case (expert-parallel dispatch and combine) with one MPI process per rank, checked against the simulated execution"};
  dsv3::ep_mpi::Options opt;
  opt.add_to(app);
  if (int code = 0; !opt.parse(app, argc, argv, code)) return code;
  const dsv3::ep::Params p = opt.p;

  const std::vector<dsv3::Tensor> in = dsv3::ep::make_inputs(p);
  std::vector<dsv3::Tensor> out = dsv3::allocate(dsv3::ep::output_specs(p));
  for (dsv3::Tensor& t : out) std::memset(t.raw(), 0, t.nbytes());
  dsv3::mpi_deadline::barrier("waiting for every rank before the dispatch");
  opt.inject_faults("dispatch");
  const double t0 = MPI_Wtime();
  std::vector<int32_t> sends(static_cast<std::size_t>(g_world.size * 3), 0);
  const Packets received = exchange(dsv3::ep::pack_dispatch(p, g_world.rank, in, sends.data()), "dispatch");
  const double t1 = MPI_Wtime();
  dsv3::ep::store_received(p, g_world.rank, received, out);
  const Packets partials = exchange(dsv3::ep::pack_combine(p, received), "combine");
  dsv3::ep::finish_combine(p, g_world.rank, partials, out);
  const double t2 = MPI_Wtime();
  const double seconds[2] = {t1 - t0, t2 - t1};
  return dsv3::ep_mpi::gather_and_report(p, in, out, sends, seconds, opt.json, "MPI processes");
}

}  // namespace

int main(int argc, char** argv) { return dsv3::ep_mpi::main_of(argc, argv, "dsv3_ep_mpi", run); }
