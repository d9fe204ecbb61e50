// Schedule generators: per-rank chunk lists for 1F1B, ZB1P, DualPipe and DualPipeV
// (reference/pipeline.hpp). Written from the papers' descriptions and the phase structure of
// DualPipe's reference code (deepseek-ai/DualPipe dualpipe.py / dualpipev.py, v3-facts §6).
#include <cmath>
#include <deque>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "reference/pipeline.hpp"

namespace dsv3::pipeline {

std::string schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::one_f_one_b: return "1f1b";
    case ScheduleKind::zb1p: return "zb1p";
    case ScheduleKind::dualpipe: return "dualpipe";
    case ScheduleKind::dualpipev: return "dualpipev";
  }
  return "?";
}

ScheduleKind schedule_from_name(const std::string& s) {
  for (ScheduleKind k : all_schedules())
    if (schedule_name(k) == s) return k;
  throw std::invalid_argument("schedule must be 1f1b, zb1p, dualpipe or dualpipev, got '" + s + "'");
}

std::vector<ScheduleKind> all_schedules() {
  return {ScheduleKind::one_f_one_b, ScheduleKind::zb1p, ScheduleKind::dualpipe, ScheduleKind::dualpipev};
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::F: return "F";
    case Kind::B: return "B";
    case Kind::Bi: return "Bi";
    case Kind::W: return "W";
    case Kind::FB: return "F&B";
  }
  return "?";
}

void ChunkTimes::validate() const {
  auto need = [](double v, const char* field, bool positive) {
    if (!std::isfinite(v) || v < 0 || (positive && v == 0))
      throw std::invalid_argument(std::string("chunk time '") + field + "' must be finite and " +
                                  (positive ? "> 0" : ">= 0") + ", got " + std::to_string(v));
  };
  need(f, "f", true);
  need(b, "b", true);
  need(w, "w", false);
  need(fb, "fb", true);
  need(latency, "latency", false);
  if (w >= b)  // the input-grad chunk Bi = B - W must take time
    throw std::invalid_argument("chunk time 'w' must be < 'b' (the input-grad part B - W takes the rest), got w=" +
                                std::to_string(w) + " b=" + std::to_string(b));
}

int64_t Params::ranks() const { return schedule == ScheduleKind::dualpipev ? pp / 2 : pp; }

void Params::validate() const {
  const std::string s = schedule_name(schedule);
  if (pp < 2 || pp > 4096) throw std::invalid_argument("pp must be in [2, 4096], got " + std::to_string(pp));
  const bool dual = schedule == ScheduleKind::dualpipe || schedule == ScheduleKind::dualpipev;
  if (dual && pp % 2 != 0)
    throw std::invalid_argument("pp must be even for " + s + " (v3-facts §6), got " + std::to_string(pp));
  if (micro_batches < 1 || micro_batches > 1'000'000)
    throw std::invalid_argument("micro_batches must be in [1, 1e6], got " + std::to_string(micro_batches));
  if (schedule == ScheduleKind::dualpipe && (micro_batches % 2 != 0 || micro_batches < 2 * pp))
    throw std::invalid_argument("micro_batches must be even and >= 2 pp = " + std::to_string(2 * pp) +
                                " for dualpipe (half enter at each end; dualpipe.py asserts it), got " +
                                std::to_string(micro_batches));
  if (schedule == ScheduleKind::dualpipev && micro_batches < pp)
    throw std::invalid_argument("micro_batches must be >= pp = " + std::to_string(pp) +
                                " for dualpipev (2 x its pp/2 ranks; dualpipev.py asserts it), got " +
                                std::to_string(micro_batches));
  times.validate();
}

std::string Params::to_string() const {
  std::ostringstream o;
  o << schedule_name(schedule) << " pp=" << pp << " mb=" << micro_batches;
  const ChunkTimes d;
  if (times.f != d.f || times.b != d.b || times.w != d.w || times.fb != d.fb)
    o << " F=" << times.f << " B=" << times.b << " W=" << times.w << " FB=" << times.fb;
  if (times.latency != 0) o << " lat=" << times.latency;
  return o.str();
}

namespace {

Chunk one(Kind k, int dir, int mb, int stage) { return Chunk{k, Work{dir, mb, stage}, Work{}}; }

// 1F1B (PipeDream-Flush): rank r runs min(PP-r-1, m) warm-up forwards, then a forward and a
// backward per step, then the remaining backwards.
std::vector<Chunk> one_f_one_b_order(int p, int m, int r, Kind backward) {
  std::vector<Chunk> c;
  const int warm = std::min(p - r - 1, m);
  int f = 0, b = 0;
  for (; f < warm; ++f) c.push_back(one(Kind::F, 0, f, r));
  for (; f < m; ++f) {
    c.push_back(one(Kind::F, 0, f, r));
    c.push_back(one(backward, 0, b++, r));
  }
  for (; b < m; ++b) c.push_back(one(backward, 0, b, r));
  return c;
}

// ZB1P (ZeroBubble's ZB-H1, Qi et al. 2023 §2.1; V3-TR Table 2): 1F1B's order of F and B, with
// B split into Bi (its output grad goes on at once, so the backward chain costs B - W per hop, not
// B) and W. Rank r runs each W r micro-batches after its Bi ("W passes delayed by the number of
// warm-up micro-batches"): every rank then has PP micro-batches alive until their W, and the
// delayed W's fill the waits of the cool-down. The remaining W's end the step.
void zb1p(Schedule& s) {
  const int p = s.stages, m = s.mb_per_dir;
  for (int r = 0; r < p; ++r) {
    auto& out = s.per_rank[static_cast<size_t>(r)];
    int next_w = 0;
    for (const Chunk& c : one_f_one_b_order(p, m, r, Kind::Bi)) {
      out.push_back(c);
      if (c.kind == Kind::Bi && c.a.mb - next_w >= r) out.push_back(one(Kind::W, 0, next_w++, r));
    }
    while (next_w < m) out.push_back(one(Kind::W, 0, next_w++, r));
  }
  for (int st = 0; st < p; ++st) s.stage_rank[0][static_cast<size_t>(st)] = st;
}

void one_f_one_b(Schedule& s) {
  for (int r = 0; r < s.stages; ++r) s.per_rank[static_cast<size_t>(r)] = one_f_one_b_order(s.stages, s.mb_per_dir, r, Kind::B);
  for (int st = 0; st < s.stages; ++st) s.stage_rank[0][static_cast<size_t>(st)] = st;
}

// DualPipe and DualPipeV share one rank program (dualpipe.py / dualpipev.py `step`, v3-facts §6):
// n = half the ranks (DualPipe) or the ranks (V); h = this rank's distance from its end of the
// pipeline; c = micro-batches per direction (DualPipe m/2, V m). Phase 0 is the stage near the
// rank's entry end, phase 1 the stage near the exit; `at(phase)` gives (dir, stage).
struct RankProgram {
  int n, h, c;
  bool centre;  // the rank(s) next to the turn: phase 4's first F and B are not overlapped
  std::function<Work(int phase, int mb)> at;
  std::vector<Chunk>& out;
  int next_f[2] = {0, 0}, next_b[2] = {0, 0};
  std::deque<Work> w_queue;  // weight grads of split backwards, popped first-in first-out

  Work f_work(int ph) { return at(ph, next_f[ph]++); }
  Work b_work(int ph) { return at(ph, next_b[ph]++); }
  void F(int ph) { out.push_back(Chunk{Kind::F, f_work(ph), {}}); }
  void B(int ph, bool zb) {
    Work w = b_work(ph);
    out.push_back(Chunk{zb ? Kind::Bi : Kind::B, w, {}});
    if (zb) w_queue.push_back(w);
  }
  void W() {
    out.push_back(Chunk{Kind::W, w_queue.front(), {}});
    w_queue.pop_front();
  }
  void FB(int f_ph, int b_ph) {  // the overlapped backward is a full backward (no ZB split)
    Work fw = f_work(f_ph);
    out.push_back(Chunk{Kind::FB, fw, b_work(b_ph)});
  }

  void emit() {
    for (int i = 0; i < 2 * (n - h - 1); ++i) F(0);          // 1: forwards of phase 0
    for (int i = 0; i < h + 1; ++i) { F(0); F(1); }          // 2: F0 F1 pairs
    for (int i = 0; i < n - h - 1; ++i) { B(1, true); W(); F(1); }  // 3: B1 W1 F1, zero bubble
    const int main_steps = c - 2 * n + h + 1;                // 4: F0&B1, F1&B0
    for (int i = 0; i < main_steps; ++i) {
      if (i == 0 && centre) { F(0); B(1, false); }
      else FB(0, 1);
      FB(1, 0);
    }
    for (int i = 0; i < n - h - 1; ++i) { B(1, false); FB(1, 0); }  // 5: B1, F1&B0
    bool zb = false;                                          // 6: B1 B0, the second half split
    const int six = h + 1;
    for (int i = 0; i < six; ++i) {
      if (i == six / 2 && h % 2 == 1) zb = true;
      B(1, zb);
      if (i == six / 2 && h % 2 == 0) zb = true;
      B(0, zb);
    }
    for (int i = 0; i < n - h - 1; ++i) { W(); B(0, true); }  // 7: W B0, zero bubble
    while (!w_queue.empty()) W();                             // 8: the remaining h+1 W's
  }
};

void dual(Schedule& s) {
  const bool v = s.params.schedule == ScheduleKind::dualpipev;
  const int R = s.ranks, S = s.stages;
  const int n = v ? R : R / 2;
  for (int r = 0; r < R; ++r) {
    const int h = v ? r : std::min(r, R - 1 - r);
    std::function<Work(int, int)> at;
    if (v) {  // stages r (phase 0) and 2R-1-r (phase 1), one direction
      at = [r, S](int ph, int mb) { return Work{0, mb, ph == 0 ? r : S - 1 - r}; };
    } else {  // phase 0 is dir 0 on the first half of the ranks, dir 1 on the second half
      const int second = r >= R / 2 ? 1 : 0;
      at = [r, S, second](int ph, int mb) {
        const int dir = ph ^ second;
        return Work{dir, mb, dir == 0 ? r : S - 1 - r};
      };
    }
    RankProgram prog{n, h, s.mb_per_dir, h == n - 1, at, s.per_rank[static_cast<size_t>(r)], {0, 0}, {0, 0}, {}};
    prog.emit();
  }
  for (int st = 0; st < S; ++st) {
    s.stage_rank[0][static_cast<size_t>(st)] = v ? std::min(st, S - 1 - st) : st;
    if (!v) s.stage_rank[1][static_cast<size_t>(st)] = S - 1 - st;
  }
}

}  // namespace

Schedule make_schedule(const Params& p) {
  p.validate();
  Schedule s;
  s.params = p;
  s.stages = static_cast<int>(p.pp);
  s.ranks = static_cast<int>(p.ranks());
  s.dirs = p.schedule == ScheduleKind::dualpipe ? 2 : 1;
  s.mb_per_dir = static_cast<int>(p.schedule == ScheduleKind::dualpipe ? p.micro_batches / 2 : p.micro_batches);
  s.stage_rank.assign(static_cast<size_t>(s.dirs), std::vector<int>(static_cast<size_t>(s.stages), -1));
  s.per_rank.assign(static_cast<size_t>(s.ranks), {});
  switch (p.schedule) {
    case ScheduleKind::one_f_one_b: one_f_one_b(s); break;
    case ScheduleKind::zb1p: zb1p(s); break;
    case ScheduleKind::dualpipe:  // two stages per device, one of each model copy
      dual(s);
      s.params_per_device = 2;
      s.param_copies = 2;
      break;
    case ScheduleKind::dualpipev:  // two different stages per device: no stage held twice
      dual(s);
      s.params_per_device = 2;
      s.param_copies = 1;
      break;
  }
  return s;
}

}  // namespace dsv3::pipeline
