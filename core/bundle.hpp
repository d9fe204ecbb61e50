// Result bundle (docs/bundle-schema.md): one JSON document per run, rewritten atomically after
// every phase so an interrupted run keeps what finished.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "core/checker.hpp"

namespace dsv3 {

inline constexpr const char* kBundleSchema = "dsv3bench.bundle/1";

nlohmann::json to_json(const CompareReport& r);
nlohmann::json to_json(const CaseResult& r);
// A finite number, or null (JSON has no NaN/Inf).
nlohmann::json json_number(double v);

class BundleWriter {
 public:
  // Starts a new bundle at `path`, or continues the one there when `resume` is set (its phases
  // listed in "completed_phases" are then reported by done()).
  BundleWriter(std::filesystem::path path, bool resume);
  nlohmann::json& doc() { return doc_; }
  bool done(const std::string& phase) const;
  void mark_done(const std::string& phase);  // records the phase and flushes
  void flush() const;                        // atomic rewrite
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  nlohmann::json doc_;
};

}  // namespace dsv3
