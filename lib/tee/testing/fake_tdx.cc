#include "lib/tee/testing/fake_tdx.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"

namespace pml::tee::testing {
namespace {

constexpr char kQuotePrefix[] = "FAKE-TDX-QUOTE:";

absl::Status WriteBytes(const std::string& path, absl::Span<const uint8_t> bytes) {
  const std::string data(bytes.begin(), bytes.end());
  return core::WriteFileAtomic(path, data, 0644);
}

absl::Status WriteText(const std::string& path, absl::string_view text) {
  return core::WriteFileAtomic(path, text, 0644);
}

bool IsReadOnlyAttribute(absl::string_view attribute) {
  return attribute == "outblob" || attribute == "generation" || attribute == "provider";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FakeTsmKernel

FakeTsmKernel::FakeTsmKernel(std::string root) : real_(MakeTsmReportFs(std::move(root))) {}

std::vector<uint8_t> FakeTsmKernel::QuoteFor(absl::Span<const uint8_t> report_data) {
  const absl::string_view prefix = kQuotePrefix;
  // Sized up front: GCC 12 warns (-Warray-bounds, falsely) on vector::insert after a short init.
  std::vector<uint8_t> out(prefix.size() + report_data.size());
  std::copy(prefix.begin(), prefix.end(), out.begin());
  std::copy(report_data.begin(), report_data.end(),
            out.begin() + static_cast<std::ptrdiff_t>(prefix.size()));
  return out;
}

std::vector<uint8_t> FakeTsmKernel::IntruderReportData() {
  return std::vector<uint8_t>(kReportDataSize, 0xEE);
}

void FakeTsmKernel::set_provider(std::optional<std::string> provider) {
  absl::MutexLock lock(&mu_);
  provider_ = std::move(provider);
}
void FakeTsmKernel::set_racing_writes(int n) {
  absl::MutexLock lock(&mu_);
  racing_writes_ = n;
}
void FakeTsmKernel::set_empty_outblob(bool empty) {
  absl::MutexLock lock(&mu_);
  empty_outblob_ = empty;
}
void FakeTsmKernel::set_outblob_error(absl::Status status) {
  absl::MutexLock lock(&mu_);
  outblob_error_ = std::move(status);
}
int FakeTsmKernel::entries_created() const {
  absl::MutexLock lock(&mu_);
  return entries_created_;
}
int FakeTsmKernel::inblob_writes() const {
  absl::MutexLock lock(&mu_);
  return inblob_writes_;
}

absl::Status FakeTsmKernel::CreateEntry(absl::string_view entry) {
  PML_RETURN_IF_ERROR(real_->CreateEntry(entry));
  // configfs populates the new item with its attributes (report.c tsm_report_attrs and
  // tsm_report_bin_attrs, those tdx-guest.c makes visible); write_generation starts at 0.
  absl::MutexLock lock(&mu_);
  const std::string dir = absl::StrCat(root(), "/", entry);
  PML_RETURN_IF_ERROR(WriteText(dir + "/generation", "0\n"));
  if (provider_.has_value()) {
    PML_RETURN_IF_ERROR(WriteText(dir + "/provider", absl::StrCat(*provider_, "\n")));
  }
  PML_RETURN_IF_ERROR(WriteText(dir + "/inblob", ""));
  PML_RETURN_IF_ERROR(WriteText(dir + "/outblob", ""));
  ++entries_created_;
  return absl::OkStatus();
}

absl::Status FakeTsmKernel::BumpGeneration(const std::string& dir, int by) {
  PML_ASSIGN_OR_RETURN(const std::string text, core::ReadFile(dir + "/generation"));
  uint64_t generation = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &generation)) {
    return absl::InternalError("fake generation file is not a number");
  }
  return WriteText(dir + "/generation", absl::StrCat(generation + static_cast<uint64_t>(by), "\n"));
}

absl::StatusOr<std::vector<uint8_t>> FakeTsmKernel::ReadAttribute(absl::string_view entry,
                                                                  absl::string_view attribute,
                                                                  size_t max_bytes) {
  if (attribute == "outblob") {
    // report.c tsm_report_read: the quote is made on the read, from the inblob the entry holds
    // now (whoever wrote it last). An entry whose inblob was never written fails with EINVAL.
    absl::MutexLock lock(&mu_);
    if (!outblob_error_.ok()) {
      return outblob_error_;
    }
    const std::string dir = absl::StrCat(root(), "/", entry);
    PML_ASSIGN_OR_RETURN(const std::vector<uint8_t> inblob, core::ReadFileBytes(dir + "/inblob"));
    if (inblob.empty()) {
      return absl::InternalError("read outblob: EINVAL (no inblob written)");
    }
    PML_RETURN_IF_ERROR(
        WriteBytes(dir + "/outblob", empty_outblob_ ? std::vector<uint8_t>() : QuoteFor(inblob)));
  }
  return real_->ReadAttribute(entry, attribute, max_bytes);
}

absl::Status FakeTsmKernel::WriteAttribute(absl::string_view entry, absl::string_view attribute,
                                           absl::Span<const uint8_t> data) {
  if (IsReadOnlyAttribute(attribute)) {
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", attribute, ": EACCES"));
  }
  PML_RETURN_IF_ERROR(real_->WriteAttribute(entry, attribute, data));
  // The kernel accepted the write (on close): try_advance_write_generation.
  absl::MutexLock lock(&mu_);
  const std::string dir = absl::StrCat(root(), "/", entry);
  if (attribute == "inblob") {
    ++inblob_writes_;
  }
  PML_RETURN_IF_ERROR(BumpGeneration(dir, 1));
  if (attribute == "inblob" && racing_writes_ > 0) {
    --racing_writes_;
    PML_RETURN_IF_ERROR(WriteBytes(dir + "/inblob", IntruderReportData()));
    PML_RETURN_IF_ERROR(BumpGeneration(dir, 1));
  }
  return absl::OkStatus();
}

absl::Status FakeTsmKernel::RemoveEntry(absl::string_view entry) {
  // configfs removes an item's attributes with it; a plain directory needs them gone first.
  const std::filesystem::path dir(absl::StrCat(root(), "/", entry));
  std::error_code ec;
  for (const auto& file : std::filesystem::directory_iterator(dir, ec)) {
    if (file.is_regular_file()) {
      std::filesystem::remove(file.path(), ec);
    }
  }
  return real_->RemoveEntry(entry);
}

// ---------------------------------------------------------------------------------------------
// FakeRtmrKernel

absl::StatusOr<std::unique_ptr<FakeRtmrKernel>> FakeRtmrKernel::Create(const std::string& dir,
                                                                       const RtmrValues& initial) {
  PML_RETURN_IF_ERROR(core::MakeDirs(dir));
  for (int i = 0; i < kRtmrCount; ++i) {
    PML_RETURN_IF_ERROR(
        WriteBytes(absl::StrCat(dir, "/", RtmrAttributeName(i)), initial[static_cast<size_t>(i)]));
  }
  return std::unique_ptr<FakeRtmrKernel>(new FakeRtmrKernel(MakeSysfsRtmrRegisters(dir)));
}

absl::StatusOr<Measurement> FakeRtmrKernel::Read(int index) { return real_->Read(index); }

absl::Status FakeRtmrKernel::Extend(int index, absl::Span<const uint8_t> digest) {
  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(const Measurement old, real_->Read(index));
  PML_RETURN_IF_ERROR(real_->Extend(index, digest));
  const std::string path = absl::StrCat(dir(), "/", RtmrAttributeName(index));
  PML_ASSIGN_OR_RETURN(const std::vector<uint8_t> written, core::ReadFileBytes(path));
  if (written != std::vector<uint8_t>(digest.begin(), digest.end())) {
    return absl::InternalError("fake rtmr: the file does not hold exactly the 48-byte digest");
  }
  // TDG.MR.RTMR.EXTEND: RTMR = SHA384(RTMR ‖ digest).
  PML_RETURN_IF_ERROR(WriteBytes(path, crypto::Sha384Concat({old, digest})));
  ++extensions_;
  return absl::OkStatus();
}

int FakeRtmrKernel::extensions() const {
  absl::MutexLock lock(&mu_);
  return extensions_;
}

// ---------------------------------------------------------------------------------------------
// FakeTdxGuestDevice

FakeTdxGuestDevice::FakeTdxGuestDevice(Measurement mrtd, RtmrValues rtmrs,
                                       std::string measurements_dir)
    : mrtd_(mrtd), rtmrs_(rtmrs), measurements_dir_(std::move(measurements_dir)) {}

TdReportBytes FakeTdxGuestDevice::BuildTdReport(const Measurement& mrtd, const RtmrValues& rtmrs,
                                                absl::Span<const uint8_t> report_data) {
  TdReportBytes r{};
  auto put = [&r](size_t offset, absl::Span<const uint8_t> bytes) {
    std::copy(bytes.begin(), bytes.end(), r.begin() + static_cast<std::ptrdiff_t>(offset));
  };
  r[0] = kTdReportTypeTdx;  // REPORTTYPE.TYPE
  put(128, report_data);    // REPORTMACSTRUCT.REPORTDATA
  const uint64_t attributes = kTdAttributeSeptVeDisable;
  for (size_t i = 0; i < 8; ++i) {
    r[512 + i] = static_cast<uint8_t>(attributes >> (8 * i));
  }
  r[520] = 0xE7;  // XFAM low byte
  put(528, mrtd);
  std::fill(r.begin() + 576, r.begin() + 576 + 48, 0xC1);  // MRCONFIGID
  for (size_t i = 0; i < rtmrs.size(); ++i) {
    put(720 + 48 * i, rtmrs[i]);
  }
  std::fill(r.begin() + 912, r.begin() + 912 + 48, 0x5E);  // SERVTD_HASH
  return r;
}

void FakeTdxGuestDevice::set_error(absl::Status status) {
  absl::MutexLock lock(&mu_);
  error_ = std::move(status);
}

int FakeTdxGuestDevice::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

absl::StatusOr<TdReportBytes> FakeTdxGuestDevice::GetReport0(
    absl::Span<const uint8_t> report_data) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  if (!error_.ok()) {
    return error_;
  }
  if (report_data.size() != kReportDataSize) {
    return absl::InvalidArgumentError("report_data must be 64 bytes");
  }
  RtmrValues rtmrs = rtmrs_;
  if (!measurements_dir_.empty()) {
    for (int i = 0; i < kRtmrCount; ++i) {
      PML_ASSIGN_OR_RETURN(
          const std::vector<uint8_t> v,
          core::ReadFileBytes(absl::StrCat(measurements_dir_, "/", RtmrAttributeName(i))));
      if (v.size() != kMeasurementSize) {
        return absl::InternalError("fake rtmr file size");
      }
      std::copy(v.begin(), v.end(), rtmrs[static_cast<size_t>(i)].begin());
    }
  }
  return BuildTdReport(mrtd_, rtmrs, report_data);
}

}  // namespace pml::tee::testing
