// CUDA error checking, canary-guarded device buffers and event timing, for every CUDA variant.
//
// No CUDA header is included here: error codes travel as int and handles as void*, so plain C++
// translation units (the registry, the harness) can use these types without the toolkit's headers.
//
//   DSV3_CUDA_CHECK(expr)  evaluates a cudaError_t expression; on failure throws dsv3::CudaError
//                          "<expr> failed at <file>:<line>: <cudaGetErrorString> (error N)".
//   DeviceBuffer           cudaMalloc'd payload with 256 guard bytes (0x5A) on each side;
//                          poison() fills the payload, check_canaries() throws CudaError
//                          "device canary overwritten around <name>" when a kernel wrote outside.
//   CudaEventPair          start/stop events on the default stream; elapsed_s() waits for stop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace dsv3 {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws CudaError when `code` (a cudaError_t) is not cudaSuccess.
void cuda_check(int code, const char* expr, const char* file, int line);

#define DSV3_CUDA_CHECK(expr) ::dsv3::cuda_check(static_cast<int>(expr), #expr, __FILE__, __LINE__)

class DeviceBuffer {
 public:
  static constexpr std::size_t kGuardBytes = 256;  // keeps the payload 256-byte aligned
  static constexpr uint8_t kGuardByte = 0x5A;

  DeviceBuffer() = default;
  DeviceBuffer(std::size_t bytes, std::string name);  // payload left uninitialised
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() { return payload(); }
  const void* data() const { return payload(); }
  template <class T> T* as() { return static_cast<T*>(data()); }
  template <class T> const T* as() const { return static_cast<const T*>(data()); }
  std::size_t size() const { return bytes_; }
  const std::string& name() const { return name_; }

  void upload(const void* host, std::size_t bytes);    // bytes <= size(); synchronous
  void download(void* host, std::size_t bytes) const;  // bytes <= size(); synchronous
  void poison(uint8_t byte);                           // fills the payload; synchronous
  void check_canaries() const;                         // throws CudaError when a guard changed

 private:
  void* payload() const { return base_ ? static_cast<unsigned char*>(base_) + kGuardBytes : nullptr; }
  void release() noexcept;
  void* base_ = nullptr;  // guard | payload | guard
  std::size_t bytes_ = 0;
  std::string name_;
};

// Two CUDA events; record_start/record_stop enqueue on the default stream (stream 0).
class CudaEventPair {
 public:
  CudaEventPair();
  ~CudaEventPair();
  CudaEventPair(const CudaEventPair&) = delete;
  CudaEventPair& operator=(const CudaEventPair&) = delete;
  void record_start();
  void record_stop();
  double elapsed_s();  // synchronizes on the stop event

 private:
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

}  // namespace dsv3
