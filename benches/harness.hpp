// One benchmark harness for all components (Google Benchmark underneath).
//
// For every (component, perf case, variant) it registers a benchmark named
// "<component>/<variant>/<case>", validates the variant once against the reference before
// timing (skipped with --no-validate), times run() with manual time (CUDA variants: one warm-up
// call, then CUDA events around 10 back-to-back calls per iteration, the mean per call; CPU
// variants: steady_clock around one call) and reports counters:
//   GBps          component bytes() / time, 1e9 B/s (fewest bytes: inputs read once, outputs written once)
//   TFLOPps       component flops() / time (when flops() > 0)
//   frac_ceiling  GBps / measured copy ceiling (device copy for CUDA, memcpy for CPU)
//   frac_gemm_ceiling  FLOP rate / measured GEMM rate (CUDA: cuBLASLt FP8 8192^3; CPU: Eigen FP64
//                 on the references' thread count), when flops() > 0
// Only one case's buffers are alive at a time.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3::bench {

struct Ceilings {
  double cpu_memcpy_gbs = 0, cpu_gemm_gflops = 0, cpu_gemm_f64_threads_gflops = 0;
  double gpu_copy_gbs = 0, gpu_bf16_tflops = 0, gpu_fp8_tflops = 0;
  nlohmann::json rows = nlohmann::json::array();  // bundle "ceilings"
};

// memcpy bandwidth (read + write bytes) and Eigen f32 GEMM rate, single thread.
void measure_cpu_ceilings(Ceilings& c, bool quick);
// Device copy bandwidth and cuBLASLt BF16/FP8 GEMM rates; no-op with a note when no GPU.
void measure_gpu_ceilings_into(Ceilings& c, bool quick);

struct Options {
  std::string filter;           // ECMAScript regex on "<component>/<variant>/<case>"; empty = all
  double cpu_max_bytes = 3e8;   // CPU variants skip larger cases (the reference is single-threaded)
  bool validate = true;         // check each variant against the reference once before timing
  bool flush_l2 = false;        // flush L2 before every timed CUDA launch
  bool progress = true;         // "[i/n] name" lines on stderr
};

struct Planned {
  std::string name;             // benchmark name
  std::string skip_reason;      // non-empty: not registered, and why
};

// Registers the benchmarks; returns every planned row, skipped ones with their reason.
std::vector<Planned> register_benchmarks(const Ceilings& ceilings, const Options& opt);

// Validation results gathered while benchmarks ran (bundle "bench_validation").
nlohmann::json validation_results();

}  // namespace dsv3::bench
