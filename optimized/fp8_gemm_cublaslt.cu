// FP8 GEMM baselines through cuBLASLt (variants of fp8_gemm; reference/fp8_gemm.hpp has the
// semantics and shape symbols). Grouped layouts run one library call per group, as a user
// without a grouped kernel would: the baseline for the own grouped kernel.
//
//   cublaslt_block       E4M3 A and B with DeepSeek's scales: A (activations) VEC128_32F, B
//                        (weights) BLK128x128_32F (cuBLAS 12.9+ on sm_90). Skipped, with the
//                        library's answer, where no algorithm is offered.
//   cublaslt_per_tensor  E4M3 with one scale per tensor (SCALAR_32F): the dense FP8 ceiling; runs
//                        the per_tensor cases only (their scale tensors hold one value each).
//   cublas_bf16          V3's default inference path (model.py gemm_impl = "bf16"): every call
//                        dequantizes the weight to BF16 (fp8_quant's dequant kernel, as
//                        weight_dequant does), then a BF16 GEMM with FP32 accumulation. The
//                        activation is BF16 in that path: here A is dequantized once at prepare.
// cuBLASLt is column-major: D[M, N] row-major is D^T = B . A^T, so the library's A is our B
// (TRANSA = T, the only FP8 form) and its B is our A. Scale layouts cuBLASLt expects, written at
// prepare time from the suite's [M, Kb] / [Nb, Kb] tensors (a production quantizer would write them
// so): activation scales [Kb][round_up(M, 4)] (token-major), weight scales [Nb][round_up(Kb, 4)].
// UE8M0 scales are decoded to f32 (exact). Accumulation into C (beta = 1) needs C and D of one
// type: cases with f32 output only. FAST_ACCUM is left at its default (off).
// Ran on an H100 (cuBLASLt 13.1, 2026-11-23): block scaling is accepted for 64 and 128 rows and
// refused (status 15, NOT_SUPPORTED) for 1, 3, 5, 7, 17, 57, 65 and 130 rows: such calls are padded
// (see LtRunner::Call); rates in docs/fp8-gemm.md.
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/registry.hpp"
#include "optimized/cublaslt.hpp"
#include "optimized/cuda_check.hpp"
#include "optimized/fp8_quant.cuh"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

enum class Baseline { block_scaled, per_tensor, bf16 };
constexpr std::size_t kWorkspace = std::size_t{32} << 20;

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

}  // namespace

struct BlockConfig {
  bool swapped = false;     // true: the library's A is our A (see block_config())
  std::string unsupported;  // why block scaling cannot run here, empty when it can
};
const BlockConfig& block_config();

// Scale modes and pointers of a block-scaled matmul; `swapped` as in BlockConfig.
void configure_block_scaled(LtMatmul& m, bool swapped, const void* sa, const void* sb) {
  m.set(swapped ? CUBLASLT_MATMUL_DESC_A_SCALE_MODE : CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
        CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F);
  m.set(swapped ? CUBLASLT_MATMUL_DESC_B_SCALE_MODE : CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
        CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F);
  m.set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, swapped ? sa : sb);
  m.set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, swapped ? sb : sa);
}

namespace {

DeviceBuffer upload(const void* host, std::size_t bytes, const std::string& name) {
  DeviceBuffer b(std::max<std::size_t>(bytes, 1), name);
  if (bytes) b.upload(host, bytes);
  return b;
}

// Candidate row counts for one block-scaled call, smallest first: the rows themselves, then padded
// up to multiples of 4..64 (cuBLASLt 13.1 on an H100 refuses VEC128_32F calls whose row count is
// not a multiple of some granularity; the search finds it instead of assuming it).
std::vector<int64_t> padded_row_candidates(int64_t rows) {
  std::vector<int64_t> v = {rows};
  for (int64_t a : {4, 8, 16, 32, 64})
    if (round_up(rows, a) != v.back()) v.push_back(round_up(rows, a));
  return v;
}

class LtRunner final : public Runner {
 public:
  LtRunner(const Params& p, Io& io, Baseline kind) : p_(p), io_(io), kind_(kind) {
    p_.validate();
    require_tensors(io_.in, input_specs(p_), "fp8_gemm/cuBLASLt " + p_.to_string() + " inputs");
    require_tensors(io_.out, output_specs(p_), "fp8_gemm/cuBLASLt " + p_.to_string() + " outputs");
    for (const RowRange& r : token_rows(p_, io_.in)) calls_.push_back(std::make_unique<Call>(Call{r}));
    const Tensor& a = io_.in[0];
    const Tensor& b = io_.in[2];
    a_ = upload(a.raw(), a.nbytes(), "A codes");
    b_ = upload(b.raw(), b.nbytes(), "B codes");
    d_ = DeviceBuffer(io_.out[0].nbytes(), "D");
    d_.poison(0xff);  // NaN in bf16 and f32: rows no call writes stay NaN, as in the reference
    if (p_.accumulate) c_ = upload(io_.in.back().raw(), io_.in.back().nbytes(), "C");  // read-only: runs repeat
    workspace_ = DeviceBuffer(kWorkspace, "cuBLASLt workspace");
    DSV3_LT_CHECK(cublasLtCreate(&handle_));
    const std::vector<float> sa = scale_values(io_.in[1]), sb = scale_values(io_.in[3]);
    if (kind_ == Baseline::bf16) prepare_bf16(sa, sb);
    else prepare_scales(sa, sb);
    for (auto& c : calls_) add_matmul(*c, sa);
  }
  ~LtRunner() override {
    calls_.clear();
    if (handle_) cublasLtDestroy(handle_);
  }

  void run() override {
    const float alpha = 1.0f, beta = p_.accumulate ? 1.0f : 0.0f;
    std::vector<bool> dequantized(static_cast<std::size_t>(p_.groups()), false);
    for (auto& call : calls_) {
      Call& c = *call;
      const void* bptr = b_.as<uint8_t>() + c.r.g * p_.n * p_.k;
      const void* aptr = a_.as<uint8_t>() + c.r.row0 * p_.k;
      if (kind_ == Baseline::bf16) {
        if (!dequantized[static_cast<std::size_t>(c.r.g)]) {  // weight_dequant on every call, as model.py
          fp8::gpu::dequant(b_.as<uint8_t>() + c.r.g * p_.n * p_.k, sb32_.as<float>() + c.r.g * p_.nb() * p_.kb(),
                            w16_.as<uint16_t>() + c.r.g * p_.n * p_.k, wq_, cfg_, 0);
          dequantized[static_cast<std::size_t>(c.r.g)] = true;
        }
        bptr = w16_.as<uint16_t>() + c.r.g * p_.n * p_.k;
        aptr = a16_.as<uint16_t>() + c.r.row0 * p_.k;
      }
      void* dptr = d_.as<uint8_t>() + d_offset(c);
      const void* cptr = p_.accumulate ? static_cast<const void*>(c_.as<uint8_t>() + d_offset(c)) : dptr;
      if (c.padded()) {
        aptr = c.a_pad.data();
        dptr = c.d_pad.data();
        cptr = p_.accumulate ? c.c_pad.data() : dptr;
      }
      LtMatmul& m = *c.mm;
      const bool swap = kind_ == Baseline::block_scaled && block_config().swapped;
      DSV3_LT_CHECK(cublasLtMatmul(handle_, m.op, &alpha, swap ? aptr : bptr, m.a, swap ? bptr : aptr, m.b, &beta,
                                   cptr, m.d, dptr, m.d, &m.algo.algo, workspace_.data(), workspace_.size(), 0));
    }
  }

  // Padded calls' token rows are copied out of their staging D here, not in run(): a caller that
  // pads its activations reads the padded output in place (the copy is not part of the GEMM).
  void fetch() override {
    DSV3_CUDA_CHECK(cudaDeviceSynchronize());
    DSV3_CUDA_CHECK(cudaGetLastError());
    for (auto& c : calls_)
      if (c->padded())
        DSV3_CUDA_CHECK(cudaMemcpy(d_.as<uint8_t>() + d_offset(*c), c->d_pad.data(), d_bytes(c->r.rows),
                                   cudaMemcpyDeviceToDevice));
    d_.download(io_.out[0].raw(), io_.out[0].nbytes());
    for (const DeviceBuffer* b : {&a_, &b_, &c_, &d_, &workspace_}) b->check_canaries();
    for (const auto& c : calls_)
      for (const DeviceBuffer* b : {&c->a_pad, &c->c_pad, &c->d_pad, &c->sa}) b->check_canaries();
  }

 private:
  // One library call: a range of token rows of one group. Block-scaled calls the library refuses
  // at their row count run padded: A's rows copied at prepare time into a staging buffer of
  // lib_rows rows (zero codes and zero scales below them, as a quantizer writing padded
  // activations would leave them), D (and C) staged likewise; pad rows' outputs are discarded.
  struct Call {
    RowRange r;
    int64_t lib_rows = 0;              // rows the library computes: r.rows unless padded
    DeviceBuffer a_pad, c_pad, d_pad;  // staging, when padded()
    DeviceBuffer sa;                   // block-scaled A scales [Kb][round_up(lib_rows, 4)]
    std::unique_ptr<LtMatmul> mm;
    bool padded() const { return lib_rows > r.rows; }
  };

  std::size_t d_bytes(int64_t rows) const { return static_cast<std::size_t>(rows * p_.n) * dtype_size(p_.out); }
  std::size_t d_offset(const Call& c) const { return d_bytes(c.r.row0); }

  // Scale tensors in cuBLASLt's layouts (see the header): per-tensor scalars, or one B scale tensor
  // per group (A's block scales are written per call, by add_matmul, for the rows it settles on).
  void prepare_scales(const std::vector<float>& sa, const std::vector<float>& sb) {
    const int64_t kb = p_.kb(), nb = p_.nb();
    if (kind_ == Baseline::per_tensor) {
      const float s[2] = {sa.at(0), sb.at(0)};
      sa_pt_ = upload(&s[0], 4, "scale A");
      sb_.emplace_back(upload(&s[1], 4, "scale B"));
      return;
    }
    const int64_t ldk = round_up(kb, 4);
    for (int64_t g = 0; g < p_.groups(); ++g) {
      std::vector<float> t(static_cast<std::size_t>(nb * ldk), 0.0f);
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t q = 0; q < kb; ++q)
          t[static_cast<std::size_t>(i * ldk + q)] = sb[static_cast<std::size_t>((g * nb + i) * kb + q)];
      sb_.emplace_back(upload(t.data(), t.size() * 4, "B scales"));
    }
  }

  // A's scales of one call, token-major [Kb][round_up(lib_rows, 4)]; rows past the call's are zero.
  DeviceBuffer block_a_scales(const std::vector<float>& sa, const RowRange& r, int64_t lib_rows) const {
    const int64_t kb = p_.kb(), ld = round_up(lib_rows, 4);
    std::vector<float> t(static_cast<std::size_t>(kb * ld), 0.0f);
    for (int64_t i = 0; i < r.rows; ++i)
      for (int64_t g = 0; g < kb; ++g)
        t[static_cast<std::size_t>(g * ld + i)] = sa[static_cast<std::size_t>((r.row0 + i) * kb + g)];
    return upload(t.data(), t.size() * 4, "A scales (token-major)");
  }

  void prepare_bf16(const std::vector<float>& sa, const std::vector<float>& sb) {
    cfg_ = fp8::gpu::query_launch_cfg();
    sb32_ = upload(sb.data(), sb.size() * 4, "B scales f32");
    w16_ = DeviceBuffer(static_cast<std::size_t>(p_.groups() * p_.n * p_.k) * 2, "B dequantized bf16");
    a16_ = DeviceBuffer(static_cast<std::size_t>(p_.a_rows() * p_.k) * 2, "A dequantized bf16");
    DeviceBuffer sa32 = upload(sa.data(), sa.size() * 4, "A scales f32");
    fp8::Params aq;
    aq.op = fp8::Op::dequant_1x128;
    aq.m = p_.a_rows();
    aq.k = p_.k;
    wq_.op = fp8::Op::dequant_128x128;
    wq_.m = p_.n;
    wq_.k = p_.k;
    for (const fp8::Params& q : {aq, wq_})
      if (const std::string why = fp8::gpu::unsupported_reason(q); !why.empty()) throw std::invalid_argument(why);
    fp8::gpu::dequant(a_.as<uint8_t>(), sa32.as<float>(), a16_.as<uint16_t>(), aq, cfg_, 0);
    DSV3_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // The call's matmul; block-scaled calls take the smallest row count the library accepts.
  void add_matmul(Call& c, const std::vector<float>& sa) {
    if (kind_ != Baseline::block_scaled) {
      c.lib_rows = c.r.rows;
      describe(c);
      if (!c.mm->heuristic(kWorkspace)) throw VariantUnsupported(refused(c.r.rows, c.mm->refusal));
      return;
    }
    std::string refusal;
    for (int64_t rows : padded_row_candidates(c.r.rows)) {
      c.lib_rows = rows;
      c.sa = block_a_scales(sa, c.r, rows);
      describe(c);
      if (c.mm->heuristic(kWorkspace)) {
        if (c.padded()) stage(c);
        return;
      }
      if (refusal.empty()) refusal = c.mm->refusal;
    }
    throw VariantUnsupported(refused(c.r.rows, refusal) + " (nor padded to a multiple of 4..64 rows)");
  }

  static std::string refused(int64_t rows, const std::string& why) {
    return "cuBLASLt offers no algorithm for a call of " + std::to_string(rows) + " rows of this case: " + why;
  }

  // Descriptor and layouts of c's matmul at c.lib_rows rows.
  void describe(Call& c) {
    c.mm = std::make_unique<LtMatmul>(handle_);
    LtMatmul* m = c.mm.get();
    const int64_t rows = c.lib_rows;
    const cudaDataType_t in = kind_ == Baseline::bf16 ? CUDA_R_16BF : CUDA_R_8F_E4M3;
    const cudaDataType_t out = p_.out == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    DSV3_LT_CHECK(cublasLtMatmulDescCreate(&m->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    m->set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    m->set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    if (kind_ != Baseline::bf16) {
      const void* sa = kind_ == Baseline::per_tensor ? sa_pt_.data() : c.sa.data();
      const void* sb = kind_ == Baseline::per_tensor ? sb_[0].data() : sb_[static_cast<std::size_t>(c.r.g)].data();
      if (kind_ == Baseline::block_scaled && block_config().swapped) {
        configure_block_scaled(*m, true, sa, sb);
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->a, in, p_.k, rows, p_.k));  // our A rows, transposed
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->b, in, p_.k, p_.n, p_.k));  // our B as [K, N]
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->d, out, rows, p_.n, p_.n));
        const cublasLtOrder_t row = CUBLASLT_ORDER_ROW;  // D [rows, N] row-major, as ours
        DSV3_LT_CHECK(cublasLtMatrixLayoutSetAttribute(m->d, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row));
        return;
      }
      if (kind_ == Baseline::block_scaled) configure_block_scaled(*m, false, sa, sb);
      m->set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, sb);  // the library's A is our B
      m->set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, sa);
    }
    DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->a, in, p_.k, p_.n, p_.k));   // our B [N, K]
    DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->b, in, p_.k, rows, p_.k));   // our A rows [rows, K]
    DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m->d, out, p_.n, rows, p_.n));  // D rows [rows, N]
  }

  // Staging buffers of a padded call: A's rows then zero codes; C's rows then zeros; D.
  void stage(Call& c) {
    const std::size_t a_bytes = static_cast<std::size_t>(c.r.rows * p_.k);
    c.a_pad = DeviceBuffer(static_cast<std::size_t>(c.lib_rows * p_.k), "A rows padded for cuBLASLt");
    c.a_pad.poison(0);
    DSV3_CUDA_CHECK(cudaMemcpy(c.a_pad.data(), a_.as<uint8_t>() + c.r.row0 * p_.k, a_bytes, cudaMemcpyDeviceToDevice));
    c.d_pad = DeviceBuffer(d_bytes(c.lib_rows), "D rows padded for cuBLASLt");
    c.d_pad.poison(0xff);
    if (p_.accumulate) {
      c.c_pad = DeviceBuffer(d_bytes(c.lib_rows), "C rows padded for cuBLASLt");
      c.c_pad.poison(0);
      DSV3_CUDA_CHECK(cudaMemcpy(c.c_pad.data(), c_.as<uint8_t>() + d_offset(c), d_bytes(c.r.rows),
                                 cudaMemcpyDeviceToDevice));
    }
  }

  Params p_;
  Io& io_;
  Baseline kind_;
  std::vector<std::unique_ptr<Call>> calls_;
  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer a_, b_, c_, d_, workspace_, sb32_, w16_, a16_, sa_pt_;
  std::vector<DeviceBuffer> sb_;
  fp8::gpu::LaunchCfg cfg_;
  fp8::Params wq_;
};

}  // namespace

// Block scaling on this GPU and cuBLASLt: which operand order the library accepts, probed once
// on a 256x256x256 problem. Tried in order: the library's A = our B (weights, BLK128x128_32F) and
// its B = our A (activations, VEC128_32F), D column-major (= ours transposed); then swapped: its A
// = our A (VEC128_32F), its B = our B (BLK128x128_32F), D in row order.
const BlockConfig& block_config() {
  static std::once_flag once;
  static BlockConfig cfg;
  std::call_once(once, [] {
    try {
      DeviceBuffer dummy(4096, "probe scales");
      std::string refusals;
      for (bool swapped : {false, true}) {
        LtMatmul m;
        DSV3_LT_CHECK(cublasLtMatmulDescCreate(&m.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        m.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
        m.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
        configure_block_scaled(m, swapped, dummy.data(), dummy.data());
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.a, CUDA_R_8F_E4M3, 256, 256, 256));
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.b, CUDA_R_8F_E4M3, 256, 256, 256));
        DSV3_LT_CHECK(cublasLtMatrixLayoutCreate(&m.d, CUDA_R_16BF, 256, 256, 256));
        if (swapped) {
          const cublasLtOrder_t row = CUBLASLT_ORDER_ROW;
          DSV3_LT_CHECK(cublasLtMatrixLayoutSetAttribute(m.d, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row));
        }
        if (m.heuristic(kWorkspace)) {
          cfg.swapped = swapped;
          cfg.unsupported.clear();
          return;
        }
        refusals += std::string(refusals.empty() ? "" : "; ") + (swapped ? "swapped: " : "weights as A: ") + m.refusal;
      }
      cfg.unsupported = "cuBLASLt " + std::to_string(cublasLtGetVersion()) +
                        " offers no FP8 algorithm with VEC128_32F / BLK128x128_32F scales here (" + refusals + ")";
    } catch (const std::exception& e) {
      cfg.unsupported = std::string("cuBLASLt block scaling probe failed: ") + e.what();
    }
  });
  return cfg;
}

namespace {

Variant lt_variant(const std::string& name, Baseline kind, const std::string& description) {
  Variant v;
  v.component = "fp8_gemm";
  v.name = name;
  v.description = description;
  v.backend = Backend::cuda;
  v.unsupported = [kind](const Case& c) -> std::string {
    const Params& p = c.as<Params>();
    if (p.accumulate && p.out != DType::f32) return "cuBLASLt accumulates into C of D's type: f32 output only";
    if (kind == Baseline::per_tensor && !p.per_tensor) return "per-tensor scales only (the per_tensor cases)";
    if (kind == Baseline::per_tensor && p.layout != Layout::dense) return "dense only";
    if (kind == Baseline::block_scaled) return block_config().unsupported;
    return "";
  };
  v.prepare = [kind](const Case& c, Io& io) -> std::unique_ptr<Runner> {
    return std::make_unique<LtRunner>(c.as<Params>(), io, kind);
  };
  return v;
}

// Tolerance reasons (docs/fp8-gemm.md derives them; kRtolOut and kEpsFp8: reference/fp8_gemm.hpp).
// BF16 path: each dequantized operand rounded to bf16 (2^-8 relative each, 2^-7 per product),
// then FP32 tensor-core accumulation over all of K (assumed >= 20 bits kept per 16-wide step:
// K/16 * 17 * 2^-20 <= 2^-3.9 for K = 16384 is too loose to be useful, so the bound assumes the
// cuBLAS BF16 path keeps FP32 precision up to 2^-14 per product: stated as an assumption).
constexpr double kEpsBf16 = 0x1p-7 + 0x1p-14;

}  // namespace
}  // namespace dsv3::fp8gemm

namespace dsv3::fp8gemm {
void register_wgmma_cuda();  // optimized/fp8_gemm_wgmma.cu
}

void dsv3_register_fp8_gemm_cuda() {
  using namespace dsv3;
  using namespace dsv3::fp8gemm;
  register_wgmma_cuda();
  Variant block = lt_variant("cublaslt_block", Baseline::block_scaled,
                             "cuBLASLt FP8, A VEC128_32F + B BLK128x128_32F scales (DeepSeek's recipe), one call per group");
  block.tolerances["*"] = Tolerance::bounded_by(
      kEpsFp8, kRtolOut, true,
      "eps = 4 steps x 33 aligned terms x 2^-13 (13 fraction bits kept per 32-wide step) + FP32 scale steps, times "
      "the Cauchy-Schwarz magnitude; + 2^-7 |ref| for the bf16 output's rounding on both sides; exact where the case proves it (small_ints)");
  Registry::instance().add(std::move(block));
  Variant pt = lt_variant("cublaslt_per_tensor", Baseline::per_tensor,
                          "cuBLASLt FP8 with one scale per tensor: the dense FP8 ceiling (per_tensor cases)");
  pt.tolerances["*"] = Tolerance::bounded_by(
      kEpsFp8, kRtolOut, true,
      "as cublaslt_block, assuming cuBLASLt promotes at least every 128 of K with FAST_ACCUM off (not documented "
      "by NVIDIA; the exact small_ints case tests it)");
  Registry::instance().add(std::move(pt));
  Variant bf16 = lt_variant("cublas_bf16", Baseline::bf16,
                            "V3's default path: weight dequantized to BF16 every call, cuBLASLt BF16 GEMM");
  bf16.tolerances["*"] = Tolerance::bounded_by(
      kEpsBf16, kRtolOut, false,
      "eps = 2^-7 (both operands rounded to bf16, 2^-8 each) + 2^-14 (FP32 accumulation, an assumption about cuBLAS), "
      "times the magnitude; + 2^-7 |ref| for the bf16 output's rounding on both sides");
  Registry::instance().add(std::move(bf16));
}
