// The FP8 training step's tensor-core GEMM (make_lt_gemm, fp8_train_device.cuh): cuBLASLt's E4M3
// matmul with DeepSeek's block scales (VEC128_32F for 1x128 tiles, BLK128x128_32F for 128x128
// blocks; cuBLAS 12.9+ on sm_90), FP32 accumulation with the library's promotion, BF16 or FP32
// output (Wgrad accumulates into the FP32 gradient with beta = 1).
//
// cuBLASLt's FP8 form takes both operands K-major (TRANSA = T): the step's operands already are,
// except W^T (Dgrad), which is gathered transposed. Every dimension is padded to a multiple of 128
// (zero codes, zero scales: exactly the reference's padding rule), since cuBLASLt 13.1 refuses
// block-scaled calls at most row counts off that grid (fp8_gemm_cublaslt.cu); an operand already on
// the grid is used in place, and an output on it is written in place. Scales are rewritten into the
// library's layouts (those fp8_gemm_cublaslt.cu uses): VEC128 [groups][rows], BLK128x128
// [row blocks][round_up(groups, 4)].
// Operand order: the library's A is our B, D column-major (= ours row-major); when the library
// refuses that, the order swapped with D in row order (as fp8_gemm's block_config probes).
// Has compiled; has not run on a GPU.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/registry.hpp"
#include "optimized/cublaslt.hpp"
#include "optimized/cuda_check.hpp"
#include "optimized/fp8_train_device.cuh"

namespace dsv3::fp8train {
namespace {

constexpr std::size_t kWorkspace = std::size_t{32} << 20;
constexpr int kGather = 32;  // gather tile: 32 x 32 codes, 32 x 8 threads

__host__ __device__ int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// dst [rows_p, inner_p] K-major = op's codes, zero outside [op.rows, inner]. The tile is read along
// whichever source index is contiguous (W^T's rows) and written along dst's rows.
__global__ void gather_codes(Operand op, int64_t inner, int64_t inner_p, uint8_t* dst) {
  __shared__ uint8_t t[kGather][kGather + 1];
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kGather, c0 = static_cast<int64_t>(blockIdx.x) * kGather;
  const bool down_rows = op.rs == 1;  // consecutive threads walk r when the source is contiguous in r
  for (int i = threadIdx.y; i < kGather; i += blockDim.y) {
    const int lr = down_rows ? threadIdx.x : i, lc = down_rows ? i : threadIdx.x;
    const int64_t r = r0 + lr, c = c0 + lc;
    t[lr][lc] = r < op.rows && c < inner ? op.codes[r * op.rs + c * op.cs] : 0;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kGather; i += blockDim.y) dst[(r0 + i) * inner_p + c0 + threadIdx.x] = t[i][threadIdx.x];
}

// VEC128: dst[g * rows_p + r]; BLK128x128: dst[rb * round_up(groups, 4) + g]. Zero outside the operand.
__global__ void gather_scales(Operand op, int64_t groups, int64_t rows_p, float* dst) {
  const bool blk = op.s_div == kTile;
  const int64_t ld = blk ? round_up(groups, 4) : rows_p, n = blk ? rows_p / kTile * ld : groups * rows_p;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = blk ? i / ld * kTile : i % rows_p, g = blk ? i % ld : i / rows_p;
    dst[i] = r < op.rows && g < groups ? op.scale(r, g) : 0.0f;
  }
}

// One operand as the library reads it.
struct LibOperand {
  DeviceBuffer codes, scales;  // codes: staging, when not in place
  int64_t rows_p = 0;
  bool in_place = false, blk = false;
  const void* ptr(const Operand& op) const { return in_place ? static_cast<const void*>(op.codes) : codes.data(); }

  void prepare(const Operand& op, int64_t inner, int64_t inner_p, const char* name) {
    rows_p = round_up(op.rows, kTile);
    blk = op.block_scaled();
    in_place = op.cs == 1 && op.rs == inner && inner == inner_p && rows_p == op.rows;
    if (!in_place) codes = DeviceBuffer(static_cast<std::size_t>(rows_p * inner_p), std::string(name) + " codes for cuBLASLt");
    const int64_t groups = inner_p / kTile;
    scales = DeviceBuffer(static_cast<std::size_t>(blk ? rows_p / kTile * round_up(groups, 4) : groups * rows_p) * 4,
                          std::string(name) + " scales for cuBLASLt");
  }
  void stage(const Operand& op, int64_t inner, int64_t inner_p) {
    if (!in_place) {
      const dim3 grid(static_cast<unsigned>(inner_p / kGather), static_cast<unsigned>(rows_p / kGather));
      gather_codes<<<grid, dim3(kGather, 8)>>>(op, inner, inner_p, codes.as<uint8_t>());
    }
    const int64_t n = scales.size() / 4;
    gather_scales<<<static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 4096)), 256>>>(op, inner_p / kTile, rows_p,
                                                                                           scales.as<float>());
    DSV3_CUDA_CHECK(cudaGetLastError());
  }
};

cublasLtMatmulMatrixScale_t mode(bool blk) {
  return blk ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F : CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
}

class LtGemm final : public Fp8Gemm {
 public:
  LtGemm() : workspace_(kWorkspace, "cuBLASLt workspace") { DSV3_LT_CHECK(cublasLtCreate(&handle_)); }
  ~LtGemm() override {
    plans_.clear();
    if (handle_) cublasLtDestroy(handle_);
  }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  void begin_step() override { next_ = 0; }

  void run(const Operand& a, const Operand& b, int64_t inner, __nv_bfloat16* out_bf16, float* out_f32, int64_t ldo,
           bool accumulate) override {
    if (next_ == plans_.size()) plans_.push_back(make_plan(a, b, inner, out_bf16 != nullptr, ldo));
    Plan& p = *plans_.at(next_++);
    if (p.a_rows != a.rows || p.b_rows != b.rows || p.inner != inner || p.bf16 != (out_bf16 != nullptr))
      throw std::logic_error("fp8_train/cuda_fp8: GEMM calls changed shape between steps");
    p.a.stage(a, inner, p.inner_p);
    p.b.stage(b, inner, p.inner_p);
    void* out = out_bf16 ? static_cast<void*>(out_bf16) : static_cast<void*>(out_f32);
    const std::size_t esize = out_bf16 ? 2 : 4;
    void* d = p.staged() ? p.d.data() : out;
    if (p.staged() && accumulate)  // C: the gradient so far, into the staging D
      DSV3_CUDA_CHECK(cudaMemcpy2DAsync(d, static_cast<std::size_t>(p.b.rows_p) * esize, out, static_cast<std::size_t>(ldo) * esize,
                                        static_cast<std::size_t>(b.rows) * esize, static_cast<std::size_t>(a.rows),
                                        cudaMemcpyDeviceToDevice, nullptr));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const void* lib_a = p.swapped ? p.a.ptr(a) : p.b.ptr(b);
    const void* lib_b = p.swapped ? p.b.ptr(b) : p.a.ptr(a);
    LtMatmul& m = *p.mm;
    const cublasStatus_t st = cublasLtMatmul(handle_, m.op, &alpha, lib_a, m.a, lib_b, m.b, &beta, d, m.d, d, m.d,
                                             &m.algo.algo, workspace_.data(), workspace_.size(), nullptr);
    // The heuristic never sees beta: a library that refuses the accumulating (beta = 1) Wgrad, or
    // this operand pair, only says so here, on a plan's first call. That is a skip, as a refusal
    // in the heuristic is; a failure after a plan has run is an error.
    if (st != CUBLAS_STATUS_SUCCESS && !p.ran && (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE))
      throw VariantUnsupported("cuBLASLt " + std::to_string(cublasLtGetVersion()) + " refused the " + std::to_string(a.rows) +
                               " x " + std::to_string(b.rows) + " x " + std::to_string(inner) + " FP8 GEMM with " +
                               (a.block_scaled() ? "128x128" : "1x128") + " x " + (b.block_scaled() ? "128x128" : "1x128") +
                               " scales" + (accumulate ? " and beta = 1" : "") + " when run: " + cublasLtGetStatusString(st));
    DSV3_LT_CHECK(st);
    p.ran = true;
    if (p.staged())
      DSV3_CUDA_CHECK(cudaMemcpy2DAsync(out, static_cast<std::size_t>(ldo) * esize, d, static_cast<std::size_t>(p.b.rows_p) * esize,
                                        static_cast<std::size_t>(b.rows) * esize, static_cast<std::size_t>(a.rows),
                                        cudaMemcpyDeviceToDevice, nullptr));
  }

 private:
  struct Plan {
    int64_t a_rows = 0, b_rows = 0, inner = 0, inner_p = 0;
    bool bf16 = false, swapped = false, ran = false;
    LibOperand a, b;
    DeviceBuffer d;  // staging output [a.rows_p, b.rows_p], when the output is off the 128 grid
    std::unique_ptr<LtMatmul> mm;
    bool staged() const { return d.size() > 0; }
  };

  std::unique_ptr<Plan> make_plan(const Operand& a, const Operand& b, int64_t inner, bool bf16, int64_t ldo) {
    auto p = std::make_unique<Plan>();
    p->a_rows = a.rows;
    p->b_rows = b.rows;
    p->inner = inner;
    p->inner_p = round_up(inner, kTile);
    p->bf16 = bf16;
    p->a.prepare(a, inner, p->inner_p, "A");
    p->b.prepare(b, inner, p->inner_p, "B");
    if (p->a.rows_p != a.rows || p->b.rows_p != b.rows || ldo != b.rows) {
      p->d = DeviceBuffer(static_cast<std::size_t>(p->a.rows_p * p->b.rows_p) * (bf16 ? 2 : 4), "D staged for cuBLASLt");
      DSV3_CUDA_CHECK(cudaMemset(p->d.data(), 0, p->d.size()));
    }
    std::string refusals;
    for (bool swapped : {false, true}) {
      p->swapped = swapped;
      if (describe(*p, p->staged() ? p->b.rows_p : ldo)) return p;
      refusals += std::string(refusals.empty() ? "" : "; ") + (swapped ? "swapped: " : "B as the library's A: ") + p->mm->refusal;
    }
    throw VariantUnsupported("cuBLASLt " + std::to_string(cublasLtGetVersion()) + " offers no FP8 algorithm for a " +
                             std::to_string(a.rows) + " x " + std::to_string(b.rows) + " x " + std::to_string(inner) + " GEMM with " +
                             (a.block_scaled() ? "128x128" : "1x128") + " x " + (b.block_scaled() ? "128x128" : "1x128") +
                             " scales (" + refusals + ")");
  }

  // The matmul of p in its operand order; ldd is D's leading dimension. False (with the refusal)
  // when the library offers no algorithm.
  bool describe(Plan& p, int64_t ldd) {
    p.mm = std::make_unique<LtMatmul>(handle_);
    LtMatmul& m = *p.mm;
    const cudaDataType_t out = p.bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const LibOperand& first = p.swapped ? p.a : p.b;  // the library's A
    const LibOperand& second = p.swapped ? p.b : p.a;
    DSV3_LT_CHECK(cublasLtMatmulDescCreate(&m.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    m.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    m.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    m.set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode(first.blk));
    m.set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode(second.blk));
    m.set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, first.scales.data());
    m.set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, second.scales.data());
    DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.a, CUDA_R_8F_E4M3, p.inner_p, first.rows_p, p.inner_p));
    DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.b, CUDA_R_8F_E4M3, p.inner_p, second.rows_p, p.inner_p));
    if (p.swapped) {  // D [a.rows_p, b.rows_p] in row order
      DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.d, out, p.a.rows_p, p.b.rows_p, ldd));
      const cublasLtOrder_t row = CUBLASLT_ORDER_ROW;
      DSV3_LT_CHECK(cublasLtMatrixLayoutSetAttribute(m.d, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row));
    } else {  // D^T [b.rows_p, a.rows_p] column-major: ours row-major
      DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.d, out, p.b.rows_p, p.a.rows_p, ldd));
    }
    return m.heuristic(kWorkspace);
  }

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::vector<std::unique_ptr<Plan>> plans_;
  std::size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Fp8Gemm> make_lt_gemm() { return std::make_unique<LtGemm>(); }

}  // namespace dsv3::fp8train
