// Host tensors: contiguous, row-major, typed by DType, with canary guards around the data.
//
// Outputs are allocated by the checker, poisoned (NaN for float formats, 0xA5 bytes otherwise)
// and surrounded by guard bytes; a variant that leaves an element unwritten fails on the NaN, and
// one that writes out of bounds fails guards_intact().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace dsv3 {

using Shape = std::vector<int64_t>;

std::string shape_to_string(const Shape& s);  // "[4, 7168]"
int64_t shape_numel(const Shape& s);
std::vector<int64_t> unravel_index(int64_t flat, const Shape& s);

// Thrown for shape/dtype mismatches; the message names expected and given shapes.
struct ShapeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Tensor {
 public:
  static constexpr std::size_t kGuardBytes = 64;

  Tensor() = default;
  Tensor(std::string name, DType dtype, Shape shape);

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(static_cast<std::size_t>(i < 0 ? rank() + i : i)); }
  int64_t numel() const { return numel_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }

  void* raw() { return bytes() + kGuardBytes; }
  const void* raw() const { return bytes() + kGuardBytes; }
  template <class T> std::span<T> span() {
    check_elem_size(sizeof(T));
    return {static_cast<T*>(raw()), static_cast<std::size_t>(numel_)};
  }
  template <class T> std::span<const T> span() const {
    check_elem_size(sizeof(T));
    return {static_cast<const T*>(raw()), static_cast<std::size_t>(numel_)};
  }

  double get(int64_t i) const { return decode_element(dtype_, raw(), static_cast<std::size_t>(i)); }
  void poison();                 // NaN for float formats, 0xA5 bytes otherwise
  bool guards_intact() const;
  std::string describe() const;  // "codes e4m3 [4, 7168]"

 private:
  void check_elem_size(std::size_t s) const;
  std::byte* bytes() { return reinterpret_cast<std::byte*>(storage_.data()); }
  const std::byte* bytes() const { return reinterpret_cast<const std::byte*>(storage_.data()); }

  std::string name_;
  DType dtype_ = DType::f32;
  Shape shape_;
  int64_t numel_ = 0;
  std::vector<uint64_t> storage_;  // guard | data | guard, 8-byte aligned
};

// Throws ShapeError "<what>: expected <dtype> [a, b], got <dtype> [c, d]" on mismatch.
void require_tensor(const Tensor& t, DType dtype, const Shape& shape, const std::string& what);

// Name, dtype and shape of a tensor a case consumes or produces (no storage).
struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;
};
std::vector<Tensor> allocate(const std::vector<TensorSpec>& specs);
// The tensor of `ts` named `name`, or nullptr.
const Tensor* find_tensor(const std::vector<Tensor>& ts, const std::string& name);
// The same, for a tensor the caller's own code made (an aid, an output): std::logic_error
// "<what> '<name>' missing" when absent.
const Tensor& tensor_named(const std::vector<Tensor>& ts, const std::string& name, const std::string& what = "tensor");
// Bytes of every tensor the specs name (a case's fewest bytes moved when each is touched once).
double spec_bytes(const std::vector<TensorSpec>& specs);
// Checks count, names, dtypes and shapes; throws ShapeError naming `what`, the tensor, and both shapes.
void require_tensors(const std::vector<Tensor>& ts, const std::vector<TensorSpec>& specs, const std::string& what);

// Non-owning view of a contiguous tensor (for passing into kernels and codecs).
struct TensorView {
  DType dtype;
  Shape shape;
  void* data;
  static TensorView of(Tensor& t) { return {t.dtype(), t.shape(), t.raw()}; }
};

}  // namespace dsv3
