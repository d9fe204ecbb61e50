#include "core/device_guard.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "core/cuda_probe.hpp"
#include "core/json_file.hpp"

namespace dsv3::guard {
namespace {

using Clock = std::chrono::steady_clock;

struct State {
  std::mutex mu;
  std::filesystem::path marker;
  double deadline_s = 0;
  bool watchdog_started = false;
  bool active = false;  // a Scope is open
  std::string item, phase;
  Clock::time_point last_progress;
  std::map<std::string, std::string> quarantined;
  std::string context_lost, context_lost_in;
};

State& state() {
  static State s;
  return s;
}

// The marker path for the signal handler, which may only call async-signal-safe functions.
char g_marker_path[4096] = {0};

extern "C" void remove_marker_and_reraise(int sig) {
  if (g_marker_path[0]) ::unlink(g_marker_path);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// Runs for the life of the process once a deadline is set; ends it when an open Scope has made no
// progress for the deadline. Nothing else can stop a kernel that never returns.
void watchdog() {
  State& s = state();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::lock_guard lock(s.mu);
    if (!s.active || s.deadline_s <= 0) continue;
    const double idle = std::chrono::duration<double>(Clock::now() - s.last_progress).count();
    if (idle < s.deadline_s) continue;
    const std::string why = "no progress for " + std::to_string(static_cast<int>(idle)) + " s (deadline " +
                            std::to_string(static_cast<int>(s.deadline_s)) + " s): a hang in its GPU code?";
    std::cerr << "\ndsv3: " << s.phase << " of " << s.item << ": " << why << " Stopping the process (exit "
              << kRestartExit << ")";
    if (!s.marker.empty()) {
      try {  // the reason travels to the resumed run with the marker
        write_json_atomic(s.marker, {{"item", s.item}, {"phase", s.phase}, {"utc", utc_now()}, {"why", why}});
        std::cerr << "; " << s.marker.string() << " names the case and a resumed run skips its variant";
      } catch (const std::exception&) {
      }
    }
    std::cerr << "." << std::endl;
    std::_Exit(kRestartExit);
  }
}

}  // namespace

std::string variant_of(const std::string& item) {
  const auto first = item.find('/');
  if (first == std::string::npos) return item;
  const auto second = item.find('/', first + 1);
  return second == std::string::npos ? item : item.substr(0, second);
}

void configure(const std::filesystem::path& marker, double deadline) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.marker = marker;
  s.deadline_s = deadline;
  const std::string m = marker.string();
  if (m.size() >= sizeof g_marker_path) throw std::invalid_argument("in-flight marker path too long: " + m);
  std::memcpy(g_marker_path, m.c_str(), m.size() + 1);
  if (!m.empty()) {
    std::signal(SIGINT, remove_marker_and_reraise);
    std::signal(SIGTERM, remove_marker_and_reraise);
  }
  if (deadline > 0 && !s.watchdog_started) {
    std::thread(watchdog).detach();
    s.watchdog_started = true;
  }
}

double deadline_s() {
  std::lock_guard lock(state().mu);
  return state().deadline_s;
}

Scope::Scope(const std::string& item, const std::string& phase) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.active = true;
  s.item = item;
  s.phase = phase;
  s.last_progress = Clock::now();
  if (!s.marker.empty()) write_json_atomic(s.marker, {{"item", item}, {"phase", phase}, {"utc", utc_now()}});
}

Scope::~Scope() {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.active = false;
  if (!s.marker.empty()) {
    std::error_code ec;  // a destructor must not throw; a marker that stays costs a quarantine
    std::filesystem::remove(s.marker, ec);
  }
}

void Scope::touch() {
  std::lock_guard lock(state().mu);
  state().last_progress = Clock::now();
}

std::optional<nlohmann::json> take_stale_marker(const std::filesystem::path& marker) {
  if (!std::filesystem::exists(marker)) return std::nullopt;
  nlohmann::json j;
  try {
    j = load_json_file(marker);
  } catch (const InputError& e) {  // cut short while written: the item is unknown, say so
    j = {{"item", "unknown"}, {"phase", "unknown"}, {"why", std::string("unreadable marker: ") + e.what()}};
  }
  std::filesystem::remove(marker);
  if (!j.is_object() || !j.contains("item") || !j["item"].is_string())
    j = {{"item", "unknown"}, {"phase", "unknown"}, {"why", "marker without an item"}};
  return j;
}

void quarantine(const std::string& variant, const std::string& reason) {
  std::lock_guard lock(state().mu);
  state().quarantined.emplace(variant, reason);
}

std::string quarantine_reason(const std::string& variant) {
  std::lock_guard lock(state().mu);
  const auto it = state().quarantined.find(variant);
  return it == state().quarantined.end() ? std::string() : it->second;
}

bool note_failure(const std::string& item) {
  const std::string error = cuda_context_error();
  if (error.empty()) return false;
  const std::string why = "CUDA context lost in " + item + " (" + error + ")";
  quarantine(variant_of(item), why);
  std::lock_guard lock(state().mu);
  if (state().context_lost.empty()) {
    state().context_lost = why;
    state().context_lost_in = item;
  }
  return true;
}

std::string context_lost() {
  std::lock_guard lock(state().mu);
  return state().context_lost;
}

std::string context_lost_in() {
  std::lock_guard lock(state().mu);
  return state().context_lost_in;
}

std::string cuda_skip_reason(const std::string& variant) {
  if (std::string q = quarantine_reason(variant); !q.empty()) return "quarantined: " + q;
  std::lock_guard lock(state().mu);
  if (!state().context_lost.empty())
    return state().context_lost + "; later CUDA cases cannot run in this process (dsv3 run resumes in a new one)";
  return "";
}

}  // namespace dsv3::guard
