// GoogleTest driver. Registers one test per (component, variant != "ref", eval case) from the
// registry, so correctness/<component>_test.cpp holds only what is specific to a component.
// Suites: CpuCheck_<component>_<variant> for CPU variants, GpuCheck_<component>_<variant> for
// CUDA variants (ctest label gpu; they GTEST_SKIP with the reason when no GPU is present).
#include <gtest/gtest.h>

#include <string>

#include "core/checker.hpp"
#include "core/registry.hpp"

namespace {

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

class CheckTest : public testing::Test {
 public:
  CheckTest(const dsv3::Component* comp, const dsv3::Variant* v, dsv3::Case c)
      : comp_(comp), v_(v), case_(std::move(c)) {}
  void TestBody() override {
    dsv3::Checker checker;
    const dsv3::CaseResult r = checker.check(*comp_, *v_, case_);
    if (r.status == dsv3::Status::skip) GTEST_SKIP() << r.reason;
    for (const auto& o : r.outputs) {
      EXPECT_TRUE(o.pass) << case_.id << " / " << o.name << " (" << o.tolerance << "): " << o.message
                          << "; max_abs " << o.max_abs << ", max_rel " << o.max_rel;
    }
    EXPECT_EQ(r.status, dsv3::Status::pass) << case_.id << ": " << r.reason;
  }

 private:
  const dsv3::Component* comp_;
  const dsv3::Variant* v_;
  dsv3::Case case_;
};

void register_check_tests() {
  auto& reg = dsv3::Registry::instance();
  for (const auto& comp : reg.components()) {
    const std::vector<dsv3::Case> cases = comp.eval_cases();
    for (const dsv3::Variant* v : reg.variants(comp.name)) {
      if (v->name == "ref") continue;  // the reference is tested by its own property tests
      const std::string suite = std::string(v->backend == dsv3::Backend::cuda ? "GpuCheck_" : "CpuCheck_") +
                                sanitize(comp.name) + "_" + sanitize(v->name);
      for (const auto& c : cases) {
        testing::RegisterTest(suite.c_str(), sanitize(c.id).c_str(), nullptr, nullptr, __FILE__, __LINE__,
                              [&comp, v, c]() -> testing::Test* { return new CheckTest(&comp, v, c); });
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  dsv3::register_all_components();
  register_check_tests();
  return RUN_ALL_TESTS();
}
