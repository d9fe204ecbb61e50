// The case/variant registry.
//
// A component declares its cases (eval: small, irregular, adversarial; perf: exact V3 shapes),
// how to make seeded inputs and poisoned outputs for a case, and bytes()/flops() for the bench
// harness. Variants are registered by name; the reference is the variant "ref". Each variant
// declares supports() and a tolerance per output, with its reason. Nothing else in the suite
// knows a component's types: the checker, the gtest driver, the bench harness and `dsv3 list`
// all work from this registry.
#pragma once

#include <any>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compare.hpp"
#include "core/cuda_probe.hpp"
#include "core/tensor.hpp"

namespace dsv3 {

// One case: its identity (Params::to_string()) and its typed params.
struct Case {
  std::string id;
  std::any params;
  template <class P> const P& as() const { return std::any_cast<const P&>(params); }
};

template <class P> Case make_case(P p) {
  std::string id = p.to_string();
  return Case{std::move(id), std::any(std::move(p))};
}

// Inputs and outputs of one run; outputs are allocated and poisoned by the harness.
struct Io {
  std::vector<Tensor> in;
  std::vector<Tensor> out;
  Tensor& input(const std::string& name);
  const Tensor& input(const std::string& name) const;
  Tensor& output(const std::string& name);
};

// A prepared run of one variant on one case. run() may be asynchronous (CUDA: enqueues on the
// variant's stream); fetch() waits and copies results into io.out (CPU runners write there
// directly and fetch() does nothing). fetch() throws if a device canary was overwritten.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void run() = 0;
  virtual void fetch() {}
};

// Thrown by prepare() when a library refuses the case at run time (e.g. cuBLASLt offers no
// algorithm for it on this GPU): the checker reports a skip with this message, not a failure.
struct VariantUnsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Backend : uint8_t { cpu, cuda };

struct Variant {
  std::string component;
  std::string name;         // "ref", "cuda_tile", ...
  std::string description;  // printed by `dsv3 list`
  Backend backend = Backend::cpu;
  // Empty string when the case is supported, else why not.
  std::function<std::string(const Case&)> unsupported = [](const Case&) { return std::string(); };
  std::function<std::unique_ptr<Runner>(const Case&, Io&)> prepare;
  // Tolerance per output name; "*" is the default for outputs not named.
  std::map<std::string, Tolerance> tolerances;
  // Non-empty: why this variant is not trusted yet (a kernel no GPU bundle has shown passing;
  // kNotYetRunOnGpu); `dsv3 list` prints it.
  std::string experimental;
  const Tolerance& tolerance_for(const std::string& output) const;
};

// Variant::experimental of a CUDA variant that no GPU bundle under results/ has shown passing.
inline constexpr const char* kNotYetRunOnGpu = "not yet run on a GPU: no GPU bundle shows it passing";

struct Component {
  std::string name;
  std::string description;
  std::function<std::vector<Case>()> eval_cases;
  std::function<std::vector<Case>()> perf_cases;
  std::function<std::vector<Tensor>(const Case&)> make_inputs;   // seeded from case.id
  std::function<std::vector<Tensor>(const Case&)> make_outputs;  // shapes and dtypes only
  std::function<double(const Case&)> bytes;                      // fewest bytes moved
  std::function<double(const Case&)> flops = [](const Case&) { return 0.0; };
  // Optional numerics study written into the bundle's "studies" (name -> rows); quick = smaller.
  std::function<nlohmann::json(bool quick)> study;
  // Optional check aids, computed once per case from the inputs and the reference outputs and
  // cached with them: a tensor named "magnitude:<output>" (f32, the output's shape) is the
  // per-element magnitude that Tolerance::bounded multiplies; others serve extra_checks.
  std::function<std::vector<Tensor>(const Case&, const std::vector<Tensor>& in,
                                    const std::vector<Tensor>& ref_out)> check_aids;
  // Optional checks of a variant's outputs beyond each output's tolerance (e.g. against a second,
  // higher-precision reference among the aids); a report that fails fails the case.
  std::function<std::vector<CompareReport>(const Case&, const std::vector<Tensor>& aids,
                                           const std::vector<Tensor>& got)> extra_checks;
};

// A study run by `dsv3 run` after the components' CPU studies, written into the bundle's studies
// under `name`. Backend::cuda studies need a GPU: without one (or when `fn` is empty because the
// CUDA side was not built) the bundle gets one row {"skipped": true, "reason": ...} instead.
// A component may declare the study with an empty fn in its CPU registration and let its CUDA
// registration fill it in (add_study with the same name replaces the earlier entry).
struct Study {
  std::string component;
  std::string name;  // studies key in the bundle
  Backend backend = Backend::cpu;
  std::function<nlohmann::json(bool quick)> fn;  // returns the rows (a JSON array)
};

// Where studies that produce files (trained weights) put them: the bundle's directory while
// `dsv3 run` runs its studies, empty otherwise (such a study then writes no files).
const std::filesystem::path& study_artifact_dir();
void set_study_artifact_dir(std::filesystem::path dir);

class Registry {
 public:
  static Registry& instance();
  void add(Component c);
  void add(Variant v);  // the component must be registered first
  const std::vector<Component>& components() const { return components_; }
  const Component& component(const std::string& name) const;  // throws naming the known ones
  std::vector<const Variant*> variants(const std::string& component) const;
  const Variant& variant(const std::string& component, const std::string& name) const;
  void add_study(Study s);  // the component must be registered first; same name replaces
  const std::vector<Study>& studies() const { return studies_; }

 private:
  std::vector<Component> components_;
  std::vector<std::unique_ptr<Variant>> variants_;
  std::vector<Study> studies_;
};

// Binds a component's per-case hooks to functions of its case parameters P, found by argument-
// dependent lookup in P's namespace: make_inputs(P), output_specs(P) (allocated as the outputs)
// and bytes_moved(P). flops, check aids and studies stay the component's own.
template <class P> void bind_case_hooks(Component& c) {
  c.make_inputs = [](const Case& k) { return make_inputs(k.as<P>()); };
  c.make_outputs = [](const Case& k) { return allocate(output_specs(k.as<P>())); };
  c.bytes = [](const Case& k) { return bytes_moved(k.as<P>()); };
}

// Calls every component's registration function (generated by CMake's dsv3_add_component).
void register_all_components();

// A Runner whose run() calls `fn` on the calling thread (CPU references); with threads > 0 the
// references' parallel_for uses that many threads during the call (the default again after it,
// thrown or not): the "ref_1thread" variants that check thread-count invariance.
std::unique_ptr<Runner> make_cpu_runner(std::function<void()> fn, int threads = 0);

// Registers a component's CPU reference twice: "ref", the baseline (every other variant is
// compared with it), and "ref_1thread", the same on one thread, held to bit-exactness (the
// thread-count check; `why_invariant` says why it holds), skipped above `max_flops` by the
// component's flops(). `run(case, io)` computes io.out from io.in. The component must be
// registered first.
void add_reference_variants(const std::string& component, std::string description,
                            std::function<void(const Case&, Io&)> run, std::string why_invariant,
                            double max_flops = 2e9);

// Perf cases of `component` from datasets_dir()/shapes/<component>.json ({"cases": [...]}):
// `parse(entry, at)` turns one entry into cases, `at` naming the file and index for messages; a
// std::invalid_argument it throws (a Params::validate() failure) or a JSON type error becomes
// InputError "<at>: <what>".
std::vector<Case> load_shape_cases(
    const std::string& component,
    const std::function<std::vector<Case>(const nlohmann::json& entry, const std::string& at)>& parse);

}  // namespace dsv3
