// One benchmark harness for all components (Google Benchmark underneath).
//
// For every (component, perf case, variant) it registers a benchmark named
// "<component>/<variant>/<case>", validates the variant once against the reference before
// timing (skipped with --no-validate), times run() with manual time (CUDA variants: one warm-up
// call, then CUDA events around 10 back-to-back calls per iteration, the mean per call, for about
// Options::min_time of GPU time; CPU variants: steady_clock around one call) and reports counters:
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

#include "core/registry.hpp"

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
  double cpu_max_bytes = 3e8;   // CPU variants skip larger cases (a CPU reference at V3 sizes is slow)
  bool validate = true;         // check each variant against the reference once before timing
  bool flush_l2 = false;        // flush L2 before every timed CUDA launch
  bool progress = true;         // "[i/n] name" lines on stderr
  // Seconds of timed work per benchmark (Google Benchmark's min_time; its default is 0.5). CUDA
  // iterations time 10 calls and report their mean, so their min_time is divided by 10: the GPU
  // is busy for about min_time, not ten times that.
  double min_time = 0.5;
};

struct Planned {
  std::string name;             // benchmark name "<component>/<variant>/<case>"
  std::string skip_reason;      // non-empty: not run, and why
  std::string batch;            // "<component>/<case>": a case's variants run as one batch
  const Component* comp = nullptr;
  const Variant* variant = nullptr;
  Case c;
};

// Every benchmark the filter selects, case-major (one case's variants together, so the case's
// reference is computed once), skipped ones with their reason. Registers nothing.
std::vector<Planned> plan_benchmarks(const Options& opt);

// Registers `items` (planned, not skipped) with Google Benchmark; progress lines count them as
// first_index + 1 .. of `total`. The items must outlive the run.
void register_planned(const std::vector<const Planned*>& items, std::size_t first_index, std::size_t total,
                      const Ceilings& ceilings, const Options& opt);

// Validation results gathered since the last call (bundle "bench_validation"); clears them.
nlohmann::json take_validation_results();

}  // namespace dsv3::bench
