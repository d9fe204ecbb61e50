// dsv3_ep_nccl: one ep case (reference/ep.hpp) executed by one MPI process per GPU, the rows
// moving over NCCL, e.g.
//   mpirun -np 8 build/dsv3_ep_nccl --ranks-per-node 8 --tokens 4096 --dim 7168
// Rank 0 makes the ncclUniqueId and broadcasts it over MPI; every process joins one communicator
// (non-blocking, so every wait below can give up) on the GPU numbered by its rank among the
// processes with its host name; more processes on a node than GPUs is an error (NCCL gives a GPU
// to one rank). The MPI collectives are non-blocking too, waited for with the --timeout deadline
// that names silent ranks (tools/mpi_deadline.hpp).
// Where no MPI library is found (the lent GPU machines) it is built over tools/mpi_single.hpp and
// runs with world size 1 without mpirun. Every
// process builds the case's inputs (seeded: all agree), uploads its own slice and runs its rank's
// kernels (optimized/ep_device.hpp, the ones variant ep/cuda runs for all ranks on one GPU):
//   pack_dispatch (layout, link counts, FP8 quantize fused into the packing)
//   -> per-peer row counts to the host, exchanged over MPI (a deadline naming silent ranks; the
//      host needs them to size the receives, as DeepEP's normal kernels sync them to the CPU)
//   -> receive offsets -> one NCCL group of ncclSend/ncclRecv (one segment per peer, itself
//      included; empty segments skipped) -> unpack
//   -> pack_combine -> one NCCL group back -> finish.
// Times are CUDA events on the rank's stream around each phase, host syncs included, the mean
// over --iters after --warmup; the slowest rank's mean is reported. The last iteration's outputs
// go to rank 0, which compares them bit for bit with the simulated execution and runs the
// delivery and combine checks (tools/ep_mpi_common.hpp, shared with dsv3_ep_mpi), then prints
// the per-link bandwidths (the V3 path's sends, reference/ep.hpp link_bandwidth). World size 1 runs (the self segment only).
// Exit status: 0 identical and checked, 1 a difference, 2 bad input, no GPU or a CUDA/NCCL error
// (named), 3 a peer that did not answer or progress within --timeout.
#include <cuda_runtime.h>
#include <nccl.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "optimized/cuda_check.hpp"
#include "optimized/ep_device.hpp"
#include "tools/ep_mpi_common.hpp"

namespace {

using dsv3::ep_mpi::abort_job;
using dsv3::ep_mpi::g_world;

void nccl_check(ncclResult_t r, const char* expr) {
  if (r != ncclSuccess && r != ncclInProgress)  // a non-blocking communicator answers ncclInProgress
    throw std::runtime_error(std::string(expr) + " failed: " + ncclGetErrorString(r) + " (ncclResult " + std::to_string(static_cast<int>(r)) +
                             ")");
}
#define NCCL_CHECK(expr) nccl_check((expr), #expr)

// The communicator's state: ncclSuccess or ncclInProgress; an asynchronous NCCL error aborts the
// communicator and the job, named.
ncclResult_t comm_state(ncclComm_t comm, const char* what) {
  ncclResult_t state = ncclSuccess;
  NCCL_CHECK(ncclCommGetAsyncError(comm, &state));
  if (state != ncclSuccess && state != ncclInProgress) {
    ncclCommAbort(comm);
    abort_job(std::string(what) + ": NCCL error " + ncclGetErrorString(state), 2);
  }
  return state;
}

// Polls until the communicator has no operation in progress; gives up (aborting the
// communicator and the job) at the deadline or on an asynchronous NCCL error.
void wait_comm(ncclComm_t comm, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(g_world.timeout);
  while (comm_state(comm, what) != ncclSuccess) {
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm);
      abort_job(std::string(what) + ": NCCL made no progress within " + std::to_string(g_world.timeout) + " s (a peer died or stalled)", 3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// Waits for the stream with the same deadline (the NCCL kernels on it may wait for a dead peer).
void wait_stream(cudaStream_t s, ncclComm_t comm, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(g_world.timeout);
  while (true) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) DSV3_CUDA_CHECK(e);
    comm_state(comm, what);
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm);
      abort_job(std::string(what) + ": the GPU work did not finish within " + std::to_string(g_world.timeout) + " s (a peer died or stalled)", 3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// The device this process uses: its rank among the processes of its node (one GPU each). The
// node is the host name (MPI_Get_processor_name), gathered non-blocking with the deadline:
// MPI_Comm_split_type would group by shared memory the same way, but has no non-blocking form.
int pick_device() {
  int devices = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess || devices == 0)
    throw std::invalid_argument(std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")");
  constexpr int kName = MPI_MAX_PROCESSOR_NAME;
  std::vector<char> mine(kName, 0), all(static_cast<std::size_t>(kName) * static_cast<std::size_t>(g_world.size));
  int length = 0;
  MPI_Get_processor_name(mine.data(), &length);
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Iallgather(mine.data(), kName, MPI_CHAR, all.data(), kName, MPI_CHAR, MPI_COMM_WORLD, &req);
  dsv3::ep_mpi::wait_collective(req, "gathering the host names");
  int local = 0, local_size = 0;
  for (int r = 0; r < g_world.size; ++r)
    if (std::strncmp(all.data() + static_cast<std::size_t>(r) * kName, mine.data(), kName) == 0) {
      local += r < g_world.rank;
      ++local_size;
    }
  if (local_size > devices)
    throw std::invalid_argument(std::to_string(local_size) + " processes on this node but " + std::to_string(devices) +
                                " GPU(s): NCCL needs one GPU per rank");
  DSV3_CUDA_CHECK(cudaSetDevice(local));
  return local;
}

// One NCCL group moving rows: to each peer `out[peer]` rows from `send` at `send_off[peer]`, from
// each peer `in[peer]` rows into `recv` at `recv_off[peer]`; rows of `row` bytes.
void move_rows(ncclComm_t comm, cudaStream_t s, const uint8_t* send, const std::vector<int32_t>& out, const std::vector<int64_t>& send_off,
               uint8_t* recv, const std::vector<int32_t>& in, const std::vector<int64_t>& recv_off, int64_t row) {
  NCCL_CHECK(ncclGroupStart());
  for (int peer = 0; peer < g_world.size; ++peer) {
    const auto i = static_cast<std::size_t>(peer);
    if (out[i] > 0)
      NCCL_CHECK(ncclSend(send + send_off[i] * row, static_cast<size_t>(out[i] * row), ncclUint8, peer, comm, s));
    if (in[i] > 0) NCCL_CHECK(ncclRecv(recv + recv_off[i] * row, static_cast<size_t>(in[i] * row), ncclUint8, peer, comm, s));
  }
  NCCL_CHECK(ncclGroupEnd());
}

int run(int argc, char** argv) {
  CLI::App app{"One ep case (expert-parallel dispatch and combine) with one MPI process per GPU and NCCL moving the rows, "
               "checked against the simulated execution"};
  dsv3::ep_mpi::Options opt;
  opt.add_to(app);
  int iters = 5, warmup = 1;
  app.add_option("--iters", iters, "Timed dispatch + combine iterations (the outputs checked are the last one's)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed iterations first")->capture_default_str()->check(CLI::NonNegativeNumber);
  if (int code = 0; !opt.parse(app, argc, argv, code)) return code;
  const dsv3::ep::Params p = opt.p;
  const int device = pick_device();

  ncclUniqueId id;
  if (g_world.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Request bcast = MPI_REQUEST_NULL;
  MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD, &bcast);
  dsv3::ep_mpi::wait_collective(bcast, "broadcasting the ncclUniqueId");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  NCCL_CHECK(ncclCommInitRankConfig(&comm, g_world.size, id, g_world.rank, &config));
  wait_comm(comm, "joining the NCCL communicator");

  // This rank's inputs on the device; its output slices and the [R, 3] link counts.
  const std::vector<dsv3::Tensor> in = dsv3::ep::make_inputs(p);
  std::vector<dsv3::Tensor> out = dsv3::allocate(dsv3::ep::output_specs(p));
  for (dsv3::Tensor& t : out) std::memset(t.raw(), 0, t.nbytes());
  const auto R = static_cast<std::size_t>(g_world.size), me = static_cast<std::size_t>(g_world.rank);
  std::vector<dsv3::DeviceBuffer> dev_in, dev_out;
  for (const dsv3::Tensor& t : in) {
    const std::size_t slice = t.nbytes() / R;
    dev_in.emplace_back(slice, t.name());
    dev_in.back().upload(static_cast<const uint8_t*>(t.raw()) + me * slice, slice);
  }
  for (std::size_t i = 0; i < out.size(); ++i) dev_out.emplace_back(i + 1 < out.size() ? out[i].nbytes() / R : out[i].nbytes(), out[i].name());
  const bool fp8 = p.wire != dsv3::ep::Wire::bf16;
  dsv3::ep::gpu::Io io;
  io.x = dev_in[0].as<uint16_t>();
  io.indices = dev_in[1].as<int32_t>();
  io.weights = dev_in[2].as<float>();
  io.recv_count = dev_out[0].as<int32_t>();
  io.recv_meta = dev_out[1].as<int32_t>();
  io.recv_experts = dev_out[2].as<int32_t>();
  io.recv_weights = dev_out[3].as<float>();
  io.recv_x = dev_out[4].as<uint8_t>();
  io.recv_scales = fp8 ? dev_out[5].as<float>() : nullptr;
  io.y = dev_out[5 + fp8].as<uint16_t>();
  io.link_sends = dev_out[6 + fp8].as<int32_t>();
  dsv3::ep::gpu::Ranks ranks(p, g_world.rank, 1);
  const int64_t row = ranks.geom().row, combine_row = ranks.geom().combine_row;

  cudaStream_t s = nullptr;
  DSV3_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t ev[3];
  for (cudaEvent_t& e : ev) DSV3_CUDA_CHECK(cudaEventCreate(&e));
  dsv3::mpi_deadline::barrier("waiting for every rank before the dispatch");
  opt.inject_faults("dispatch");
  double total[2] = {0, 0};
  std::vector<int32_t> sent(R), got(R);
  for (int it = 0; it < warmup + iters; ++it) {
    DSV3_CUDA_CHECK(cudaEventRecord(ev[0], s));
    ranks.pack_dispatch(io, s);
    DSV3_CUDA_CHECK(cudaMemcpyAsync(sent.data(), ranks.sent(), R * 4, cudaMemcpyDeviceToHost, s));
    wait_stream(s, comm, "packing the dispatch");
    std::vector<uint64_t> out_counts(sent.begin(), sent.end());
    const std::vector<uint64_t> in_counts = dsv3::ep_mpi::exchange_values(out_counts, "exchanging the row counts");
    for (std::size_t i = 0; i < R; ++i) got[i] = static_cast<int32_t>(in_counts[i]);
    DSV3_CUDA_CHECK(cudaMemcpyAsync(ranks.got(), got.data(), R * 4, cudaMemcpyHostToDevice, s));
    ranks.receive_offsets(s);
    const std::vector<int64_t> send_off = dsv3::ep::gpu::offsets_of(sent.data(), g_world.size);
    const std::vector<int64_t> recv_off = dsv3::ep::gpu::offsets_of(got.data(), g_world.size);
    if (recv_off.back() > ranks.geom().cap) abort_job("the peers send more rows than the receive capacity", 2);
    move_rows(comm, s, ranks.send_rows(0), sent, send_off, ranks.recv_rows(0), got, recv_off, row);
    wait_comm(comm, "enqueueing the dispatch");  // a non-blocking group is on the stream only once this returns
    ranks.unpack(io, s);
    DSV3_CUDA_CHECK(cudaEventRecord(ev[1], s));
    ranks.pack_combine(s);
    move_rows(comm, s, ranks.combine_send(0), got, recv_off, ranks.combine_recv(0), sent, send_off, combine_row);
    wait_comm(comm, "enqueueing the combine");
    ranks.finish_combine(io, s);
    DSV3_CUDA_CHECK(cudaEventRecord(ev[2], s));
    wait_stream(s, comm, "the dispatch and combine");
    ranks.check_errors();
    float ms[2];
    DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms[0], ev[0], ev[1]));
    DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms[1], ev[1], ev[2]));
    if (it >= warmup)
      for (int k = 0; k < 2; ++k) total[k] += ms[k] * 1e-3 / iters;
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::size_t slice = dev_out[i].size();
    auto* host = static_cast<uint8_t*>(out[i].raw()) + (i + 1 < out.size() ? me * slice : 0);
    dev_out[i].download(host, slice);
  }
  std::vector<int32_t> sends(R * 3);
  std::memcpy(sends.data(), out.back().raw(), R * 3 * 4);
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  cudaStreamDestroy(s);
  ncclCommFinalize(comm);
  wait_comm(comm, "finalizing the NCCL communicator");
  ncclCommDestroy(comm);
  cudaDeviceProp prop{};
  DSV3_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const nlohmann::json extra = {{"iters", iters}, {"warmup", warmup}, {"gpu", prop.name}, {"nccl_version", NCCL_VERSION_CODE}};
  return dsv3::ep_mpi::gather_and_report(p, in, out, sends, total, opt.json, "GPUs over NCCL", extra);
}

}  // namespace

int main(int argc, char** argv) { return dsv3::ep_mpi::main_of(argc, argv, "dsv3_ep_nccl", run); }
