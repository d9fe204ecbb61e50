#include "core/cuda_probe.hpp"

#if DSV3_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dsv3 {

bool built_with_cuda() { return DSV3_HAVE_CUDA != 0; }

#if DSV3_HAVE_CUDA
namespace {
std::string version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
}  // namespace

const CudaPresence& cuda_presence() {
  static const CudaPresence p = [] {
    CudaPresence r;
    int count = 0;  // left untouched by the runtime on error
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      r.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err) + " (error " +
                 std::to_string(static_cast<int>(err)) + ")";
    } else if (count == 0) {
      r.reason = "cudaGetDeviceCount: 0 devices";
    } else {
      r.available = true;
    }
    return r;
  }();
  return p;
}

DeviceInfo device_info() {
  DeviceInfo d;
  d.present = cuda_presence().available;
  d.reason = cuda_presence().reason;
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) d.runtime_version = version_string(v);
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) d.driver_version = version_string(v);
  if (!d.present) return d;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    d.name = prop.name;
    d.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    d.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  }
  auto attr = [](cudaDeviceAttr a) { int x = 0; cudaDeviceGetAttribute(&x, a, 0); return x; };
  d.sms = attr(cudaDevAttrMultiProcessorCount);
  d.sm_clock_mhz = attr(cudaDevAttrClockRate) / 1000;
  d.memory_clock_mhz = attr(cudaDevAttrMemoryClockRate) / 1000;
  d.memory_bus_bits = attr(cudaDevAttrGlobalMemoryBusWidth);
  d.l2_bytes = attr(cudaDevAttrL2CacheSize);
  return d;
}

std::string cuda_context_error() {
  if (!cuda_presence().available) return "";
  (void)cudaGetLastError();  // a failed launch (bad configuration) is not sticky: forget it
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}
#else
const CudaPresence& cuda_presence() {
  static const CudaPresence p{false, "dsv3bench was built without CUDA (DSV3_ENABLE_CUDA=OFF)"};
  return p;
}
DeviceInfo device_info() {
  DeviceInfo d;
  d.reason = cuda_presence().reason;
  return d;
}
std::string cuda_context_error() { return ""; }
#endif

}  // namespace dsv3
