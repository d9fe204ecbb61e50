#include "core/bundle.hpp"

#include <cmath>

#include "core/json_file.hpp"

namespace dsv3 {

nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json to_json(const CompareReport& r) {
  nlohmann::json j = {{"name", r.name},
          {"tolerance", r.tolerance},
          {"pass", r.pass},
          {"message", r.message},
          {"n", r.n},
          {"mismatches", r.mismatches},
          {"nan_mismatches", r.nan_mismatches},
          {"inf_mismatches", r.inf_mismatches},
          {"max_abs", json_number(r.max_abs)},
          {"max_rel", json_number(r.max_rel)},
          {"cos_dist", json_number(r.cos_dist)},
          {"nmse", json_number(r.nmse)},
          {"worst", {{"index", r.worst_index}, {"got", json_number(r.worst_got)}, {"ref", json_number(r.worst_ref)}}}};
  if (!r.metric.empty()) j["metric"] = {{"name", r.metric}, {"value", json_number(r.metric_value)}};
  return j;
}

nlohmann::json to_json(const CaseResult& r) {
  nlohmann::json outs = nlohmann::json::array();
  for (const auto& o : r.outputs) outs.push_back(to_json(o));
  return {{"component", r.component}, {"variant", r.variant}, {"case", r.case_id},
          {"status", std::string(status_name(r.status))}, {"reason", r.reason}, {"outputs", outs}};
}

BundleWriter::BundleWriter(std::filesystem::path path, bool resume) : path_(std::move(path)) {
  if (resume && std::filesystem::exists(path_)) {
    doc_ = load_json_file(path_);
    if (!doc_.is_object() || doc_.value("schema", "") != kBundleSchema)
      throw InputError(path_.string() + ": not a " + std::string(kBundleSchema) + " bundle, cannot resume");
  } else {
    doc_ = {{"schema", kBundleSchema}, {"completed_phases", nlohmann::json::array()}};
  }
}

bool BundleWriter::done(const std::string& phase) const {
  for (const auto& p : doc_.value("completed_phases", nlohmann::json::array()))
    if (p == phase) return true;
  return false;
}

void BundleWriter::mark_done(const std::string& phase) {
  if (!done(phase)) doc_["completed_phases"].push_back(phase);
  flush();
}

void BundleWriter::flush() const { write_json_atomic(path_, doc_); }

}  // namespace dsv3
