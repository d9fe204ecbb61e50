// The checker: runs one variant on one case and compares every output with the reference.
// Outputs are allocated and poisoned here (NaN / 0xA5) with canary guards around them, so an
// unwritten or out-of-bounds element fails. A variant that throws (CUDA error, bad shape) fails
// with the message; an unsupported case or a missing GPU is a skip with its reason.
#pragma once

#include <string>
#include <vector>

#include "core/registry.hpp"

namespace dsv3 {

enum class Status : uint8_t { pass, fail, skip };
std::string_view status_name(Status s);
Status status_from_name(std::string_view name);  // status_name's inverse; anything else is skip

struct CaseResult {
  std::string component, variant, case_id;
  Status status = Status::skip;
  std::string reason;                 // skip or failure reason
  std::vector<CompareReport> outputs;
};

// Why `v` cannot run `c` here (no GPU, unsupported case), or empty.
std::string skip_reason(const Variant& v, const Case& c);

class Checker {
 public:
  CaseResult check(const Component& comp, const Variant& v, const Case& c);

  // The case's inputs, reference outputs and check aids (Component::check_aids), computed once
  // per case: callers go case-major, so each case's reference runs once for all its variants.
  struct RefEntry {
    std::vector<Tensor> inputs, outputs, aids;
    const Tensor* aid(const std::string& name) const;  // nullptr when absent
  };
  const RefEntry& reference(const Component& comp, const Case& c);

 private:
  // The last case's reference results.
  std::string cached_key_;
  RefEntry cached_;
};

}  // namespace dsv3
