// safetensors reader/writer; see safetensors.hpp for the format and what is validated.
#include "core/safetensors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

namespace dsv3 {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; the host copy is a plain memcpy");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // 100 MB; the real format's limit too
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeName {
  DType dtype;
  std::string_view name;
};
constexpr std::array<DTypeName, 9> kDTypeNames{{{DType::bf16, "BF16"},
                                                 {DType::f16, "F16"},
                                                 {DType::f32, "F32"},
                                                 {DType::e4m3, "F8_E4M3"},
                                                 {DType::e5m2, "F8_E5M2"},
                                                 {DType::ue8m0, "F8_E8M0"},
                                                 {DType::i32, "I32"},
                                                 {DType::u8, "U8"},
                                                 {DType::u16, "U16"}}};

// One validated header entry.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// A non-negative JSON integer, or nullopt (floats, negatives, strings, ...).
std::optional<uint64_t> as_nonneg_int(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

Entry parse_entry(const std::string& file, const std::string& name, const nlohmann::json& j,
                  uint64_t data_size) {
  const std::string where = file + ": tensor '" + name + "'";
  if (name.empty()) throw InputError(file + ": header has a tensor with an empty name");
  if (!j.is_object()) throw InputError(where + ": entry is not a JSON object (" + std::string(j.type_name()) + ")");
  Entry e{name, DType::f32, {}, 0, 0};

  const auto dtype_name = json_field<std::string>(j, "dtype", where);
  const auto dt = safetensors_dtype_from_name(dtype_name);
  if (!dt) {
    throw InputError(where + ": unknown or unsupported dtype '" + dtype_name +
                     "' (supported: BF16, F16, F32, F8_E4M3, F8_E5M2, F8_E8M0, I32, U8, U16)");
  }
  e.dtype = *dt;

  const auto shape = json_field<nlohmann::json>(j, "shape", where);
  if (!shape.is_array()) throw InputError(where + ": field 'shape' is not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      throw InputError(where + ": field 'shape' has a negative dimension " + d.dump() + " in " + shape.dump());
    const auto v = as_nonneg_int(d);
    if (!v || *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw InputError(where + ": field 'shape' has a dimension that is not an integer: " + d.dump());
    e.shape.push_back(static_cast<int64_t>(*v));
    overflow |= __builtin_mul_overflow(numel, *v, &numel);
  }

  const auto offs = json_field<nlohmann::json>(j, "data_offsets", where);
  if (!offs.is_array() || offs.size() != 2)
    throw InputError(where + ": field 'data_offsets' must be an array [begin, end], got " + offs.dump());
  const auto b = as_nonneg_int(offs[0]), en = as_nonneg_int(offs[1]);
  if (!b || !en)
    throw InputError(where + ": field 'data_offsets' must hold two non-negative integers, got " + offs.dump());
  e.begin = *b;
  e.end = *en;
  if (e.begin > e.end)
    throw InputError(where + ": field 'data_offsets' " + offs.dump() + " has begin > end");
  if (e.end > data_size) {
    throw InputError(where + ": field 'data_offsets' " + offs.dump() + " ends past the data section (" +
                     std::to_string(data_size) + " bytes)");
  }
  uint64_t expected = 0;
  overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(e.dtype)), &expected);
  const uint64_t given = e.end - e.begin;
  if (overflow || expected != given) {
    throw InputError(where + ": field 'data_offsets' " + offs.dump() + " holds " + std::to_string(given) +
                     " bytes, expected " + (overflow ? std::string("more than 2^64") : std::to_string(expected)) +
                     " bytes for " + dtype_name + " " + shape.dump());
  }
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const nlohmann::json& j) {
  if (!j.is_object()) throw InputError(file + ": '__metadata__' is not a JSON object (" + std::string(j.type_name()) + ")");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string())
      throw InputError(file + ": '__metadata__' key '" + k + "' is not a string (" + std::string(v.type_name()) + ")");
    out[k] = v.get<std::string>();
  }
  return out;
}

// Sorted by begin: any non-empty range starting before the furthest end seen so far overlaps it.
void check_overlaps(const std::string& file, std::vector<Entry>& entries) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  const Entry* furthest = nullptr;
  for (const Entry& e : entries) {
    if (e.begin == e.end) continue;  // empty tensors occupy no bytes
    if (furthest && e.begin < furthest->end) {
      throw InputError(file + ": tensors '" + furthest->name + "' [" + std::to_string(furthest->begin) + ", " +
                       std::to_string(furthest->end) + ") and '" + e.name + "' [" + std::to_string(e.begin) +
                       ", " + std::to_string(e.end) + ") have overlapping data_offsets");
    }
    if (!furthest || e.end > furthest->end) furthest = &e;
  }
}

}  // namespace

std::string_view safetensors_dtype_name(DType t) {
  for (const auto& d : kDTypeNames)
    if (d.dtype == t) return d.name;
  throw std::invalid_argument("dtype " + std::string(dtype_name(t)) + " has no safetensors name");
}

std::optional<DType> safetensors_dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypeNames)
    if (d.name == name) return d.dtype;
  return std::nullopt;
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name() == name) return &t;
  return nullptr;
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  std::string msg = path.string() + ": no tensor named '" + name + "' (the file holds " +
                    std::to_string(tensors.size()) + " tensors";
  for (std::size_t i = 0; i < tensors.size() && i < 8; ++i) msg += (i ? ", '" : ": '") + tensors[i].name() + "'";
  if (tensors.size() > 8) msg += ", ...";
  throw InputError(msg + ")");
}

SafetensorsFile read_safetensors(const std::filesystem::path& path) { return read_safetensors(path, {}); }

SafetensorsFile read_safetensors(const std::filesystem::path& path, const std::function<bool(const std::string&)>& keep) {
  const std::string file = path.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw InputError(file + ": file does not exist or is not a regular file");
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(file + ": cannot read file size: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(file + ": cannot open file");
  if (file_size < 8)
    throw InputError(file + ": file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");

  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in) throw InputError(file + ": cannot read the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes) {
    throw InputError(file + ": header length " + std::to_string(header_len) + " is larger than the 100 MB limit");
  }
  if (header_len > file_size - 8) {
    throw InputError(file + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                     std::to_string(file_size) + " bytes)");
  }
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw InputError(file + ": cannot read the " + std::to_string(header_len) + "-byte header");

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(file + ": header is not valid JSON (byte " + std::to_string(e.byte) + "): " + e.what());
  }
  if (!j.is_object()) throw InputError(file + ": header is not a JSON object (" + std::string(j.type_name()) + ")");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  SafetensorsFile out;
  out.path = path;
  std::vector<Entry> entries;
  for (const auto& [name, v] : j.items()) {
    if (name == kMetadataKey) {
      out.metadata = parse_metadata(file, v);
      continue;
    }
    entries.push_back(parse_entry(file, name, v, data_size));
  }
  check_overlaps(file, entries);

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    if (keep && !keep(e.name)) continue;
    Tensor t(e.name, e.dtype, e.shape);
    if (t.nbytes() > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
      if (!in) throw InputError(file + ": tensor '" + e.name + "': cannot read its " + std::to_string(t.nbytes()) + " bytes");
    }
    out.tensors.push_back(std::move(t));
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<const Tensor*>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header[kMetadataKey] = std::move(m);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const Tensor* t : tensors) {
    if (!t) throw InputError(file + ": write_safetensors was given a null tensor");
    const std::string& name = t->name();
    if (name.empty() || name == kMetadataKey)
      throw InputError(file + ": cannot write a tensor named '" + name + "' (empty or reserved)");
    if (!seen.insert(name).second) throw InputError(file + ": tensor name '" + name + "' is given twice");
    std::string_view dt;
    try {
      dt = safetensors_dtype_name(t->dtype());
    } catch (const std::invalid_argument& e) {
      throw InputError(file + ": tensor '" + name + "': " + e.what());
    }
    const uint64_t n = t->nbytes();
    header[name] = {{"dtype", dt}, {"shape", t->shape()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';

  std::string bytes;
  bytes.reserve(8 + h.size() + offset);
  uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((len >> (8 * i)) & 0xff);
  bytes += h;
  for (const Tensor* t : tensors) bytes.append(static_cast<const char*>(t->raw()), t->nbytes());
  write_file_atomic(path, bytes);
}

Fp8Weight get_fp8_weight(const SafetensorsFile& file, const std::string& name) {
  const std::string f = file.path.string();
  const Tensor& w = file.get(name);
  if (w.dtype() != DType::e4m3 || w.rank() != 2) {
    throw InputError(f + ": tensor '" + name + "' should be an FP8 weight e4m3 [N, K], got " +
                     std::string(dtype_name(w.dtype())) + " " + shape_to_string(w.shape()));
  }
  const std::string sname = name + "_scale_inv";
  const Tensor* s = file.find(sname);
  if (!s) throw InputError(f + ": FP8 weight '" + name + "' has no inverse-scale tensor '" + sname + "'");
  const auto blocks = [](int64_t n) { return (n + kFp8WeightBlock - 1) / kFp8WeightBlock; };
  const Shape expected{blocks(w.dim(0)), blocks(w.dim(1))};
  if (s->dtype() != DType::f32 || s->shape() != expected) {
    throw InputError(f + ": tensor '" + sname + "' is " + std::string(dtype_name(s->dtype())) + " " +
                     shape_to_string(s->shape()) + ", expected f32 " + shape_to_string(expected) +
                     " (one scale per 128x128 block of weight '" + name + "' " + shape_to_string(w.shape()) + ")");
  }
  return {w, *s};
}

}  // namespace dsv3
