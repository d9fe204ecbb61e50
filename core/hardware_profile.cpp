// Hardware profile loader and validation; see hardware_profile.hpp.
#include "core/hardware_profile.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/json_file.hpp"

namespace dsv3 {
namespace {

using nlohmann::json;

const std::set<std::string> kFields{"id",       "name",         "vendor",     "arch",
                                    "sms",      "memory_gib",   "memory_bandwidth_gbs",
                                    "dense_bf16_tflops",        "dense_fp8_tflops",
                                    "l2_mib",   "nvlink_bandwidth_gbs", "nvlink_domain_gpus",
                                    "nic_gbps", "nics_per_gpu", "sources"};

// Strict positive integer (7168.0 and "7168" are rejected).
int64_t positive_int(const json& j, const std::string& f, const std::string& where) {
  const int64_t v = json_int(j, f, where);
  if (v <= 0) throw InputError(where + ": field '" + f + "' must be positive, got " + std::to_string(v));
  return v;
}

double positive_number(const json& j, const std::string& f, const std::string& where) {
  const double d = json_real(j, f, where);
  if (!(d > 0) || !std::isfinite(d))
    throw InputError(where + ": field '" + f + "' must be positive, got " + json(d).dump());
  return d;
}

}  // namespace

HardwareProfile load_hardware_profile(const std::filesystem::path& path) {
  const json j = load_json_file(path);
  const std::string w = path.string();
  if (!j.is_object()) throw InputError(w + ": top level must be a JSON object, got " + std::string(j.type_name()));
  for (const auto& [k, v] : j.items())
    if (!kFields.count(k)) throw InputError(w + ": unknown field '" + k + "' (see datasets/README.md for the schema)");

  HardwareProfile h;
  h.source = path;
  h.id = json_field<std::string>(j, "id", w);
  h.name = json_field<std::string>(j, "name", w);
  h.vendor = json_field<std::string>(j, "vendor", w);
  h.arch = json_field<std::string>(j, "arch", w);
  if (h.id.empty()) throw InputError(w + ": field 'id' must not be empty");
  if (h.arch != "hopper" && h.arch != "blackwell")
    throw InputError(w + ": field 'arch' must be \"hopper\" or \"blackwell\", got '" + h.arch + "'");
  h.sms = positive_int(j, "sms", w);
  h.memory_gib = positive_number(j, "memory_gib", w);
  h.memory_bandwidth_gbs = positive_number(j, "memory_bandwidth_gbs", w);
  h.dense_bf16_tflops = positive_number(j, "dense_bf16_tflops", w);
  h.dense_fp8_tflops = positive_number(j, "dense_fp8_tflops", w);
  h.l2_mib = positive_number(j, "l2_mib", w);
  h.nvlink_bandwidth_gbs = positive_number(j, "nvlink_bandwidth_gbs", w);
  h.nvlink_domain_gpus = positive_int(j, "nvlink_domain_gpus", w);
  h.nic_gbps = positive_number(j, "nic_gbps", w);
  h.nics_per_gpu = positive_number(j, "nics_per_gpu", w);

  h.sources = json_sources(j, w);
  return h;
}

std::vector<std::string> list_hardware() { return list_json_stems(datasets_dir() / "hardware"); }

HardwareProfile find_hardware(const std::string& id) {
  const auto dir = datasets_dir() / "hardware";
  const auto path = dir / (id + ".json");
  std::error_code ec;
  if (id.empty() || id.find('/') != std::string::npos || !std::filesystem::is_regular_file(path, ec)) {
    throw InputError(path.string() + ": no hardware profile '" + id + "'; available: " + available_json_stems(dir));
  }
  HardwareProfile h = load_hardware_profile(path);
  if (h.id != id)
    throw InputError(path.string() + ": field 'id' is '" + h.id + "', but the file name says '" + id + "'");
  return h;
}

}  // namespace dsv3
