// CUDA presence probe and device descriptor. Safe on machines without a GPU or without a
// driver: cudaGetDeviceCount's error becomes the reason, nothing aborts.
#pragma once

#include <cstdint>
#include <string>

namespace dsv3 {

struct CudaPresence {
  bool available = false;
  std::string reason;  // why not, when !available
};
const CudaPresence& cuda_presence();  // probed once

struct DeviceInfo {
  bool present = false;
  std::string reason;
  std::string name, compute_capability;
  int sms = 0, sm_clock_mhz = 0, memory_clock_mhz = 0, memory_bus_bits = 0;
  int64_t memory_bytes = 0, l2_bytes = 0;
  std::string driver_version, runtime_version;
};
DeviceInfo device_info();  // device 0

bool built_with_cuda();

// After a CUDA variant failed: "" when the process's CUDA context still works, else the error that
// every later call will return. A fault inside a kernel (illegal address, misaligned access, trap)
// is "sticky": the context is lost for the rest of the process, and every CUDA case after it would
// fail for a reason that is not its own. Clears a pending non-sticky error first.
std::string cuda_context_error();

}  // namespace dsv3
