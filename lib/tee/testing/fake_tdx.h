#pragma once
// Fakes of the TDX guest's kernel interfaces for tests (test-only target pml_tee_testing).
//
// A plain temp directory cannot act like configfs or sysfs: nothing makes `outblob` appear when
// `inblob` is written, nothing bumps `generation`, and writing an RTMR file overwrites it instead
// of extending. So each fake here WRAPS the real implementation (MakeTsmReportFs,
// MakeSysfsRtmrRegisters) on a temp directory and performs, synchronously and in the same call,
// what the kernel would have done at that moment: populate a new entry, count the write, generate
// the quote on the outblob read, extend the register after the digest write. Every byte the
// provider reads or writes still goes through the real open/read/write/mkdir/rmdir code and real
// files; there is no watcher thread and no sleeping. Only the ioctl of /dev/tdx_guest has no file
// to stand in for, so FakeTdxGuestDevice replaces the TdxGuestDevice interface outright.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "lib/tee/configfs_tsm.h"
#include "lib/tee/tdx_guest_device.h"
#include "lib/tee/tdx_measurements.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee::testing {

// configfs-tsm's report group over the existing directory `root`. Thread-safe.
class FakeTsmKernel final : public TsmReportFs {
 public:
  explicit FakeTsmKernel(std::string root);

  // The quote this fake returns for `report_data`: "FAKE-TDX-QUOTE:" ‖ report_data.
  static std::vector<uint8_t> QuoteFor(absl::Span<const uint8_t> report_data);
  // The report data "another writer" puts into a raced entry.
  static std::vector<uint8_t> IntruderReportData();

  // What `provider` says in new entries; nullopt: entries have no provider attribute.
  void set_provider(std::optional<std::string> provider);
  // The next `n` inblob writes are each followed by another writer's inblob write to the same
  // entry before the outblob read, as if it raced us (generation moves by 2).
  void set_racing_writes(int n);
  // Reading outblob yields zero bytes (the kernel's answer when the quote service returned none).
  void set_empty_outblob(bool empty);
  // Reading outblob fails with `status` (e.g. kUnavailable for EBUSY); OK clears it.
  void set_outblob_error(absl::Status status);

  int entries_created() const;
  int inblob_writes() const;

  absl::Status CreateEntry(absl::string_view entry) override;
  absl::StatusOr<std::vector<uint8_t>> ReadAttribute(absl::string_view entry,
                                                     absl::string_view attribute,
                                                     size_t max_bytes) override;
  absl::Status WriteAttribute(absl::string_view entry, absl::string_view attribute,
                              absl::Span<const uint8_t> data) override;
  absl::Status RemoveEntry(absl::string_view entry) override;
  const std::string& root() const override { return real_->root(); }

 private:
  absl::Status BumpGeneration(const std::string& dir, int by) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<TsmReportFs> real_;
  mutable absl::Mutex mu_;
  std::optional<std::string> provider_ ABSL_GUARDED_BY(mu_) = std::string(kTsmProviderTdx);
  int racing_writes_ ABSL_GUARDED_BY(mu_) = 0;
  bool empty_outblob_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status outblob_error_ ABSL_GUARDED_BY(mu_);
  int entries_created_ ABSL_GUARDED_BY(mu_) = 0;
  int inblob_writes_ ABSL_GUARDED_BY(mu_) = 0;
};

// tdx_guest/measurements over the directory `dir`: Create writes rtmr0..3:sha384 with the
// initial values; Extend lets the real implementation write the digest, checks the file then
// holds exactly those 48 bytes (what the kernel would have received), and stores
// SHA384(old ‖ digest) as the kernel's next read would show. Thread-safe.
class FakeRtmrKernel final : public RtmrRegisters {
 public:
  static absl::StatusOr<std::unique_ptr<FakeRtmrKernel>> Create(const std::string& dir,
                                                                const RtmrValues& initial);

  absl::StatusOr<Measurement> Read(int index) override;
  absl::Status Extend(int index, absl::Span<const uint8_t> digest) override;
  const std::string& dir() const override { return real_->dir(); }

  int extensions() const;

 private:
  explicit FakeRtmrKernel(std::unique_ptr<RtmrRegisters> real) : real_(std::move(real)) {}

  const std::unique_ptr<RtmrRegisters> real_;
  mutable absl::Mutex mu_;
  int extensions_ ABSL_GUARDED_BY(mu_) = 0;
};

// /dev/tdx_guest: TDX_CMD_GET_REPORT0 returns a TDREPORT built by BuildTdReport. The RTMRs come
// from `measurements_dir` (rtmr<N>:sha384, so extensions through FakeRtmrKernel show up) when it
// is non-empty, else from `rtmrs`. Thread-safe.
class FakeTdxGuestDevice final : public TdxGuestDevice {
 public:
  FakeTdxGuestDevice(Measurement mrtd, RtmrValues rtmrs, std::string measurements_dir = "");

  // A TDREPORT_STRUCT written field by field at the absolute offsets of Linux's
  // drivers/virt/coco/tdx-guest/tdx-guest.c (independently of ParseTdReport's sequential reads):
  // TYPE 0x81 at 0, REPORTDATA at 128, ATTRIBUTES at 512, XFAM at 520, MRTD at 528,
  // RTMR[i] at 720 + 48 i; the rest zero except MRCONFIGID (0xC1..) and SERVTD_HASH (0x5E..).
  static TdReportBytes BuildTdReport(const Measurement& mrtd, const RtmrValues& rtmrs,
                                     absl::Span<const uint8_t> report_data);

  // GetReport0 fails with `status` (OK clears it).
  void set_error(absl::Status status);
  int calls() const;

  absl::StatusOr<TdReportBytes> GetReport0(absl::Span<const uint8_t> report_data) override;
  const std::string& path() const override { return path_; }

 private:
  const std::string path_ = "/dev/tdx_guest (fake)";
  const Measurement mrtd_;
  const RtmrValues rtmrs_;
  const std::string measurements_dir_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pml::tee::testing
