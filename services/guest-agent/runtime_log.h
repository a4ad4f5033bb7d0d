#pragma once
// The RTMR3 runtime event log: dstack runtime events (DESIGN.md §4, dstack-compat.md §3.3), kept
// so that the log served with every quote always replays to the register.
//
// An event is (name, payload). Its digest is lib/tdx's RuntimeEventDigest,
// SHA-384(0x08000001 as LE u32 ‖ ":" ‖ name ‖ ":" ‖ payload), and emitting it extends RTMR3 with
// that digest. The log is persisted as JSON lines, one dstack entry per line:
//   {"imr":3,"event_type":134217729,"digest":"<96 hex>","event":"<name>","event_payload":"<hex>"}
// so `"[" + lines joined by "," + "]"` is exactly the array lib/tdx's ParseEventLog accepts.
//
// Ordering and crash semantics. Emit holds one mutex across "append the line and fsync it" and
// "extend RTMR3", so concurrent emits can never reorder the log against the register. The line is
// durable *before* the register moves, so after a crash at any point the file holds every event
// the register includes plus at most one more: the event being emitted, whose Emit never returned
// OK. Open reconciles the file against TeeProvider::GetRtmrs():
//   - the file replays to RTMR3: kept as is;
//   - the file minus its last entry replays to RTMR3: that entry was appended but never extended;
//     it is dropped (the file is truncated);
//   - an incomplete last line (a torn append: no final newline) or other bytes after the last
//     entry that replays to RTMR3 were never extended either and are dropped;
//   - anything else (the register includes events the file lacks, a corrupt line inside the part
//     the register covers, a log left over from an earlier boot while RTMR3 restarted at zero) is
//     unrecoverable: Open returns kDataLoss saying so and the agent must not serve quotes with it.
// The file must therefore live as long as RTMR3 does and no longer: keep it on tmpfs (/run, as
// dstack's /run/log/dstack/runtime_events.log), or with the simulator next to its state_dir.
//
// If ExtendRtmr fails, the appended line is truncated away again (the provider contract says the
// register is then unchanged; where GetRtmrs can tell, the register is checked and an extension
// that happened after all is kept). If even that truncation fails, the log stops accepting events
// (kFailedPrecondition) so the stray line stays last, for the next Open to drop.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "lib/tee/tee_provider.h"

namespace pml::guest {

// The register dstack runtime events extend.
inline constexpr int kRuntimeEventRtmr = 3;

// Bounds on one event. A name is 1..64 characters of [A-Za-z0-9._-]. ':' is refused although
// the digest format would take it: the digest joins name and payload with ':', so a name holding
// one would give two different (name, payload) pairs the same digest, and a log could then be
// rewritten without changing what it replays to. dstack's own event names never contain ':'.
inline constexpr size_t kMaxRuntimeEventNameBytes = 64;
inline constexpr size_t kMaxRuntimeEventPayloadBytes = 64 << 10;

// Bounds on the whole log, so that it plus the firmware's boot log (RTMR0-2, CCEL) stays well
// inside what lib/tdx's ParseEventLog accepts (kMaxEventLogEntries = 4096 entries, 16 MiB); a log
// no verifier accepts would make every later quote useless.
inline constexpr size_t kMaxRuntimeEvents = 2048;
inline constexpr size_t kMaxRuntimeLogBytes = 8 << 20;  // persisted bytes, ≈ the JSON size

struct RuntimeEvent {
  std::string name;
  std::vector<uint8_t> payload;
  tee::Measurement digest{};  // RuntimeEventDigest(name, payload)

  friend bool operator==(const RuntimeEvent&, const RuntimeEvent&) = default;
};

// OK when (name, payload) is within the bounds above; kInvalidArgument naming "name" or
// "payload" and the rule broken otherwise. Pure and thread-safe.
absl::Status ValidateRuntimeEvent(absl::string_view name, absl::Span<const uint8_t> payload);

// What one Emit did.
struct EmitReceipt {
  size_t index = 0;           // position in the log, from 0
  tee::Measurement digest{};  // the event digest
  tee::Measurement rtmr3{};   // RTMR3 right after this event's extension
};

// A quote and the runtime log it was taken with (see RuntimeEventLog::GetQuoteAndLog).
struct QuoteAndLog {
  std::vector<uint8_t> quote;
  std::string runtime_log_json;  // ToDstackJson() at the time of the quote
};

// Thread-safe: Emit, Events, ToDstackJson and GetQuoteAndLog may be called concurrently.
// Emits are serialized; readers see the log before or after an emit, never half of it.
class RuntimeEventLog {
 public:
  // Opens (creating it and its parent directories when missing) the log at `path` and
  // reconciles it with tee's RTMR3 as described above, truncating the file when an entry that
  // was never extended is dropped. The file is locked (flock) for the object's lifetime.
  // `tee` is borrowed and must outlive the returned object.
  // Errors: kDataLoss when the file and RTMR3 cannot be reconciled (names the path, the number
  // of events and both register values, truncated); kFailedPrecondition when another agent holds
  // the file's lock; kInternal naming the path on I/O errors; GetRtmrs's error (e.g.
  // kUnimplemented where the provider cannot report RTMRs) passes through with context.
  static absl::StatusOr<std::unique_ptr<RuntimeEventLog>> Open(absl::string_view path,
                                                               tee::TeeProvider& tee);

  RuntimeEventLog(const RuntimeEventLog&) = delete;
  RuntimeEventLog& operator=(const RuntimeEventLog&) = delete;
  ~RuntimeEventLog();

  // Validates the event, appends it to the file (fsync'd), then extends RTMR3 with its digest;
  // all under one lock. OK means the event is both durable and measured.
  // Errors: kInvalidArgument from ValidateRuntimeEvent (nothing written); kResourceExhausted when
  // the log already holds kMaxRuntimeEvents events or the line would take it past
  // kMaxRuntimeLogBytes (nothing written); kInternal naming the path when writing or syncing the
  // file fails (the partial line is removed); ExtendRtmr's error with context (the line is
  // removed, see above); kFailedPrecondition when an earlier failure left the file unrepairable
  // until the agent restarts.
  // `receipt`, when given, receives the event's position, digest and RTMR3 after it.
  absl::Status Emit(absl::string_view name, absl::Span<const uint8_t> payload,
                    EmitReceipt* receipt = nullptr);

  // The events in order (a copy).
  std::vector<RuntimeEvent> Events() const;
  size_t Size() const;

  // The whole log as dstack's JSON array of entries (see the file comment), compact, "[]" when
  // empty. Only RTMR3 entries: a quote response's event_log also carries the boot log (RTMR0-2),
  // which the caller prepends.
  std::string ToDstackJson() const;

  // A quote over `report_data` taken while no emit is in progress, with the log as it was at
  // that moment, so the log always replays to the quote's RTMR3. Concurrent calls run in
  // parallel; an Emit waits for them (and they for it). Errors: TeeProvider::GetQuote's.
  absl::StatusOr<QuoteAndLog> GetQuoteAndLog(absl::Span<const uint8_t> report_data) const;

  // The log's path, for logs and Info.
  const std::string& Path() const { return path_; }

 private:
  struct Entry {
    RuntimeEvent event;
    std::string line;  // the persisted JSON, without the newline
  };

  RuntimeEventLog(std::string path, int fd, tee::TeeProvider& tee, std::vector<Entry> entries,
                  size_t file_size, const tee::Measurement& rtmr3);

  // Handles a failed ExtendRtmr after `line_size` bytes were appended; returns what Emit returns.
  absl::Status RecoverFromFailedExtend(const absl::Status& extend_error, Entry entry,
                                       size_t line_size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Commit(Entry entry, size_t line_size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string ToDstackJsonLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const std::string path_;
  tee::TeeProvider& tee_;
  mutable absl::Mutex mu_;
  const int fd_;  // owned; written only under mu_
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::string json_entries_ ABSL_GUARDED_BY(mu_);  // the lines joined by ","
  size_t file_size_ ABSL_GUARDED_BY(mu_) = 0;      // bytes of complete, extended lines
  tee::Measurement rtmr3_ ABSL_GUARDED_BY(mu_){};  // what entries_ replay to
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pml::guest
