// The split-KV plan of the MLA decode kernel (optimized/mla_decode.cu), as plain functions that
// the kernel's plan_splits runs on the device and correctness/mla_test.cpp checks on the host.
//
// Sequence b of length L_b has x_b = ceil(L_b / 64) pages. The pages of all sequences are cut into
// work items of at most `size` pages, size = ceil(sum x_b / target), so about `target` items
// (one CTA per item and 64 query rows: target = SMs * waves / row blocks) cover the batch:
// sequence b gets max(1, ceil(x_b / size)) splits (an empty sequence one, which writes out 0 and
// lse +Inf), split k of n covering pages [x k / n, x (k + 1) / n). The item count is at most
// B + target (sum ceil(x_b / size) <= sum x_b / size + B), a bound the host sizes buffers and the
// grid by before the device knows the lengths.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define DSV3_HD __host__ __device__
#else
#define DSV3_HD
#endif

namespace dsv3::mla::plan {

constexpr int kPageTokens = 64;

DSV3_HD inline int pages_of(int len) { return ((len > 0 ? len : 0) + kPageTokens - 1) / kPageTokens; }
DSV3_HD inline int split_size(int64_t total_pages, int target) {
  const int64_t s = (total_pages + target - 1) / target;
  return s > 1 ? static_cast<int>(s) : 1;
}
DSV3_HD inline int split_count(int pages, int size) {
  const int n = (pages + size - 1) / size;
  return n > 1 ? n : 1;
}
// First page of split k of n over `pages` pages (split k ends where split k + 1 begins).
DSV3_HD inline int split_begin(int pages, int n, int k) {
  return static_cast<int>(static_cast<int64_t>(pages) * k / n);
}
// Items the plan aims at: one wave of `waves` CTAs per SM, each CTA one item and one row block.
inline int split_target(int sms, int waves, int row_blocks) {
  const int t = sms * waves / row_blocks;
  return t > 1 ? t : 1;
}
inline int max_items(int batch, int target) { return batch + target; }

}  // namespace dsv3::mla::plan
