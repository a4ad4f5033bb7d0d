#pragma once
// Quotes through Linux's configfs-tsm report interface (Linux ≥ 6.7, CONFIG_TSM_REPORTS): under
// the report root (/sys/kernel/config/tsm/report) a process makes its own entry directory, writes
// the 64-byte report data to `inblob` and reads the quote from `outblob`; `generation` counts the
// writes to the entry and `provider` names the format ("tdx_guest" for TDX quotes).
// Sources: Documentation/ABI/testing/configfs-tsm-report and drivers/virt/coco/guest/report.c in
// torvalds/linux; google/go-configfs-tsm report/report.go (the same generation check).
//
// Every file-system call goes through TsmReportFs, so tests put a temp directory tree behind the
// real implementation and play the kernel's part themselves (lib/tee/testing/fake_tdx.h).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::tee {

// The provider name configfs-tsm reports for TDX quotes (drivers/virt/coco/tdx-guest).
inline constexpr char kTsmProviderTdx[] = "tdx_guest";
// Bound on `outblob` reads. The kernel caps it at 32 KiB (TSM_REPORT_OUTBLOB_MAX); DICE-based TDX
// quotes may be larger than 8 KiB, so leave room.
inline constexpr size_t kMaxTsmOutblobBytes = size_t{1} << 20;

// The file-system calls configfs-tsm needs, on one report root. Entry and attribute names are
// single path components. Implementations are thread-safe.
class TsmReportFs {
 public:
  virtual ~TsmReportFs() = default;

  // mkdir <root>/<entry>. kAlreadyExists when the name is taken; kNotFound when the root is
  // missing; kFailedPrecondition when no TSM provider is registered (ENXIO); kPermissionDenied.
  virtual absl::Status CreateEntry(absl::string_view entry) = 0;

  // The whole content of <root>/<entry>/<attribute>. kNotFound when the attribute does not exist;
  // kInvalidArgument when it holds more than `max_bytes`; kUnavailable when the TSM is busy or its
  // quote service did not answer (EBUSY, EAGAIN, EIO, ETIMEDOUT); kInternal otherwise.
  virtual absl::StatusOr<std::vector<uint8_t>> ReadAttribute(absl::string_view entry,
                                                             absl::string_view attribute,
                                                             size_t max_bytes) = 0;

  // Writes `data` to <root>/<entry>/<attribute> from offset 0 and closes the file. configfs
  // commits a binary attribute on close and drops the commit's error, so success here does not
  // prove the kernel took the write: callers check `generation`. kNotFound, kPermissionDenied,
  // kInternal (short write).
  virtual absl::Status WriteAttribute(absl::string_view entry, absl::string_view attribute,
                                      absl::Span<const uint8_t> data) = 0;

  // rmdir <root>/<entry> (configfs drops the attributes with it). kNotFound, kInternal.
  virtual absl::Status RemoveEntry(absl::string_view entry) = 0;

  // The report root, for messages. Valid as long as this object.
  virtual const std::string& root() const = 0;
};

// The real TsmReportFs: POSIX mkdir/open/read/write/rmdir under `root`. Opens nothing until used.
std::unique_ptr<TsmReportFs> MakeTsmReportFs(std::string root);

// Creates a uniquely named entry ("pml-<pid>-<random>"), reads its `provider` (without the
// trailing newline) and removes the entry. Errors of CreateEntry/ReadAttribute pass through with
// the root named. Thread-safe.
absl::StatusOr<std::string> ReadTsmProvider(TsmReportFs& fs);

// Gets TDX quotes through configfs-tsm. Each attempt uses a fresh entry, removed afterwards
// whatever happens (RAII), so concurrent GetQuote calls never share one. Thread-safe.
class ConfigfsTsmQuoter {
 public:
  // `max_attempts` ≥ 1 bounds the retries after a generation race.
  ConfigfsTsmQuoter(std::unique_ptr<TsmReportFs> fs, int max_attempts);

  // The quote (`outblob`) for `report_data`. One attempt: create an entry; check `provider` is
  // "tdx_guest" when the entry has one; read `generation`; write `inblob`; read `outblob`; read
  // `generation` again. If it moved by anything but our one write, another writer raced us (or
  // the kernel refused our write, whose error configfs drops) and the attempt starts over.
  //   kInvalidArgument     report_data is not 64 bytes
  //   kFailedPrecondition  no configfs-tsm at the root, no TSM provider, or a provider other than
  //                        tdx_guest (named)
  //   kUnavailable         the TSM is busy or its quote service is down (EBUSY, EAGAIN, EIO,
  //                        ETIMEDOUT), `outblob` came back empty, or every attempt raced
  //   kPermissionDenied    configfs refused us (not root)
  //   kInternal            a malformed `generation`, or another I/O failure
  absl::StatusOr<std::vector<uint8_t>> GetQuote(absl::Span<const uint8_t> report_data);

  const std::string& root() const { return fs_->root(); }

 private:
  const std::unique_ptr<TsmReportFs> fs_;
  const int max_attempts_;
};

}  // namespace pml::tee
