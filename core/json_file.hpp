// JSON files with errors that name the file and the field. Every loader in the suite uses these.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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
