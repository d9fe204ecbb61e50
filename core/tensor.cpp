#include "core/tensor.hpp"

#include <cstring>
#include <limits>
#include <sstream>

namespace dsv3 {
namespace {
constexpr unsigned char kGuardByte = 0x5A;
constexpr unsigned char kPoisonByte = 0xA5;
}  // namespace

std::string shape_to_string(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw ShapeError("negative dimension in shape " + shape_to_string(s));
    n *= d;
  }
  return n;
}

std::vector<int64_t> unravel_index(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (std::size_t i = s.size(); i-- > 0;) {
    idx[i] = s[i] ? flat % s[i] : 0;
    flat = s[i] ? flat / s[i] : 0;
  }
  return idx;
}

Tensor::Tensor(std::string name, DType dtype, Shape shape)
    : name_(std::move(name)), dtype_(dtype), shape_(std::move(shape)), numel_(shape_numel(shape_)) {
  const std::size_t total = 2 * kGuardBytes + nbytes();
  storage_.assign((total + 7) / 8, 0);
  std::memset(bytes(), kGuardByte, kGuardBytes);
  std::memset(bytes() + kGuardBytes + nbytes(), kGuardByte, storage_.size() * 8 - kGuardBytes - nbytes());
}

void Tensor::poison() {
  auto* p = static_cast<unsigned char*>(raw());
  switch (dtype_) {
    case DType::f32: for (auto& v : span<float>()) v = std::numeric_limits<float>::quiet_NaN(); break;
    case DType::bf16: for (auto& v : span<uint16_t>()) v = 0x7fc0; break;
    case DType::f16: for (auto& v : span<uint16_t>()) v = 0x7e00; break;
    case DType::e4m3: case DType::e5m2: std::memset(p, 0x7f, nbytes()); break;
    case DType::ue8m0: std::memset(p, 0xff, nbytes()); break;
    default: std::memset(p, kPoisonByte, nbytes());
  }
}

bool Tensor::guards_intact() const {
  const std::byte* b = bytes();
  const std::size_t tail = storage_.size() * 8 - kGuardBytes - nbytes();
  for (std::size_t i = 0; i < kGuardBytes; ++i)
    if (b[i] != std::byte{kGuardByte}) return false;
  for (std::size_t i = 0; i < tail; ++i)
    if (b[kGuardBytes + nbytes() + i] != std::byte{kGuardByte}) return false;
  return true;
}

std::string Tensor::describe() const {
  return name_ + " " + std::string(dtype_name(dtype_)) + " " + shape_to_string(shape_);
}

void Tensor::check_elem_size(std::size_t s) const {
  if (s != dtype_size(dtype_))
    throw ShapeError("tensor '" + name_ + "' holds " + std::string(dtype_name(dtype_)) +
                     " elements, accessed with an element type of " + std::to_string(s) + " bytes");
}

void require_tensor(const Tensor& t, DType dtype, const Shape& shape, const std::string& what) {
  if (t.dtype() != dtype || t.shape() != shape) {
    throw ShapeError(what + ": expected " + std::string(dtype_name(dtype)) + " " +
                     shape_to_string(shape) + ", got " + std::string(dtype_name(t.dtype())) + " " +
                     shape_to_string(t.shape()));
  }
}

const Tensor* find_tensor(const std::vector<Tensor>& ts, const std::string& name) {
  for (const Tensor& t : ts)
    if (t.name() == name) return &t;
  return nullptr;
}

const Tensor& tensor_named(const std::vector<Tensor>& ts, const std::string& name, const std::string& what) {
  if (const Tensor* t = find_tensor(ts, name)) return *t;
  throw std::logic_error(what + " '" + name + "' missing");
}

double spec_bytes(const std::vector<TensorSpec>& specs) {
  double b = 0;
  for (const TensorSpec& s : specs) b += static_cast<double>(shape_numel(s.shape)) * static_cast<double>(dtype_size(s.dtype));
  return b;
}

std::vector<Tensor> allocate(const std::vector<TensorSpec>& specs) {
  std::vector<Tensor> out;
  out.reserve(specs.size());
  for (const auto& s : specs) out.emplace_back(s.name, s.dtype, s.shape);
  return out;
}

void require_tensors(const std::vector<Tensor>& ts, const std::vector<TensorSpec>& specs, const std::string& what) {
  if (ts.size() != specs.size())
    throw ShapeError(what + ": expected " + std::to_string(specs.size()) + " tensors, got " + std::to_string(ts.size()));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (ts[i].name() != specs[i].name)
      throw ShapeError(what + ": tensor " + std::to_string(i) + " should be '" + specs[i].name + "', got '" +
                       ts[i].name() + "'");
    require_tensor(ts[i], specs[i].dtype, specs[i].shape, what + " '" + specs[i].name + "'");
  }
}

}  // namespace dsv3
