// core/device_guard.hpp: the in-flight marker, the quarantine and the watchdog that keep one faulty
// GPU kernel from costing a whole run. Everything here runs without a GPU: a sticky CUDA error
// itself (cuda_context_error) needs one, and device-run.sh is where that path first runs.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/device_guard.hpp"
#include "core/json_file.hpp"

namespace dsv3 {
namespace {

// Not per process: a death test's child (threadsafe style) runs the test body again and must name
// the same files as its parent.
std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "dsv3_device_guard_test";
  std::filesystem::create_directories(dir);
  return dir / name;
}

TEST(DeviceGuard, VariantOfAnItemIsItsFirstTwoParts) {
  EXPECT_EQ(guard::variant_of("mla/decode/b=1 h=128"), "mla/decode");
  EXPECT_EQ(guard::variant_of("fp8_gemm/wgmma/dense m=65/n=576"), "fp8_gemm/wgmma");  // a case id may hold '/'
  EXPECT_EQ(guard::variant_of("study/fp8_accum_hardware"), "study/fp8_accum_hardware");
  EXPECT_EQ(guard::variant_of("alone"), "alone");
}

TEST(DeviceGuard, ScopeWritesTheMarkerAndRemovesItWhenDone) {
  const auto marker = scratch("scope.json");
  guard::configure(marker, 0);
  {
    guard::Scope s("mla/decode/b=1", "check");
    ASSERT_TRUE(std::filesystem::exists(marker));
    const nlohmann::json j = load_json_file(marker);
    EXPECT_EQ(j.value("item", ""), "mla/decode/b=1");
    EXPECT_EQ(j.value("phase", ""), "check");
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
  {  // an exception leaving the scope is not a crash: the marker goes too
    try {
      guard::Scope s("mla/decode/b=2", "bench");
      throw std::runtime_error("kernel error");
    } catch (const std::runtime_error&) {
    }
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
  guard::configure({}, 0);
}

TEST(DeviceGuard, StaleMarkerIsReadOnceAndRemoved) {
  const auto marker = scratch("stale.json");
  EXPECT_FALSE(guard::take_stale_marker(marker).has_value());
  write_json_atomic(marker, {{"item", "moe/cuda/t=7"}, {"phase", "check"}, {"utc", "x"}});
  const auto got = guard::take_stale_marker(marker);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->value("item", ""), "moe/cuda/t=7");
  EXPECT_FALSE(std::filesystem::exists(marker));
  EXPECT_FALSE(guard::take_stale_marker(marker).has_value());
  // A marker cut short while written still counts: the item is unknown, and it says why.
  std::ofstream(marker) << "{\"item\": \"moe/cu";
  const auto cut = guard::take_stale_marker(marker);
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->value("item", ""), "unknown");
  EXPECT_NE(cut->value("why", "").find("unreadable marker"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(DeviceGuard, QuarantinedVariantIsSkippedWithTheReason) {
  EXPECT_EQ(guard::cuda_skip_reason("guard_test/never"), "");
  guard::quarantine("guard_test/bad", "guard_test/bad/case 3: no progress for 120 s");
  EXPECT_EQ(guard::quarantine_reason("guard_test/bad"), "guard_test/bad/case 3: no progress for 120 s");
  EXPECT_EQ(guard::cuda_skip_reason("guard_test/bad"), "quarantined: guard_test/bad/case 3: no progress for 120 s");
  EXPECT_EQ(guard::cuda_skip_reason("guard_test/other"), "");  // only that variant
}

TEST(DeviceGuard, AFailureWithAWorkingContextIsNotALoss) {
  // cuda_context_error() is "" while the context works, and always without a device: a variant
  // that fails cleanly (a mismatch, a refused launch) does not make later cases skip.
  EXPECT_FALSE(guard::note_failure("guard_test/x/case"));
  EXPECT_EQ(guard::context_lost(), "");
}

// The watchdog ends a process whose scope makes no progress, with exit status 75, and leaves the
// marker with the reason for the resumed run. A death test: it runs in a child process.
TEST(DeviceGuardDeathTest, WatchdogEndsAHungScopeWithExit75) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto marker = scratch("hang.json");
  std::filesystem::remove(marker);
  EXPECT_EXIT(
      {
        guard::configure(marker, 1.0);
        guard::Scope s("fp8_gemm/wgmma/dense m=65", "check");
        std::this_thread::sleep_for(std::chrono::seconds(10));  // a kernel that never returns
      },
      ::testing::ExitedWithCode(guard::kRestartExit), "fp8_gemm/wgmma/dense m=65: no progress for [0-9]+ s");
  ASSERT_TRUE(std::filesystem::exists(marker));
  const nlohmann::json j = load_json_file(marker);
  EXPECT_EQ(j.value("item", ""), "fp8_gemm/wgmma/dense m=65");
  EXPECT_NE(j.value("why", "").find("a hang in its GPU code?"), std::string::npos);
  std::filesystem::remove(marker);
}

// Progress (touch) keeps a long but live scope from being stopped.
TEST(DeviceGuardDeathTest, TouchKeepsALiveScopeRunning) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        guard::configure({}, 1.0);
        {
          guard::Scope s("bench/item/x", "bench");
          for (int i = 0; i < 8; ++i) {  // 2.4 s in all, 0.3 s between touches
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            s.touch();
          }
        }
        std::this_thread::sleep_for(std::chrono::seconds(2));  // no open scope: nothing to time
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace dsv3
