// The discrete-event simulator, its independent invariant check and the Table 2 closed forms
// (reference/pipeline.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "reference/pipeline.hpp"

namespace dsv3::pipeline {
namespace {

constexpr double kUnset = -1;

// End times per (dir, mb, stage) of the forward, the backward (B, Bi or F&B's), the W.
struct Ends {
  int S, M;
  std::vector<double> f, b, w;
  Ends(int dirs, int m, int s) : S(s), M(m), f(size(dirs)), b(size(dirs)), w(size(dirs)) {}
  size_t size(int dirs) const { return static_cast<size_t>(dirs) * M * S; }
  size_t at(const Work& x) const { return (static_cast<size_t>(x.dir) * M + x.mb) * S + x.stage; }
};

double duration(const Chunk& c, const ChunkTimes& t) {
  switch (c.kind) {
    case Kind::F: return t.f;
    case Kind::B: return t.b;
    case Kind::Bi: return t.b - t.w;
    case Kind::W: return t.w;
    case Kind::FB: return t.fb;
  }
  return 0;
}

bool has_forward(Kind k) { return k == Kind::F || k == Kind::FB; }
bool has_backward(Kind k) { return k == Kind::B || k == Kind::Bi || k == Kind::FB; }
const Work& backward_work(const Chunk& c) { return c.kind == Kind::FB ? c.b : c.a; }

// Latency of a pipeline transfer between the ranks of two stages (none within one rank).
double hop(const Schedule& s, int dir, int from, int to) {
  const auto& sr = s.stage_rank[static_cast<size_t>(dir)];
  return sr[static_cast<size_t>(from)] == sr[static_cast<size_t>(to)] ? 0.0 : s.params.times.latency;
}

// When the inputs of the forward / backward of `x` are ready; kUnset-derived NaN when not yet made.
double forward_ready(const Schedule& s, const Ends& e, const Work& x) {
  if (x.stage == 0) return 0;
  const double prev = e.f[e.at(Work{x.dir, x.mb, x.stage - 1})];
  return prev == kUnset ? std::nan("") : prev + hop(s, x.dir, x.stage - 1, x.stage);
}
double backward_ready(const Schedule& s, const Ends& e, const Work& x) {
  const double own = e.f[e.at(x)];
  if (own == kUnset) return std::nan("");
  if (x.stage == s.stages - 1) return own;
  const double next = e.b[e.at(Work{x.dir, x.mb, x.stage + 1})];
  return next == kUnset ? std::nan("") : std::max(own, next + hop(s, x.dir, x.stage + 1, x.stage));
}

}  // namespace

double SimResult::max_bubble() const {
  double m = 0;
  for (const auto& r : ranks) m = std::max(m, r.bubble);
  return m;
}
int SimResult::max_peak_activations() const {
  int m = 0;
  for (const auto& r : ranks) m = std::max(m, r.peak_activations);
  return m;
}

SimResult simulate(const Schedule& s) {
  const ChunkTimes& t = s.params.times;
  Ends e(s.dirs, s.mb_per_dir, s.stages);
  std::fill(e.f.begin(), e.f.end(), kUnset);
  std::fill(e.b.begin(), e.b.end(), kUnset);
  std::fill(e.w.begin(), e.w.end(), kUnset);
  const size_t R = static_cast<size_t>(s.ranks);
  std::vector<size_t> next(R, 0);
  std::vector<double> free_at(R, 0);
  std::vector<std::vector<Event>> per_rank(R);
  // Each rank runs its list in order; a pass advances every rank as far as its inputs allow. A
  // pass without progress while chunks remain is a deadlock: the schedule is invalid.
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t r = 0; r < R; ++r) {
      const auto& list = s.per_rank[r];
      while (next[r] < list.size()) {
        const Chunk& c = list[next[r]];
        double ready = 0;  // NaN (an input not made yet) must survive the max: std::max drops it
        auto need = [&ready](double t) { ready = std::isnan(t) || std::isnan(ready) ? std::nan("") : std::max(ready, t); };
        if (has_forward(c.kind)) need(forward_ready(s, e, c.a));
        if (has_backward(c.kind)) need(backward_ready(s, e, backward_work(c)));
        if (c.kind == Kind::W) {
          const double bi = e.b[e.at(c.a)];
          ready = bi == kUnset ? std::nan("") : bi;
        }
        if (std::isnan(ready)) break;  // an input is not produced yet
        const double start = std::max(ready, free_at[r]);
        const double end = start + duration(c, t);
        if (has_forward(c.kind)) e.f[e.at(c.a)] = end;
        if (has_backward(c.kind)) e.b[e.at(backward_work(c))] = end;
        if (c.kind == Kind::W) e.w[e.at(c.a)] = end;
        free_at[r] = end;
        per_rank[r].push_back(Event{static_cast<int>(r), start, end, c});
        ++next[r];
        progress = true;
      }
    }
  }
  for (size_t r = 0; r < R; ++r)
    if (next[r] < s.per_rank[r].size()) {
      const Chunk& c = s.per_rank[r][next[r]];
      throw std::runtime_error(s.params.to_string() + ": deadlock at rank " + std::to_string(r) + " chunk " +
                               std::to_string(next[r]) + " (" + kind_name(c.kind) + " mb " + std::to_string(c.a.mb) +
                               " stage " + std::to_string(c.a.stage) + "): its input is never produced");
    }

  SimResult res;
  res.ranks.resize(R);
  for (size_t r = 0; r < R; ++r) {
    RankStats& st = res.ranks[r];
    int live = 0, live_w = 0;
    for (const Event& ev : per_rank[r]) {
      st.busy += ev.end - ev.start;
      res.makespan = std::max(res.makespan, ev.end);
      // A rank runs one chunk at a time, so walking its events in order counts exactly: F&B's
      // forward starts before its backward ends, so both micro-batches are alive during it.
      if (has_forward(ev.chunk.kind)) { ++live; ++live_w; }
      st.peak_activations = std::max(st.peak_activations, live);
      st.peak_until_w = std::max(st.peak_until_w, live_w);
      if (has_backward(ev.chunk.kind)) --live;
      if (ev.chunk.kind == Kind::B || ev.chunk.kind == Kind::FB || ev.chunk.kind == Kind::W) --live_w;
    }
    res.events.insert(res.events.end(), per_rank[r].begin(), per_rank[r].end());
  }
  for (auto& st : res.ranks) st.bubble = res.makespan - st.busy;
  std::stable_sort(res.events.begin(), res.events.end(),
                   [](const Event& a, const Event& b) { return std::tie(a.start, a.rank) < std::tie(b.start, b.rank); });
  return res;
}

std::vector<std::string> check_invariants(const Schedule& s, const SimResult& r) {
  std::vector<std::string> bad;
  auto fail = [&](const std::string& m) {
    if (bad.size() < 50) bad.push_back(m);
  };
  constexpr double eps = 1e-9;  // times are sums of a few given durations: rounding only
  using Key = std::tuple<int, int, int>;
  std::map<Key, const Event*> fwd, bwd, wgt;
  std::map<Key, Kind> bkind;
  auto key = [](const Work& w) { return Key{w.dir, w.mb, w.stage}; };
  auto name = [](const Work& w) {
    return "dir " + std::to_string(w.dir) + " mb " + std::to_string(w.mb) + " stage " + std::to_string(w.stage);
  };
  std::vector<std::vector<const Event*>> by_rank(static_cast<size_t>(s.ranks));
  for (const Event& ev : r.events) {
    const Chunk& c = ev.chunk;
    by_rank[static_cast<size_t>(ev.rank)].push_back(&ev);
    if (std::abs(ev.end - ev.start - duration(c, s.params.times)) > eps) fail("wrong duration of a chunk at rank " + std::to_string(ev.rank));
    auto own = [&](const Work& w) {
      if (s.stage_rank[static_cast<size_t>(w.dir)][static_cast<size_t>(w.stage)] != ev.rank)
        fail(name(w) + " ran on rank " + std::to_string(ev.rank) + ", not its stage's rank");
    };
    if (has_forward(c.kind)) {
      own(c.a);
      if (!fwd.emplace(key(c.a), &ev).second) fail("two forwards of " + name(c.a));
    }
    if (has_backward(c.kind)) {
      const Work& w = backward_work(c);
      own(w);
      if (!bwd.emplace(key(w), &ev).second) fail("two backwards of " + name(w));
      bkind[key(w)] = c.kind == Kind::Bi ? Kind::Bi : Kind::B;
    }
    if (c.kind == Kind::W) {
      own(c.a);
      if (!wgt.emplace(key(c.a), &ev).second) fail("two W of " + name(c.a));
    }
  }
  const double lat = s.params.times.latency;
  for (int d = 0; d < s.dirs; ++d)
    for (int j = 0; j < s.mb_per_dir; ++j)
      for (int st = 0; st < s.stages; ++st) {
        const Work w{d, j, st};
        const Key k = key(w);
        const auto rank_of = [&](int stage) { return s.stage_rank[static_cast<size_t>(d)][static_cast<size_t>(stage)]; };
        if (!fwd.count(k) || !bwd.count(k)) { fail("missing forward or backward of " + name(w)); continue; }
        const Event& f = *fwd[k];
        const Event& b = *bwd[k];
        // F before B before W (per stage), each dependency with its latency across ranks.
        if (b.start < f.end - eps) fail("backward before its forward ended: " + name(w));
        if (st > 0) {
          const Key pk{d, j, st - 1};
          const double l = rank_of(st - 1) == rank_of(st) ? 0 : lat;
          if (fwd.count(pk) && f.start < fwd[pk]->end + l - eps) fail("forward before its input arrived: " + name(w));
        }
        if (st + 1 < s.stages) {
          const Key nk{d, j, st + 1};
          const double l = rank_of(st + 1) == rank_of(st) ? 0 : lat;
          if (bwd.count(nk) && b.start < bwd[nk]->end + l - eps) fail("backward before its output grad arrived: " + name(w));
        }
        const bool split = bkind[k] == Kind::Bi;
        if (split != (wgt.count(k) == 1)) fail(std::string(split ? "no W after the split backward of " : "a W without a split backward: ") + name(w));
        if (split && wgt.count(k) && wgt[k]->start < b.end - eps) fail("W before its input-grad backward ended: " + name(w));
      }
  size_t expected = 0;
  for (const auto& l : s.per_rank) expected += l.size();
  if (r.events.size() != expected) fail("events " + std::to_string(r.events.size()) + " != chunks " + std::to_string(expected));
  for (auto& evs : by_rank) {
    std::sort(evs.begin(), evs.end(), [](const Event* a, const Event* b) { return a->start < b->start; });
    for (size_t i = 1; i < evs.size(); ++i)
      if (evs[i]->start < evs[i - 1]->end - eps) fail("rank " + std::to_string(evs[i]->rank) + " runs two chunks at once at t=" + std::to_string(evs[i]->start));
  }
  return bad;
}

Table2 table2(const Params& p) {
  p.validate();
  // V3-TR §3.2.1 Table 2, the DualPipe README's DualPipeV row (v3-facts §6); PP = stages.
  const ChunkTimes& t = p.times;
  const double pp = static_cast<double>(p.pp);
  Table2 r;
  switch (p.schedule) {
    case ScheduleKind::one_f_one_b:
      r = {(pp - 1) * (t.f + t.b), static_cast<int>(p.pp), 1, p.pp, "(PP-1)(F+B)"};
      break;
    case ScheduleKind::zb1p:
      r = {(pp - 1) * (t.f + t.b - 2 * t.w), static_cast<int>(p.pp), 1, p.pp, "(PP-1)(F+B-2W)"};
      break;
    case ScheduleKind::dualpipe:
      r = {(pp / 2 - 1) * (t.fb + t.b - 3 * t.w), static_cast<int>(p.pp) + 1, 2, p.pp, "(PP/2-1)(F&B+B-3W)"};
      break;
    case ScheduleKind::dualpipev:
      r = {(pp / 2 - 1) * (t.fb + t.b - 3 * t.w), static_cast<int>(p.pp) + 1, 2, p.pp / 2, "(PP/2-1)(F&B+B-3W)"};
      break;
  }
  return r;
}

nlohmann::json timeline_rows(const Schedule& s, const SimResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const Event& ev : r.events) {
    nlohmann::json j = {{"schedule", schedule_name(s.params.schedule)}, {"pp", s.params.pp},
                        {"micro_batches", s.params.micro_batches}, {"rank", ev.rank}, {"start", ev.start},
                        {"end", ev.end}, {"kind", kind_name(ev.chunk.kind)}, {"mb", ev.chunk.a.mb},
                        {"dir", ev.chunk.a.dir}, {"stage", ev.chunk.a.stage}};
    if (ev.chunk.kind == Kind::FB) {
      j["mb_b"] = ev.chunk.b.mb;
      j["dir_b"] = ev.chunk.b.dir;
      j["stage_b"] = ev.chunk.b.stage;
    }
    rows.push_back(std::move(j));
  }
  return rows;
}

nlohmann::json summary_row(const Schedule& s, const SimResult& r) {
  const Params& p = s.params;
  const Table2 f = table2(p);
  nlohmann::json bubbles = nlohmann::json::array(), peaks = nlohmann::json::array();
  for (const auto& st : r.ranks) {
    bubbles.push_back(st.bubble);
    peaks.push_back(st.peak_activations);
  }
  return {{"schedule", schedule_name(p.schedule)}, {"pp", p.pp}, {"micro_batches", p.micro_batches},
          {"devices", s.ranks}, {"f", p.times.f}, {"b", p.times.b}, {"w", p.times.w}, {"fb", p.times.fb},
          {"latency", p.times.latency}, {"makespan", r.makespan}, {"bubble_per_rank", bubbles},
          {"bubble_max", r.max_bubble()}, {"peak_activations_per_rank", peaks},
          {"peak_activations_max", r.max_peak_activations()}, {"params_per_device", s.params_per_device},
          {"param_copies", s.param_copies}, {"table2_bubble", f.bubble}, {"table2_formula", f.bubble_formula},
          {"table2_activations", f.activations}, {"table2_params_per_device", f.params_per_device},
          {"table2_devices", f.devices}};
}

}  // namespace dsv3::pipeline
