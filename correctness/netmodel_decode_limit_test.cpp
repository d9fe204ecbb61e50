// Tests of the decode speed limit calculator (reference/netmodel_decode_limit.hpp) against ISCA
// §2.3.2's printed figures (v3-facts §7.3), each to the tolerance of the paper's rounding; the
// hardware profiles that reproduce the paper's two cases; every input as a named parameter; bad
// input rejected with the field named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/json_file.hpp"
#include "reference/netmodel_decode_limit.hpp"

namespace {

using dsv3::netmodel::decode_limit;
using dsv3::netmodel::DecodeLimitInputs;
using dsv3::netmodel::DecodeLimitResult;

DecodeLimitResult paper_case(int i) { return decode_limit({}, dsv3::netmodel::decode_limit_paper_cases().at(i)); }

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(NetmodelDecodeLimit, Isca400GbpsInfiniBandStepByStep) {
  const DecodeLimitResult r = paper_case(0);
  EXPECT_EQ(r.c.bandwidth_gbs, 50.0);  // 400 Gbps / 8
  // Bytes are integers of the paper's inputs: exact. (1 B + 2 B) x 32 x 9 x 7000.
  EXPECT_EQ(r.dispatch_bytes, 2016000.0);
  EXPECT_EQ(r.combine_bytes, 4032000.0);
  EXPECT_EQ(r.step_bytes, 6048000.0);
  EXPECT_NEAR(r.dispatch_us, 40.32, 1e-9);  // not printed by the paper: exact arithmetic
  EXPECT_NEAR(r.combine_us, 80.64, 1e-9);
  // The paper prints two decimals of microseconds (120.96, 241.92): half a unit of the last digit.
  EXPECT_NEAR(r.step_us, 120.96, 0.005);
  EXPECT_NEAR(r.layer_us, 241.92, 0.005);
  // 61 x 241.92 us = 14.75712 ms, printed "14.76 ms": two decimals of ms.
  EXPECT_NEAR(r.tpot_ms, 14.76, 0.005);
  // 1 / 14.757 ms = 67.76 tokens/s, printed "67": the paper truncates, so [67, 68).
  EXPECT_GE(r.tokens_per_s, 67.0);
  EXPECT_LT(r.tokens_per_s, 68.0);
}

TEST(NetmodelDecodeLimit, IscaGb200Nvl72StepByStep) {
  const DecodeLimitResult r = paper_case(1);
  EXPECT_EQ(r.c.bandwidth_gbs, 900.0);
  EXPECT_EQ(r.step_bytes, 6048000.0);
  EXPECT_NEAR(r.step_us, 6.72, 0.005);    // printed "6.72 us": two decimals
  EXPECT_NEAR(r.layer_us, 13.44, 0.005);  // printed "13.44 us"
  EXPECT_NEAR(r.tpot_ms, 0.82, 0.005);    // 0.81984 ms printed "0.82 ms": two decimals of ms
  // 1219.75 tokens/s printed "approximately 1200": two significant figures, +-50.
  EXPECT_NEAR(r.tokens_per_s, 1200.0, 50.0);
  // The paper's assumption made visible: 256 one-expert devices do not fit one 72-GPU domain.
  ASSERT_TRUE(r.fits_nvlink_domain.has_value());
  EXPECT_FALSE(*r.fits_nvlink_domain);
}

TEST(NetmodelDecodeLimit, HardwareProfilesReproduceThePaperCases) {
  // h800-sxm's NIC (400 Gbps x 1 per GPU) is the paper's IB case; gb200-nvl72's NVLink (900 GB/s
  // per direction) its NVL72 case: the same numbers to the last bit.
  const auto h800 = dsv3::netmodel::decode_limit_hardware_cases(dsv3::find_hardware("h800-sxm"));
  const auto gb200 = dsv3::netmodel::decode_limit_hardware_cases(dsv3::find_hardware("gb200-nvl72"));
  ASSERT_EQ(h800.size(), 2u);
  EXPECT_EQ(h800[0].link, "scale_out");
  EXPECT_EQ(gb200[1].link, "scale_up");
  EXPECT_EQ(decode_limit({}, h800[0]).tpot_ms, paper_case(0).tpot_ms);
  EXPECT_EQ(decode_limit({}, gb200[1]).tpot_ms, paper_case(1).tpot_ms);
  const DecodeLimitResult nvl8 = decode_limit({}, h800[1]);
  ASSERT_TRUE(nvl8.fits_nvlink_domain.has_value());
  EXPECT_FALSE(*nvl8.fits_nvlink_domain);  // 256 devices > 8 per node
  EXPECT_FALSE(decode_limit({}, h800[0]).fits_nvlink_domain.has_value());  // scale-out: not applicable
}

TEST(NetmodelDecodeLimit, DefaultResultsCoverPaperAndEveryProfile) {
  const auto results = dsv3::netmodel::decode_limit_default_results();
  EXPECT_EQ(results.size(), 2 + 2 * dsv3::list_hardware().size());
  const nlohmann::json rows = dsv3::netmodel::decode_limit_rows(results);
  ASSERT_EQ(rows.size(), results.size());
  EXPECT_EQ(rows[0].at("case"), "paper-ib-400g");
  EXPECT_EQ(rows[0].at("paper").at("tpot_ms"), 14.76);
  EXPECT_TRUE(rows[2].at("paper").is_null());
  for (const auto& r : rows) {
    EXPECT_DOUBLE_EQ(r.at("tpot_ms").get<double>(),
                     r.at("n_layers").get<double>() * r.at("layer_us").get<double>() / 1e3);
    EXPECT_DOUBLE_EQ(r.at("tokens_per_s").get<double>(), 1e3 / r.at("tpot_ms").get<double>());
  }
}

TEST(NetmodelDecodeLimit, InputsAreNamedAndScaleAsTheFormulaSays) {
  const auto ib = dsv3::netmodel::decode_limit_paper_cases()[0];
  DecodeLimitInputs in;
  in.hidden = 7168;  // V3's real dim: 6,193,152 B per step, 123.86 us (v3-facts §7.3: not the paper's)
  EXPECT_EQ(decode_limit(in, ib).step_bytes, 3.0 * 32 * 9 * 7168);
  EXPECT_NEAR(decode_limit(in, ib).step_us, 123.86304, 1e-9);
  in = {};
  in.micro_batches = 1;
  EXPECT_DOUBLE_EQ(decode_limit(in, ib).layer_us, 120.96);
  in = {};
  in.latency_us = 3.7;  // ISCA Table 5's cross-leaf IB latency, per all-to-all
  EXPECT_NEAR(decode_limit(in, ib).step_us, 120.96 + 2 * 3.7, 1e-9);
  in = {};
  in.combine_bytes_per_elem = 1;  // FP8 combine: 2 x 32 x 9 x 7000
  EXPECT_EQ(decode_limit(in, ib).step_bytes, 4032000.0);

  const DecodeLimitInputs v3 = dsv3::netmodel::decode_limit_inputs_for(dsv3::find_model("deepseek-v3-671b"));
  EXPECT_EQ(v3.hidden, 7168);
  EXPECT_EQ(v3.experts_per_token, 9);  // 8 routed + 1 shared: the paper's 9
  EXPECT_EQ(v3.n_layers, 61);
  EXPECT_EQ(v3.ep_devices, 256);
  EXPECT_EQ(v3.tokens_per_device, 32);  // not model-dependent: kept
  EXPECT_THROW((void)dsv3::netmodel::decode_limit_inputs_for(dsv3::find_model("qwen2.5-72b")), std::invalid_argument);
}

TEST(NetmodelDecodeLimit, BadInputIsAnErrorNamingTheField) {
  const auto ib = dsv3::netmodel::decode_limit_paper_cases()[0];
  auto with = [&](auto set) {
    DecodeLimitInputs in;
    set(in);
    return error_of([&] { (void)decode_limit(in, ib); });
  };
  EXPECT_EQ(with([](DecodeLimitInputs& i) { i.tokens_per_device = 0; }), "tokens_per_device must be positive, got 0");
  EXPECT_EQ(with([](DecodeLimitInputs& i) { i.experts_per_token = -1; }), "experts_per_token must be positive, got -1");
  EXPECT_EQ(with([](DecodeLimitInputs& i) { i.n_layers = 0; }), "n_layers must be positive, got 0");
  EXPECT_EQ(with([](DecodeLimitInputs& i) { i.micro_batches = 0; }), "micro_batches must be positive, got 0");
  EXPECT_NE(with([](DecodeLimitInputs& i) { i.hidden = 0; }).find("hidden must be positive"), std::string::npos);
  EXPECT_NE(with([](DecodeLimitInputs& i) { i.dispatch_bytes_per_elem = 0; }).find("dispatch_bytes_per_elem"),
            std::string::npos);
  EXPECT_NE(with([](DecodeLimitInputs& i) { i.latency_us = -1; }).find("latency_us must be >= 0"), std::string::npos);
  EXPECT_NE(error_of([] { (void)dsv3::netmodel::decode_limit_custom_case(0); }).find("bandwidth_gbs must be positive"),
            std::string::npos);
  auto zero = ib;
  zero.bandwidth_gbs = 0;
  EXPECT_NE(error_of([&] { (void)decode_limit({}, zero); }).find("bandwidth_gbs must be positive"), std::string::npos);
}

TEST(NetmodelDecodeLimit, ProfileMissingAFieldOrWithZeroBandwidthIsNamed) {
  const auto dir = std::filesystem::temp_directory_path() / "dsv3_netmodel_profiles";
  std::filesystem::create_directories(dir);
  nlohmann::json j = dsv3::load_json_file(dsv3::datasets_dir() / "hardware" / "h800-sxm.json");
  j.erase("nic_gbps");
  dsv3::write_json_atomic(dir / "missing.json", j);
  EXPECT_NE(error_of([&] { (void)dsv3::load_hardware_profile(dir / "missing.json"); }).find("missing field 'nic_gbps'"),
            std::string::npos);
  j["nic_gbps"] = 400;
  j["nvlink_bandwidth_gbs"] = 0;
  dsv3::write_json_atomic(dir / "zero.json", j);
  EXPECT_NE(error_of([&] { (void)dsv3::load_hardware_profile(dir / "zero.json"); })
                .find("field 'nvlink_bandwidth_gbs' must be positive, got 0"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
