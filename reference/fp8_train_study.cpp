// Bundle study "fp8_train_step_error": how far each output of the FP8 and BF16 steps is from the
// FP64 step, per shape (docs/bundle-schema.md).
#include "core/compare.hpp"
#include "core/registry.hpp"
#include "reference/fp8_train_case.hpp"

namespace dsv3::fp8train {

nlohmann::json step_error_study(bool quick) {
  struct Shape3 {
    Layer layer;
    int64_t m, k, n;
  };
  std::vector<Shape3> shapes = {{Layer::linear, 256, 512, 256}, {Layer::swiglu, 256, 512, 256}};
  if (!quick) {
    shapes.push_back({Layer::linear, 1024, 1024, 1024});
    shapes.push_back({Layer::swiglu, 512, 1024, 512});
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const Shape3& s : shapes)
    for (Recipe r : {Recipe::fp8, Recipe::bf16}) {
      Params p;
      p.layer = s.layer; p.recipe = r; p.m = s.m; p.k = s.k; p.n = s.n;
      const std::vector<Tensor> in = make_inputs(p);
      std::vector<Tensor> out = allocate(output_specs(p));
      run_reference(p, in, out);
      const std::vector<Tensor> aids = high_precision_aids(p, in);
      // Reports come in pairs per quantity (fp64_step_reports): relative L2, then calc_diff.
      for (const CompareReport& rep : high_precision_checks(p, aids, out)) {
        if (rep.metric == "calc_diff") {
          nlohmann::json& row = rows.back();
          row["calc_diff"] = rep.metric_value;
          row["check"] = row["check"].get<std::string>() + "; " + rep.tolerance;
          row["pass"] = row["pass"].get<bool>() && rep.pass;
          continue;
        }
        rows.push_back({{"layer", layer_name(p.layer)}, {"recipe", recipe_name(r)}, {"m", p.m}, {"k", p.k}, {"n", p.n},
                        {"quantity", rep.name.substr(0, rep.name.find(" vs FP64 step"))}, {"rel_l2", rep.metric_value}, {"cos_dist", rep.cos_dist},
                        {"check", rep.tolerance}, {"pass", rep.pass}});
      }
    }
  return rows;
}

}  // namespace dsv3::fp8train
