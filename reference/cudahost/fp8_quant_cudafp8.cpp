// FP8 quantization on the CPU with CUDA's own host-side conversions (variant "cpu_cudafp8").
//
// The reference's tile algorithm (fp8_quant.hpp), but every element conversion is the CUDA
// toolkit's, compiled for the host: fp8 casts __nv_cvt_float_to_fp8(.., __NV_SATFINITE, ..),
// fp8 decode __nv_cvt_fp8_to_halfraw + __half2float, bf16 __bfloat162float / __float2bfloat16_rn.
// core/dtype.cpp's codecs are never called, so agreeing with "ref" bit for bit cross-checks the
// project's codecs against NVIDIA's on a machine without a GPU.
// The tile scale is the reference's fp8::tile_scale: the scale math (core/fp8_math.hpp) is shared
// by every variant and is not what this one checks.
// Shape symbols: M rows, K columns, Kb = ceil(K/128), Mb = ceil(M/128).
// Also here: check_io(), the tensor check shared with the "cuda" variant (host-only code).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "core/fp8_math.hpp"
#include "core/registry.hpp"
#include "optimized/fp8_quant.cuh"
#include "reference/fp8_quant.hpp"

namespace dsv3::fp8 {
namespace {
namespace fm = fp8math;

__nv_fp8_interpretation_t interp(Elem e) { return e == Elem::e4m3 ? __NV_E4M3 : __NV_E5M2; }
float bf16_in(uint16_t b) {
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}
uint16_t bf16_out(float f) { return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(f)).x; }
float fp8_in(uint8_t c, Elem e) { return __half2float(__half(__nv_cvt_fp8_to_halfraw(c, interp(e)))); }
uint8_t fp8_out(float y, Elem e) { return __nv_cvt_float_to_fp8(y, __NV_SATFINITE, interp(e)); }

// Quantizes x [rows, cols] in th x 128 tiles: codes [rows, cols], scales [ceil(rows/th), ceil(cols/128)].
void quantize(std::span<const float> x, int64_t rows, int64_t cols, int64_t th, std::span<uint8_t> codes,
              std::span<float> scales, const Params& p) {
  for (int64_t r0 = 0; r0 < rows; r0 += th)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t r1 = std::min(rows, r0 + th), c1 = std::min(cols, c0 + kTile);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = fm::amax_combine(amax, fm::abs_f(x[r * cols + c]));
      const float s = tile_scale(amax, p.elem, p.scale_fmt);
      const float a = amax < fm::kAmaxFloor ? fm::kAmaxFloor : amax;  // NaN stays NaN
      const float f = p.conv == Convention::reciprocal || p.scale_fmt == ScaleFmt::ue8m0 ? fm::fdiv(1.0f, s)
                      : p.conv == Convention::fused_torch ? fm::fused_torch_multiplier(a, elem_max(p.elem))
                                                          : fm::fused_multiplier(a, elem_max(p.elem));
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const float v = x[r * cols + c];
          codes[r * cols + c] = fp8_out(p.conv == Convention::divide ? fm::fdiv(v, s) : fm::fmul(v, f), p.elem);
        }
      scales[(r0 / th) * tiles(cols) + c0 / kTile] = s;
    }
}

class CudaFp8CpuRunner final : public Runner {
 public:
  CudaFp8CpuRunner(const Params& p, Io& io) : p_(p), io_(io) {
    p_.validate();
    if (p_.op == Op::logfmt) throw std::invalid_argument("fp8_quant/cpu_cudafp8: logfmt is not supported");
    check_io(p_, io_, "fp8_quant/cpu_cudafp8");
  }

  void run() override {
    const int64_t m = p_.m, k = p_.k, kb = tiles(k);
    switch (p_.op) {
      case Op::quant_1x128:
      case Op::quant_128x128: {
        const auto xs = io_.in[0].span<const uint16_t>();  // [M, K] bf16
        std::vector<float> x(xs.size());
        std::transform(xs.begin(), xs.end(), x.begin(), bf16_in);
        quantize(x, m, k, p_.op == Op::quant_1x128 ? 1 : kTile, io_.out[0].span<uint8_t>(), io_.out[1].span<float>(), p_);
        break;
      }
      case Op::dequant_1x128:
      case Op::dequant_128x128: {
        const auto codes = io_.in[0].span<const uint8_t>();  // [M, K]
        const auto s = io_.in[1].span<const float>();       // [M, Kb] or [Mb, Kb]
        auto y = io_.out[0].span<uint16_t>();                // [M, K] bf16
        const bool block = p_.op == Op::dequant_128x128;
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 0; c < k; ++c)
            y[r * k + c] = bf16_out(fm::fmul(fp8_in(codes[r * k + c], p_.elem), s[(block ? r / kTile : r) * kb + c / kTile]));
        break;
      }
      case Op::retile_1x128_to_128x1: {
        const auto codes = io_.in[0].span<const uint8_t>();  // [M, K]
        const auto s = io_.in[1].span<const float>();       // [M, Kb]
        std::vector<float> xt(static_cast<std::size_t>(k * m));  // dequantized x^T [K, M]
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 0; c < k; ++c) xt[c * m + r] = fm::fmul(fp8_in(codes[r * k + c], p_.elem), s[r * kb + c / kTile]);
        quantize(xt, k, m, 1, io_.out[0].span<uint8_t>(), io_.out[1].span<float>(), p_);
        break;
      }
      case Op::logfmt:
        throw std::logic_error("fp8_quant/cpu_cudafp8: logfmt is not supported");
    }
  }

 private:
  Params p_;
  Io& io_;
};

}  // namespace

void check_io(const Params& p, const Io& io, const std::string& variant) {
  const std::string what = variant + " " + std::string(op_name(p.op));
  require_tensors(io.in, input_specs(p), what + " inputs");
  require_tensors(io.out, output_specs(p), what + " outputs");
}

Variant cpu_cudafp8_variant() {
  Variant v;
  v.component = "fp8_quant";
  v.name = "cpu_cudafp8";
  v.description = "CPU, the reference's tiles with CUDA's host-side fp8/bf16 conversions (cuda_fp8.h): a codec cross-check";
  v.backend = Backend::cpu;
  v.unsupported = [](const Case& c) -> std::string {
    return c.as<Params>().op == Op::logfmt ? "LogFMT has no FP8 cast: nothing independent to check" : "";
  };
  v.prepare = [](const Case& c, Io& io) -> std::unique_ptr<Runner> {
    return std::make_unique<CudaFp8CpuRunner>(c.as<Params>(), io);
  };
  v.tolerances["*"] = Tolerance::bit_exact(
      "cuda_fp8.h's host cast is RNE with satfinite, as core/dtype.cpp's codec is specified; the tile and "
      "scale math are the reference's, so every code and scale must be identical");
  return v;
}

}  // namespace dsv3::fp8
