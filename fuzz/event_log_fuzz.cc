// libFuzzer target for dstack's JSON event log (lib/tdx/event_log.h). tdx_collateral_fuzz calls
// ParseEventLog too, but only on collateral-shaped seeds and without replaying; this target gives
// it event-log seeds and runs what a verifier does with a parsed log. Nothing may crash, leak or
// read out of bounds, and the target traps when a parsed log breaks the header's promises:
//   * at most kMaxEventLogEntries entries, each with imr 0..3, name and payload within bounds;
//   * digest_verified exactly for runtime events, whose digest is RuntimeEventDigest(name,
//     payload);
//   * ReplayRtmrs equals extending each register entry by entry, and a TD report carrying the
//     replayed values passes CheckReplayMatches (every register), an all-zero one fails it
//     exactly when some register was extended.
// Seeds: fuzz/seeds/event_log/*.json (scripts/fuzz.sh copies them):
//   event_log_fuzz -max_total_time=60 corpus/ fuzz/seeds/event_log/
#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/quote.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pml::tdx;  // NOLINT(google-build-using-namespace): fuzz entry point only
  auto log = ParseEventLog(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!log.ok()) {
    return 0;
  }
  if (log->entries.size() > kMaxEventLogEntries) {
    __builtin_trap();
  }

  std::array<Bytes48, 4> expected{};
  std::array<bool, 4> extended{};
  for (const EventLogEntry& e : log->entries) {
    if (e.imr > 3 || e.event.size() > kMaxEventNameBytes ||
        e.payload.size() > kMaxEventPayloadBytes) {
      __builtin_trap();
    }
    const bool runtime = e.event_type == kDstackRuntimeEventType;
    if (e.digest_verified != runtime) {
      __builtin_trap();
    }
    if (runtime && e.digest != RuntimeEventDigest(e.event, e.payload)) {
      __builtin_trap();
    }
    expected[e.imr] = ExtendRtmr(expected[e.imr], e.digest);
    extended[e.imr] = true;
  }
  if (ReplayRtmrs(*log) != expected) {
    __builtin_trap();
  }

  TdReport td;
  td.rtmr = expected;
  const RtmrReplay replay = ReplayAgainst(*log, td);
  if (!replay.all_match() || !CheckReplayMatches(*log, td).ok()) {
    __builtin_trap();
  }

  const TdReport zero;
  const bool any_extended = extended[0] || extended[1] || extended[2] || extended[3];
  const absl::Status check = CheckReplayMatches(*log, zero);
  if (check.ok() == any_extended) {
    __builtin_trap();
  }
  if (!check.ok() && check.code() != absl::StatusCode::kFailedPrecondition) {
    __builtin_trap();
  }
  return 0;
}
