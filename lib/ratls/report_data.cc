#include "lib/ratls/report_data.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/crypto/hash.h"

namespace pml::ratls {
namespace {

ReportData Sha512Of(absl::string_view prefix, absl::Span<const uint8_t> value) {
  const auto d = crypto::Sha512Concat({core::AsBytes(prefix), value});
  ReportData out;
  std::copy(d.begin(), d.end(), out.begin());
  return out;
}

}  // namespace

absl::string_view PurposeName(ReportDataPurpose purpose) {
  switch (purpose) {
    case ReportDataPurpose::kRaTlsCert:
      return "ra_tls_cert";
    case ReportDataPurpose::kKmsKeyRelease:
      return "kms_key_release";
    case ReportDataPurpose::kKmsReplicaJoin:
      return "kms_replica_join";
    case ReportDataPurpose::kNonce:
      return "nonce";
    case ReportDataPurpose::kAppData:
      return "app_data";
  }
  return "unknown";
}

absl::StatusOr<ReportData> ComputeReportData(ReportDataPurpose purpose,
                                             absl::Span<const uint8_t> value) {
  switch (purpose) {
    case ReportDataPurpose::kRaTlsCert:
      if (value.empty())
        return absl::InvalidArgumentError("ra_tls_cert: empty SubjectPublicKeyInfo");
      return Sha512Of(kRaTlsCertPrefix, value);
    case ReportDataPurpose::kKmsKeyRelease:
    case ReportDataPurpose::kKmsReplicaJoin:
      if (value.size() != 32) {
        return absl::InvalidArgumentError(absl::StrCat(
            PurposeName(purpose), ": X25519 public key has ", value.size(), " bytes, want 32"));
      }
      return Sha512Of(purpose == ReportDataPurpose::kKmsKeyRelease ? kKmsKeyReleasePrefix
                                                                   : kKmsReplicaJoinPrefix,
                      value);
    case ReportDataPurpose::kNonce: {
      if (value.empty() || value.size() > 64) {
        return absl::InvalidArgumentError(
            absl::StrCat("nonce: ", value.size(), " bytes, want 1..64"));
      }
      ReportData out{};
      std::copy(value.begin(), value.end(), out.begin());
      return out;
    }
    case ReportDataPurpose::kAppData:
      return Sha512Of(kAppDataPrefix, value);
  }
  return absl::InvalidArgumentError("unknown report data purpose");
}

GpuNonceBytes GpuNonce(const ReportData& report_data) {
  std::string input(kGpuNoncePrefix);
  input.append(report_data.begin(), report_data.end());
  const auto d = crypto::Sha256(input);
  GpuNonceBytes out;
  std::copy(d.begin(), d.end(), out.begin());
  return out;
}

}  // namespace pml::ratls
