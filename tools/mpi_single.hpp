// The subset of MPI that tools/mpi_deadline.hpp, tools/ep_mpi_common.hpp and tools/ep_nccl.cpp
// call, for one process (world size 1), where no MPI library is found: the lent GPU machines' image
// has none, and the NCCL execution must still run there with world size 1. In the manner of serial
// "MPI stubs" (LAMMPS' STUBS): the non-blocking collectives copy or do nothing and are complete at
// once (their request is MPI_REQUEST_NULL, which MPI_Test reports complete), a send to oneself
// completes into the matching receive posted earlier with the same tag (or is kept until one is
// posted), a send to another rank is an error. Built with -DDSV3_MPI_SINGLE=1 instead of <mpi.h>.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using MPI_Comm = int;
using MPI_Request = int;
using MPI_Datatype = int;  // the element size in bytes
using MPI_Op = int;
struct MPI_Status {
  int MPI_SOURCE, MPI_TAG, MPI_ERROR;
};

inline constexpr MPI_Comm MPI_COMM_WORLD = 0;
inline constexpr MPI_Request MPI_REQUEST_NULL = -1;
inline constexpr MPI_Datatype MPI_BYTE = 1, MPI_CHAR = 1, MPI_INT = 4, MPI_INT32_T = 4, MPI_UINT64_T = 8, MPI_DOUBLE = 8;
inline constexpr MPI_Op MPI_MAX = 1, MPI_SUM = 2;
inline constexpr int MPI_MAX_PROCESSOR_NAME = 256;
inline void* const MPI_IN_PLACE = reinterpret_cast<void*>(static_cast<std::uintptr_t>(1));
inline MPI_Status* const MPI_STATUS_IGNORE = nullptr;
inline MPI_Status* const MPI_STATUSES_IGNORE = nullptr;

namespace dsv3::mpi_single {

struct Pending {  // a receive waiting for its send, or a send waiting for its receive
  void* buf;
  const void* data;
  std::size_t bytes;
  int tag;
  bool recv, done;
};
inline std::vector<Pending> g_ops;

inline void only_self(int peer) {
  if (peer != 0) throw std::logic_error("this build has no MPI library (DSV3_MPI_SINGLE): only rank 0 exists, got peer " + std::to_string(peer));
}

// Completes a receive and a send with the same tag.
inline void match(std::size_t a) {
  for (std::size_t b = 0; b < g_ops.size(); ++b) {
    Pending& x = g_ops[a];
    Pending& y = g_ops[b];
    if (b == a || y.done || x.done || x.recv == y.recv || x.tag != y.tag) continue;
    Pending& r = x.recv ? x : y;
    const Pending& s = x.recv ? y : x;
    if (s.bytes > r.bytes) throw std::length_error("MPI (single process): a message longer than its receive buffer");
    if (s.bytes) std::memcpy(r.buf, s.data, s.bytes);
    x.done = y.done = true;
    return;
  }
}

}  // namespace dsv3::mpi_single

inline int MPI_Init(int*, char***) { return 0; }
inline int MPI_Finalize() { return 0; }
inline int MPI_Comm_rank(MPI_Comm, int* rank) { *rank = 0; return 0; }
inline int MPI_Comm_size(MPI_Comm, int* size) { *size = 1; return 0; }
inline int MPI_Abort(MPI_Comm, int code) { std::exit(code); }
inline int MPI_Get_processor_name(char* name, int* length) {
  std::snprintf(name, static_cast<std::size_t>(MPI_MAX_PROCESSOR_NAME), "localhost");
  *length = static_cast<int>(std::strlen(name));
  return 0;
}
// Non-blocking collectives of one process: done when they return.
inline int MPI_Ibarrier(MPI_Comm, MPI_Request* req) { *req = MPI_REQUEST_NULL; return 0; }
inline int MPI_Ibcast(void*, int, MPI_Datatype, int root, MPI_Comm, MPI_Request* req) {
  dsv3::mpi_single::only_self(root);
  *req = MPI_REQUEST_NULL;
  return 0;
}
inline int MPI_Iallgather(const void* send, int count, MPI_Datatype type, void* recv, int, MPI_Datatype, MPI_Comm, MPI_Request* req) {
  if (send != MPI_IN_PLACE) std::memmove(recv, send, static_cast<std::size_t>(count) * static_cast<std::size_t>(type));
  *req = MPI_REQUEST_NULL;
  return 0;
}
inline int MPI_Ireduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op, int root, MPI_Comm, MPI_Request* req) {
  dsv3::mpi_single::only_self(root);
  if (send != MPI_IN_PLACE) std::memmove(recv, send, static_cast<std::size_t>(count) * static_cast<std::size_t>(type));
  *req = MPI_REQUEST_NULL;
  return 0;
}
inline double MPI_Wtime() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline int MPI_Irecv(void* buf, int count, MPI_Datatype type, int source, int tag, MPI_Comm, MPI_Request* req) {
  dsv3::mpi_single::only_self(source);
  auto& ops = dsv3::mpi_single::g_ops;
  ops.push_back({buf, nullptr, static_cast<std::size_t>(count) * static_cast<std::size_t>(type), tag, true, false});
  *req = static_cast<int>(ops.size() - 1);
  dsv3::mpi_single::match(ops.size() - 1);
  return 0;
}
inline int MPI_Isend(const void* buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm, MPI_Request* req) {
  dsv3::mpi_single::only_self(dest);
  auto& ops = dsv3::mpi_single::g_ops;
  ops.push_back({nullptr, buf, static_cast<std::size_t>(count) * static_cast<std::size_t>(type), tag, false, false});
  *req = static_cast<int>(ops.size() - 1);
  dsv3::mpi_single::match(ops.size() - 1);
  return 0;
}
inline void dsv3_mpi_single_release() {  // every operation complete: the table starts again
  auto& ops = dsv3::mpi_single::g_ops;
  for (const auto& o : ops)
    if (!o.done) return;
  ops.clear();
}
inline int MPI_Test(MPI_Request* req, int* flag, MPI_Status*) {
  *flag = *req == MPI_REQUEST_NULL || dsv3::mpi_single::g_ops.at(static_cast<std::size_t>(*req)).done;
  if (*flag) *req = MPI_REQUEST_NULL;
  dsv3_mpi_single_release();
  return 0;
}
inline int MPI_Testall(int n, MPI_Request* reqs, int* flag, MPI_Status*) {
  *flag = 1;
  for (int i = 0; i < n; ++i)
    if (reqs[i] != MPI_REQUEST_NULL && !dsv3::mpi_single::g_ops.at(static_cast<std::size_t>(reqs[i])).done) *flag = 0;
  if (*flag)
    for (int i = 0; i < n; ++i) reqs[i] = MPI_REQUEST_NULL;
  dsv3_mpi_single_release();
  return 0;
}
