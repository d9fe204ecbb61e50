// FP8 accumulation component: a numerics model, not a kernel. It has no eval or perf cases (there
// is no tensor op to check or time); it contributes the CPU study "fp8_accum_model"
// (reference/fp8_accum_study.cpp) and declares the GPU study "fp8_accum_hardware", whose function
// the CUDA registration (optimized/fp8_accum_probe.cu) fills in; without CUDA it stays empty and
// `dsv3 run` writes a skipped row. The "ref" variant exists for uniformity with other components.
#include <stdexcept>

#include "core/registry.hpp"
#include "reference/fp8_accum_study.hpp"

namespace dsv3::fp8accum {
namespace {

class NoRunner final : public Runner {
 public:
  void run() override { throw std::logic_error("fp8_accum has no cases to run"); }
};

}  // namespace

void register_component() {
  Component c;
  c.name = "fp8_accum";
  c.description = "FP8 tensor-core accumulation model (13/14-bit aligned sums, N_C promotion) + GPU calibration";
  c.eval_cases = [] { return std::vector<Case>{}; };
  c.perf_cases = [] { return std::vector<Case>{}; };
  c.make_inputs = [](const Case&) { return std::vector<Tensor>{}; };
  c.make_outputs = [](const Case&) { return std::vector<Tensor>{}; };
  c.bytes = [](const Case&) { return 0.0; };
  c.study = accumulation_study;
  Registry::instance().add(std::move(c));

  Variant v;
  v.component = "fp8_accum";
  v.name = "ref";
  v.description = "CPU model (reference/fp8_accum.cpp); the component has no cases";
  v.prepare = [](const Case&, Io&) -> std::unique_ptr<Runner> { return std::make_unique<NoRunner>(); };
  v.tolerances["*"] = Tolerance::bit_exact("baseline: never checked against itself");
  Registry::instance().add(std::move(v));

  Registry::instance().add_study({"fp8_accum", "fp8_accum_hardware", Backend::cuda, nullptr});
}

}  // namespace dsv3::fp8accum

void dsv3_register_fp8_accum_ref() { dsv3::fp8accum::register_component(); }
