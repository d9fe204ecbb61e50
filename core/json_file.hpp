// JSON files with errors that name the file and the field. Every loader in the suite uses these.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The current UTC time in strftime's `fmt` (default ISO 8601, as the suite's JSON records carry it).
std::string utc_now(const char* fmt = "%Y-%m-%dT%H:%M:%SZ");

// Parses `path`; throws InputError "<path>: <what>" when missing or malformed.
nlohmann::json load_json_file(const std::filesystem::path& path);

// Required field of an object, converted to T; throws InputError naming file, field and type.
template <class T>
T json_field(const nlohmann::json& obj, const std::string& field, const std::string& where) {
  if (!obj.is_object()) throw InputError(where + ": expected a JSON object");
  auto it = obj.find(field);
  if (it == obj.end()) throw InputError(where + ": missing field '" + field + "'");
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": field '" + field + "' has the wrong type (" + it->type_name() + ")");
  }
}

template <class T>
T json_field_or(const nlohmann::json& obj, const std::string& field, T fallback, const std::string& where) {
  if (!obj.is_object() || !obj.contains(field)) return fallback;
  return json_field<T>(obj, field, where);
}

// A field holding one value or a list of values (perf-case files: one case per value); a missing
// field gives {fallback}. List elements are type-checked (integers for integral T, booleans for
// bool, strings for std::string); InputError "<where>: <field>[i] has the wrong type (...)".
template <class T>
std::vector<T> json_one_or_list(const nlohmann::json& obj, const std::string& field, T fallback, const std::string& where) {
  if (!obj.is_object() || !obj.contains(field)) return {fallback};
  const nlohmann::json& v = obj[field];
  if (!v.is_array()) return {json_field<T>(obj, field, where)};
  std::vector<T> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    bool ok = true;
    if constexpr (std::is_same_v<T, bool>) ok = v[i].is_boolean();
    else if constexpr (std::is_integral_v<T>) ok = v[i].is_number_integer();
    else if constexpr (std::is_floating_point_v<T>) ok = v[i].is_number();
    else if constexpr (std::is_same_v<T, std::string>) ok = v[i].is_string();
    if (!ok)
      throw InputError(where + ": " + field + "[" + std::to_string(i) + "] has the wrong type (" + v[i].type_name() + ")");
    out.push_back(v[i].template get<T>());
  }
  return out;
}

// Strict integer field (7168.0 and "7168" are rejected) and any-number field.
int64_t json_int(const nlohmann::json& obj, const std::string& field, const std::string& where);
double json_real(const nlohmann::json& obj, const std::string& field, const std::string& where);
// Optional "sources" object of a dataset file: field (or group) -> source; non-string values ignored.
std::map<std::string, std::string> json_sources(const nlohmann::json& obj, const std::string& where);
// Stems of the *.json files in `dir`, sorted (dataset ids); InputError if `dir` does not exist.
std::vector<std::string> list_json_stems(const std::filesystem::path& dir);
// The same ids as "a, b, c" (or "(none)"), for "unknown id" messages.
std::string available_json_stems(const std::filesystem::path& dir);

// Writes `j` to `path` atomically: a temporary file in the same directory, then rename.
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j);
// Same for raw bytes/text.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

// Root of datasets/: $DSV3_DATA_DIR if set, else the source tree's datasets/ (compiled in).
std::filesystem::path datasets_dir();

}  // namespace dsv3
