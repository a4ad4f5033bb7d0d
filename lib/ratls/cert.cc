#include "lib/ratls/cert.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"

namespace pml::ratls {
namespace {

// DER OCTET STRING of `bytes` (definite length, long form where needed).
std::vector<uint8_t> OctetString(absl::Span<const uint8_t> bytes) {
  std::vector<uint8_t> out{crypto::kDerOctetString};
  const size_t n = bytes.size();
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
  } else {
    std::vector<uint8_t> len;
    for (size_t v = n; v != 0; v >>= 8)
      len.insert(len.begin(), static_cast<uint8_t>(v & 0xff));
    out.push_back(static_cast<uint8_t>(0x80 | len.size()));
    out.insert(out.end(), len.begin(), len.end());
  }
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}

// The OCTET STRING inside extension `oid`, nullopt when absent.
absl::StatusOr<std::optional<std::vector<uint8_t>>> Inner(const X509& cert, const char* oid,
                                                          size_t max_bytes) {
  PML_ASSIGN_OR_RETURN(std::optional<std::vector<uint8_t>> ext, crypto::FindExtension(cert, oid));
  if (!ext.has_value())
    return std::optional<std::vector<uint8_t>>();
  crypto::DerReader r(*ext);
  auto tlv = r.Expect(crypto::kDerOctetString, oid);
  if (!tlv.ok())
    return absl::InvalidArgumentError(absl::StrCat("extension ", oid, ": not a DER OCTET STRING"));
  if (!r.empty())
    return absl::InvalidArgumentError(absl::StrCat("extension ", oid, ": trailing bytes"));
  if (tlv->content.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("extension ", oid, ": ", tlv->content.size(), " bytes, at most ", max_bytes));
  }
  return std::optional<std::vector<uint8_t>>(
      std::vector<uint8_t>(tlv->content.begin(), tlv->content.end()));
}

}  // namespace

std::vector<crypto::CustomExtension> RaTlsExtensions(const RaTlsClaims& claims) {
  std::vector<crypto::CustomExtension> out;
  auto add = [&out](const char* oid, absl::Span<const uint8_t> bytes) {
    if (!bytes.empty())
      out.push_back({oid, false, OctetString(bytes)});
  };
  add(kOidQuote, claims.quote);
  add(kOidEventLog, absl::Span<const uint8_t>(
                        reinterpret_cast<const uint8_t*>(claims.event_log.data()),
                        claims.event_log.size()));
  add(kOidAppId, claims.app_id);
  add(kOidSpecialUsage,
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(claims.usage.data()),
                                claims.usage.size()));
  return out;
}

absl::StatusOr<RaTlsClaims> ParseRaTlsClaims(const X509& cert) {
  RaTlsClaims c;
  PML_ASSIGN_OR_RETURN(auto quote, Inner(cert, kOidQuote, kMaxQuoteBytes));
  if (quote.has_value())
    c.quote = std::move(*quote);
  PML_ASSIGN_OR_RETURN(auto log, Inner(cert, kOidEventLog, kMaxEventLogBytes));
  if (log.has_value())
    c.event_log.assign(log->begin(), log->end());
  PML_ASSIGN_OR_RETURN(auto app_id, Inner(cert, kOidAppId, 64));
  if (app_id.has_value()) {
    if (app_id->size() != 20) {
      return absl::InvalidArgumentError(
          absl::StrCat("extension ", kOidAppId, ": app id of ", app_id->size(), " bytes, want 20"));
    }
    c.app_id = std::move(*app_id);
  }
  PML_ASSIGN_OR_RETURN(auto usage, Inner(cert, kOidSpecialUsage, kMaxUsageBytes));
  if (usage.has_value()) {
    if (!std::all_of(usage->begin(), usage->end(), [](uint8_t b) { return b >= 0x20 && b < 0x7f; }))
      return absl::InvalidArgumentError(
          absl::StrCat("extension ", kOidSpecialUsage, ": not printable ASCII"));
    c.usage.assign(usage->begin(), usage->end());
  }
  return c;
}

absl::StatusOr<ReportData> KeyReportData(const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(key));
  return ComputeReportData(ReportDataPurpose::kRaTlsCert, spki);
}

absl::StatusOr<ReportData> CertReportData(const X509& cert) {
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* key, crypto::CertificatePublicKey(cert));
  return KeyReportData(*key);
}

absl::Status CheckBinding(const X509& cert, absl::Span<const uint8_t> quote_report_data) {
  PML_ASSIGN_OR_RETURN(ReportData want, CertReportData(cert));
  if (quote_report_data.size() != want.size() ||
      CRYPTO_memcmp(quote_report_data.data(), want.data(), want.size()) != 0) {
    return absl::FailedPreconditionError(
        "report data does not bind the certificate key (want SHA-512(\"ratls-cert:\" ‖ SPKI))");
  }
  return absl::OkStatus();
}

}  // namespace pml::ratls
