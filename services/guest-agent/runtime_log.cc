#include "services/guest-agent/runtime_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/tdx/event_log.h"

namespace pml::guest {
namespace {

// A line is at most this long: the fixed keys, a 96-hex digest, the name and the hex payload.
constexpr size_t kMaxLineBytes = 256 + kMaxRuntimeEventNameBytes + 2 * kMaxRuntimeEventPayloadBytes;

absl::Status ErrnoError(absl::string_view what, absl::string_view path, int err) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::error_code(err, std::generic_category()).message()));
}

std::string HexPrefix(const tee::Measurement& m) {
  return absl::StrCat(core::HexEncode(m).substr(0, 32), "...");
}

// The persisted form, which is also the entry in dstack's JSON array. Every field is ASCII that
// needs no escaping (ValidateRuntimeEvent bounds the name's alphabet), so no JSON writer is used.
std::string EntryLine(const RuntimeEvent& e) {
  return absl::StrCat("{\"imr\":", kRuntimeEventRtmr,
                      ",\"event_type\":", tdx::kDstackRuntimeEventType, ",\"digest\":\"",
                      core::HexEncode(e.digest), "\",\"event\":\"", e.name,
                      "\",\"event_payload\":\"", core::HexEncode(e.payload), "\"}");
}

// Parses one persisted line with the verifier's own parser (which recomputes the digest), then
// applies the emit-time rules, so a file entry means exactly what an emitted one does.
absl::StatusOr<RuntimeEvent> ParseLine(absl::string_view line) {
  PML_ASSIGN_OR_RETURN(tdx::EventLog log, tdx::ParseEventLog(absl::StrCat("[", line, "]")));
  if (log.entries.size() != 1) {
    return absl::InvalidArgumentError("not exactly one entry");
  }
  tdx::EventLogEntry& e = log.entries[0];
  if (e.imr != static_cast<uint32_t>(kRuntimeEventRtmr) ||
      e.event_type != tdx::kDstackRuntimeEventType) {
    return absl::InvalidArgumentError(absl::StrCat("not an rtmr3 runtime event (imr ", e.imr,
                                                   ", event_type ", e.event_type, ")"));
  }
  PML_RETURN_IF_ERROR(ValidateRuntimeEvent(e.event, e.payload));
  RuntimeEvent out;
  out.name = std::move(e.event);
  out.payload = std::move(e.payload);
  out.digest = e.digest;
  return out;
}

absl::Status WriteAllAt(int fd, absl::string_view data, size_t offset, absl::string_view path) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError("writing event log", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    return ErrnoError("syncing event log", path, errno);
  }
  return absl::OkStatus();
}

absl::Status TruncateTo(int fd, size_t size, absl::string_view path) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    return ErrnoError("truncating event log", path, errno);
  }
  if (::fdatasync(fd) != 0) {
    return ErrnoError("syncing event log", path, errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int fd, absl::string_view path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoError("reading event log", path, errno);
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size > kMaxRuntimeLogBytes + kMaxLineBytes) {
    return absl::DataLossError(
        absl::StrCat("event log ", path, " has ", size, " bytes, more than the agent ever writes"));
  }
  std::string content(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, content.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError("reading event log", path, errno);
    }
    if (n == 0) {
      break;  // shrank under us: the lock says nobody else writes, so treat as the end
    }
    done += static_cast<size_t>(n);
  }
  content.resize(done);
  return content;
}

// Makes the file's directory entry durable (a created log must not vanish in a crash while the
// register keeps what was extended after it).
absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("opening directory", dir, errno);
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return ErrnoError("syncing directory", dir, err);
  }
  return absl::OkStatus();
}

// Owns a file descriptor until Release().
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int Get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

struct ParsedFile {
  std::vector<RuntimeEvent> events;  // the well-formed complete lines before anything else
  std::vector<size_t> ends;          // byte offset just past each of those lines
  std::string stop_reason;           // why parsing stopped early ("" when it reached the end)
};

ParsedFile ParseFile(absl::string_view content) {
  ParsedFile out;
  size_t pos = 0;
  while (pos < content.size()) {
    const size_t nl = content.find('\n', pos);
    if (nl == absl::string_view::npos) {
      out.stop_reason = absl::StrCat("an incomplete last line of ", content.size() - pos,
                                     " bytes (a torn append)");
      break;
    }
    absl::StatusOr<RuntimeEvent> event = ParseLine(content.substr(pos, nl - pos));
    if (!event.ok()) {
      out.stop_reason =
          absl::StrCat("line ", out.events.size() + 1, " is malformed: ", event.status().message());
      break;
    }
    out.events.push_back(std::move(event).value());
    out.ends.push_back(nl + 1);
    pos = nl + 1;
  }
  return out;
}

}  // namespace

absl::Status ValidateRuntimeEvent(absl::string_view name, absl::Span<const uint8_t> payload) {
  if (name.empty()) {
    return absl::InvalidArgumentError("event name is empty");
  }
  if (name.size() > kMaxRuntimeEventNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "event name has ", name.size(), " bytes, more than ", kMaxRuntimeEventNameBytes));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("event name has a character outside [A-Za-z0-9._-] at offset ", i,
                       c == ':' ? " (':' would make the digest ambiguous)" : ""));
    }
  }
  if (payload.size() > kMaxRuntimeEventPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "event payload has ", payload.size(), " bytes, more than ", kMaxRuntimeEventPayloadBytes));
  }
  return absl::OkStatus();
}

RuntimeEventLog::RuntimeEventLog(std::string path, int fd, tee::TeeProvider& tee,
                                 std::vector<Entry> entries, size_t file_size,
                                 const tee::Measurement& rtmr3)
    : path_(std::move(path)), tee_(tee), fd_(fd) {
  absl::MutexLock lock(&mu_);
  for (Entry& e : entries) {
    if (!json_entries_.empty()) {
      json_entries_.push_back(',');
    }
    json_entries_.append(e.line);
  }
  entries_ = std::move(entries);
  file_size_ = file_size;
  rtmr3_ = rtmr3;
}

RuntimeEventLog::~RuntimeEventLog() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<RuntimeEventLog>> RuntimeEventLog::Open(absl::string_view path,
                                                                       tee::TeeProvider& tee) {
  if (path.empty()) {
    return absl::InvalidArgumentError("event log path is empty");
  }
  std::string p(path);
  const std::string parent = std::filesystem::path(p).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  PML_RETURN_IF_ERROR(core::MakeDirs(dir));

  OwnedFd owned(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  const int fd = owned.Get();
  if (fd < 0) {
    return ErrnoError("opening event log", p, errno);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("event log ", p, " is locked by another agent"));
    }
    return ErrnoError("locking event log", p, errno);
  }
  PML_RETURN_IF_ERROR(SyncDir(dir));
  PML_ASSIGN_OR_RETURN(std::string content, ReadAll(fd, p));
  ParsedFile parsed = ParseFile(content);

  absl::StatusOr<tee::RtmrValues> rtmrs = tee.GetRtmrs();
  if (!rtmrs.ok()) {
    return core::Annotate(rtmrs.status(), absl::StrCat("reading rtmr3 to reconcile event log ", p));
  }
  const tee::Measurement& actual = (*rtmrs)[kRuntimeEventRtmr];

  // replay[i] = RTMR3 after the first i events of the file.
  const size_t k = parsed.events.size();
  std::vector<tee::Measurement> replay(k + 1);
  for (size_t i = 0; i < k; ++i) {
    replay[i + 1] = tdx::ExtendRtmr(replay[i], parsed.events[i].digest);
  }
  size_t keep = 0;
  if (replay[k] == actual) {
    keep = k;  // anything after the parsed lines was never extended
  } else if (k > 0 && replay[k - 1] == actual) {
    keep = k - 1;  // the last entry was appended, then the agent stopped before extending
  } else {
    return absl::DataLossError(absl::StrCat(
        "event log ", p, " cannot be reconciled with rtmr3: its ", k, " events replay to ",
        HexPrefix(replay[k]), " but the register holds ", HexPrefix(actual),
        "; they differ by more than one unextended entry (a log from an earlier boot, rtmr3 "
        "extended outside the agent, or a damaged file)",
        parsed.stop_reason.empty() ? "" : absl::StrCat("; the file has ", parsed.stop_reason)));
  }
  const size_t keep_bytes = keep == 0 ? 0 : parsed.ends[keep - 1];
  if (keep_bytes != content.size()) {
    PML_RETURN_IF_ERROR(TruncateTo(fd, keep_bytes, p));
  }

  std::vector<Entry> entries;
  entries.reserve(keep);
  for (size_t i = 0; i < keep; ++i) {
    Entry e;
    e.line = EntryLine(parsed.events[i]);
    e.event = std::move(parsed.events[i]);
    entries.push_back(std::move(e));
  }
  return absl::WrapUnique(new RuntimeEventLog(std::move(p), owned.Release(), tee,
                                              std::move(entries), keep_bytes, actual));
}

absl::Status RuntimeEventLog::Emit(absl::string_view name, absl::Span<const uint8_t> payload,
                                   EmitReceipt* receipt) {
  PML_RETURN_IF_ERROR(ValidateRuntimeEvent(name, payload));
  Entry entry;
  entry.event.name.assign(name.data(), name.size());
  entry.event.payload.assign(payload.begin(), payload.end());
  entry.event.digest = tdx::RuntimeEventDigest(name, payload);
  entry.line = EntryLine(entry.event);
  const std::string record = absl::StrCat(entry.line, "\n");

  absl::MutexLock lock(&mu_);
  if (broken_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "event log ", path_, " is inconsistent after an earlier failure; restart the agent"));
  }
  if (entries_.size() >= kMaxRuntimeEvents) {
    return absl::ResourceExhaustedError(
        absl::StrCat("event log holds ", entries_.size(), " events, the most it keeps"));
  }
  if (file_size_ + record.size() > kMaxRuntimeLogBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("event log would grow past ", kMaxRuntimeLogBytes, " bytes"));
  }
  // Durable before measured: see the crash semantics in the header.
  if (absl::Status s = WriteAllAt(fd_, record, file_size_, path_); !s.ok()) {
    if (!TruncateTo(fd_, file_size_, path_).ok()) {
      broken_ = true;
    }
    return s;
  }
  const tee::Measurement digest = entry.event.digest;
  absl::Status extended = tee_.ExtendRtmr(kRuntimeEventRtmr, entry.event.digest);
  if (!extended.ok()) {
    PML_RETURN_IF_ERROR(RecoverFromFailedExtend(extended, std::move(entry), record.size()));
  } else {
    Commit(std::move(entry), record.size());
  }
  if (receipt != nullptr)
    *receipt = EmitReceipt{entries_.size() - 1, digest, rtmr3_};
  return absl::OkStatus();
}

absl::Status RuntimeEventLog::RecoverFromFailedExtend(const absl::Status& extend_error, Entry entry,
                                                      size_t line_size) {
  const tee::Measurement after = tdx::ExtendRtmr(rtmr3_, entry.event.digest);
  const absl::StatusOr<tee::RtmrValues> now = tee_.GetRtmrs();
  if (now.ok() && (*now)[kRuntimeEventRtmr] == after) {
    // The provider reported an error but the register moved: the event is measured, so the
    // (already durable) line must stay.
    Commit(std::move(entry), line_size);
    return absl::OkStatus();
  }
  if (now.ok() && (*now)[kRuntimeEventRtmr] != rtmr3_) {
    broken_ = true;
    return absl::DataLossError(absl::StrCat("rtmr3 changed outside event log ", path_,
                                            " while extending it; restart the agent"));
  }
  // The register is unchanged (or the provider can't say, and its contract promises that).
  if (!TruncateTo(fd_, file_size_, path_).ok()) {
    broken_ = true;
  }
  return core::Annotate(extend_error,
                        absl::StrCat("extending rtmr3 with event ", entry.event.name));
}

void RuntimeEventLog::Commit(Entry entry, size_t line_size) {
  file_size_ += line_size;
  rtmr3_ = tdx::ExtendRtmr(rtmr3_, entry.event.digest);
  if (!json_entries_.empty()) {
    json_entries_.push_back(',');
  }
  json_entries_.append(entry.line);
  entries_.push_back(std::move(entry));
}

std::vector<RuntimeEvent> RuntimeEventLog::Events() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<RuntimeEvent> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) {
    out.push_back(e.event);
  }
  return out;
}

size_t RuntimeEventLog::Size() const {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

std::string RuntimeEventLog::ToDstackJsonLocked() const {
  return absl::StrCat("[", json_entries_, "]");
}

std::string RuntimeEventLog::ToDstackJson() const {
  absl::ReaderMutexLock lock(&mu_);
  return ToDstackJsonLocked();
}

absl::StatusOr<QuoteAndLog> RuntimeEventLog::GetQuoteAndLog(
    absl::Span<const uint8_t> report_data) const {
  absl::ReaderMutexLock lock(&mu_);
  QuoteAndLog out;
  PML_ASSIGN_OR_RETURN(out.quote, tee_.GetQuote(report_data));
  out.runtime_log_json = ToDstackJsonLocked();
  return out;
}

}  // namespace pml::guest
