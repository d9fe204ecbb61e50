#include "core/checker.hpp"

#include <cstring>
#include <exception>
#include <optional>

#include "core/device_guard.hpp"

namespace dsv3 {

std::string_view status_name(Status s) {
  return s == Status::pass ? "pass" : s == Status::fail ? "fail" : "skip";
}

Status status_from_name(std::string_view name) {
  return name == "pass" ? Status::pass : name == "fail" ? Status::fail : Status::skip;
}

std::string skip_reason(const Variant& v, const Case& c) {
  if (v.backend == Backend::cuda) {
    if (!cuda_presence().available) return "no CUDA device: " + cuda_presence().reason;
    if (std::string why = guard::cuda_skip_reason(v.component + "/" + v.name); !why.empty()) return why;
  }
  return v.unsupported(c);
}

const Tensor* Checker::RefEntry::aid(const std::string& name) const { return find_tensor(aids, name); }

const Checker::RefEntry& Checker::reference(const Component& comp, const Case& c) {
  const std::string key = comp.name + "|" + c.id;
  if (key == cached_key_) return cached_;
  cached_key_.clear();
  cached_ = {};
  const Variant& ref = Registry::instance().variant(comp.name, "ref");
  Io io{comp.make_inputs(c), comp.make_outputs(c)};
  for (auto& t : io.out) t.poison();
  auto runner = ref.prepare(c, io);
  runner->run();
  runner->fetch();
  cached_ = RefEntry{std::move(io.in), std::move(io.out), {}};
  if (comp.check_aids) cached_.aids = comp.check_aids(c, cached_.inputs, cached_.outputs);
  cached_key_ = key;
  return cached_;
}

CaseResult Checker::check(const Component& comp, const Variant& v, const Case& c) {
  CaseResult r{comp.name, v.name, c.id, Status::skip, skip_reason(v, c), {}};
  if (!r.reason.empty()) return r;
  const std::string item = comp.name + "/" + v.name + "/" + c.id;
  try {
    const RefEntry& ref = reference(comp, c);
    Io io{ref.inputs, comp.make_outputs(c)};
    for (auto& t : io.out) t.poison();
    std::unique_ptr<Runner> runner;
    {
      std::optional<guard::Scope> on_device;  // the reference above ran on the host: not timed
      if (v.backend == Backend::cuda) on_device.emplace(item, "check");
      runner = v.prepare(c, io);
      runner->run();
      runner->fetch();
    }
    r.status = Status::pass;
    auto record = [&r](CompareReport rep) {  // the first failing report names the case's failure
      if (!rep.pass && r.status == Status::pass) {
        r.status = Status::fail;
        r.reason = rep.name + ": " + rep.message;
      }
      r.outputs.push_back(std::move(rep));
    };
    for (std::size_t i = 0; i < ref.outputs.size(); ++i) {
      const std::string& name = ref.outputs[i].name();
      const Tolerance& tol = v.tolerance_for(name);
      record(compare_tensors(io.out.at(i), ref.outputs[i], tol,
                             ref.aid(tol.aid_for(name)),
                             ref.aid("exact:" + name)));
    }
    if (comp.extra_checks)
      for (CompareReport& rep : comp.extra_checks(c, ref.aids, io.out)) record(std::move(rep));
    for (std::size_t i = 0; i < ref.inputs.size(); ++i) {
      if (std::memcmp(io.in[i].raw(), ref.inputs[i].raw(), ref.inputs[i].nbytes()) != 0 && r.status == Status::pass) {
        r.status = Status::fail;
        r.reason = "variant modified its input '" + ref.inputs[i].name() + "'";
      }
    }
  } catch (const VariantUnsupported& e) {
    r.status = Status::skip;
    r.reason = e.what();
    r.outputs.clear();
  } catch (const std::exception& e) {
    r.status = Status::fail;
    r.reason = std::string("error: ") + e.what();
    if (v.backend == Backend::cuda && guard::note_failure(item))
      r.reason += " [the CUDA context is lost: " + comp.name + "/" + v.name + " is quarantined and later CUDA cases of this process are skipped]";
  }
  return r;
}

}  // namespace dsv3
