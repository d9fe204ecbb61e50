// dsv3_ep_mpi: one ep case (reference/ep.hpp) executed by one MPI process per rank, e.g.
//   mpirun -np 4 build/dsv3_ep_mpi --ranks-per-node 2 --tokens 64 --dim 512
// Every process builds the case's inputs (seeded: all agree), packs its own dispatch rows, and the
// packets travel as point-to-point messages; then the combine packets travel back. Rank 0 gathers
// every rank's slices and compares them bit for bit with the simulated execution (the reference),
// then runs the order-free delivery and combine checks, and prints the dispatch and combine times
// (the slowest rank's) with the per-link bandwidths of the busiest rank as DeepEP reports them
// (reference/ep.hpp link_bandwidth), and with --json writes them. Exit status: 0 when identical and checked, 1 on a difference, 2 on bad
// input, 3 when a peer did not answer within --timeout (the job is aborted, naming the ranks).
// A mismatched configuration across ranks (another case string) is reported with the rank.
#include <mpi.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/json_file.hpp"
#include "reference/ep.hpp"
#include "reference/ep_checks.hpp"

namespace {

using dsv3::ep::Packets;

int g_rank = 0, g_size = 1;
double g_timeout = 60;

[[noreturn]] void abort_job(const std::string& why, int code) {
  std::fprintf(stderr, "dsv3_ep_mpi: rank %d: %s\n", g_rank, why.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

// Waits for `reqs` with a deadline; on timeout names the peers whose message never completed.
void wait_all(std::vector<MPI_Request>& reqs, const std::vector<int>& peer, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(g_timeout);
  while (true) {
    int done = 0;
    MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (done) return;
    if (std::chrono::steady_clock::now() > deadline) {
      std::string missing;
      for (std::size_t i = 0; i < reqs.size(); ++i) {
        int flag = 0;
        if (reqs[i] != MPI_REQUEST_NULL) MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE);
        if (reqs[i] != MPI_REQUEST_NULL && !flag) missing += (missing.empty() ? "" : ", ") + std::to_string(peer[i]);
      }
      abort_job(std::string(what) + ": no answer within " + std::to_string(g_timeout) + " s from rank(s) " + missing +
                    " (exited early or stuck)", 3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// Sends packets[peer] to every peer and returns what every peer sent here (indexed by source).
Packets exchange(const Packets& send, const char* what) {
  const int n = g_size;
  std::vector<uint64_t> out_sizes(static_cast<std::size_t>(n)), in_sizes(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out_sizes[static_cast<std::size_t>(i)] = send[static_cast<std::size_t>(i)].size();
  std::vector<MPI_Request> reqs;
  std::vector<int> peer;
  for (int i = 0; i < n; ++i) {  // sizes first
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Irecv(&in_sizes[static_cast<std::size_t>(i)], 1, MPI_UINT64_T, i, 1, MPI_COMM_WORLD, &reqs.back());
  }
  for (int i = 0; i < n; ++i) {
    reqs.emplace_back();
    peer.push_back(i);
    MPI_Isend(&out_sizes[static_cast<std::size_t>(i)], 1, MPI_UINT64_T, i, 1, MPI_COMM_WORLD, &reqs.back());
  }
  wait_all(reqs, peer, what);
  Packets recv(static_cast<std::size_t>(n));
  reqs.clear();
  peer.clear();
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
  wait_all(reqs, peer, what);
  return recv;
}

// Rank 0 collects every rank's slice of `t`: rank r owns bytes [r slice_bytes, (r + 1) slice_bytes).
void gather_slices(dsv3::Tensor& t, std::size_t slice_bytes) {
  auto* base = static_cast<uint8_t*>(t.raw());
  if (g_rank == 0) {
    for (int r = 1; r < g_size; ++r) {
      MPI_Request req;
      MPI_Irecv(base + static_cast<std::size_t>(r) * slice_bytes, static_cast<int>(slice_bytes), MPI_BYTE, r, 3, MPI_COMM_WORLD, &req);
      std::vector<MPI_Request> reqs{req};
      wait_all(reqs, {r}, "gathering the results");
    }
  } else {
    MPI_Request req;
    MPI_Isend(base + static_cast<std::size_t>(g_rank) * slice_bytes, static_cast<int>(slice_bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD, &req);
    std::vector<MPI_Request> reqs{req};
    wait_all(reqs, {0}, "sending the results");
  }
}

int run(int argc, char** argv) {
  CLI::App app{"One ep case (expert-parallel dispatch and combine) with one MPI process per rank, checked against the simulated execution"};
  dsv3::ep::Params p;
  std::string wire = "fp8", combine = "bf16", draw = "router";
  int exit_rank = -1, stall_rank = -1;
  std::string json;
  app.add_option("--model", p.model, "Model config id (datasets/models): experts, top-k, gate")->capture_default_str();
  app.add_option("--ranks-per-node", p.ranks_per_node, "Ranks per node G (the world size must be a multiple)")->capture_default_str();
  app.add_option("--tokens", p.tokens, "Tokens per rank")->capture_default_str();
  app.add_option("--dim", p.dim, "Channels per token (multiple of 128)")->capture_default_str();
  app.add_option("--node-limit", p.node_limit, "Node limit M (0: the config's, at most the node count)")->capture_default_str();
  app.add_option("--wire", wire, "Dispatch wire: fp8, fp8_pow2 or bf16")->capture_default_str();
  app.add_option("--combine", combine, "Combine wire: bf16 or logfmt10 (DeepEP's LogFMT-10, BF16 fallback per 128 channels)")
      ->capture_default_str();
  app.add_option("--x-scale-log2", p.x_scale_log2, "Inputs scaled by 2^this (e.g. -6 keeps LogFMT groups encoded)")->capture_default_str();
  app.add_option("--draw", draw, "router or all_to_rank0")->capture_default_str();
  app.add_option("--timeout", g_timeout, "Seconds to wait for a peer before aborting the job")->capture_default_str();
  app.add_option("--exit-rank", exit_rank, "Fault injection: this rank exits before the dispatch");
  app.add_option("--stall-rank", stall_rank, "Fault injection: this rank sleeps past --timeout before the dispatch");
  app.add_option("--json", json, "Rank 0 writes the case, the times and the per-link bandwidths here (JSON, atomically)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (g_rank == 0) app.exit(e);
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  p.ranks = g_size;
  p.wire = dsv3::ep::wire_from_name(wire);
  p.combine = dsv3::ep::combine_wire_from_name(combine);
  p.draw = draw == "all_to_rank0" ? dsv3::ep::Draw::all_to_rank0 : dsv3::ep::Draw::router;
  p.validate();

  // Every rank must run the same case.
  char mine[256] = {0};
  std::snprintf(mine, sizeof mine, "%s", p.to_string().c_str());
  std::vector<char> all(static_cast<std::size_t>(256 * g_size));
  MPI_Allgather(mine, 256, MPI_CHAR, all.data(), 256, MPI_CHAR, MPI_COMM_WORLD);
  for (int r = 0; r < g_size; ++r)
    if (std::strncmp(all.data() + 256 * r, mine, 256) != 0)
      abort_job("rank " + std::to_string(r) + " runs another case: '" + std::string(all.data() + 256 * r) + "' vs '" + mine + "'", 2);

  const std::vector<dsv3::Tensor> in = dsv3::ep::make_inputs(p);
  std::vector<dsv3::Tensor> out = dsv3::allocate(dsv3::ep::output_specs(p));
  for (dsv3::Tensor& t : out) std::memset(t.raw(), 0, t.nbytes());
  MPI_Barrier(MPI_COMM_WORLD);
  if (g_rank == exit_rank) {
    std::fprintf(stderr, "dsv3_ep_mpi: rank %d exits early (--exit-rank)\n", g_rank);
    std::exit(4);
  }
  if (g_rank == stall_rank) std::this_thread::sleep_for(std::chrono::duration<double>(g_timeout + 30));
  const double t0 = MPI_Wtime();
  std::vector<int32_t> sends(static_cast<std::size_t>(g_size * 3), 0);
  const Packets received = exchange(dsv3::ep::pack_dispatch(p, g_rank, in, sends.data()), "dispatch");
  const double t1 = MPI_Wtime();
  dsv3::ep::store_received(p, g_rank, received, out);
  const Packets partials = exchange(dsv3::ep::pack_combine(p, received), "combine");
  dsv3::ep::finish_combine(p, g_rank, partials, out);
  const double t2 = MPI_Wtime();
  double local[2] = {t1 - t0, t2 - t1}, slowest[2];
  MPI_Reduce(local, slowest, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(g_rank == 0 ? MPI_IN_PLACE : sends.data(), sends.data(), g_size * 3, MPI_INT32_T, MPI_SUM, 0, MPI_COMM_WORLD);

  // Rank 0 gathers every output's per-rank slices (recv_count has one element per rank).
  for (std::size_t i = 0; i + 1 < out.size(); ++i) gather_slices(out[i], out[i].nbytes() / static_cast<std::size_t>(g_size));
  if (g_rank != 0) return 0;
  std::memcpy(out.back().raw(), sends.data(), out.back().nbytes());

  std::vector<dsv3::Tensor> ref = dsv3::allocate(dsv3::ep::output_specs(p));
  dsv3::ep::run_reference(p, in, ref);
  int diffs = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (std::memcmp(out[i].raw(), ref[i].raw(), out[i].nbytes()) != 0) {
      std::printf("DIFFERENT: %s differs from the simulated execution\n", out[i].name().c_str());
      ++diffs;
    }
  const std::vector<dsv3::Tensor> aids = dsv3::ep::combine_aids(p, in);
  for (const dsv3::CompareReport& r : {dsv3::ep::delivery_check(p, aids, out), dsv3::ep::combine_check(p, aids, out)}) {
    std::printf("%s: %s%s%s\n", r.name.c_str(), r.pass ? "pass" : "FAIL", r.message.empty() ? "" : ": ", r.message.c_str());
    diffs += r.pass ? 0 : 1;
  }
  std::printf("case %s over %d MPI processes: %s; dispatch %.3f ms, combine %.3f ms (slowest rank)\n", p.to_string().c_str(), g_size,
              diffs ? "FAILED" : "identical to the simulated execution", slowest[0] * 1e3, slowest[1] * 1e3);
  // Per-link bandwidth as DeepEP counts it (reference/ep.hpp link_bandwidth): the busiest rank.
  const dsv3::ep::LinkBandwidth bw[2] = {
      dsv3::ep::link_bandwidth(p, sends.data(), dsv3::ep::bytes_per_dispatch_send(p), slowest[0]),
      dsv3::ep::link_bandwidth(p, sends.data(), dsv3::ep::bytes_per_combine_send(p), slowest[1])};
  const char* names[2] = {"dispatch", "combine"};
  nlohmann::json row = {{"case", p.to_string()}, {"processes", g_size}, {"identical", diffs == 0}};
  for (int i = 0; i < 2; ++i) {
    std::printf("%-8s  IB %.4g GB/s (rank %lld: %.0f B)   NVLink %.4g GB/s (rank %lld: %.0f B)   in %.3f ms\n", names[i], bw[i].ib_gbs(),
                static_cast<long long>(bw[i].ib_rank), bw[i].ib_bytes, bw[i].nvlink_gbs(), static_cast<long long>(bw[i].nvlink_rank),
                bw[i].nvlink_bytes, bw[i].seconds * 1e3);
    row[names[i]] = {{"seconds", bw[i].seconds}, {"ib_bytes", bw[i].ib_bytes}, {"ib_rank", bw[i].ib_rank}, {"ib_gbs", bw[i].ib_gbs()},
                     {"nvlink_bytes", bw[i].nvlink_bytes}, {"nvlink_rank", bw[i].nvlink_rank}, {"nvlink_gbs", bw[i].nvlink_gbs()}};
  }
  if (!json.empty()) dsv3::write_json_atomic(json, row);
  return diffs ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  int code = 0;
  try {
    code = run(argc, argv);
  } catch (const std::exception& e) {
    abort_job(e.what(), 2);
  }
  MPI_Finalize();
  return code;
}
