#pragma once
// dstack's JSON event log (shared/specs/dstack-compat.md §3.3): a JSON array of
//   {"imr": 0-3, "event_type": u32, "digest": "<96 hex>", "event": "<name>",
//    "event_payload": "<hex>"}
// and its replay to RTMR values: RTMR_new = SHA-384(RTMR_old || digest), starting from zero.
//
// dstack runtime events (event_type 0x08000001, what the guest agent extends RTMR3 with) carry a
// digest that must equal SHA-384(type_le32 || ":" || event || ":" || payload); ParseEventLog
// recomputes it and rejects a mismatch (or fills it in when the digest is empty). Other entries
// (firmware/boot measurements, payloads often stripped) are taken at their stated digest: their
// names and payloads are *not* covered by the registers, so only runtime events may be read for
// meaning (EventLogEntry::digest_verified).
//
// Errors: kInvalidArgument naming the entry and field; kFailedPrecondition from
// CheckReplayMatches naming the register. Thread-safety: pure functions.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/tdx/quote.h"

namespace pml::tdx {

inline constexpr uint32_t kDstackRuntimeEventType = 0x08000001;

// Bounds on what ParseEventLog accepts.
inline constexpr size_t kMaxEventLogBytes = 16 << 20;
inline constexpr size_t kMaxEventLogEntries = 4096;
inline constexpr size_t kMaxEventNameBytes = 1024;
inline constexpr size_t kMaxEventPayloadBytes = 1 << 20;

struct EventLogEntry {
  uint32_t imr = 0;  // RTMR index 0..3
  uint32_t event_type = 0;
  Bytes48 digest{};
  std::string event;
  std::vector<uint8_t> payload;
  // True when the digest was recomputed from event/payload (dstack runtime events).
  bool digest_verified = false;
};

struct EventLog {
  std::vector<EventLogEntry> entries;
};

// Parses and bounds-checks the JSON log; recomputes runtime event digests (see above).
absl::StatusOr<EventLog> ParseEventLog(absl::string_view json);

// SHA-384(0x08000001 as LE u32 || ":" || name || ":" || payload).
Bytes48 RuntimeEventDigest(absl::string_view name, absl::Span<const uint8_t> payload);

// One extend step: SHA-384(rtmr || digest).
Bytes48 ExtendRtmr(const Bytes48& rtmr, const Bytes48& digest);

struct RtmrReplay {
  std::array<Bytes48, 4> rtmr{};      // replayed values
  std::array<bool, 4> matches{};      // replayed == the quote's value, per register
  bool all_match() const { return matches[0] && matches[1] && matches[2] && matches[3]; }
};

// Replays every entry into its register.
std::array<Bytes48, 4> ReplayRtmrs(const EventLog& log);
// Replays and compares with the TD report's RTMRs.
RtmrReplay ReplayAgainst(const EventLog& log, const TdReport& td);
// OK when every register in `registers` (indices 0..3) replays to the quote's value;
// kFailedPrecondition naming the first that does not.
absl::Status CheckReplayMatches(const EventLog& log, const TdReport& td,
                                absl::Span<const int> registers = {0, 1, 2, 3});

}  // namespace pml::tdx
