// For property tests: runs a component's reference (found by argument-dependent lookup:
// output_specs(p) and run_reference(p, in, out) in the Params' namespace) into freshly allocated
// outputs poisoned with NaN, so an element the reference leaves unwritten shows up.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace dsv3 {

template <class P>
std::vector<Tensor> run_reference_poisoned(const P& p, const std::vector<Tensor>& in) {
  std::vector<Tensor> out = allocate(output_specs(p));
  for (Tensor& t : out) t.poison();
  run_reference(p, in, out);
  return out;
}

}  // namespace dsv3
