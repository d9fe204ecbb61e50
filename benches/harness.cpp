#include "benches/harness.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>

#include "core/bundle.hpp"
#include "core/checker.hpp"
#include "core/device_guard.hpp"
#include "core/registry.hpp"
#if DSV3_HAVE_CUDA
#include "benches/harness_cuda.hpp"
#endif

namespace dsv3::bench {
namespace {

constexpr int kCudaCallsPerIteration = 10;

// The one prepared case alive at a time.
struct Prepared {
  std::string key;
  Io io;
  std::unique_ptr<Runner> runner;
  std::string error;  // preparation or validation failure
};

std::unique_ptr<Prepared>& current() {
  static std::unique_ptr<Prepared> p;
  return p;
}

// One checker for the whole run: benchmarks are registered case-major, so each case's reference
// (and its check aids) is computed once and serves every variant of that case.
Checker& shared_checker() {
  static Checker c;
  return c;
}

nlohmann::json& validations() {
  static nlohmann::json v = nlohmann::json::array();
  return v;
}

Prepared& prepare(const Component& comp, const Variant& v, const Case& c, const Options& opt,
                  std::size_t index, std::size_t total) {
  const std::string key = comp.name + "/" + v.name + "/" + c.id;
  auto& cur = current();
  if (cur && cur->key == key) return *cur;
  cur.reset();  // free the previous case first
  auto p = std::make_unique<Prepared>();
  p->key = key;
  if (opt.progress) std::cerr << "[" << index + 1 << "/" << total << "] " << key << std::endl;
  using clock = std::chrono::steady_clock;
  const auto seconds = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  const auto t0 = clock::now();
  auto t1 = t0;
  try {
    const bool validate = opt.validate && v.name != "ref";
    if (validate) {
      const CaseResult r = shared_checker().check(comp, v, c);
      validations().push_back(to_json(r));
      if (r.status != Status::pass) p->error = "validation " + std::string(status_name(r.status)) + ": " + r.reason;
    }
    t1 = clock::now();
    // A CUDA case that lost the context during validation (or an earlier case) is not run again.
    if (p->error.empty() && v.backend == Backend::cuda) p->error = skip_reason(v, c);
    if (p->error.empty()) {
      // Validated cases reuse the checker's inputs (large cases take seconds to generate).
      p->io = Io{validate ? shared_checker().reference(comp, c).inputs : comp.make_inputs(c), comp.make_outputs(c)};
      for (auto& t : p->io.out) t.poison();
      std::optional<guard::Scope> on_device;
      if (v.backend == Backend::cuda) on_device.emplace(key, "bench");
      p->runner = v.prepare(c, p->io);
      if (v.backend == Backend::cuda) {  // warm-up: module load, first-touch, clocks
        p->runner->run();
        p->runner->fetch();
      }
    }
  } catch (const std::exception& e) {
    p->error = e.what();
    if (v.backend == Backend::cuda && guard::note_failure(key)) p->error += " [" + guard::context_lost() + "]";
  }
  // Where a long run spends its host time: validation (the reference, once per case) and setup.
  if (opt.progress && seconds(t0, clock::now()) >= 1.0)
    std::cerr << "  prepared in " << std::fixed << std::setprecision(1) << seconds(t0, clock::now())
              << " s (validation " << seconds(t0, t1) << " s)" << std::defaultfloat << std::endl;
  cur = std::move(p);
  return *cur;
}

void run_benchmark(benchmark::State& state, const Component* comp, const Variant* v, const Case& c,
                   const Ceilings& ceil, const Options& opt, std::size_t index, std::size_t total) {
  Prepared& p = prepare(*comp, *v, c, opt, index, total);
  if (!p.error.empty()) {
    state.SkipWithError(p.error.c_str());
    for (auto _ : state) {}
    return;
  }
  std::optional<guard::Scope> on_device;
  if (v->backend == Backend::cuda) on_device.emplace(p.key, "bench");
  try {
    for (auto _ : state) {
      if (on_device) on_device->touch();
#if DSV3_HAVE_CUDA
      if (v->backend == Backend::cuda) {
        // kCudaCallsPerIteration back-to-back launches between one event pair: the mean per call,
        // without the event and launch-gap overhead dominating microsecond kernels.
        state.SetIterationTime(cuda_time([&] { p.runner->run(); }, 0, kCudaCallsPerIteration, 1, opt.flush_l2).at(0));
        continue;
      }
#endif
      const auto t0 = std::chrono::steady_clock::now();
      p.runner->run();
      const auto t1 = std::chrono::steady_clock::now();
      state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    }
    p.runner->fetch();
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (v->backend == Backend::cuda && guard::note_failure(p.key)) why += " [" + guard::context_lost() + "]";
    state.SkipWithError(why.c_str());
    return;
  }
  const double bytes = comp->bytes(c), flops = comp->flops(c);
  const double ceiling = v->backend == Backend::cuda ? ceil.gpu_copy_gbs : ceil.cpu_memcpy_gbs;
  using benchmark::Counter;
  state.counters["GBps"] = Counter(bytes / 1e9, Counter::kIsIterationInvariantRate);
  if (flops > 0) state.counters["TFLOPps"] = Counter(flops / 1e12, Counter::kIsIterationInvariantRate);
  if (ceiling > 0) state.counters["frac_ceiling"] = Counter(bytes / 1e9 / ceiling, Counter::kIsIterationInvariantRate);
  // Arithmetic against the measured GEMM rate of the same backend: the FP8 cuBLASLt 8192^3 rate
  // on the GPU, Eigen's threaded FP64 rate (what the references run on) on the CPU.
  const double gemm_gflops = v->backend == Backend::cuda ? ceil.gpu_fp8_tflops * 1e3 : ceil.cpu_gemm_f64_threads_gflops;
  if (flops > 0 && gemm_gflops > 0)
    state.counters["frac_gemm_ceiling"] = Counter(flops / 1e9 / gemm_gflops, Counter::kIsIterationInvariantRate);
  state.counters["bytes"] = bytes;
}

}  // namespace

std::vector<Planned> plan_benchmarks(const Options& opt) {
  const std::regex re(opt.filter.empty() ? std::string(".*") : opt.filter);
  std::vector<Planned> plan;
  auto& reg = Registry::instance();
  for (const auto& comp : reg.components()) {
    const std::vector<Case> cases = comp.perf_cases();
    for (const auto& c : cases)  // case-major: see shared_checker()
      for (const Variant* v : reg.variants(comp.name)) {
        const std::string name = comp.name + "/" + v->name + "/" + c.id;
        if (!std::regex_search(name, re)) continue;
        std::string why = skip_reason(*v, c);
        if (why.empty() && v->backend == Backend::cpu && comp.bytes(c) > opt.cpu_max_bytes)
          why = "CPU variant skipped above " + std::to_string(static_cast<long long>(opt.cpu_max_bytes / 1e6)) +
                " MB moved (--cpu-max-bytes)";
        plan.push_back({name, why, comp.name + "/" + c.id, &comp, v, c});
      }
  }
  return plan;
}

void register_planned(const std::vector<const Planned*>& items, std::size_t first_index, std::size_t total,
                      const Ceilings& ceil, const Options& opt) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Planned* it = items[i];
    const std::size_t index = first_index + i;
    benchmark::RegisterBenchmark(it->name.c_str(), [it, &ceil, opt, index, total](benchmark::State& s) {
      run_benchmark(s, it->comp, it->variant, it->c, ceil, opt, index, total);
    })->UseManualTime()->Unit(benchmark::kMicrosecond)
        ->MinTime(it->variant->backend == Backend::cuda ? opt.min_time / kCudaCallsPerIteration : opt.min_time);
  }
}

nlohmann::json take_validation_results() {
  nlohmann::json v = std::move(validations());
  validations() = nlohmann::json::array();
  return v;
}

}  // namespace dsv3::bench
