// What the two one-process-per-rank executions of an ep case share (tools/ep_mpi.cpp: CPU
// processes and point-to-point messages; tools/ep_nccl.cpp: one GPU per process and NCCL): the
// case options, the check that every rank runs the same case, the fault injections, the exchange
// of one value per peer, the gathering of every rank's
// output slices on rank 0, and rank 0's report (bit-for-bit comparison with the simulated
// execution, the order-free checks, times and per-link bandwidths, --json). Every wait, point to
// point or collective, has the --timeout deadline of tools/mpi_deadline.hpp, which names the ranks
// that never answered.
// Exit statuses: 0 identical and checked, 1 a difference, 2 bad input (or a CUDA/NCCL error), 3 a
// peer that did not answer within --timeout.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/json_file.hpp"
#include "reference/ep.hpp"
#include "reference/ep_checks.hpp"
#include "tools/mpi_deadline.hpp"  // <mpi.h> or tools/mpi_single.hpp

namespace dsv3::ep_mpi {

using mpi_deadline::abort_job;
using mpi_deadline::g_world;
using mpi_deadline::wait_all;
using mpi_deadline::wait_collective;

// Sends out[peer] to every peer and returns what every peer sent here (indexed by source).
inline std::vector<uint64_t> exchange_values(const std::vector<uint64_t>& out, const char* what) {
  const int n = g_world.size;
  std::vector<uint64_t> in(static_cast<std::size_t>(n));
  std::vector<MPI_Request> reqs(static_cast<std::size_t>(2 * n));
  std::vector<int> peer(static_cast<std::size_t>(2 * n));
  for (int i = 0; i < n; ++i) {
    peer[static_cast<std::size_t>(i)] = peer[static_cast<std::size_t>(n + i)] = i;
    MPI_Irecv(&in[static_cast<std::size_t>(i)], 1, MPI_UINT64_T, i, 1, MPI_COMM_WORLD, &reqs[static_cast<std::size_t>(i)]);
  }
  for (int i = 0; i < n; ++i)
    MPI_Isend(&out[static_cast<std::size_t>(i)], 1, MPI_UINT64_T, i, 1, MPI_COMM_WORLD, &reqs[static_cast<std::size_t>(n + i)]);
  wait_all(reqs, peer, what);
  return in;
}

// Rank 0 collects every rank's slice of `t`: rank r owns bytes [r slice_bytes, (r + 1) slice_bytes).
inline void gather_slices(Tensor& t, std::size_t slice_bytes) {
  auto* base = static_cast<uint8_t*>(t.raw());
  if (slice_bytes > static_cast<std::size_t>(INT32_MAX)) abort_job("an output slice of 2 GiB or more", 2);
  std::vector<MPI_Request> reqs(1);
  if (g_world.rank == 0) {
    for (int r = 1; r < g_world.size; ++r) {
      MPI_Irecv(base + static_cast<std::size_t>(r) * slice_bytes, static_cast<int>(slice_bytes), MPI_BYTE, r, 3, MPI_COMM_WORLD, &reqs[0]);
      wait_all(reqs, {r}, "gathering the results");
    }
  } else {
    MPI_Isend(base + static_cast<std::size_t>(g_world.rank) * slice_bytes, static_cast<int>(slice_bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD,
              &reqs[0]);
    wait_all(reqs, {0}, "sending the results");
  }
}

// The case and the run options both executions take.
struct Options {
  ep::Params p;
  std::string wire = "fp8", combine = "bf16", draw = "router", json;
  int exit_rank = -1, stall_rank = -1;
  std::string fault_at = "dispatch";  // where the faults strike: "start" (before the first collective) or "dispatch"

  void add_to(CLI::App& app) {
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
    app.add_option("--timeout", g_world.timeout, "Seconds to wait for a peer before aborting the job")->capture_default_str();
    app.add_option("--exit-rank", exit_rank, "Fault injection: this rank exits (at --fault-at)");
    app.add_option("--stall-rank", stall_rank, "Fault injection: this rank sleeps past --timeout (at --fault-at)");
    app.add_option("--fault-at", fault_at, "Where the faults strike: start (before the first collective, the case check) or dispatch")
        ->capture_default_str()
        ->check(CLI::IsMember({"start", "dispatch"}));
    app.add_option("--json", json, "Rank 0 writes the case, the times and the per-link bandwidths here (JSON, atomically)");
  }

  // Parses the command line (false: --help or a parse error, `exit_code` set), then makes the
  // case and checks that every rank runs the same one.
  bool parse(CLI::App& app, int argc, char** argv, int& exit_code);

  // The case with the world size as R (throws std::invalid_argument naming a bad field).
  ep::Params params() {
    p.ranks = g_world.size;
    p.wire = ep::wire_from_name(wire);
    p.combine = ep::combine_wire_from_name(combine);
    if (draw != "router" && draw != "all_to_rank0") throw std::invalid_argument("--draw must be router or all_to_rank0, got '" + draw + "'");
    p.draw = draw == "all_to_rank0" ? ep::Draw::all_to_rank0 : ep::Draw::router;
    p.validate();
    return p;
  }

  // The fault injections, where `phase` is --fault-at: "start" (Options::parse, before the case
  // check's collective) or "dispatch" (the tools, after their last barrier, where the dispatch starts).
  void inject_faults(const char* phase) const {
    if (fault_at != phase) return;
    if (g_world.rank == exit_rank) {
      std::fprintf(stderr, "%s: rank %d exits early (--exit-rank, at %s)\n", g_world.tool, g_world.rank, phase);
      std::exit(4);
    }
    if (g_world.rank == stall_rank) mpi_deadline::stall_past_the_deadline();
  }
};

// Every rank must run the same case: aborts naming a rank whose case string differs (each rank
// that sees a difference reports the first such rank, its case and its own).
inline void require_same_case(const ep::Params& p) {
  char mine[256] = {0};
  std::snprintf(mine, sizeof mine, "%s", p.to_string().c_str());
  std::vector<char> all(static_cast<std::size_t>(256 * g_world.size));
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Iallgather(mine, 256, MPI_CHAR, all.data(), 256, MPI_CHAR, MPI_COMM_WORLD, &req);
  wait_collective(req, "checking that every rank runs the same case");
  for (int r = 0; r < g_world.size; ++r)
    if (std::strncmp(all.data() + 256 * r, mine, 256) != 0)
      abort_job("rank " + std::to_string(r) + " runs another case: '" + std::string(all.data() + 256 * r) + "' (this rank: '" + mine + "')",
                2);
}

inline bool Options::parse(CLI::App& app, int argc, char** argv, int& exit_code) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (g_world.rank == 0) app.exit(e);
    exit_code = e.get_exit_code() == 0 ? 0 : 2;
    return false;
  }
  const ep::Params checked = params();  // bad input is named before any peer is waited for
  inject_faults("start");
  require_same_case(checked);
  return true;
}

// Collective: the slowest rank's dispatch and combine seconds and the summed link sends reach
// rank 0, then every output slice (recv_count has one element per rank; link_sends is the sum).
// Rank 0 then compares with the simulated execution, runs the checks and prints the times and
// per-link bandwidths; returns the exit status (other ranks: 0). `how` names the execution
// ("MPI processes", "GPUs over NCCL"); `extra` adds fields to the JSON row.
inline int gather_and_report(const ep::Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out, std::vector<int32_t>& sends,
                             const double local_seconds[2], const std::string& json, const char* how,
                             const nlohmann::json& extra = nlohmann::json::object()) {
  double slowest[2] = {0, 0};
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Ireduce(local_seconds, slowest, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD, &req);
  wait_collective(req, "reducing the times");
  MPI_Ireduce(g_world.rank == 0 ? MPI_IN_PLACE : sends.data(), sends.data(), g_world.size * 3, MPI_INT32_T, MPI_SUM, 0, MPI_COMM_WORLD,
              &req);
  wait_collective(req, "summing the link sends");
  for (std::size_t i = 0; i + 1 < out.size(); ++i) gather_slices(out[i], out[i].nbytes() / static_cast<std::size_t>(g_world.size));
  if (g_world.rank != 0) return 0;
  std::memcpy(out.back().raw(), sends.data(), out.back().nbytes());

  std::vector<Tensor> ref = allocate(ep::output_specs(p));
  ep::run_reference(p, in, ref);
  int diffs = 0;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (std::memcmp(out[i].raw(), ref[i].raw(), out[i].nbytes()) != 0) {
      std::printf("DIFFERENT: %s differs from the simulated execution\n", out[i].name().c_str());
      ++diffs;
    }
  const std::vector<Tensor> aids = ep::combine_aids(p, in);
  for (const CompareReport& r : {ep::delivery_check(p, aids, out), ep::combine_check(p, aids, out)}) {
    std::printf("%s: %s%s%s\n", r.name.c_str(), r.pass ? "pass" : "FAIL", r.message.empty() ? "" : ": ", r.message.c_str());
    diffs += r.pass ? 0 : 1;
  }
  std::printf("case %s over %d %s: %s; dispatch %.3f ms, combine %.3f ms (slowest rank)\n", p.to_string().c_str(), g_world.size, how,
              diffs ? "FAILED" : "identical to the simulated execution", slowest[0] * 1e3, slowest[1] * 1e3);
  // Per-link bandwidth on the V3 path's sends (reference/ep.hpp link_bandwidth; not DeepEP's test
  // count, docs/ep.md): the busiest rank's bytes over the slowest rank's time.
  const ep::LinkBandwidth bw[2] = {ep::link_bandwidth(p, sends.data(), ep::bytes_per_dispatch_send(p), slowest[0]),
                                   ep::link_bandwidth(p, sends.data(), ep::bytes_per_combine_send(p), slowest[1])};
  // And in nccl-tests' all-to-all terms (reference/ep.hpp alltoall_bandwidth): algbw, busbw.
  const std::vector<int64_t> rows = ep::rows_sent(p, in);
  const ep::AllToAllBandwidth a2a[2] = {ep::alltoall_bandwidth(p, rows, false, ep::bytes_per_dispatch_send(p), slowest[0]),
                                        ep::alltoall_bandwidth(p, rows, true, ep::bytes_per_combine_send(p), slowest[1])};
  const char* names[2] = {"dispatch", "combine"};
  nlohmann::json row = {{"case", p.to_string()}, {"processes", g_world.size}, {"execution", how}, {"identical", diffs == 0}};
  row.update(extra);
  for (int i = 0; i < 2; ++i) {
    std::printf("%-8s  IB %.4g GB/s (rank %lld: %.0f B)   NVLink %.4g GB/s (rank %lld: %.0f B)   in %.3f ms\n", names[i], bw[i].ib_gbs(),
                static_cast<long long>(bw[i].ib_rank), bw[i].ib_bytes, bw[i].nvlink_gbs(), static_cast<long long>(bw[i].nvlink_rank),
                bw[i].nvlink_bytes, bw[i].seconds * 1e3);
    std::printf("%-8s  algbw %.4g GB/s (rank %lld: %.0f B)   busbw %.4g GB/s (rank %lld: %.0f B)\n", "", a2a[i].algbw_gbs(),
                static_cast<long long>(a2a[i].alg_rank), a2a[i].alg_bytes, a2a[i].busbw_gbs(), static_cast<long long>(a2a[i].bus_rank),
                a2a[i].bus_bytes);
    row[names[i]] = {{"seconds", bw[i].seconds}, {"ib_bytes", bw[i].ib_bytes}, {"ib_rank", bw[i].ib_rank}, {"ib_gbs", bw[i].ib_gbs()},
                     {"nvlink_bytes", bw[i].nvlink_bytes}, {"nvlink_rank", bw[i].nvlink_rank}, {"nvlink_gbs", bw[i].nvlink_gbs()},
                     {"alg_bytes", a2a[i].alg_bytes}, {"alg_rank", a2a[i].alg_rank}, {"algbw_gbs", a2a[i].algbw_gbs()},
                     {"bus_bytes", a2a[i].bus_bytes}, {"bus_rank", a2a[i].bus_rank}, {"busbw_gbs", a2a[i].busbw_gbs()}};
  }
  if (!json.empty()) write_json_atomic(json, row);
  return diffs ? 1 : 0;
}

// main() of a tool: MPI up, run(argc, argv), MPI down; an exception (bad input, no GPU, a CUDA or
// NCCL error) is named and aborts the job with exit status 2.
inline int main_of(int argc, char** argv, const char* tool, int (*run)(int, char**)) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  g_world.tool = tool;
  int code = 0;
  try {
    code = run(argc, argv);
  } catch (const std::exception& e) {
    abort_job(e.what(), 2);
  }
  MPI_Finalize();
  return code;
}

}  // namespace dsv3::ep_mpi
