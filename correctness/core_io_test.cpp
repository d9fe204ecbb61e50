// Tests of the core file formats: safetensors (round trips, FP8 weight lookup, every malformed-file
// error), model configs (every file loads; parameter counts and KV bytes/token reproduce
// v3-facts §1.3 and §2.3 / ISCA Table 1; malformed configs) and hardware profiles.
// Files are written under testing::TempDir()/dsv3_core_io; datasets are found via datasets_dir().
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>

#include "core/fill.hpp"
#include "core/hardware_profile.hpp"
#include "core/json_file.hpp"
#include "core/model_config.hpp"
#include "core/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using dsv3::DType;
using dsv3::InputError;
using dsv3::Tensor;
using nlohmann::json;

fs::path tmp(const std::string& file) {
  const fs::path dir = fs::path(testing::TempDir()) / "dsv3_core_io";
  std::error_code ec;
  fs::create_directories(dir, ec);
  return dir / file;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Runs `f`, expects an InputError whose message contains every one of `parts`.
void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected an InputError containing '" << (parts.empty() ? "" : parts.front()) << "'";
}

void expect_same_tensor(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.name(), b.name());
  EXPECT_EQ(a.dtype(), b.dtype()) << a.name();
  EXPECT_EQ(a.shape(), b.shape()) << a.name();
  ASSERT_EQ(a.nbytes(), b.nbytes()) << a.name();
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << a.name() << ": bytes differ";
  EXPECT_TRUE(b.guards_intact()) << b.name();
}

// ---------------------------------------------------------------------------------------------
// safetensors

std::vector<Tensor> sample_tensors() {
  std::vector<Tensor> ts;
  ts.emplace_back("layers.0.w", DType::bf16, dsv3::Shape{3, 5});
  ts.emplace_back("bias", DType::f32, dsv3::Shape{4});
  ts.emplace_back("q", DType::e4m3, dsv3::Shape{2, 3, 4});
  ts.emplace_back("idx", DType::i32, dsv3::Shape{7});
  ts.emplace_back("bytes", DType::u8, dsv3::Shape{5});
  ts.emplace_back("half", DType::f16, dsv3::Shape{2, 2});
  ts.emplace_back("e5", DType::e5m2, dsv3::Shape{3});
  ts.emplace_back("u16", DType::u16, dsv3::Shape{2});
  ts.emplace_back("scales", DType::ue8m0, dsv3::Shape{4});
  ts.emplace_back("scalar", DType::f32, dsv3::Shape{});
  ts.emplace_back("empty", DType::bf16, dsv3::Shape{0, 3});
  for (auto& t : ts) {
    if (dsv3::dtype_is_float(t.dtype()) && t.dtype() != DType::ue8m0) {
      dsv3::fill(t, dsv3::Dist::adversarial, dsv3::seed_from("core_io/" + t.name()));
    } else {
      auto* p = static_cast<unsigned char*>(t.raw());
      for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(37 * i + 11);
    }
  }
  auto idx = ts[3].span<int32_t>();
  idx[0] = std::numeric_limits<int32_t>::min();
  idx[1] = std::numeric_limits<int32_t>::max();
  idx[2] = -1;
  return ts;
}

std::vector<const Tensor*> ptrs(const std::vector<Tensor>& ts) {
  std::vector<const Tensor*> out;
  for (const auto& t : ts) out.push_back(&t);
  return out;
}

TEST(SafetensorsIo, RoundTripIsBitIdentical) {
  const auto ts = sample_tensors();
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"producer", "dsv3bench"}};
  const fs::path p = tmp("roundtrip.safetensors");
  dsv3::write_safetensors(p, ptrs(ts), meta);

  const auto f = dsv3::read_safetensors(p);
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), ts.size());
  for (std::size_t i = 0; i < ts.size(); ++i) expect_same_tensor(ts[i], f.tensors[i]);  // order kept
  EXPECT_EQ(f.get("idx").span<int32_t>()[0], std::numeric_limits<int32_t>::min());

  // Layout: header length multiple of 8, JSON padded with spaces, data section exactly the tensors.
  const std::string raw = slurp(p);
  ASSERT_GE(raw.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw[8], '{');
  const std::string header = raw.substr(8, n);
  const auto last = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', last + 1), std::string::npos) << "padding must be spaces";
  std::size_t data = 0;
  for (const auto& t : ts) data += t.nbytes();
  EXPECT_EQ(raw.size(), 8 + n + data);
  EXPECT_EQ(json::parse(header)["__metadata__"]["format"], "pt");
}

TEST(SafetensorsIo, RewriteOfReadFileIsByteIdentical) {
  const auto ts = sample_tensors();
  const fs::path a = tmp("rewrite_a.safetensors"), b = tmp("rewrite_b.safetensors");
  dsv3::write_safetensors(a, ptrs(ts), {{"k", "v"}});
  const auto f = dsv3::read_safetensors(a);
  dsv3::write_safetensors(b, ptrs(f.tensors), f.metadata);
  EXPECT_EQ(slurp(a), slurp(b));
  const auto g = dsv3::read_safetensors(b);
  ASSERT_EQ(g.tensors.size(), ts.size());
  for (std::size_t i = 0; i < ts.size(); ++i) expect_same_tensor(ts[i], g.tensors[i]);
}

TEST(SafetensorsIo, ReadsHandWrittenFile) {
  // Written by hand (not by write_safetensors): tensors listed out of data order, unpadded header.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const float fa[2] = {1.0f, -2.0f};
  const uint16_t fb[2] = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  std::string data(reinterpret_cast<const char*>(fa), 8);
  data.append(reinterpret_cast<const char*>(fb), 4);
  const fs::path p = tmp("handwritten.safetensors");
  write_raw(p, le64(header.size()) + header + data);
  const auto f = dsv3::read_safetensors(p);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name(), "a");  // data-section order
  EXPECT_EQ(f.get("a").get(1), -2.0);
  EXPECT_EQ(f.get("b").dtype(), DType::bf16);
  EXPECT_EQ(f.get("b").get(0), 1.0);
  EXPECT_EQ(f.get("b").get(1), -2.0);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  expect_input_error([&] { (void)f.get("missing.weight"); }, {p.string(), "'missing.weight'"});
}

TEST(SafetensorsIo, WriterRejectsDuplicateNames) {
  Tensor a("same", DType::f32, {2}), b("same", DType::bf16, {2});
  const fs::path p = tmp("dup.safetensors");
  expect_input_error([&] { dsv3::write_safetensors(p, {&a, &b}); }, {p.string(), "'same'", "twice"});
}

TEST(SafetensorsIo, Fp8WeightAndScaleLookup) {
  const std::string name = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
  Tensor w(name, DType::e4m3, {200, 300});  // ragged: 200 = 128 + 72, 300 = 2*128 + 44
  dsv3::fill(w, dsv3::Dist::normal, dsv3::seed_from("core_io/fp8"));
  Tensor s(name + "_scale_inv", DType::f32, {2, 3});
  for (int i = 0; i < 6; ++i) s.span<float>()[static_cast<std::size_t>(i)] = 0.5f * static_cast<float>(i + 1);
  Tensor norm("model.layers.0.input_layernorm.weight", DType::bf16, {300});
  dsv3::fill(norm, dsv3::Dist::normal, 1);
  const fs::path p = tmp("fp8_ckpt.safetensors");
  dsv3::write_safetensors(p, {&norm, &w, &s});

  const auto f = dsv3::read_safetensors(p);
  const dsv3::Fp8Weight fw = dsv3::get_fp8_weight(f, name);
  expect_same_tensor(w, fw.weight);
  expect_same_tensor(s, fw.scale_inv);
  EXPECT_EQ(fw.scale_inv.get(5), 3.0);

  // Wrong scale shape, missing scale, wrong weight dtype.
  Tensor bad(name + "_scale_inv", DType::f32, {2, 2});
  const fs::path pb = tmp("fp8_bad_scale.safetensors");
  dsv3::write_safetensors(pb, {&w, &bad});
  expect_input_error([&] { (void)dsv3::get_fp8_weight(dsv3::read_safetensors(pb), name); },
                     {pb.string(), "[2, 2]", "[2, 3]", "[200, 300]", "_scale_inv"});
  const fs::path pm = tmp("fp8_no_scale.safetensors");
  dsv3::write_safetensors(pm, {&w});
  expect_input_error([&] { (void)dsv3::get_fp8_weight(dsv3::read_safetensors(pm), name); },
                     {pm.string(), name + "_scale_inv"});
  expect_input_error([&] { (void)dsv3::get_fp8_weight(f, norm.name()); }, {p.string(), "e4m3", "bf16"});
}

struct BadFile {
  std::string id;
  std::string bytes;
  std::vector<std::string> expect;  // message parts besides the file name
};

std::string st(const std::string& header, std::size_t data_bytes = 16) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

TEST(SafetensorsIo, MalformedFilesGiveInputErrors) {
  const std::string ok_w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<BadFile> cases{
      {"too_short", "abc", {"shorter than the 8-byte"}},
      {"header_past_end", le64(1000) + "{}", {"header length 1000", "past the end"}},
      {"header_too_big", le64(200000000) + "{}", {"header length 200000000", "100 MB"}},
      {"bad_json", st("{not json"), {"not valid JSON"}},
      {"not_object", st("[1, 2]"), {"not a JSON object"}},
      {"missing_dtype", st(R"({"w":{"shape":[2],"data_offsets":[0,8]}})"), {"'w'", "missing field 'dtype'"}},
      {"missing_shape", st(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})"), {"'w'", "missing field 'shape'"}},
      {"missing_offsets", st(R"({"w":{"dtype":"F32","shape":[2]}})"), {"'w'", "missing field 'data_offsets'"}},
      {"unknown_dtype", st(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})"), {"'w'", "dtype 'F64'"}},
      {"negative_dim", st(R"({"w":{"dtype":"F32","shape":[-2,4],"data_offsets":[0,8]}})"),
       {"'w'", "'shape'", "negative dimension -2"}},
      {"fractional_dim", st(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})"),
       {"'w'", "'shape'", "not an integer"}},
      {"offsets_reversed", st(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})"),
       {"'w'", "'data_offsets'", "begin > end"}},
      {"offsets_arity", st(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})"), {"'w'", "'data_offsets'"}},
      {"end_past_data", st(R"({"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}})"),
       {"'w'", "past the data section (16 bytes)"}},
      {"size_mismatch", st(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})"),
       {"'w'", "holds 8 bytes, expected 12 bytes"}},
      {"overlap", st("{" + ok_w + R"(,"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"),
       {"'w'", "'v'", "overlapping"}},
      {"metadata_not_string", st("{" + ok_w + R"(,"__metadata__":{"k":1}})"), {"'__metadata__'", "'k'"}},
      {"entry_not_object", st(R"({"w":[1,2]})"), {"'w'", "not a JSON object"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.id);
    const fs::path p = tmp("bad_" + c.id + ".safetensors");
    write_raw(p, c.bytes);
    auto parts = c.expect;
    parts.push_back(p.string());
    expect_input_error([&] { (void)dsv3::read_safetensors(p); }, parts);
  }
  const fs::path missing = tmp("does_not_exist.safetensors");
  expect_input_error([&] { (void)dsv3::read_safetensors(missing); }, {missing.string(), "does not exist"});
}

// ---------------------------------------------------------------------------------------------
// model configs

TEST(ModelConfigIo, EveryDatasetFileLoads) {
  const auto ids = dsv3::list_models();
  EXPECT_GE(ids.size(), 6u);
  for (const auto& id : ids) {
    SCOPED_TRACE(id);
    dsv3::ModelConfig c;
    ASSERT_NO_THROW(c = dsv3::find_model(id));
    EXPECT_EQ(c.id, id);
    EXPECT_FALSE(c.sources.empty());
    EXPECT_GT(c.kv_cache_bytes_per_token(), 0);
    if (c.is_mla_moe()) {
      EXPECT_GT(c.activated_params(), 0);
    }
  }
  EXPECT_NE(std::find(ids.begin(), ids.end(), "deepseek-v3-671b"), ids.end());
}

TEST(ModelConfigIo, ParameterCountsMatchFactSheet) {
  const auto v3 = dsv3::find_model("deepseek-v3-671b");
  EXPECT_EQ(v3.attention_params_per_layer(), 187107328);  // v3-facts §1.3
  EXPECT_EQ(v3.dense_ffn_params(), 396361728);
  EXPECT_EQ(v3.expert_params(), 44040192);
  EXPECT_EQ(v3.moe_ffn_params(false), 11320164608);
  EXPECT_EQ(v3.total_params(), 671026419200);  // G7
  EXPECT_EQ(v3.activated_params(), 37552297472);  // G8
  EXPECT_EQ(v3.mtp_params(), 11610068224);
  EXPECT_EQ(v3.total_params() + v3.mtp_params() + 2 * v3.vocab_size * v3.dim, 684489845504);  // G37
  const auto v2 = dsv3::find_model("deepseek-v2-236b");
  EXPECT_EQ(v2.total_params(), 235741434880);  // G9
  EXPECT_EQ(v2.activated_params(), 21375800320);
  const auto lite = dsv3::find_model("deepseek-v2-lite-16b");
  EXPECT_EQ(lite.total_params(), 15706484224);  // G10
  EXPECT_EQ(lite.activated_params(), 2661150208);
  EXPECT_FALSE(lite.has_router_bias());
  EXPECT_THROW((void)dsv3::find_model("llama-3.1-405b").total_params(), std::invalid_argument);
}

TEST(ModelConfigIo, KvCacheBytesPerTokenMatchIscaTable1) {
  const auto v3 = dsv3::find_model("deepseek-v3-671b");
  EXPECT_EQ(v3.kv_cache_elems_per_token_per_layer(), 576);  // G1
  EXPECT_EQ(v3.kv_cache_bytes_per_token(), 70272);             // G2
  EXPECT_EQ(v3.kv_cache_bytes_per_token(1), 35136);
  EXPECT_EQ(dsv3::find_model("qwen2.5-72b").kv_cache_bytes_per_token(), 327680);     // G3
  EXPECT_EQ(dsv3::find_model("llama-3.1-405b").kv_cache_bytes_per_token(), 516096);  // G4
  EXPECT_EQ(dsv3::find_model("deepseek-v2-236b").kv_cache_bytes_per_token(), 69120);  // §2.3
  EXPECT_EQ(dsv3::find_model("deepseek-v2-lite-16b").kv_cache_bytes_per_token(), 31104);
  EXPECT_EQ(dsv3::find_model("tiny-test").kv_cache_elems_per_token_per_layer(), 144);
}

// Loads `base` edited by `edit` from a temporary file; expects an InputError naming file and parts.
void expect_bad_config(const std::string& base_id, const std::string& id, const std::function<void(json&)>& edit,
                       const std::vector<std::string>& parts, bool hardware = false) {
  SCOPED_TRACE(id);
  json j = dsv3::load_json_file(dsv3::datasets_dir() / (hardware ? "hardware" : "models") / (base_id + ".json"));
  edit(j);
  const fs::path p = tmp(id + ".json");
  dsv3::write_json_atomic(p, j);
  auto all = parts;
  all.push_back(p.string());
  if (hardware) expect_input_error([&] { (void)dsv3::load_hardware_profile(p); }, all);
  else expect_input_error([&] { (void)dsv3::load_model_config(p); }, all);
}

TEST(ModelConfigIo, MalformedConfigsGiveInputErrors) {
  const std::string v3 = "deepseek-v3-671b";
  expect_bad_config(v3, "m_missing_kv", [](json& j) { j.erase("kv_lora_rank"); }, {"missing field 'kv_lora_rank'"});
  expect_bad_config(v3, "m_missing_dim", [](json& j) { j.erase("dim"); }, {"missing field 'dim'"});
  expect_bad_config(v3, "m_dim_string", [](json& j) { j["dim"] = "7168"; }, {"'dim'", "integer"});
  expect_bad_config(v3, "m_dim_float", [](json& j) { j["dim"] = 7168.5; }, {"'dim'", "integer"});
  expect_bad_config(v3, "m_layers_zero", [](json& j) { j["n_layers"] = 0; }, {"'n_layers'", "positive"});
  expect_bad_config(v3, "m_family", [](json& j) { j["family"] = "ssm"; }, {"'family'", "ssm"});
  expect_bad_config(v3, "m_other_family", [](json& j) { j["n_kv_heads"] = 8; }, {"'n_kv_heads'", "other family"});
  expect_bad_config(v3, "m_unknown", [](json& j) { j["hidden_size"] = 1; }, {"unknown field 'hidden_size'"});
  expect_bad_config(v3, "m_score", [](json& j) { j["score_func"] = "relu"; }, {"'score_func'", "relu"});
  expect_bad_config(v3, "m_topk", [](json& j) { j["n_activated_experts"] = 300; }, {"'n_activated_experts'"});
  expect_bad_config(v3, "m_groups", [](json& j) { j["n_expert_groups"] = 7; }, {"'n_expert_groups'"});
  expect_bad_config(v3, "m_dense", [](json& j) { j["n_dense_layers"] = 62; }, {"'n_dense_layers'"});
  expect_bad_config(v3, "m_sources", [](json& j) { j["sources"] = "x"; }, {"'sources'"});
  expect_bad_config("llama-3.1-405b", "m_gqa_head", [](json& j) { j.erase("head_dim"); }, {"missing field 'head_dim'"});
  expect_bad_config("llama-3.1-405b", "m_gqa_mla_field", [](json& j) { j["kv_lora_rank"] = 512; },
                    {"'kv_lora_rank'", "other family"});

  const fs::path missing = tmp("no_such_config.json");
  expect_input_error([&] { (void)dsv3::load_model_config(missing); }, {missing.string()});
  const fs::path broken = tmp("broken_config.json");
  write_raw(broken, "{\"id\": ");
  expect_input_error([&] { (void)dsv3::load_model_config(broken); }, {broken.string(), "malformed JSON"});
  const fs::path array = tmp("array_config.json");
  write_raw(array, "[1, 2]");
  expect_input_error([&] { (void)dsv3::load_model_config(array); }, {array.string(), "object"});
  expect_input_error([] { (void)dsv3::find_model("no-such-model"); },
                     {"no-such-model.json", "available", "deepseek-v3-671b", "tiny-test"});
}

// ---------------------------------------------------------------------------------------------
// hardware profiles

TEST(HardwareProfileIo, EveryDatasetFileLoads) {
  const auto ids = dsv3::list_hardware();
  EXPECT_GE(ids.size(), 5u);
  for (const auto& id : ids) {
    SCOPED_TRACE(id);
    dsv3::HardwareProfile h;
    ASSERT_NO_THROW(h = dsv3::find_hardware(id));
    EXPECT_EQ(h.id, id);
    EXPECT_GT(h.sms, 0);
    EXPECT_GT(h.memory_bandwidth_gbs, 0);
    EXPECT_GT(h.nvlink_bandwidth_gbs, 0);
    EXPECT_GT(h.nic_gbps, 0);
    EXPECT_GT(h.dense_bf16_tflops, 0);
    EXPECT_GE(h.dense_fp8_tflops, h.dense_bf16_tflops);
    EXPECT_GT(h.memory_gib, 0);
    EXPECT_GT(h.l2_mib, 0);
    EXPECT_FALSE(h.sources.empty());
  }
  const auto h800 = dsv3::find_hardware("h800-sxm");
  EXPECT_EQ(h800.sms, 132);                     // V3-TR §3.5.1
  EXPECT_EQ(h800.nvlink_bandwidth_gbs, 200.0);  // ISCA §4.3, per direction
  EXPECT_EQ(h800.scale_out_bytes_per_s(), 50e9);  // 400 Gb/s IB = 50 GB/s (ISCA §4.3)
}

TEST(HardwareProfileIo, MalformedProfilesGiveInputErrors) {
  const std::string h = "h800-sxm";
  expect_bad_config(h, "h_missing_sms", [](json& j) { j.erase("sms"); }, {"missing field 'sms'"}, true);
  expect_bad_config(h, "h_neg_sms", [](json& j) { j["sms"] = -1; }, {"'sms'", "positive"}, true);
  expect_bad_config(h, "h_bw_string", [](json& j) { j["memory_bandwidth_gbs"] = "fast"; },
                    {"'memory_bandwidth_gbs'", "number"}, true);
  expect_bad_config(h, "h_bw_zero", [](json& j) { j["nvlink_bandwidth_gbs"] = 0; },
                    {"'nvlink_bandwidth_gbs'", "positive"}, true);
  expect_bad_config(h, "h_arch", [](json& j) { j["arch"] = "ampere"; }, {"'arch'", "ampere"}, true);
  expect_bad_config(h, "h_unknown", [](json& j) { j["tdp_w"] = 700; }, {"unknown field 'tdp_w'"}, true);
  expect_input_error([] { (void)dsv3::find_hardware("tpu-v5"); }, {"tpu-v5.json", "available", "h800-sxm"});
}

}  // namespace
