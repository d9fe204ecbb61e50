#include "optimized/tensor_map.hpp"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000

#include <mutex>

#include "optimized/cuda_check.hpp"

namespace dsv3::gpu {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static std::once_flag once;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::string why;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !p)
      why = std::string("the CUDA driver offers no cuTensorMapEncodeTiled (") + cudaGetErrorString(e) + ", query result " +
            std::to_string(static_cast<int>(q)) + "): TMA needs a driver for CUDA 12.0 or later";
    else
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  });
  if (!fn) throw CudaError(why);
  return fn;
}

}  // namespace

CUtensorMap tensor_map_u8_sw128(const void* base, uint64_t rows, uint64_t cols, uint32_t box_rows, uint32_t box_cols,
                                const std::string& what) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {cols, rows};      // innermost first
  const cuuint64_t strides[1] = {cols};         // bytes between rows (the innermost stride is implied)
  const cuuint32_t box[2] = {box_cols, box_rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode_fn()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box,
                                 elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw CudaError("cuTensorMapEncodeTiled failed for " + what + " ([" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "] bytes, box " + std::to_string(box_rows) + " x " + std::to_string(box_cols) +
                    "): CUresult " + std::to_string(static_cast<int>(r)));
  return map;
}

}  // namespace dsv3::gpu
