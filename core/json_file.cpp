#include "core/json_file.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace dsv3 {

nlohmann::json load_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path.string() + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(path.string() + ": malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

int64_t json_int(const nlohmann::json& obj, const std::string& f, const std::string& where) {
  const nlohmann::json v = json_field<nlohmann::json>(obj, f, where);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX))
    throw InputError(where + ": field '" + f + "' must be an integer, got " + v.dump() + " (" + v.type_name() + ")");
  return v.get<int64_t>();
}

double json_real(const nlohmann::json& obj, const std::string& f, const std::string& where) {
  const nlohmann::json v = json_field<nlohmann::json>(obj, f, where);
  if (!v.is_number())
    throw InputError(where + ": field '" + f + "' must be a number, got " + v.dump() + " (" + v.type_name() + ")");
  return v.get<double>();
}

std::map<std::string, std::string> json_sources(const nlohmann::json& obj, const std::string& where) {
  std::map<std::string, std::string> out;
  if (!obj.contains("sources")) return out;
  const nlohmann::json& s = obj.at("sources");
  if (!s.is_object()) throw InputError(where + ": field 'sources' must be an object, got " + std::string(s.type_name()));
  for (const auto& [k, v] : s.items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

std::vector<std::string> list_json_stems(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw InputError(dir.string() + ": directory does not exist (is DSV3_DATA_DIR right?)");
  std::vector<std::string> ids;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".json") ids.push_back(e.path().stem().string());
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string available_json_stems(const std::filesystem::path& dir) {
  std::string s;
  for (const auto& id : list_json_stems(dir)) s += (s.empty() ? "" : ", ") + id;
  return s.empty() ? "(none)" : s;
}

void write_file_atomic(const std::filesystem::path& path, const std::string& bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const std::filesystem::path tmp =
      path.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(tmp.string() + ": cannot create file");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw InputError(tmp.string() + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw InputError(path.string() + ": rename from temporary file failed: " + ec.message());
  }
}

void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j) {
  write_file_atomic(path, j.dump(1) + "\n");
}

std::filesystem::path datasets_dir() {
  if (const char* env = std::getenv("DSV3_DATA_DIR"); env && *env) return env;
  return DSV3_SOURCE_DATASETS_DIR;
}

std::string utc_now(const char* fmt) {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, fmt, std::gmtime(&t));
  return buf;
}

}  // namespace dsv3
