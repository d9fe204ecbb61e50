// The tile schedule of the own FP8 GEMM kernel (optimized/fp8_gemm_wgmma.cu), as plain functions
// that the kernel runs on the device and correctness/fp8_gemm_tiles_test.cpp checks on the host.
//
// Output tiles are block_m rows x block_n columns of D. A persistent grid of CTAs walks the tile
// indices t = blockIdx.x, + gridDim.x, ...; index t maps to (m block, n block) in bands of kBandM
// m blocks (all n blocks of a band before the next band), so the CTAs in flight share a few rows of
// A and the weight columns they read, which stay in L2.
//   dense       m blocks over the M rows.
//   contiguous  m blocks over all of A's rows (segments padded to 128 = kMAlign, block_m divides
//               it): a block's group is group_index of its first row; a first row of -1 (padding)
//               skips the tile; inside the tile, rows whose group_index is not the group are not
//               tokens (padding after the segment).
//   masked      per group, ceil(Mc / block_m) m blocks over its capacity; a tile starting at or past
//               counts[g] is skipped (no work for CUDA graphs to resize), rows at or past the count
//               are not tokens.
// Every CTA computes the same skips from the same index tensor, so the producer and consumer
// warps of a CTA agree on the tiles without talking.
#pragma once

#include <cstdint>

#include "reference/fp8_gemm.hpp"

#ifndef DSV3_HD
#ifdef __CUDACC__
#define DSV3_HD __host__ __device__
#else
#define DSV3_HD
#endif
#endif

namespace dsv3::fp8gemm::tiles {

constexpr int kBandM = 8;
enum LayoutCode : int { kDense = 0, kContiguous = 1, kMasked = 2 };  // fp8gemm::Layout's values

struct Grid {
  int layout = kDense;
  int64_t rows = 0;    // dense: M; contiguous: rows of A (padded segments); masked: capacity Mc
  int64_t n = 0;       // columns of D
  int64_t groups = 1;  // G (dense: 1)
  int block_m = 128, block_n = 128;
};

// The grid of a case (the host's side): rows per group as the kernel walks them.
inline Grid grid_of(const Params& p, int block_m, int block_n) {
  Grid g;
  g.layout = static_cast<int>(p.layout);
  g.rows = p.layout == Layout::contiguous ? p.a_rows() : p.m;  // masked: the capacity Mc
  g.n = p.n;
  g.groups = p.groups();
  g.block_m = block_m;
  g.block_n = block_n;
  return g;
}

DSV3_HD inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
DSV3_HD inline int64_t m_blocks_per_group(const Grid& g) { return ceil_div(g.rows, g.block_m); }
DSV3_HD inline int64_t m_blocks(const Grid& g) {
  return g.layout == kMasked ? g.groups * m_blocks_per_group(g) : m_blocks_per_group(g);
}
DSV3_HD inline int64_t n_blocks(const Grid& g) { return ceil_div(g.n, g.block_n); }
DSV3_HD inline int64_t tile_count(const Grid& g) { return m_blocks(g) * n_blocks(g); }

struct Tile {
  int64_t m_block, n_block;
};
DSV3_HD inline Tile tile_at(const Grid& g, int64_t t) {
  const int64_t mb = m_blocks(g), band = kBandM * n_blocks(g);
  const int64_t first = t / band * kBandM;
  const int64_t band_m = mb - first < kBandM ? mb - first : kBandM;
  const int64_t in = t % band;
  return {first + in % band_m, in / band_m};
}

// A tile resolved against the index tensor (contiguous: group_index [rows]; masked: counts [G];
// dense: unused). Row r of the tile (0 <= r < block_m) is A's and D's row a_row0 + r, a token iff
// a_row0 + r < row_end and, for contiguous, group_index[a_row0 + r] == group. B's rows (the weight
// of the group) start at b_row0 of the [G * N, K] matrix.
struct TileRows {
  bool work = false;   // false: the tile has no token rows, skip it
  int64_t group = 0;
  int64_t a_row0 = 0, row_end = 0;
  int64_t b_row0 = 0, col0 = 0;
};
DSV3_HD inline TileRows resolve(const Grid& g, Tile tile, const int32_t* index) {
  TileRows r;
  r.col0 = tile.n_block * g.block_n;
  if (g.layout == kMasked) {
    const int64_t per = m_blocks_per_group(g);
    r.group = tile.m_block / per;
    const int64_t m0 = tile.m_block % per * g.block_m;
    int64_t count = index[r.group];
    count = count < 0 ? 0 : (count > g.rows ? g.rows : count);
    r.a_row0 = r.group * g.rows + m0;
    r.row_end = r.group * g.rows + count;
    r.work = m0 < count;
  } else {
    r.a_row0 = tile.m_block * g.block_m;
    r.row_end = g.rows;
    r.group = g.layout == kContiguous ? index[r.a_row0] : 0;
    r.work = r.group >= 0;
  }
  r.b_row0 = r.group * g.n + r.col0;
  return r;
}
DSV3_HD inline bool is_token(const Grid& g, const TileRows& r, const int32_t* index, int64_t a_row) {
  return a_row < r.row_end && (g.layout != kContiguous || index[a_row] == r.group);
}

// Block sizes for a problem on `sms` multiprocessors: 64-row blocks (one consumer warpgroup) when
// the rows per group fit in 64 (decode), else 128 (two); 64 columns when 128-column tiles would
// leave multiprocessors idle, else 128.
struct Blocks {
  int block_m, block_n;
};
inline Blocks choose_blocks(Grid g, int sms) {
  const bool small = g.layout != kContiguous && g.rows <= 64;
  g.block_m = small ? 64 : 128;
  g.block_n = 128;
  if (tile_count(g) < sms) g.block_n = 64;
  return {g.block_m, g.block_n};
}

}  // namespace dsv3::fp8gemm::tiles
