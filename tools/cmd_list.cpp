// dsv3 list: the registry, printed from the registry itself so it cannot drift.
#include <iostream>

#include "core/registry.hpp"
#include "tools/commands.hpp"

namespace dsv3::cli {

void add_list(CLI::App& app) {
  auto* cmd = app.add_subcommand("list", "List components, their variants and case counts");
  cmd->footer("CUDA variants show whether this machine can run them.");
  cmd->callback([] {
    auto& reg = Registry::instance();
    for (const auto& comp : reg.components()) {
      std::size_t n_perf = 0;
      std::string perf_note;
      try {
        n_perf = comp.perf_cases().size();
      } catch (const std::exception& e) {
        perf_note = " (perf cases unavailable: " + std::string(e.what()) + ")";
      }
      std::cout << comp.name << ": " << comp.description << "\n  eval cases: " << comp.eval_cases().size()
                << ", perf cases: " << n_perf << perf_note << "\n";
      for (const Variant* v : reg.variants(comp.name)) {
        std::cout << "  - " << v->name << " [" << (v->backend == Backend::cuda ? "cuda" : "cpu") << "] "
                  << v->description;
        if (v->backend == Backend::cuda && !cuda_presence().available)
          std::cout << "  (cannot run here: " << cuda_presence().reason << ")";
        std::cout << "\n";
        if (!v->experimental.empty()) std::cout << "      EXPERIMENTAL: " << v->experimental << "\n";
        for (const auto& [out, tol] : v->tolerances)
          std::cout << "      tolerance " << out << ": " << tol.describe() << " - " << tol.reason << "\n";
      }
    }
  });
}

}  // namespace dsv3::cli
