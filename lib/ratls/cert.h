#pragma once
// RA-TLS certificates with dstack's extensions (specs/dstack-compat.md §5): a certificate whose
// key a TDX quote commits to, so a peer can check what runs behind a TLS endpoint.
//
// Extensions (PEN 62397, Phala), each extnValue holding one DER OCTET STRING with the bytes, as
// dstack's ra-tls writes them (yasna write_bytes):
//   1.3.6.1.4.1.62397.1.1   the raw TDX quote
//   1.3.6.1.4.1.62397.1.2   the event log JSON (dstack format; uncompressed)
//   1.3.6.1.4.1.62397.1.3   the app id (20 bytes)
//   1.3.6.1.4.1.62397.1.4   the "special usage" string: "app:ca", "app:custom", "kms:rpc", ...
// Binding: the quote's report data = SHA-512("ratls-cert:" ‖ the certificate's SPKI DER)
// (report_data.h kRaTlsCert). Issuing and parsing live here; verifying the quote is lib/tdx's job
// and checking the binding is CheckBinding's.
//
// Parsing treats the certificate as hostile: every extension is bounds-checked and size-limited.
// Thread-safety: pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/ossl.h"
#include "lib/ratls/report_data.h"

namespace pml::ratls {

inline constexpr char kOidQuote[] = "1.3.6.1.4.1.62397.1.1";
inline constexpr char kOidEventLog[] = "1.3.6.1.4.1.62397.1.2";
inline constexpr char kOidAppId[] = "1.3.6.1.4.1.62397.1.3";
inline constexpr char kOidSpecialUsage[] = "1.3.6.1.4.1.62397.1.4";

// dstack's special usages.
inline constexpr absl::string_view kUsageAppCa = "app:ca";
inline constexpr absl::string_view kUsageAppCustom = "app:custom";
inline constexpr absl::string_view kUsageKmsRpc = "kms:rpc";

// Limits on what a parsed certificate may carry (a TDX quote with certification data is ~5 KiB;
// dstack caps decompressed event logs at 16 KiB, ours allow more runtime events).
inline constexpr size_t kMaxQuoteBytes = 64 * 1024;
inline constexpr size_t kMaxEventLogBytes = 1024 * 1024;
inline constexpr size_t kMaxUsageBytes = 256;

// What a certificate carries. Absent extensions are empty.
struct RaTlsClaims {
  std::vector<uint8_t> quote;
  std::string event_log;
  std::vector<uint8_t> app_id;
  std::string usage;
};

// The extensions for `claims` (only the non-empty ones), for crypto::CertSpec::extensions.
std::vector<crypto::CustomExtension> RaTlsExtensions(const RaTlsClaims& claims);

// The extensions of `cert`. kInvalidArgument naming the OID when one is duplicated, is not a
// single DER OCTET STRING, or exceeds its limit; an app id that is not 20 bytes or a usage that is
// not printable ASCII is refused too.
absl::StatusOr<RaTlsClaims> ParseRaTlsClaims(const X509& cert);

// The report data a quote must carry to bind `cert`'s key: SHA-512("ratls-cert:" ‖ SPKI DER).
absl::StatusOr<ReportData> CertReportData(const X509& cert);
absl::StatusOr<ReportData> KeyReportData(const EVP_PKEY& key);

// OK when `quote_report_data` (the 64 bytes the verified quote carries) binds `cert`'s key;
// kFailedPrecondition "report data does not bind the certificate key" otherwise. Constant-time
// comparison.
absl::Status CheckBinding(const X509& cert, absl::Span<const uint8_t> quote_report_data);

}  // namespace pml::ratls
