// The online-softmax state the MLA references share (reference/mla.cpp's attention cores and
// reference/mla_layer.cpp's attend): FP64 running max, sum and sum of p v over blocks of keys,
// and the ordered merge of two states (split-KV, as FlashDecoding and FlashMLA combine splits).
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

namespace dsv3::mla::detail {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Softmax {
  static constexpr double kNone = -std::numeric_limits<double>::infinity();
  Eigen::VectorXd max, sum;
  MatD acc;      // [rows, dv]: sum p v
  MatD acc_abs;  // [rows, dv]: sum p |v| when tracked (the magnitude check aid), else empty
  Softmax() = default;
  Softmax(Eigen::Index rows, Eigen::Index dv, bool magnitude = false)
      : max(Eigen::VectorXd::Constant(rows, kNone)), sum(Eigen::VectorXd::Zero(rows)), acc(MatD::Zero(rows, dv)),
        acc_abs(magnitude ? MatD::Zero(rows, dv) : MatD()) {}

  // s [rows, n] scaled scores (-Inf where masked), v [n, dv]. Overwrites s with exp(s - max).
  template <typename V>
  void add(MatD& s, const V& v) {
    for (Eigen::Index r = 0; r < s.rows(); ++r) {
      const double m = std::max(max(r), s.row(r).maxCoeff());
      if (m == kNone) {  // nothing visible yet
        s.row(r).setZero();
        continue;
      }
      const double keep = max(r) == kNone ? 0.0 : std::exp(max(r) - m);
      for (Eigen::Index j = 0; j < s.cols(); ++j) s(r, j) = std::exp(s(r, j) - m);  // exp(-Inf) = 0
      sum(r) = sum(r) * keep + s.row(r).sum();
      acc.row(r) *= keep;
      if (acc_abs.size()) acc_abs.row(r) *= keep;
      max(r) = m;
    }
    acc.noalias() += s * v;
    if (acc_abs.size()) acc_abs.noalias() += s * v.cwiseAbs();
  }

  // Folds in the state of later keys (same rows and width): the result is the state over both
  // key sets. Merging a fixed sequence of splits in a fixed order gives the same bits however
  // the splits were scheduled.
  void merge(const Softmax& later) {
    for (Eigen::Index r = 0; r < sum.size(); ++r) {
      const double m = std::max(max(r), later.max(r));
      if (m == kNone) continue;
      const double a = max(r) == kNone ? 0.0 : std::exp(max(r) - m);
      const double b = later.max(r) == kNone ? 0.0 : std::exp(later.max(r) - m);
      sum(r) = sum(r) * a + later.sum(r) * b;
      acc.row(r) = acc.row(r) * a + later.acc.row(r) * b;
      if (acc_abs.size()) acc_abs.row(r) = acc_abs.row(r) * a + later.acc_abs.row(r) * b;
      max(r) = m;
    }
  }

  bool empty(Eigen::Index r) const { return sum(r) == 0; }  // no visible key: out 0, lse +Inf
  double lse(Eigen::Index r) const { return empty(r) ? std::numeric_limits<double>::infinity() : max(r) + std::log(sum(r)); }
};

}  // namespace dsv3::mla::detail
