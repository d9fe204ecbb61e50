#include "optimized/cublaslt.hpp"

namespace dsv3 {

void lt_check(cublasStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw CudaError(std::string(expr) + " failed at " + file + ":" + std::to_string(line) + ": " +
                  cublasLtGetStatusString(s) + " (status " + std::to_string(static_cast<int>(s)) + ")");
}

CublasHandle::CublasHandle() {
  DSV3_LT_CHECK(cublasCreate(&handle_));
  if (const cublasStatus_t s = cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH); s != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle_);
    lt_check(s, "cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH)", __FILE__, __LINE__);
  }
}

CublasHandle::~CublasHandle() {
  if (handle_) cublasDestroy(handle_);
}

LtMatmul::LtMatmul() { DSV3_LT_CHECK(cublasLtCreate(&handle)); }

LtMatmul::LtMatmul(cublasLtHandle_t borrowed) : handle(borrowed), owns_handle(false) {}

LtMatmul::~LtMatmul() {
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  for (cublasLtMatrixLayout_t l : {d, c, b, a})
    if (l) cublasLtMatrixLayoutDestroy(l);
  if (op) cublasLtMatmulDescDestroy(op);
  if (handle && owns_handle) cublasLtDestroy(handle);
}

bool LtMatmul::heuristic(std::size_t workspace_bytes) {
  if (!pref) DSV3_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes;
  DSV3_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle, op, a, b, c ? c : d, d, pref, 1, &algo, &found);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
    refusal = std::string(cublasLtGetStatusString(s)) + " (status " + std::to_string(static_cast<int>(s)) + ")";
    return false;
  }
  DSV3_LT_CHECK(s);
  if (found < 1) refusal = "no algorithm found";
  return found > 0;
}

}  // namespace dsv3
