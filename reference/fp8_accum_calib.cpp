// Probes, candidate models and the verdict of the FP8 accumulation calibration (see the header).
// Probe families (f = frac_bits a probe targets; b = 1.0 unless stated):
//   sanity_*   integers (and halves) whose every partial sum is exact in every candidate; one-hot
//              probes (a single 1.0 at position j) also catch A-fragment layouts that duplicate or
//              drop K positions
//   bigc_e     c = 2^e, one product 1.0: survives iff the accumulator is outside the alignment or
//              frac_bits >= e (truncation) -> frac_bits and accumulator-in-alignment
//   clow_g     c = 1 + 2^-g, one product 1.0: whether c's own low bits survive the alignment
//   span_g     products 256 and 31 x 2^(8-g): alignment to the largest product (g > frac_bits: lost)
//   tie_f / ntie_f / q75_f / nq75_f   256 and 1.5 or 0.75 grid units of f (31 copies for q75):
//              truncation vs floor vs nearest-even, sign-magnitude vs two's complement
//   cancel     256 - 256 + 0.1875: alignment happens before cancellation
//   wb_*       c = 2^24 (+2) plus small odd integers: rounding of the FP32 write-back
//   ftz_c      subnormal c, no products: FP32 subnormal flush
//   rand_*     chained steps of seeded random E4M3 values (some with b = 0.8125 and c != 0)
#include "reference/fp8_accum_calib.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "core/dtype.hpp"
#include "core/fill.hpp"

namespace dsv3::fp8accum {
namespace {

Probe make_probe(std::string id, std::string purpose, float c, double b, const std::vector<std::vector<double>>& steps,
                 bool sanity = false) {
  Probe p{std::move(id), std::move(purpose), sanity, c, e4m3_code(b), {}};
  for (const auto& s : steps) {
    if (s.size() > static_cast<std::size_t>(kProbeK)) throw std::logic_error("probe step longer than 32");
    for (int k = 0; k < kProbeK; ++k) p.a_codes.push_back(e4m3_code(k < static_cast<int>(s.size()) ? s[k] : 0.0));
  }
  return p;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::string a_summary(const Probe& p) {  // nonzero entries as step:k=value, at most 8
  std::string s;
  int shown = 0, nonzero = 0;
  for (std::size_t i = 0; i < p.a_codes.size(); ++i) {
    const double v = e4m3_value(p.a_codes[i]);
    if (v == 0) continue;
    ++nonzero;
    if (shown++ < 8) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%s%zu:%zu=%g", s.empty() ? "" : " ", i / kProbeK, i % kProbeK, v);
      s += buf;
    }
  }
  if (nonzero > 8) s += " ... (" + std::to_string(nonzero) + " nonzero)";
  return s.empty() ? "all zero" : s;
}

}  // namespace

double e4m3_value(uint8_t code) { return decode_element(DType::e4m3, &code, 0); }

uint8_t e4m3_code(double v) {
  for (int c = 0; c < 256; ++c)
    if (e4m3_value(static_cast<uint8_t>(c)) == v && !(v == 0 && c != 0)) return static_cast<uint8_t>(c);
  throw std::invalid_argument("not an E4M3 value: " + std::to_string(v));
}

std::vector<Probe> make_probes() {
  std::vector<Probe> ps;
  for (int j = 0; j < kProbeK; ++j) {
    std::vector<double> a(kProbeK, 0.0);
    a[j] = 1.0;
    ps.push_back(make_probe("sanity_onehot_" + std::to_string(j), "layout: K position " + std::to_string(j) + " read once", 0, 1, {a}, true));
  }
  std::vector<double> ints(kProbeK), negs(kProbeK, -1.0), quarters(kProbeK);
  for (int i = 0; i < kProbeK; ++i) {
    ints[i] = (i * 5) % 17 - 8;
    quarters[i] = i % 4;
  }
  ps.push_back(make_probe("sanity_ints", "small integers, b = 2, c = 5", 5, 2, {ints}, true));
  ps.push_back(make_probe("sanity_neg_ones", "32 x -1", 0, 1, {negs}, true));
  ps.push_back(make_probe("sanity_halves", "multiples of 1/2, b = 0.5, c = 0.5", 0.5f, 0.5, {quarters}, true));
  std::vector<std::vector<double>> chain(4, std::vector<double>(kProbeK));
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < kProbeK; ++i) chain[s][i] = (i * 7 + s * 3) % 9 - 4;
  ps.push_back(make_probe("sanity_chain_ints", "4 chained steps of small integers, c = -3", -3, 1, chain, true));

  for (int e = 8; e <= 26; ++e)
    ps.push_back(make_probe("bigc_" + std::to_string(e), "c = 2^" + std::to_string(e) + " + one product 1.0: accumulator bits",
                            std::ldexp(1.0f, e), 1, {{1.0}}));
  for (int g = 10; g <= 23; ++g)
    ps.push_back(make_probe("clow_" + std::to_string(g), "c = 1 + 2^-" + std::to_string(g) + " + 1.0: c's own low bits",
                            1.0f + std::ldexp(1.0f, -g), 1, {{1.0}}));
  for (int g = 10; g <= 17; ++g) {
    std::vector<double> a(kProbeK, std::ldexp(1.0, 8 - g));
    a[0] = 256;
    ps.push_back(make_probe("span_" + std::to_string(g), "256 + 31 x 2^(8-" + std::to_string(g) + "): alignment to the largest", 0, 1, {a}));
  }
  for (int f = 10; f <= 16; ++f) {
    const double unit = std::ldexp(1.0, 8 - f);  // one grid unit of frac_bits f below 256
    ps.push_back(make_probe("tie_" + std::to_string(f), "256 + 1.5 units: trunc vs RNE", 0, 1, {{256, 1.5 * unit}}));
    ps.push_back(make_probe("ntie_" + std::to_string(f), "256 - 1.5 units: trunc vs floor vs RNE", 0, 1, {{256, -1.5 * unit}}));
    if (f > 15) continue;  // 0.75 units is no longer an E4M3 value
    std::vector<double> q(kProbeK, 0.75 * unit), nq(kProbeK, -0.75 * unit);
    q[0] = 256;
    nq[0] = 256;
    ps.push_back(make_probe("q75_" + std::to_string(f), "256 + 31 x 0.75 units: RNE rounds each up", 0, 1, {q}));
    ps.push_back(make_probe("nq75_" + std::to_string(f), "256 - 31 x 0.75 units: sign of truncation", 0, 1, {nq}));
  }
  for (int f = 10; f <= 17; ++f) {  // 448 x 1.875 = 840: value exponent 9, operand exponents 8 + 0
    std::vector<double> a(kProbeK, std::ldexp(1.0, 8 - f));
    a[0] = 448;
    ps.push_back(make_probe("opexp_" + std::to_string(f), "b = 1.875, 448 + 31 x 2^(8-f): product exponent from value or operands",
                            0, 1.875, {a}));
  }
  for (int f = 12; f <= 15; ++f)  // small products before the big one: lost if aligned with it
    for (int g : {8, 16}) {
      std::vector<double> a(kProbeK, 0.0);
      for (int i = 0; i < g; ++i) a[i] = 0.75 * std::ldexp(1.0, 8 - f);
      a[g] = 256;
      ps.push_back(make_probe("group" + std::to_string(g) + "_" + std::to_string(f),
                              std::to_string(g) + " x 0.75 units, then 256: products aligned per group of " + std::to_string(g) + "?", 0, 1, {a}));
    }
  ps.push_back(make_probe("cancel", "256 - 256 + 0.1875: aligned before cancelling", 0, 1, {{256, -256, 0.1875}}));
  ps.push_back(make_probe("cancel_neg", "-256 + 256 - 0.1875", 0, 1, {{-256, 256, -0.1875}}));
  for (double a0 : {1.0, 3.0, 5.0, -1.0, -3.0})
    ps.push_back(make_probe("wb_" + std::to_string(static_cast<int>(a0)), "c = 2^24 + small integer: write-back rounding",
                            16777216.0f, 1, {{a0}}));
  ps.push_back(make_probe("wb_tie", "c = 2^24 + 2, + 1: a tie in FP32", 16777218.0f, 1, {{1.0}}));
  ps.push_back(make_probe("wb_neg_c", "c = -2^24, + 3", -16777216.0f, 1, {{3.0}}));
  ps.push_back(make_probe("ftz_c", "subnormal c = 1.5 * 2^-140, no products", std::ldexp(1.5f, -140), 1, {std::vector<double>{}}));
  Rng rng(seed_from("fp8_accum_calib random probes"));
  for (int r = 0; r < 8; ++r) {
    std::vector<std::vector<double>> steps(4, std::vector<double>(kProbeK));
    for (auto& s : steps)
      for (double& v : s) {
        uint8_t code;
        do code = static_cast<uint8_t>(rng.next() >> 56);
        while ((code & 0x7f) == 0x7f || (code & 0x78) < 0x20 || (code & 0x78) > 0x60);  // |v| in [2^-3, 2^6)
        v = e4m3_value(code);
      }
    const bool fancy = r >= 4;
    ps.push_back(make_probe("rand_" + std::to_string(r), fancy ? "4 random steps, b = 0.8125, c = 1000.3" : "4 random steps",
                            fancy ? 1000.3f : 0.0f, fancy ? 0.8125 : 1.0, steps));
  }
  return ps;
}

std::vector<Model> candidate_models() {
  std::vector<Model> ms;
  for (ExpSource es : {ExpSource::value, ExpSource::operands})
    for (int chunk : {32, 16, 8})
      for (int f = 10; f <= 24; ++f)
        for (Rounding r : {Rounding::truncate, Rounding::floor, Rounding::nearest_even})
          for (bool accin : {true, false})
            for (Rounding wb : {Rounding::truncate, Rounding::nearest_even})
              for (bool ftz : {false, true}) {
                Model m;
                m.chunk = chunk;
                m.frac_bits = f;
                m.align_rounding = r;
                m.acc_in_alignment = accin;
                m.writeback = wb;
                m.flush_subnormals = ftz;
                m.align_exponent = es;
                ms.push_back(m);
              }
  return ms;
}

float predict(const Probe& p, const Model& m) {
  float acc = p.c;
  float a[kProbeK], b[kProbeK];
  for (float& x : b) x = static_cast<float>(e4m3_value(p.b_code));
  for (int s = 0; s < p.steps(); ++s) {
    for (int k = 0; k < kProbeK; ++k) a[k] = static_cast<float>(e4m3_value(p.a_codes[static_cast<std::size_t>(s * kProbeK + k)]));
    for (int off = 0; off < kProbeK; off += m.chunk) acc = mma_step(acc, a + off, b + off, std::min(m.chunk, kProbeK - off), m);
  }
  return acc;
}

double exact_value(const Probe& p) {
  double v = p.c;  // sanity probes: every partial sum is a small multiple of 1/4, exact in double
  for (uint8_t c : p.a_codes) v += e4m3_value(c) * e4m3_value(p.b_code);
  return v;
}

std::string hex(float v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
  return buf;
}

RunCheck check_run(const std::vector<Probe>& probes, const InstrRun& run) {
  RunCheck rc;
  if (!run.error.empty() || run.values.size() != probes.size()) {
    rc.problems.push_back(run.error.empty() ? "wrong number of probe results" : run.error);
    return rc;
  }
  rc.layout_ok = rc.sanity_ok = true;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const auto& v = run.values[i];
    for (float x : v)
      if (!same_bits(x, v.front())) {
        rc.layout_ok = false;
        rc.problems.push_back(probes[i].id + ": accumulators differ (" + hex(v.front()) + " vs " + hex(x) + ")");
        break;
      }
    if (probes[i].sanity && (v.empty() || static_cast<double>(v.front()) != exact_value(probes[i]))) {
      rc.sanity_ok = false;
      rc.problems.push_back(probes[i].id + ": " + (v.empty() ? "no value" : hex(v.front())) + " != exact " +
                            hex(static_cast<float>(exact_value(probes[i]))));
    }
  }
  return rc;
}

nlohmann::json analyse(const std::vector<Probe>& probes, const std::vector<InstrRun>& runs, std::ostream& log) {
  nlohmann::json rows = nlohmann::json::array();
  const std::vector<Model> cands = candidate_models();
  std::vector<std::vector<float>> pred(cands.size());  // [model][probe]
  for (std::size_t m = 0; m < cands.size(); ++m)
    for (const Probe& p : probes) pred[m].push_back(predict(p, cands[m]));
  const Model v3 = v3_report_model(0);
  for (const InstrRun& run : runs) {
    const RunCheck rc = check_run(probes, run);
    nlohmann::json verdict = {{"row", "verdict"}, {"instr", run.instr}, {"layout", run.layout},
                              {"layout_ok", rc.layout_ok}, {"sanity_ok", rc.sanity_ok}, {"problems", rc.problems}};
    if (!run.error.empty() || run.values.size() != probes.size()) {
      verdict["verdict"] = (run.unavailable ? "unavailable: " : "error: ") + (run.error.empty() ? std::string("no results") : run.error);
      log << run.instr << ": " << verdict["verdict"].get<std::string>() << "\n";
      rows.push_back(verdict);
      continue;
    }
    std::vector<float> hw;
    for (const auto& v : run.values) hw.push_back(v.front());
    std::size_t best = 0;
    std::vector<int> miss(cands.size(), 0);
    std::vector<std::string> matching;
    for (std::size_t m = 0; m < cands.size(); ++m) {
      for (std::size_t i = 0; i < probes.size(); ++i) miss[m] += !same_bits(pred[m][i], hw[i]);
      if (miss[m] < miss[best]) best = m;
      if (miss[m] == 0) matching.push_back(cands[m].to_string());
    }
    log << "\n" << run.instr << " (A packing " << run.layout << "): probe table (hw vs closest model "
        << cands[best].to_string() << ")\n";
    char line[256];
    std::snprintf(line, sizeof line, "  %-18s %-22s %-22s %-22s %s\n", "probe", "hardware", "closest model", "v3 model (f13 trunc accin)", "eq");
    log << line;
    for (std::size_t i = 0; i < probes.size(); ++i) {
      const Probe& p = probes[i];
      const float pv3 = predict(p, v3);
      std::snprintf(line, sizeof line, "  %-18s %-22s %-22s %-22s %s\n", p.id.c_str(), hex(hw[i]).c_str(),
                    hex(pred[best][i]).c_str(), hex(pv3).c_str(), same_bits(hw[i], pred[best][i]) ? "" : "MISMATCH");
      log << line;
      rows.push_back({{"row", "probe"}, {"instr", run.instr}, {"probe", p.id}, {"purpose", p.purpose}, {"sanity", p.sanity},
                      {"c", hex(p.c)}, {"b", e4m3_value(p.b_code)}, {"a", a_summary(p)}, {"hw", hex(hw[i])},
                      {"hw_value", hw[i]}, {"closest_prediction", hex(pred[best][i])}, {"v3_model_prediction", hex(pv3)}});
    }
    if (!rc.layout_ok || !rc.sanity_ok) {
      verdict["verdict"] = "probe broken";
    } else if (!matching.empty()) {
      verdict["verdict"] = "match";
    } else {
      verdict["verdict"] = "none";
    }
    verdict["matching_models"] = matching;
    verdict["closest"] = cands[best].to_string();
    verdict["closest_mismatches"] = miss[best];
    nlohmann::json mm = nlohmann::json::array();
    for (std::size_t i = 0; i < probes.size(); ++i)
      if (!same_bits(pred[best][i], hw[i]))
        mm.push_back({{"probe", probes[i].id}, {"c", hex(probes[i].c)}, {"b", e4m3_value(probes[i].b_code)},
                      {"a", a_summary(probes[i])}, {"hw", hex(hw[i])}, {"prediction", hex(pred[best][i])}});
    verdict["mismatching_probes"] = mm;
    log << run.instr << " verdict: " << verdict["verdict"].get<std::string>() << "; " << matching.size() << " of "
        << cands.size() << " candidate models match every probe";
    for (std::size_t i = 0; i < matching.size() && i < 12; ++i) log << (i ? ", " : ": ") << matching[i];
    if (matching.empty()) log << "; closest " << cands[best].to_string() << " with " << miss[best] << " mismatching probes";
    log << "\n";
    for (const auto& p : rc.problems) log << "  problem: " << p << "\n";
    rows.push_back(verdict);
  }
  return rows;
}

}  // namespace dsv3::fp8accum
