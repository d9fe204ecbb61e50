// Tensor maps for TMA (the Hopper tensor memory accelerator), encoded on the host by the driver's
// cuTensorMapEncodeTiled. The driver is reached through the runtime (cudaGetDriverEntryPointByVersion),
// never linked: a binary linked to libcuda does not start where only the stub exists
// (../shared/TOOLCHAIN.md).
#pragma once

#include <cuda.h>  // CUtensorMap, the encode enums (types only)

#include <cstdint>
#include <string>

namespace dsv3::gpu {

// A 2-D map over a row-major byte matrix [rows, cols] at `base` (cols a multiple of 16: TMA's row
// stride rule; base 16-byte aligned), boxes of box_rows x box_cols bytes (box_cols = 128 with the
// 128-byte swizzle: a box row is one swizzle row), elements outside the matrix read as zeros.
// Throws CudaError naming `what` and the driver's answer when the map cannot be encoded, and when
// the driver offers no cuTensorMapEncodeTiled (driver older than CUDA 12.0).
CUtensorMap tensor_map_u8_sw128(const void* base, uint64_t rows, uint64_t cols, uint32_t box_rows, uint32_t box_cols,
                                const std::string& what);

}  // namespace dsv3::gpu
