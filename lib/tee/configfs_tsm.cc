#include "lib/tee/configfs_tsm.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/tee/internal/errno_status.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee {
namespace {

// Attribute names (Documentation/ABI/testing/configfs-tsm-report).
constexpr char kInblob[] = "inblob";          // WO, up to 64 bytes of report data
constexpr char kOutblob[] = "outblob";        // RO, the quote, generated on read
constexpr char kGeneration[] = "generation";  // RO, "%lu\n": writes to this entry so far
constexpr char kProvider[] = "provider";      // RO, "%s\n": e.g. "tdx_guest"
constexpr size_t kMaxTextAttributeBytes = 256;
constexpr int kMaxNameCollisions = 8;

absl::Status CheckComponent(absl::string_view name, absl::string_view what) {
  if (name.empty() || name == "." || name == ".." || absl::StrContains(name, '/')) {
    return absl::InvalidArgumentError(absl::StrCat("configfs-tsm ", what, " name \"",
                                                   absl::CHexEscape(name.substr(0, 64)),
                                                   "\" is not a single path component"));
  }
  return absl::OkStatus();
}

class PosixTsmReportFs final : public TsmReportFs {
 public:
  explicit PosixTsmReportFs(std::string root) : root_(std::move(root)) {}

  absl::Status CreateEntry(absl::string_view entry) override {
    PML_RETURN_IF_ERROR(CheckComponent(entry, "entry"));
    const std::string path = absl::StrCat(root_, "/", entry);
    if (::mkdir(path.c_str(), 0700) != 0) {
      return internal::ErrnoToStatus(errno, "cannot create configfs-tsm entry", path);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint8_t>> ReadAttribute(absl::string_view entry,
                                                     absl::string_view attribute,
                                                     size_t max_bytes) override {
    PML_RETURN_IF_ERROR(CheckComponent(entry, "entry"));
    PML_RETURN_IF_ERROR(CheckComponent(attribute, "attribute"));
    const std::string path = absl::StrCat(root_, "/", entry, "/", attribute);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return internal::ErrnoToStatus(errno, "cannot open", path);
    }
    absl::Cleanup closer = [fd] { ::close(fd); };
    // configfs fills a binary attribute's buffer on the first read (that is when the kernel asks
    // the TSM for the quote) and serves later reads from it; read to EOF.
    std::vector<uint8_t> out;
    uint8_t buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return internal::ErrnoToStatus(errno, "cannot read", path);
      }
      if (n == 0) {
        break;
      }
      if (out.size() + static_cast<size_t>(n) > max_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " holds more than ", max_bytes, " bytes"));
      }
      out.insert(out.end(), buf, buf + n);
    }
    return out;
  }

  absl::Status WriteAttribute(absl::string_view entry, absl::string_view attribute,
                              absl::Span<const uint8_t> data) override {
    PML_RETURN_IF_ERROR(CheckComponent(entry, "entry"));
    PML_RETURN_IF_ERROR(CheckComponent(attribute, "attribute"));
    const std::string path = absl::StrCat(root_, "/", entry, "/", attribute);
    // No O_CREAT (configfs makes the attributes) and no O_TRUNC (configfs has no truncate).
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return internal::ErrnoToStatus(errno, "cannot open", path);
    }
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        const int err = errno;
        ::close(fd);
        return internal::ErrnoToStatus(err, "cannot write", path);
      }
      off += static_cast<size_t>(n);
    }
    // configfs commits a binary attribute here, on release; a close error still means failure.
    if (::close(fd) != 0) {
      return internal::ErrnoToStatus(errno, "cannot close", path);
    }
    return absl::OkStatus();
  }

  absl::Status RemoveEntry(absl::string_view entry) override {
    PML_RETURN_IF_ERROR(CheckComponent(entry, "entry"));
    const std::string path = absl::StrCat(root_, "/", entry);
    if (::rmdir(path.c_str()) != 0) {
      return internal::ErrnoToStatus(errno, "cannot remove configfs-tsm entry", path);
    }
    return absl::OkStatus();
  }

  const std::string& root() const override { return root_; }

 private:
  const std::string root_;
};

// A name no other process or thread uses: the pid keeps processes apart, 64 random bits keep
// threads and leftovers of a dead process with a recycled pid apart (and EEXIST retries anyway).
std::string NewEntryName() {
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) | rd();
  return absl::StrCat("pml-", ::getpid(), "-", absl::Hex(r, absl::kZeroPad16));
}

absl::StatusOr<std::string> CreateUniqueEntry(TsmReportFs& fs) {
  absl::Status last;
  for (int i = 0; i < kMaxNameCollisions; ++i) {
    std::string name = NewEntryName();
    last = fs.CreateEntry(name);
    if (last.ok()) {
      return name;
    }
    if (absl::IsAlreadyExists(last)) {
      continue;
    }
    if (absl::IsNotFound(last)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "configfs-tsm report interface not found at ", fs.root(),
          " (needs Linux >= 6.7 with CONFIG_TSM_REPORTS inside a TDX guest): ", last.message()));
    }
    if (absl::IsFailedPrecondition(last)) {
      return absl::FailedPreconditionError(
          absl::StrCat("configfs-tsm at ", fs.root(),
                       " has no TSM provider (is the tdx_guest driver loaded?): ", last.message()));
    }
    return last;
  }
  return core::Annotate(last, absl::StrCat("configfs-tsm at ", fs.root(), ": ", kMaxNameCollisions,
                                           " entry names taken"));
}

absl::StatusOr<std::string> ReadText(TsmReportFs& fs, absl::string_view entry,
                                     absl::string_view attribute) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                       fs.ReadAttribute(entry, attribute, kMaxTextAttributeBytes));
  const std::string text(bytes.begin(), bytes.end());
  return std::string(absl::StripAsciiWhitespace(text));
}

absl::StatusOr<uint64_t> ReadGeneration(TsmReportFs& fs, absl::string_view entry) {
  absl::StatusOr<std::string> text = ReadText(fs, entry, kGeneration);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("configfs-tsm entry under ", fs.root(),
                       " has no generation attribute: not a configfs-tsm report interface"));
    }
    return core::Annotate(text.status(), "configfs-tsm generation");
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value)) {
    return absl::InternalError(absl::StrCat("configfs-tsm generation holds \"",
                                            absl::CHexEscape(text->substr(0, 32)),
                                            "\", not a number"));
  }
  return value;
}

// kOk when the entry has no `provider` (the ABI makes it optional for a TSM to show) or names
// tdx_guest; kFailedPrecondition naming the provider otherwise.
absl::Status CheckProvider(TsmReportFs& fs, absl::string_view entry) {
  absl::StatusOr<std::string> provider = ReadText(fs, entry, kProvider);
  if (absl::IsNotFound(provider.status())) {
    return absl::OkStatus();
  }
  if (!provider.ok()) {
    return core::Annotate(provider.status(), "configfs-tsm provider");
  }
  if (*provider != kTsmProviderTdx) {
    return absl::FailedPreconditionError(
        absl::StrCat("configfs-tsm at ", fs.root(), " is provided by \"",
                     absl::CHexEscape(provider->substr(0, 64)), "\", not ", kTsmProviderTdx,
                     ": this is not a TDX guest"));
  }
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<TsmReportFs> MakeTsmReportFs(std::string root) {
  return std::make_unique<PosixTsmReportFs>(std::move(root));
}

absl::StatusOr<std::string> ReadTsmProvider(TsmReportFs& fs) {
  PML_ASSIGN_OR_RETURN(const std::string entry, CreateUniqueEntry(fs));
  // Best effort: a leftover entry costs a few bytes of kernel memory and nothing else.
  absl::Cleanup remove = [&fs, &entry] { fs.RemoveEntry(entry).IgnoreError(); };
  absl::StatusOr<std::string> provider = ReadText(fs, entry, kProvider);
  if (absl::IsNotFound(provider.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("configfs-tsm entry under ", fs.root(), " has no provider attribute"));
  }
  if (!provider.ok()) {
    return core::Annotate(provider.status(), "configfs-tsm provider");
  }
  return provider;
}

ConfigfsTsmQuoter::ConfigfsTsmQuoter(std::unique_ptr<TsmReportFs> fs, int max_attempts)
    : fs_(std::move(fs)), max_attempts_(max_attempts < 1 ? 1 : max_attempts) {
  PML_CHECK(fs_ != nullptr);
}

absl::StatusOr<std::vector<uint8_t>> ConfigfsTsmQuoter::GetQuote(
    absl::Span<const uint8_t> report_data) {
  if (report_data.size() != kReportDataSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("report_data must be ", kReportDataSize, " bytes, got ", report_data.size()));
  }
  std::string last_race;
  for (int attempt = 1; attempt <= max_attempts_; ++attempt) {
    PML_ASSIGN_OR_RETURN(const std::string entry, CreateUniqueEntry(*fs_));
    // Best effort, like ReadTsmProvider: the quote is good whether or not rmdir works.
    absl::Cleanup remove = [this, &entry] { fs_->RemoveEntry(entry).IgnoreError(); };

    PML_RETURN_IF_ERROR(CheckProvider(*fs_, entry));
    // The generation protocol of the ABI document: read it before writing, count our writes
    // (one: inblob), and compare after reading outblob. report.c bumps write_generation on every
    // accepted inblob/option write and regenerates outblob when read_generation lags, so "before
    // + 1" proves the outblob we read was made from our inblob. Anything else means another
    // writer used this entry, or the kernel refused our write (configfs drops that error at
    // close): start over in a fresh entry.
    PML_ASSIGN_OR_RETURN(const uint64_t before, ReadGeneration(*fs_, entry));
    PML_RETURN_IF_ERROR(
        core::Annotate(fs_->WriteAttribute(entry, kInblob, report_data), "configfs-tsm inblob"));
    absl::StatusOr<std::vector<uint8_t>> quote =
        fs_->ReadAttribute(entry, kOutblob, kMaxTsmOutblobBytes);
    if (absl::IsNotFound(quote.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("configfs-tsm entry under ", fs_->root(), " has no outblob attribute"));
    }
    if (!quote.ok()) {
      return core::Annotate(quote.status(), "configfs-tsm outblob");
    }
    PML_ASSIGN_OR_RETURN(const uint64_t after, ReadGeneration(*fs_, entry));
    if (after != before + 1) {
      last_race = absl::StrCat("generation ", before, " before our inblob write and ", after,
                               " after reading outblob, expected ", before + 1);
      continue;
    }
    if (quote->empty()) {
      return absl::UnavailableError(
          absl::StrCat("configfs-tsm at ", fs_->root(),
                       " returned an empty outblob (is the quote generation service reachable?)"));
    }
    return std::move(quote).value();
  }
  return absl::UnavailableError(
      absl::StrCat("configfs-tsm at ", fs_->root(), ": the report entry changed under us in all ",
                   max_attempts_, " attempts (", last_race,
                   "); another writer raced us or the kernel refused the inblob write"));
}

}  // namespace pml::tee
