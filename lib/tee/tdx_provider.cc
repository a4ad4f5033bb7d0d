#include "lib/tee/tdx_provider.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/core/status.h"

namespace pml::tee {
namespace {

class TdxProvider final : public TeeProvider {
 public:
  TdxProvider(TeeKind kind, TdxBackends backends, int quote_attempts)
      : kind_(kind), device_(std::move(backends.device)), rtmrs_(std::move(backends.rtmrs)) {
    if (backends.tsm != nullptr) {
      quoter_.emplace(std::move(backends.tsm), quote_attempts);
    }
  }

  absl::StatusOr<std::vector<uint8_t>> GetQuote(absl::Span<const uint8_t> report_data) override {
    if (report_data.size() != kReportDataSize) {
      return absl::InvalidArgumentError(absl::StrCat("report_data must be ", kReportDataSize,
                                                     " bytes, got ", report_data.size()));
    }
    if (!quoter_.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(TeeKindName(kind_), ": no way to get a quote: ",
                       device_ != nullptr ? absl::StrCat(device_->path(), " ") : std::string(),
                       "offers only TDX_CMD_GET_REPORT0 (upstream Linux has no quote ioctl) and no "
                       "configfs-tsm report interface was found; quotes need Linux >= 6.7 with "
                       "CONFIG_TSM_REPORTS and a reachable quote generation service"));
    }
    return quoter_->GetQuote(report_data);
  }

  absl::Status ExtendRtmr(int index, absl::Span<const uint8_t> digest) override {
    if (index < 0 || index >= kRtmrCount) {
      return absl::InvalidArgumentError(
          absl::StrCat("rtmr index ", index, " is outside 0..", kRtmrCount - 1));
    }
    if (digest.size() != kMeasurementSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rtmr extension digest must be ", kMeasurementSize, " bytes, got ", digest.size()));
    }
    if (rtmrs_ == nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          TeeKindName(kind_), ": cannot extend RTMR", index,
          ": this kernel exposes no TDX measurement registers (tdx_guest/measurements/",
          RtmrAttributeName(index), ", Linux >= 6.16), and upstream Linux has no extend ioctl"));
    }
    absl::MutexLock lock(&mu_);
    return core::Annotate(rtmrs_->Extend(index, digest), absl::StrCat("extend RTMR", index));
  }

  absl::StatusOr<RtmrValues> GetRtmrs() override {
    if (device_ != nullptr) {
      // One TDREPORT holds all four registers at one instant; its REPORTDATA is irrelevant here.
      const std::array<uint8_t, kReportDataSize> zeros{};
      PML_ASSIGN_OR_RETURN(const TdReportBytes report, device_->GetReport0(zeros));
      absl::StatusOr<TdReportFields> fields = ParseTdReport(report);
      if (!fields.ok()) {
        return absl::InternalError(absl::StrCat(
            device_->path(), " returned a malformed TDREPORT: ", fields.status().message()));
      }
      return fields->rtmrs;
    }
    if (rtmrs_ != nullptr) {
      absl::MutexLock lock(&mu_);
      RtmrValues out{};
      for (int i = 0; i < kRtmrCount; ++i) {
        PML_ASSIGN_OR_RETURN(out[static_cast<size_t>(i)], rtmrs_->Read(i));
      }
      return out;
    }
    return absl::UnimplementedError(absl::StrCat(
        TeeKindName(kind_),
        ": cannot read the RTMRs without a quote: neither /dev/tdx_guest (TDREPORT) nor the "
        "tdx_guest/measurements registers (Linux >= 6.16) are present"));
  }

  TeeKind Kind() const override { return kind_; }

 private:
  const TeeKind kind_;
  std::optional<ConfigfsTsmQuoter> quoter_;  // set once in the constructor; thread-safe itself
  const std::unique_ptr<TdxGuestDevice> device_;
  // Serializes our extensions against reading the four sysfs registers one by one.
  absl::Mutex mu_;
  const std::unique_ptr<RtmrRegisters> rtmrs_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<TeeProvider>> MakeTdxProvider(TeeKind kind, TdxBackends backends,
                                                             int quote_attempts) {
  switch (kind) {
    case TeeKind::kSimulated:
      return absl::InvalidArgumentError("MakeTdxProvider builds hardware providers only");
    case TeeKind::kConfigfsTsm:
      if (backends.tsm == nullptr) {
        return absl::FailedPreconditionError(
            "configfs-tsm provider needs the configfs-tsm report interface");
      }
      break;
    case TeeKind::kTdxGuestDevice:
      if (backends.device == nullptr) {
        return absl::FailedPreconditionError("tdx-guest-device provider needs /dev/tdx_guest");
      }
      break;
  }
  return std::unique_ptr<TeeProvider>(
      std::make_unique<TdxProvider>(kind, std::move(backends), quote_attempts));
}

}  // namespace pml::tee
