// The own FP8 GEMM kernel's tile schedule (optimized/fp8_gemm_tiles.hpp), checked on the host where
// every tile can be enumerated: over the three layouts, ragged and empty groups and every block
// configuration, the tiles the kernel works on cover each token row of D exactly once per column
// block, read the right group's weight rows, and skip only tiles without tokens. The kernel itself
// is checked against the reference on a GPU (GpuCheck_fp8_gemm_wgmma).
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "optimized/fp8_gemm_tiles.hpp"
#include "reference/fp8_gemm.hpp"

namespace dsv3::fp8gemm {
namespace {

Params grouped(Layout l, int64_t cap, std::vector<int64_t> rows, int64_t n) {
  Params p;
  p.layout = l;
  p.m = cap;
  p.rows = std::move(rows);
  p.n = n;
  p.k = 128;
  return p;
}

Params dense(int64_t m, int64_t n) {
  Params p;
  p.m = m;
  p.n = n;
  p.k = 128;
  return p;
}

// Runs the schedule as the kernel does and checks its coverage against the reference's token rows.
void check_schedule(const Params& p, int bm, int bn) {
  SCOPED_TRACE(p.to_string() + " blocks " + std::to_string(bm) + "x" + std::to_string(bn));
  const std::vector<Tensor> in = make_inputs(p);
  const int32_t* index = p.layout == Layout::dense ? nullptr : in[4].span<const int32_t>().data();
  std::map<int64_t, int64_t> group_of_row;  // token rows of A and D -> group
  for (const RowRange& r : token_rows(p, in))
    for (int64_t i = 0; i < r.rows; ++i) group_of_row[r.row0 + i] = r.g;

  const tiles::Grid g = tiles::grid_of(p, bm, bn);
  const int64_t nblk = tiles::n_blocks(g);
  std::set<std::pair<int64_t, int64_t>> seen_tiles;
  std::map<std::pair<int64_t, int64_t>, int> covered;  // (row, n block) -> times stored
  for (int64_t t = 0; t < tiles::tile_count(g); ++t) {
    const tiles::Tile tile = tiles::tile_at(g, t);
    ASSERT_LT(tile.m_block, tiles::m_blocks(g));
    ASSERT_LT(tile.n_block, nblk);
    ASSERT_TRUE(seen_tiles.insert({tile.m_block, tile.n_block}).second) << "tile index " << t << " repeats a tile";
    const tiles::TileRows tr = tiles::resolve(g, tile, index);
    int64_t tokens = 0;
    for (int64_t r = 0; tr.work && r < bm; ++r) {
      const int64_t row = tr.a_row0 + r;
      if (!tiles::is_token(g, tr, index, row)) continue;
      ++tokens;
      ASSERT_TRUE(group_of_row.count(row)) << "row " << row << " is stored but is not a token";
      EXPECT_EQ(group_of_row[row], tr.group) << "row " << row;
      ++covered[{row, tile.n_block}];
    }
    if (tr.work) {
      EXPECT_GT(tokens, 0) << "tile " << t << " does work without a token row";
      EXPECT_EQ(tr.b_row0, tr.group * p.n + tile.n_block * bn);
      EXPECT_EQ(tr.col0, tile.n_block * bn);
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen_tiles.size()), tiles::m_blocks(g) * nblk);
  // Skipped tiles lose nothing: every token row is stored once per column block, nothing else is.
  for (const auto& [row, grp] : group_of_row)
    for (int64_t nb = 0; nb < nblk; ++nb) EXPECT_EQ((covered[{row, nb}]), 1) << "row " << row << " n block " << nb;
  EXPECT_EQ(covered.size(), group_of_row.size() * static_cast<std::size_t>(nblk));
}

std::vector<Params> schedule_cases() {
  return {dense(1, 576),
          dense(65, 2112),
          dense(130, 256),
          dense(1100, 576),  // more than one band of 8 m blocks, a partial last band
          grouped(Layout::contiguous, 0, {1, 0, 130, 128}, 576),
          grouped(Layout::contiguous, 0, {200, 57}, 256),
          grouped(Layout::contiguous, 0, {0, 0}, 256),  // every group empty
          grouped(Layout::contiguous, 0, {700, 300, 1, 129, 0, 64, 900, 5, 1000}, 384),
          grouped(Layout::masked, 64, {64, 0, 1, 33}, 576),
          grouped(Layout::masked, 130, {130, 7}, 256),
          grouped(Layout::masked, 96, {5, 96}, 2112),
          grouped(Layout::masked, 256, {0, 256, 129, 0, 3, 250, 64, 65, 128}, 640)};
}

TEST(Fp8GemmTiles, EveryTokenRowIsStoredOncePerColumnBlock) {
  for (const Params& p : schedule_cases())
    for (int bm : {64, 128})
      for (int bn : {64, 128}) check_schedule(p, bm, bn);
}

TEST(Fp8GemmTiles, BandsVisitEightRowBlocksBeforeTheNextBand) {
  tiles::Grid g;
  g.rows = 20 * 128;  // 20 m blocks: bands of 8, 8, 4
  g.n = 3 * 128;
  const std::vector<std::pair<int64_t, int64_t>> first = {{0, 0}, {1, 0}, {7, 0}, {0, 1}};
  for (int64_t t : {0, 1, 7, 8}) {
    const tiles::Tile tile = tiles::tile_at(g, t);
    const auto want = first[static_cast<std::size_t>(t == 7 ? 2 : t == 8 ? 3 : t)];
    EXPECT_EQ(tile.m_block, want.first) << t;
    EXPECT_EQ(tile.n_block, want.second) << t;
  }
  const tiles::Tile last_band = tiles::tile_at(g, 2 * 8 * 3 + 5);  // third band (4 m blocks): 5 = n block 1, m 17
  EXPECT_EQ(last_band.m_block, 17);
  EXPECT_EQ(last_band.n_block, 1);
}

TEST(Fp8GemmTiles, BlocksFollowTheRowsAndFillTheMultiprocessors) {
  const auto blocks = [](const Params& p) { return tiles::choose_blocks(tiles::grid_of(p, 128, 128), 132); };
  EXPECT_EQ(blocks(dense(1, 7168)).block_m, 64);     // decode: one consumer warpgroup
  EXPECT_EQ(blocks(dense(1, 7168)).block_n, 64);     // 56 tiles of 128 columns would idle 76 SMs
  EXPECT_EQ(blocks(dense(4096, 7168)).block_m, 128);
  EXPECT_EQ(blocks(dense(4096, 7168)).block_n, 128);
  EXPECT_EQ(blocks(grouped(Layout::masked, 64, {64, 1}, 4096)).block_m, 64);
  EXPECT_EQ(blocks(grouped(Layout::masked, 256, {200, 1}, 4096)).block_m, 128);
  EXPECT_EQ(blocks(grouped(Layout::contiguous, 0, {1, 2}, 4096)).block_m, 128);  // segments are 128-aligned
}

}  // namespace
}  // namespace dsv3::fp8gemm
