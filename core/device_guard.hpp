// What keeps one faulty GPU kernel from costing a whole run. Every CUDA variant is a kernel that
// runs for the first time on some machine (a vendor's, or the next lent GPU), and a kernel can fail
// in two ways the host cannot recover from in-process:
//   - a fault inside the kernel (illegal or misaligned address, trap) loses the process's CUDA
//     context: every later CUDA call fails with the same error. note_failure() finds that out
//     (cuda_context_error) after a CUDA case failed, quarantines the variant, and from then on
//     skip_reason() skips every other CUDA case with "CUDA context lost in <item>", instead of
//     failing them for a fault that is not theirs;
//   - a hang (a lost mbarrier phase, a spin on a flag nobody sets) cannot be interrupted from the
//     host at all. A Scope around each CUDA case arms a watchdog: no progress (touch()) for
//     `deadline` seconds ends the process with exit status kRestartExit.
// With a marker file (dsv3 run keeps <bundle dir>/inflight.json), each Scope writes the item it
// runs there and removes it when done. A marker still there when the run is resumed names the item
// the process died in (hang, crash, kill -9): take_stale_marker() reads it and the run
// quarantines that variant. SIGINT and SIGTERM (Ctrl-C, `timeout`) remove the marker first, so a
// run that is stopped on purpose does not quarantine the case it was in.
// dsv3 run turns a lost context into exit kRestartExit with the bundle saved, and
// scripts/device-run.sh resumes it; a quarantined variant's rows say why they were not measured.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace dsv3::guard {

// EX_TEMPFAIL: stopped so that a fresh process can continue; the bundle on disk is consistent.
inline constexpr int kRestartExit = 75;

// "component/variant" of an item "component/variant/case" (the item itself when it has no case).
std::string variant_of(const std::string& item);

// `marker`: the in-flight file (empty: none). `deadline_s`: seconds a Scope may go without progress
// before the watchdog ends the process (<= 0: no watchdog). Installs the SIGINT/SIGTERM handler
// that removes the marker when one is set.
void configure(const std::filesystem::path& marker, double deadline_s);
double deadline_s();

// An item running GPU code: the marker names it, the watchdog times it. Not nested.
class Scope {
 public:
  Scope(const std::string& item, const std::string& phase);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  void touch();  // progress: the deadline counts from now
};

// The marker a dead process left ({"item", "phase", "utc"}), removed from disk; nullopt when none.
std::optional<nlohmann::json> take_stale_marker(const std::filesystem::path& marker);

void quarantine(const std::string& variant, const std::string& reason);
std::string quarantine_reason(const std::string& variant);  // "" when not quarantined

// After a CUDA item failed: when the CUDA context is lost, quarantines the item's variant,
// records the loss (context_lost() names the item and the error) and returns true.
bool note_failure(const std::string& item);
std::string context_lost();  // "" while the context works
std::string context_lost_in();  // the item that lost it, "" while the context works

// Why a CUDA variant's item cannot run in this process (context lost, variant quarantined), or "".
std::string cuda_skip_reason(const std::string& variant);

}  // namespace dsv3::guard
