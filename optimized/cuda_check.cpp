#include "optimized/cuda_check.hpp"

#include <cuda_runtime_api.h>

#include <utility>
#include <vector>

namespace dsv3 {

void cuda_check(int code, const char* expr, const char* file, int line) {
  if (code == static_cast<int>(cudaSuccess)) return;
  throw CudaError(std::string(expr) + " failed at " + file + ":" + std::to_string(line) + ": " +
                  cudaGetErrorString(static_cast<cudaError_t>(code)) + " (error " + std::to_string(code) + ")");
}

DeviceBuffer::DeviceBuffer(std::size_t bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {
  if (const cudaError_t e = cudaMalloc(&base_, bytes_ + 2 * kGuardBytes); e != cudaSuccess) {
    base_ = nullptr;
    throw CudaError("cudaMalloc of " + std::to_string(bytes_) + " bytes for device buffer '" + name_ +
                    "' failed: " + cudaGetErrorString(e) + " (error " + std::to_string(static_cast<int>(e)) + ")");
  }
  auto* b = static_cast<unsigned char*>(base_);
  try {
    DSV3_CUDA_CHECK(cudaMemset(b, kGuardByte, kGuardBytes));
    DSV3_CUDA_CHECK(cudaMemset(b + kGuardBytes + bytes_, kGuardByte, kGuardBytes));
  } catch (...) {
    release();
    throw;
  }
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), name_(std::move(o.name_)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    base_ = std::exchange(o.base_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    name_ = std::move(o.name_);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  // Errors are ignored: a destructor must not throw, and at process exit the runtime may
  // already be unloading (cudaErrorCudartUnloading).
  if (base_) (void)cudaFree(base_);
  base_ = nullptr;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_)
    throw CudaError("upload of " + std::to_string(bytes) + " bytes into device buffer '" + name_ + "' of " +
                    std::to_string(bytes_) + " bytes");
  if (bytes) DSV3_CUDA_CHECK(cudaMemcpy(payload(), host, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (bytes > bytes_)
    throw CudaError("download of " + std::to_string(bytes) + " bytes from device buffer '" + name_ + "' of " +
                    std::to_string(bytes_) + " bytes");
  if (bytes) DSV3_CUDA_CHECK(cudaMemcpy(host, payload(), bytes, cudaMemcpyDeviceToHost));
}

void DeviceBuffer::poison(uint8_t byte) {
  if (bytes_) DSV3_CUDA_CHECK(cudaMemset(payload(), byte, bytes_));
  DSV3_CUDA_CHECK(cudaDeviceSynchronize());
}

void DeviceBuffer::check_canaries() const {
  if (!base_) return;
  std::vector<unsigned char> guard(2 * kGuardBytes);
  const auto* b = static_cast<const unsigned char*>(base_);
  DSV3_CUDA_CHECK(cudaMemcpy(guard.data(), b, kGuardBytes, cudaMemcpyDeviceToHost));
  DSV3_CUDA_CHECK(cudaMemcpy(guard.data() + kGuardBytes, b + kGuardBytes + bytes_, kGuardBytes,
                             cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < guard.size(); ++i)
    if (guard[i] != kGuardByte)
      throw CudaError("device canary overwritten around " + name_ + " (" +
                      (i < kGuardBytes ? "before the payload, byte -" + std::to_string(kGuardBytes - i)
                                       : "after the payload, byte +" + std::to_string(i - kGuardBytes)) +
                      ")");
}

CudaEventPair::CudaEventPair() {
  cudaEvent_t a = nullptr, b = nullptr;
  DSV3_CUDA_CHECK(cudaEventCreate(&a));
  const cudaError_t e = cudaEventCreate(&b);
  if (e != cudaSuccess) (void)cudaEventDestroy(a);
  DSV3_CUDA_CHECK(e);
  start_ = a;
  stop_ = b;
}

CudaEventPair::~CudaEventPair() {
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void CudaEventPair::record_start() { DSV3_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_), 0)); }
void CudaEventPair::record_stop() { DSV3_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_), 0)); }

double CudaEventPair::elapsed_s() {
  DSV3_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0.0f;
  DSV3_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return static_cast<double>(ms) * 1e-3;
}

}  // namespace dsv3
