// cuBLAS and cuBLASLt helpers shared by their users (GPU ceilings, the fp8_gemm baselines, the
// cuBLAS runners of mla, moe and fp8_train).
//   DSV3_LT_CHECK(expr)  evaluates a cublasStatus_t expression; on failure throws CudaError
//                        "<expr> failed at <file>:<line>: <cublasLtGetStatusString> (status N)".
//   CublasHandle         RAII owner of one cuBLAS handle, in CUBLAS_DEFAULT_MATH (no TF32 or
//                        reduced-precision shortcuts); converts to cublasHandle_t.
//   LtMatmul             RAII owner of one matmul's handles (descriptor, layouts, preference);
//                        heuristic() picks the library's first algorithm or says why none fits.
// CUDA headers are included: use from .cu files or from host code compiled with the toolkit.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include <string>

#include "optimized/cuda_check.hpp"

namespace dsv3 {

void lt_check(cublasStatus_t s, const char* expr, const char* file, int line);
#define DSV3_LT_CHECK(expr) ::dsv3::lt_check((expr), #expr, __FILE__, __LINE__)

class CublasHandle {
 public:
  CublasHandle();
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  operator cublasHandle_t() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

struct LtMatmul {
  cublasLtHandle_t handle = nullptr;  // owned unless borrowed (see LtMatmul(handle))
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t algo{};
  bool owns_handle = true;
  std::string refusal;  // why heuristic() returned false (the library's status)

  LtMatmul();                                    // creates its own handle
  explicit LtMatmul(cublasLtHandle_t borrowed);  // shares a handle
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  template <class T> void set(cublasLtMatmulDescAttributes_t attr, const T& v) {
    DSV3_LT_CHECK(cublasLtMatmulDescSetAttribute(op, attr, &v, sizeof v));
  }
  // Picks the first heuristic algorithm within `workspace_bytes`; returns false (with `refusal`)
  // when the library offers none or rejects the combination (NOT_SUPPORTED, INVALID_VALUE),
  // throws on other errors.
  bool heuristic(std::size_t workspace_bytes);
};

}  // namespace dsv3
