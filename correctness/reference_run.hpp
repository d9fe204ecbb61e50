// For property tests: runs a component's reference (found by argument-dependent lookup:
// output_specs(p) and run_reference(p, in, out) in the Params' namespace) into freshly allocated
// outputs poisoned with NaN, so an element the reference leaves unwritten shows up; and the
// thread-count check built on it.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "core/parallel.hpp"
#include "core/tensor.hpp"

namespace dsv3 {

template <class P>
std::vector<Tensor> run_reference_poisoned(const P& p, const std::vector<Tensor>& in) {
  std::vector<Tensor> out = allocate(output_specs(p));
  for (Tensor& t : out) t.poison();
  run_reference(p, in, out);
  return out;
}

// The reference on 1 and on 4 threads: "" when every output is bitwise identical, else the name
// of the first output that differs (references must not depend on the thread count).
template <class P>
std::string first_thread_dependent_output(const P& p, const std::vector<Tensor>& in) {
  set_thread_count(1);
  const std::vector<Tensor> a = run_reference_poisoned(p, in);
  set_thread_count(4);
  const std::vector<Tensor> b = run_reference_poisoned(p, in);
  set_thread_count(0);
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].nbytes() != b[i].nbytes() || std::memcmp(a[i].raw(), b[i].raw(), a[i].nbytes()) != 0) return a[i].name();
  return "";
}

}  // namespace dsv3
