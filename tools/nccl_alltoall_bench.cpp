// dsv3_nccl_alltoall: the all-to-all collective over NCCL between the GPUs of one process, in
// nccl-tests' alltoall_perf form (sizes, rows and the data pattern: tools/alltoall_common.hpp; the
// MPI twin over CPU processes: tools/mpi_alltoall_bench.cpp). One communicator per GPU
// (ncclCommInitAll), one stream each; a call is one NCCL group of ncclSend/ncclRecv pairs, every GPU
// to every GPU (itself included), S / n bytes each. For each size: --warmup untimed calls, then
// --iters calls timed by CUDA events on every GPU's stream; time = the slowest GPU's mean. Every
// received byte is copied back and checked against its sender's pattern (#wrong). Runs with one
// GPU (world size 1: the self-copy path, busbw 0 by nccl-tests' factor). One process per GPU over
// MPI belongs with the expert-parallel NCCL execution (docs/ep.md).
//   build/dsv3_nccl_alltoall --min-bytes 8 --max-bytes 268435456 --json nccl_alltoall.json
// Exit status 0 when no byte was wrong, 1 otherwise, 2 on bad input, no GPU or a CUDA/NCCL error
// (named on stderr).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/json_file.hpp"
#include "optimized/cuda_check.hpp"
#include "tools/alltoall_common.hpp"

namespace {

using dsv3::alltoall::pattern;

void nccl_check(ncclResult_t r, const char* expr) {
  if (r != ncclSuccess)
    throw std::runtime_error(std::string(expr) + " failed: " + ncclGetErrorString(r) + " (ncclResult " +
                             std::to_string(static_cast<int>(r)) + ")");
}
#define NCCL_CHECK(expr) nccl_check((expr), #expr)

// One GPU's communicator, stream, events and buffers (sized for the largest call).
struct Peer {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  dsv3::DeviceBuffer send, recv;
};

// Every GPU sends `per` bytes to every GPU, as one group of point-to-point calls.
void all_to_all(std::vector<Peer>& peers, int64_t per) {
  const int n = static_cast<int>(peers.size());
  NCCL_CHECK(ncclGroupStart());
  for (Peer& p : peers)
    for (int d = 0; d < n; ++d) {
      NCCL_CHECK(ncclSend(p.send.as<uint8_t>() + d * per, static_cast<size_t>(per), ncclUint8, d, p.comm, p.stream));
      NCCL_CHECK(ncclRecv(p.recv.as<uint8_t>() + d * per, static_cast<size_t>(per), ncclUint8, d, p.comm, p.stream));
    }
  NCCL_CHECK(ncclGroupEnd());
}

void sync_all(std::vector<Peer>& peers) {
  for (Peer& p : peers) {
    DSV3_CUDA_CHECK(cudaSetDevice(p.device));
    DSV3_CUDA_CHECK(cudaStreamSynchronize(p.stream));
  }
}

int run(int argc, char** argv) {
  CLI::App app{"NCCL all-to-all bench between the GPUs of one process, in nccl-tests' form (algbw, busbw, data checked)"};
  dsv3::alltoall::Options o;
  dsv3::alltoall::add_options(app, o);
  int gpus = 0;
  app.add_option("--gpus", gpus, "GPUs to use, the first N visible (default: all)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  if (const std::string why = dsv3::alltoall::invalid(o); !why.empty()) throw std::invalid_argument(why);
  int visible = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&visible); e != cudaSuccess || visible == 0)
    throw std::invalid_argument(std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")");
  if (gpus > visible)
    throw std::invalid_argument("--gpus " + std::to_string(gpus) + " but only " + std::to_string(visible) + " visible");
  const int n = gpus ? gpus : visible;
  int nccl_version = 0;
  NCCL_CHECK(ncclGetVersion(&nccl_version));

  std::vector<Peer> peers(static_cast<std::size_t>(n));
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(n));
  std::vector<int> devices(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) devices[static_cast<std::size_t>(r)] = r;
  NCCL_CHECK(ncclCommInitAll(comms.data(), n, devices.data()));
  for (int r = 0; r < n; ++r) {
    Peer& p = peers[static_cast<std::size_t>(r)];
    p.device = r;
    p.comm = comms[static_cast<std::size_t>(r)];
    DSV3_CUDA_CHECK(cudaSetDevice(r));
    DSV3_CUDA_CHECK(cudaStreamCreateWithFlags(&p.stream, cudaStreamNonBlocking));
    DSV3_CUDA_CHECK(cudaEventCreate(&p.start));
    DSV3_CUDA_CHECK(cudaEventCreate(&p.stop));
    p.send = dsv3::DeviceBuffer(static_cast<std::size_t>(o.max_bytes), "send buffer of GPU " + std::to_string(r));
    p.recv = dsv3::DeviceBuffer(static_cast<std::size_t>(o.max_bytes), "receive buffer of GPU " + std::to_string(r));
  }
  std::printf("# NCCL %d.%d.%d\n", nccl_version / 10000, nccl_version / 100 % 100, nccl_version % 100);
  dsv3::alltoall::print_header("GPUs of one process (NCCL)", n);

  nlohmann::json rows = nlohmann::json::array();
  int64_t wrong_total = 0;
  std::vector<uint8_t> host(static_cast<std::size_t>(o.max_bytes));
  for (int64_t size = o.min_bytes; size <= o.max_bytes; size *= 2) {
    const int64_t per = size / n;
    if (per < 1) continue;
    for (int r = 0; r < n; ++r) {  // rank r's blocks, and a poisoned receive buffer
      for (int64_t d = 0; d < n; ++d)
        for (int64_t i = 0; i < per; ++i) host[static_cast<std::size_t>(d * per + i)] = pattern(r, d, i);
      Peer& p = peers[static_cast<std::size_t>(r)];
      DSV3_CUDA_CHECK(cudaSetDevice(r));
      p.send.upload(host.data(), static_cast<std::size_t>(per * n));
      p.recv.poison(0xA5);
    }
    const int64_t calls = dsv3::alltoall::calls_for(size, o.iters);
    for (int64_t w = 0; w < o.warmup; ++w) all_to_all(peers, per);
    sync_all(peers);
    for (Peer& p : peers) {
      DSV3_CUDA_CHECK(cudaSetDevice(p.device));
      DSV3_CUDA_CHECK(cudaEventRecord(p.start, p.stream));
    }
    for (int64_t it = 0; it < calls; ++it) all_to_all(peers, per);
    for (Peer& p : peers) {
      DSV3_CUDA_CHECK(cudaSetDevice(p.device));
      DSV3_CUDA_CHECK(cudaEventRecord(p.stop, p.stream));
    }
    sync_all(peers);
    double slowest = 0;
    int64_t wrong = 0;
    for (Peer& p : peers) {
      float ms = 0;
      DSV3_CUDA_CHECK(cudaSetDevice(p.device));
      DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.stop));
      slowest = std::max(slowest, static_cast<double>(ms) * 1e-3 / static_cast<double>(calls));
      p.recv.download(host.data(), static_cast<std::size_t>(per * n));
      for (int64_t s = 0; s < n; ++s)
        for (int64_t i = 0; i < per; ++i) wrong += host[static_cast<std::size_t>(s * per + i)] != pattern(s, p.device, i);
    }
    wrong_total += wrong;
    rows.push_back(dsv3::alltoall::print_row(n, per, slowest, wrong, calls));
  }
  std::printf("# all data checked: %lld wrong\n", static_cast<long long>(wrong_total));
  for (Peer& p : peers) {
    DSV3_CUDA_CHECK(cudaSetDevice(p.device));
    p.send.check_canaries();
    p.recv.check_canaries();
    ncclCommDestroy(p.comm);
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
    cudaStreamDestroy(p.stream);
  }
  if (!o.json.empty())
    dsv3::write_json_atomic(o.json, {{"bench", "nccl_alltoall"}, {"nccl_version", nccl_version}, {"rows", rows}});
  return wrong_total ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // bad input, no GPU, CUDA and NCCL errors: named, exit 2
    std::fprintf(stderr, "dsv3_nccl_alltoall: %s\n", e.what());
  }
  return 2;
}
