// FP8 block-scaled GEMMs: the CPU references (semantics and summation order in fp8_gemm.hpp).
//
// One engine serves the three layouts: a layout becomes a list of jobs (rows of A against one
// group's B), each job is cut into tasks of up to kRowTile rows x one 128-column block of N, and
// parallel_for runs the tasks. A task decodes its rows of A and its block of B to double once,
// then per K group lets Eigen's double GEMM form the exact group sums (see the header for why
// they are exact) and applies the scale step in the documented order.
#include "reference/fp8_gemm.hpp"

#include <Eigen/Core>

#include <array>
#include <cmath>
#include <stdexcept>

#include "core/parallel.hpp"

namespace dsv3::fp8gemm {
namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kRowTile = 128;

const std::array<double, 256>& e4m3_table() { return e4m3_values_f64(); }

}  // namespace

std::vector<float> scale_values(const Tensor& s) {
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  if (s.dtype() == DType::f32) {
    const auto src = s.span<const float>();
    std::copy(src.begin(), src.end(), v.begin());
  } else {
    const auto src = s.span<const uint8_t>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = ue8m0_to_f32(src[i]);
  }
  return v;
}

namespace {

// Rows [row0, row0 + rows) of A (absolute rows of a / sa / d) against group g of B.
struct Job {
  int64_t row0, rows, g;
};

// Validates the layout's index tensor and lists the jobs.
std::vector<Job> make_jobs(const Params& p, const std::vector<Tensor>& in) {
  std::vector<Job> jobs;
  if (p.layout == Layout::dense) {
    jobs.push_back({0, p.m, 0});
  } else if (p.layout == Layout::masked) {
    const auto counts = in.at(4).span<const int32_t>();
    for (int64_t g = 0; g < p.groups(); ++g) {
      const int32_t c = counts[static_cast<std::size_t>(g)];
      if (c < 0 || c > p.m)
        throw std::invalid_argument("fp8_gemm masked: counts[" + std::to_string(g) + "] = " + std::to_string(c) +
                                    " is outside [0, capacity " + std::to_string(p.m) + "] (tensor 'counts' i32 [" +
                                    std::to_string(p.groups()) + "])");
      if (c > 0) jobs.push_back({g * p.m, c, g});
    }
  } else {
    const auto gi = in.at(4).span<const int32_t>();
    const int64_t m = p.a_rows();
    for (int64_t b0 = 0; b0 < m; b0 += kMAlign) {
      const int64_t b1 = std::min(m, b0 + kMAlign);
      int64_t valid = 0, g = -1;
      for (int64_t r = b0; r < b1; ++r) {
        const int32_t v = gi[static_cast<std::size_t>(r)];
        const std::string where = "fp8_gemm contiguous: group_index[" + std::to_string(r) + "] = " + std::to_string(v);
        if (v < -1 || v >= p.groups())
          throw std::invalid_argument(where + " is outside [-1, " + std::to_string(p.groups()) + ")");
        if (v >= 0 && r - b0 != valid)
          throw std::invalid_argument(where + " follows a padding row (-1) in rows [" + std::to_string(b0) + ", " +
                                      std::to_string(b1) + "): padding must end each segment");
        if (v >= 0 && g >= 0 && v != g)
          throw std::invalid_argument(where + " but rows [" + std::to_string(b0) + ", " + std::to_string(b1) +
                                      ") began with group " + std::to_string(g) +
                                      ": each group's segment must be padded to a multiple of " +
                                      std::to_string(kMAlign) + " rows");
        if (v >= 0) { g = v; ++valid; }
      }
      if (valid > 0) jobs.push_back({b0, valid, g});
    }
  }
  return jobs;
}

}  // namespace

std::vector<RowRange> token_rows(const Params& p, const std::vector<Tensor>& in) {
  std::vector<RowRange> ranges;
  for (const Job& j : make_jobs(p, in)) {  // merge a group's consecutive 128-row blocks
    if (!ranges.empty() && ranges.back().g == j.g && ranges.back().row0 + ranges.back().rows == j.row0)
      ranges.back().rows += j.rows;
    else
      ranges.push_back({j.row0, j.rows, j.g});
  }
  return ranges;
}

namespace {

struct Task {
  int64_t row0, rows, g, n0, ncols;
};

std::vector<Task> make_tasks(const Params& p, const std::vector<Job>& jobs) {
  std::vector<Task> tasks;
  for (const Job& j : jobs)
    for (int64_t r = 0; r < j.rows; r += kRowTile)
      for (int64_t n0 = 0; n0 < p.n; n0 += kGroup)
        tasks.push_back({j.row0 + r, std::min(kRowTile, j.rows - r), j.g, n0, std::min(kGroup, p.n - n0)});
  return tasks;
}

// Decodes `rows` rows of K codes starting at `codes` into a double matrix.
void decode_rows(const uint8_t* codes, int64_t rows, int64_t k, MatD& out) {
  const auto& t = e4m3_table();
  out.resize(rows, k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) out(r, c) = t[codes[r * k + c]];
}

// What a pass computes (any subset).
struct Sinks {
  float* acc = nullptr;      // [a_rows, N] FP32 accumulators in the documented order
  double* f64 = nullptr;     // [a_rows, N] FP64 on the dequantized operands
  uint8_t* exact = nullptr;  // [a_rows, N] 1 where every FP32 step is provably exact (see check_aids)
};

// Returns the validated jobs, for callers that write token rows afterwards.
std::vector<Job> run_pass(const Params& p, const std::vector<Tensor>& in, const Sinks& sinks) {
  std::vector<Job> jobs = make_jobs(p, in);
  const std::vector<Task> tasks = make_tasks(p, jobs);
  const uint8_t* a = in.at(0).span<const uint8_t>().data();
  const uint8_t* b = in.at(2).span<const uint8_t>().data();
  const std::vector<float> sa = scale_values(in.at(1)), sb = scale_values(in.at(3));
  const int64_t k = p.k, kb = p.kb(), nb = p.nb(), n = p.n;
  parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t0, int64_t t1) {
    MatD ad, bd, prod;
    std::vector<float> acc;
    std::vector<double> e64;
    for (int64_t ti = t0; ti < t1; ++ti) {
      const Task& t = tasks[static_cast<std::size_t>(ti)];
      decode_rows(a + t.row0 * k, t.rows, k, ad);                    // [rows, K]
      decode_rows(b + (t.g * n + t.n0) * k, t.ncols, k, bd);         // [ncols, K]
      acc.assign(static_cast<std::size_t>(t.rows * t.ncols), 0.0f);
      e64.assign(acc.size(), 0.0);
      std::vector<uint8_t> exact(acc.size(), 1);
      const float* sbg = sb.data() + (t.g * nb + t.n0 / kGroup) * kb;  // this column block's scales
      for (int64_t g = 0; g < kb; ++g) {
        prod.noalias() = ad.middleCols(g * kGroup, kGroup) * bd.middleCols(g * kGroup, kGroup).transpose();
        for (int64_t i = 0; i < t.rows; ++i) {
          const float sai = sa[static_cast<std::size_t>((t.row0 + i) * kb + g)];
          const float s = sai * sbg[g];                          // RN32(sa * sb)
          const double s64 = static_cast<double>(sai) * static_cast<double>(sbg[g]);
          for (int64_t j = 0; j < t.ncols; ++j) {
            const std::size_t e = static_cast<std::size_t>(i * t.ncols + j);
            const double exact_sum = prod(i, j);
            const float ps = static_cast<float>(exact_sum) * s;  // RN32(RN32(p) * s)
            acc[e] = acc[e] + ps;                                // RN32(acc + .)
            e64[e] += exact_sum * s64;
            if (sinks.exact) {  // every FP32 step reproduces the exact (double) value
              exact[e] &= static_cast<double>(ps) == exact_sum * static_cast<double>(s) &&
                          static_cast<double>(acc[e]) == e64[e];
            }
          }
        }
      }
      for (int64_t i = 0; i < t.rows; ++i)
        for (int64_t j = 0; j < t.ncols; ++j) {
          const std::size_t e = static_cast<std::size_t>(i * t.ncols + j);
          const std::size_t o = static_cast<std::size_t>((t.row0 + i) * n + t.n0 + j);
          if (sinks.acc) sinks.acc[o] = acc[e];
          if (sinks.f64) sinks.f64[o] = e64[e];
          if (sinks.exact) sinks.exact[o] = exact[e];
        }
    }
  });
  return jobs;
}

}  // namespace

void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
  p.validate();
  require_tensors(in, input_specs(p), "fp8_gemm/ref " + p.to_string() + " inputs");
  require_tensors(out, output_specs(p), "fp8_gemm/ref " + p.to_string() + " outputs");
  const int64_t rows = p.a_rows(), n = p.n;
  std::vector<float> acc(static_cast<std::size_t>(rows * n), NAN);
  const std::vector<Job> jobs = run_pass(p, in, Sinks{acc.data(), nullptr, nullptr});
  const float* c = p.accumulate ? in.back().span<const float>().data() : nullptr;
  Tensor& d = out.at(0);
  for (const Job& j : jobs)  // only token rows are written
    for (int64_t r = j.row0; r < j.row0 + j.rows; ++r)
      for (int64_t col = 0; col < n; ++col) {
        const std::size_t o = static_cast<std::size_t>(r * n + col);
        const float v = c ? c[o] + acc[o] : acc[o];  // RN32(C + acc)
        if (p.out == DType::bf16) d.span<uint16_t>()[o] = f32_to_bf16(v);
        else d.span<float>()[o] = v;
      }
}

std::vector<double> f64_dequant(const Params& p, const std::vector<Tensor>& in) {
  p.validate();
  require_tensors(in, input_specs(p), "fp8_gemm f64_dequant " + p.to_string() + " inputs");
  std::vector<double> d(static_cast<std::size_t>(p.a_rows() * p.n), NAN);
  run_pass(p, in, Sinks{nullptr, d.data(), nullptr});
  if (p.accumulate) {
    const auto c = in.back().span<const float>();
    for (std::size_t i = 0; i < d.size(); ++i) d[i] += c[i];  // NaN rows stay NaN
  }
  return d;
}

std::vector<double> f64_original(const Params& p, const Originals& o) {
  // Same jobs as the FP8 inputs (token rows only); the job list needs the index tensor, so the
  // row ranges are rebuilt from p.rows here.
  p.validate();
  std::vector<Job> jobs;
  if (p.layout == Layout::dense) {
    jobs.push_back({0, p.m, 0});
  } else {
    int64_t row0 = 0;
    for (int64_t g = 0; g < p.groups(); ++g) {
      const int64_t r = p.rows[static_cast<std::size_t>(g)];
      if (r > 0) jobs.push_back({p.layout == Layout::masked ? g * p.m : row0, r, g});
      row0 += (r + kMAlign - 1) / kMAlign * kMAlign;
    }
  }
  const std::vector<Task> tasks = make_tasks(p, jobs);
  const int64_t k = p.k, n = p.n;
  std::vector<double> d(static_cast<std::size_t>(p.a_rows() * n), NAN);
  parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t0, int64_t t1) {
    MatD xd, wd, prod;
    for (int64_t ti = t0; ti < t1; ++ti) {
      const Task& t = tasks[static_cast<std::size_t>(ti)];
      xd.resize(t.rows, k);
      wd.resize(t.ncols, k);
      for (int64_t i = 0; i < t.rows; ++i)
        for (int64_t c = 0; c < k; ++c) xd(i, c) = o.x.get((t.row0 + i) * k + c);
      for (int64_t j = 0; j < t.ncols; ++j)
        for (int64_t c = 0; c < k; ++c) wd(j, c) = o.w.get((t.g * n + t.n0 + j) * k + c);
      prod.noalias() = xd * wd.transpose();
      for (int64_t i = 0; i < t.rows; ++i)
        for (int64_t j = 0; j < t.ncols; ++j) d[static_cast<std::size_t>((t.row0 + i) * n + t.n0 + j)] = prod(i, j);
    }
  });
  return d;
}

std::vector<Tensor> check_aids(const Params& p, const std::vector<Tensor>& in) {
  require_tensors(in, input_specs(p), "fp8_gemm check aids " + p.to_string() + " inputs");
  const int64_t rows = p.a_rows(), n = p.n, k = p.k, kb = p.kb(), nb = p.nb(), groups = p.groups();
  const std::vector<float> sa = scale_values(in.at(1)), sb = scale_values(in.at(3));
  const auto& table = e4m3_table();
  // U[m, g] = sa[m, g] ||a_{m,g}||,  V[G][n, g] = sb[n/128, g] ||b_{n,g}||;  magnitude = U V^T.
  auto norms = [&](const uint8_t* codes, int64_t r) {
    std::vector<double> v(static_cast<std::size_t>(kb));
    for (int64_t g = 0; g < kb; ++g) {
      double s = 0;
      for (int64_t c = g * kGroup; c < (g + 1) * kGroup; ++c) s += table[codes[r * k + c]] * table[codes[r * k + c]];
      v[static_cast<std::size_t>(g)] = std::sqrt(s);
    }
    return v;
  };
  const uint8_t* a = in.at(0).span<const uint8_t>().data();
  const uint8_t* b = in.at(2).span<const uint8_t>().data();
  MatD u(rows, kb);
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const std::vector<double> na = norms(a, r);
      for (int64_t g = 0; g < kb; ++g)
        u(r, g) = std::fabs(static_cast<double>(sa[static_cast<std::size_t>(r * kb + g)])) * na[static_cast<std::size_t>(g)];
    }
  }, 64);
  std::vector<MatD> v(static_cast<std::size_t>(groups), MatD(n, kb));
  parallel_for(groups * n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / n, col = i % n;
      const std::vector<double> nbv = norms(b + g * n * k, col);
      for (int64_t q = 0; q < kb; ++q)
        v[static_cast<std::size_t>(g)](col, q) =
            std::fabs(static_cast<double>(sb[static_cast<std::size_t>((g * nb + col / kGroup) * kb + q)])) *
            nbv[static_cast<std::size_t>(q)];
    }
  }, 64);
  const Shape out_shape = output_specs(p).at(0).shape;  // [a_rows, N], masked [G, Mc, N]: same flat order
  Tensor mag("magnitude:d", DType::f32, out_shape);
  auto ms = mag.span<float>();
  std::fill(ms.begin(), ms.end(), 0.0f);
  for (const Job& j : make_jobs(p, in)) {
    const MatD block = u.middleRows(j.row0, j.rows) * v[static_cast<std::size_t>(j.g)].transpose();
    for (int64_t i = 0; i < j.rows; ++i)
      for (int64_t c = 0; c < n; ++c)  // rounded up: a magnitude must never shrink the bound
        ms[static_cast<std::size_t>((j.row0 + i) * n + c)] = std::nextafter(static_cast<float>(block(i, c)), INFINITY);
  }
  std::vector<Tensor> aids;
  aids.push_back(std::move(mag));
  if (p.dist == Dist::small_ints) {
    Tensor exact("exact:d", DType::u8, out_shape);
    auto es = exact.span<uint8_t>();
    std::fill(es.begin(), es.end(), 0);
    std::vector<float> acc(p.accumulate ? static_cast<std::size_t>(rows * n) : 0, 0.0f);
    run_pass(p, in, Sinks{p.accumulate ? acc.data() : nullptr, nullptr, es.data()});
    if (p.accumulate) {  // C + acc must be exact too
      const auto c = in.back().span<const float>();
      for (std::size_t i = 0; i < acc.size(); ++i)
        es[i] &= static_cast<double>(c[i] + acc[i]) == static_cast<double>(c[i]) + static_cast<double>(acc[i]);
    }
    // Identical FP32 values round to identical bf16 values, so the mask holds for bf16 output too.
    aids.push_back(std::move(exact));
  }
  return aids;
}

}  // namespace dsv3::fp8gemm
