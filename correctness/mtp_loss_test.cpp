// The MTP training loss (reference/mtp_loss.hpp): a value computed by hand, the pooling over
// sequences, and named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "reference/mtp_loss.hpp"

namespace dsv3::mtp {
namespace {

const float kLn3 = static_cast<float>(std::log(3.0));

// One sequence t = [0, 1, 1, 0], vocabulary {0, 1}, D = 2, lambda 0.3.
// Depth 1 (targets t_{i+2}): position 0 -> t2 = 1, position 1 -> t3 = 0; both rows are
//   logits [0, ln 3], i.e. p = [1/4, 3/4]: -log p = ln(4/3) and ln 4, CE_1 = ln(16/3) / 2
//   = 0.8369882167858358. Position 2 has no target (t4 is past the end): its row [100, -100]
//   is ignored.
// Depth 2 (targets t_{i+3}): position 0 -> t3 = 0 with logits [0, 0]: CE_2 = ln 2 = 0.6931471805599453.
// L = 0.3 / 2 (CE_1 + CE_2) = 0.15 x 1.5301353973457811 = 0.22952030960186716.
// A target one token too near (t_{i+k}) would give CE_1 = ln(4/3) = 0.2877 and CE_2 = ln 2:
// L = 0.1471, so the value pins the alignment.
// Tolerance 1e-7: the logit ln 3 is stored as FP32 (relative error <= 2^-24, 6.5e-8 absolute),
// which moves each -log p by at most that much; everything else is FP64.
TEST(MtpLoss, TwoDepthsByHand) {
  const std::vector<std::vector<float>> logits = {{0, kLn3, 0, kLn3, 100, -100}, {0, 0}};
  const MtpLoss l = mtp_loss(logits, {0, 1, 1, 0}, 1, 2, 0.3);
  ASSERT_EQ(l.per_depth.size(), 2u);
  EXPECT_NEAR(l.per_depth[0], 0.8369882167858358, 1e-7);
  EXPECT_NEAR(l.per_depth[1], 0.6931471805599453, 1e-7);
  EXPECT_NEAR(l.total, 0.22952030960186716, 1e-7);
}

// Two sequences pool their targets into one mean; D = 1 gives lambda x CE_1 (the tiny LM's
// lambda x loss_mtp). Sequence 0 = [1, 0, 0]: position 0 -> t2 = 0 with [0, ln 3]: ln 4.
// Sequence 1 = [0, 0, 1]: position 0 -> t2 = 1 with [0, ln 3]: ln(4/3). Mean ln(16/3) / 2.
TEST(MtpLoss, SequencesPoolIntoOneMeanAndDepthOneIsLambdaTimesCe) {
  const std::vector<std::vector<float>> logits = {{0, kLn3, 7, 7, 0, kLn3, 7, 7}};  // [2, 2, 2]: the second rows have no target
  const MtpLoss l = mtp_loss(logits, {1, 0, 0, 0, 0, 1}, 2, 2, 0.1);
  EXPECT_NEAR(l.per_depth.at(0), 0.8369882167858358, 1e-7);  // as above: the FP32 ln 3
  EXPECT_DOUBLE_EQ(l.total, 0.1 * l.per_depth[0]);
}

std::string error_of(const std::vector<std::vector<float>>& logits, const std::vector<int32_t>& tokens, int64_t sequences, double lambda) {
  try {
    mtp_loss(logits, tokens, sequences, 2, lambda);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(MtpLoss, BadInputIsNamed) {
  // Depth 2 over 4 tokens needs 1 row; depth 1 needs 2 rows and gets 1.
  EXPECT_NE(error_of({{0, 0}, {0, 0}}, {0, 1, 1, 0}, 1, 0.3).find("depth 1 has 2 logits"), std::string::npos)
      << error_of({{0, 0}, {0, 0}}, {0, 1, 1, 0}, 1, 0.3);
  EXPECT_NE(error_of({{0, 0, 0, 0}}, {0, 1, 2, 0}, 1, 0.3).find("token 2 of sequence 0 at position 2"), std::string::npos);
  EXPECT_NE(error_of({{0, 0}, {0, 0}}, {0, 1, 1}, 1, 0.3).find("no target"), std::string::npos);
  EXPECT_NE(error_of({{0, 0, 0, 0}}, {0, 1, 1, 0}, 1, -1).find("lambda"), std::string::npos);
  EXPECT_NE(error_of({}, {0, 1, 1, 0}, 1, 0.3).find("no depth"), std::string::npos);
  EXPECT_NE(error_of({{0, 0, 0, 0}}, {0, 1, 1, 0, 1}, 2, 0.3).find("do not split"), std::string::npos);
}

}  // namespace
}  // namespace dsv3::mtp
