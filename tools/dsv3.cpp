// dsv3: the suite's command line. `dsv3 <command> --help` explains each command.
#include <iostream>

#include "core/json_file.hpp"
#include "core/registry.hpp"
#include "tools/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "dsv3bench: correctness and performance of DeepSeek-V3 components (CPU reference vs CUDA variants).\n"
      "  dsv3 list            components, variants, case counts\n"
      "  dsv3 check [REGEX]   correctness cases against the reference\n"
      "  dsv3 bench [REGEX]   benchmarks (Google Benchmark, JSON out)\n"
      "  dsv3 run             ceilings + check + bench + studies -> results/<date>_<device>/\n"
      "  dsv3 model [ID...]   model configs: parameter counts, KV-cache bytes per token\n"
      "  dsv3 model kv-cache  KV-cache calculator: bytes per token and per sequence, BF16 vs FP8 latent\n"
      "  dsv3 model decode-limit | topology | train-cost   ISCA's network and training-cost calculators",
      "dsv3"};
  app.require_subcommand(1);
  app.fallthrough();
  dsv3::cli::add_list(app);
  dsv3::cli::add_check(app);
  dsv3::cli::add_bench(app);
  dsv3::cli::add_run(app);
  dsv3::cli::add_model(app);
  dsv3::cli::add_mla_layer(app);
  dsv3::cli::add_train_lm(app);
  dsv3::cli::add_forward(app);
  try {
    dsv3::register_all_components();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; every other parse error is bad input: CLI11 prints
    // it, and the status is the documented 2 (not CLI11's own codes, 100 and up).
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const dsv3::cli::Exit& e) {
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "dsv3: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
