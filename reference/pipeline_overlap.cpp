// The communication-overlap view (reference/pipeline_overlap.hpp): chunk times from attention,
// dispatch, MLP and combine; F&B on two streams; the all-to-all time a schedule hides.
#include "reference/pipeline_overlap.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace dsv3::pipeline {

void OverlapInputs::validate() const {
  auto need = [](double v, const char* field) {
    if (!std::isfinite(v) || v < 0) throw std::invalid_argument(std::string(field) + " must be finite and >= 0, got " + std::to_string(v));
  };
  need(attn, "attn");
  need(mlp, "mlp");
  need(dispatch, "dispatch");
  need(combine, "combine");
  if (attn + mlp <= 0) throw std::invalid_argument("attn + mlp must be > 0 (a chunk needs compute)");
  if (layers < 1 || layers > 1000) throw std::invalid_argument("layers must be in [1, 1000], got " + std::to_string(layers));
  if (sms < 1) throw std::invalid_argument("sms must be >= 1, got " + std::to_string(sms));
  if (comm_sms < 0 || comm_sms >= sms)
    throw std::invalid_argument("comm_sms must be in [0, sms), got " + std::to_string(comm_sms));
}

ChunkTimes ChunkOverlap::times() const { return ChunkTimes{f, b, w, fb, 0}; }

namespace {

struct Piece {
  std::string name;
  bool comm;
  double dur;
  std::vector<std::string> deps;
};

// Fixed per-stream order, each piece at max(its stream free, its inputs' ends).
std::vector<OverlapPiece> two_streams(const std::vector<Piece>& compute, const std::vector<Piece>& comm) {
  std::map<std::string, double> end;
  std::vector<OverlapPiece> out;
  size_t next[2] = {0, 0};
  double free_at[2] = {0, 0};
  const std::vector<Piece>* lists[2] = {&compute, &comm};
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < 2; ++s)
      while (next[s] < lists[s]->size()) {
        const Piece& p = (*lists[s])[next[s]];
        double ready = free_at[s];
        bool ok = true;
        for (const auto& d : p.deps) {
          auto it = end.find(d);
          if (it == end.end()) { ok = false; break; }
          ready = std::max(ready, it->second);
        }
        if (!ok) break;
        end[p.name] = free_at[s] = ready + p.dur;
        out.push_back({p.name, p.comm, ready, ready + p.dur});
        ++next[s];
        progress = true;
      }
  }
  if (next[0] < compute.size() || next[1] < comm.size()) throw std::logic_error("F&B two-stream order deadlocks");
  return out;
}

// Length of the union of the intervals of the compute (which 0), communication (1) or all (2) pieces.
double busy(const std::vector<OverlapPiece>& ps, int which) {
  std::vector<std::pair<double, double>> iv;
  for (const auto& p : ps)
    if ((which == 2 || p.comm == (which == 1)) && p.end > p.start) iv.emplace_back(p.start, p.end);
  std::sort(iv.begin(), iv.end());
  double total = 0, s = 0, e = 0;
  bool open = false;
  for (const auto& [a, b] : iv) {
    if (!open || a > e) {
      if (open) total += e - s;
      s = a;
      e = b;
      open = true;
    } else {
      e = std::max(e, b);
    }
  }
  if (open) total += e - s;
  return total;
}

}  // namespace

ChunkOverlap chunk_overlap(const OverlapInputs& in) {
  in.validate();
  ChunkOverlap c;
  c.in = in;
  const double L = static_cast<double>(in.layers);
  const double a2a = in.dispatch + in.combine;
  c.f = L * (in.attn + in.mlp + a2a);
  c.b = L * (2 * (in.attn + in.mlp) + a2a);
  c.w = L * (in.attn + in.mlp);
  // F&B: compute on sms - comm_sms SMs while the all-to-alls run on comm_sms (V3-TR §3.5.1).
  const double slow = static_cast<double>(in.sms) / static_cast<double>(in.sms - in.comm_sms);
  std::vector<Piece> compute, comm;
  for (int64_t i = 0; i < in.layers; ++i) {
    auto name = [](const char* s, int64_t layer) {
      std::string r(s);
      r.append(".").append(std::to_string(layer));
      return r;
    };
    auto n = [&](const char* s) { return name(s, i); };
    auto prev = [&](const char* s) { return i == 0 ? std::vector<std::string>{} : std::vector<std::string>{name(s, i - 1)}; };
    compute.push_back({n("attn_f"), false, in.attn * slow, prev("combine_f")});
    compute.push_back({n("mlp_b"), false, 2 * in.mlp * slow, {n("combine_b")}});
    compute.push_back({n("mlp_f"), false, in.mlp * slow, {n("dispatch_f")}});
    compute.push_back({n("attn_b"), false, 2 * in.attn * slow, {n("dispatch_b")}});
    comm.push_back({n("combine_b"), true, in.combine, prev("attn_b")});
    comm.push_back({n("dispatch_f"), true, in.dispatch, {n("attn_f")}});
    comm.push_back({n("dispatch_b"), true, in.dispatch, {n("mlp_b")}});
    comm.push_back({n("combine_f"), true, in.combine, {n("mlp_f")}});
  }
  c.pieces = two_streams(compute, comm);
  for (const auto& p : c.pieces) c.fb = std::max(c.fb, p.end);
  // Hidden = time both streams run = busy(comm) + busy(compute) - busy(either).
  c.fb_compute = busy(c.pieces, 0);
  c.fb_comm = busy(c.pieces, 1);
  c.fb_hidden = c.fb_comm + c.fb_compute - busy(c.pieces, 2);
  return c;
}

StepOverlap step_overlap(const ChunkOverlap& c, ScheduleKind k, int64_t pp, int64_t micro_batches) {
  Params p;
  p.schedule = k;
  p.pp = pp;
  p.micro_batches = micro_batches;
  p.times = c.times();
  const Schedule s = make_schedule(p);
  const SimResult r = simulate(s);
  StepOverlap o{schedule_name(k), pp, micro_batches, s.ranks, r.makespan, 0, 0};
  const double chunk_a2a = static_cast<double>(c.in.layers) * (c.in.dispatch + c.in.combine);
  for (const Event& e : r.events) {
    switch (e.chunk.kind) {
      case Kind::F:
      case Kind::B:
      case Kind::Bi: o.a2a_total += chunk_a2a; break;  // alone: exposed
      case Kind::W: break;                              // weight grads: no all-to-all
      case Kind::FB:
        o.a2a_total += c.fb_comm;
        o.a2a_hidden += c.fb_hidden;
        break;
    }
  }
  return o;
}

std::vector<StepOverlap> step_overlaps(const ChunkOverlap& c, int64_t pp, int64_t micro_batches) {
  std::vector<StepOverlap> steps;
  for (ScheduleKind k : all_schedules()) steps.push_back(step_overlap(c, k, pp, micro_batches));
  return steps;
}

nlohmann::json overlap_rows(const ChunkOverlap& c, const std::vector<StepOverlap>& steps) {
  nlohmann::json rows = nlohmann::json::array();
  const OverlapInputs& in = c.in;
  rows.push_back({{"table", "chunk"}, {"attn", in.attn}, {"mlp", in.mlp}, {"dispatch", in.dispatch},
                  {"combine", in.combine}, {"layers", in.layers}, {"sms", in.sms}, {"comm_sms", in.comm_sms},
                  {"f", c.f}, {"b", c.b}, {"w", c.w}, {"fb", c.fb}, {"fb_compute", c.fb_compute},
                  {"fb_comm", c.fb_comm}, {"fb_hidden", c.fb_hidden}});
  for (const auto& s : steps)
    rows.push_back({{"table", "step"}, {"schedule", s.schedule}, {"pp", s.pp}, {"micro_batches", s.micro_batches},
                    {"devices", s.devices}, {"makespan", s.makespan}, {"a2a_total", s.a2a_total},
                    {"a2a_hidden", s.a2a_hidden}, {"hidden_fraction", s.hidden_fraction()}});
  return rows;
}

}  // namespace dsv3::pipeline
