#pragma once
// Error classes of TDX/SGX quote verification. Every non-OK status that lib/tdx returns for a
// parse or verification failure has a message of the form "<CLASS>: <detail>", where CLASS is an
// Intel QVL status name without its "STATUS_" prefix (the names the shared vectors'
// expected.json use). The canonical code says what kind of failure it is:
//   kInvalidArgument     malformed input (quote or collateral bytes)
//   kFailedPrecondition  verification refused it (signature, chain, binding, TCB, expiry)
// Clients branch on the code; reports and metrics use the class.
//
// Thread-safety: all functions are pure.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::tdx {

// Class names used by this library (QVL's Status names).
namespace error_class {
inline constexpr absl::string_view kUnsupportedQuoteFormat = "UNSUPPORTED_QUOTE_FORMAT";
inline constexpr absl::string_view kUnsupportedAttestationKeyType =
    "UNSUPPORTED_ATTESTATION_KEY_TYPE";
inline constexpr absl::string_view kUnsupportedQeVendor = "UNSUPPORTED_QE_VENDOR";
inline constexpr absl::string_view kUnsupportedCertFormat = "UNSUPPORTED_CERT_FORMAT";
inline constexpr absl::string_view kMissingParameters = "MISSING_PARAMETERS";
inline constexpr absl::string_view kPckCertChainUntrusted = "SGX_PCK_CERT_CHAIN_UNTRUSTED";
inline constexpr absl::string_view kInvalidPckCert = "INVALID_PCK_CERT";
inline constexpr absl::string_view kPckRevoked = "SGX_PCK_REVOKED";
inline constexpr absl::string_view kIntermediateCaRevoked = "SGX_INTERMEDIATE_CA_REVOKED";
inline constexpr absl::string_view kTcbSigningCertRevoked = "SGX_TCB_SIGNING_CERT_REVOKED";
inline constexpr absl::string_view kRootCaUntrusted = "ROOT_CA_UNTRUSTED";
inline constexpr absl::string_view kCrlUnsupportedFormat = "SGX_CRL_UNSUPPORTED_FORMAT";
inline constexpr absl::string_view kCrlInvalidSignature = "SGX_CRL_INVALID_SIGNATURE";
inline constexpr absl::string_view kInvalidPckCrl = "INVALID_PCK_CRL";
inline constexpr absl::string_view kCrlUnknownIssuer = "SGX_CRL_UNKNOWN_ISSUER";
inline constexpr absl::string_view kTcbInfoUnsupportedFormat = "SGX_TCB_INFO_UNSUPPORTED_FORMAT";
inline constexpr absl::string_view kTcbInfoInvalidSignature = "TCB_INFO_INVALID_SIGNATURE";
inline constexpr absl::string_view kTcbSigningCertChainUntrusted =
    "SGX_TCB_SIGNING_CERT_CHAIN_UNTRUSTED";
inline constexpr absl::string_view kTcbInfoMismatch = "TCB_INFO_MISMATCH";
inline constexpr absl::string_view kQeIdentityUnsupportedFormat =
    "SGX_ENCLAVE_IDENTITY_UNSUPPORTED_FORMAT";
inline constexpr absl::string_view kQeIdentityInvalidSignature = "QE_IDENTITY_INVALID_SIGNATURE";
inline constexpr absl::string_view kQeIdentityMismatch = "QE_IDENTITY_MISMATCH";
inline constexpr absl::string_view kInvalidQeReportSignature = "INVALID_QE_REPORT_SIGNATURE";
inline constexpr absl::string_view kInvalidQeReportData = "INVALID_QE_REPORT_DATA";
inline constexpr absl::string_view kInvalidQuoteSignature = "INVALID_QUOTE_SIGNATURE";
inline constexpr absl::string_view kTdxModuleMismatch = "TDX_MODULE_MISMATCH";
inline constexpr absl::string_view kTcbNotSupported = "TCB_NOT_SUPPORTED";
inline constexpr absl::string_view kTcbUnrecognizedStatus = "TCB_UNRECOGNIZED_STATUS";
// Collateral time: each expired item has its QVL class; COLLATERAL_EXPIRED names the family.
inline constexpr absl::string_view kCollateralExpired = "COLLATERAL_EXPIRED";
inline constexpr absl::string_view kCrlExpired = "SGX_CRL_EXPIRED";
inline constexpr absl::string_view kTcbInfoExpired = "SGX_TCB_INFO_EXPIRED";
inline constexpr absl::string_view kQeIdentityExpired = "SGX_ENCLAVE_IDENTITY_EXPIRED";
inline constexpr absl::string_view kPckCertChainExpired = "SGX_PCK_CERT_CHAIN_EXPIRED";
inline constexpr absl::string_view kSigningCertChainExpired = "SGX_SIGNING_CERT_CHAIN_EXPIRED";
// Not a QVL status (QVL checks only upper bounds): an issueDate / thisUpdate / notBefore after
// the verification time. Phala treats it as an error, and so do we by default.
inline constexpr absl::string_view kCollateralNotYetValid = "COLLATERAL_NOT_YET_VALID";
}  // namespace error_class

// A status with `code` and message "<cls>: <detail>".
absl::Status MakeError(absl::StatusCode code, absl::string_view cls, absl::string_view detail);

// The class of `status`: the message up to the first ": " when that prefix is an upper-case
// identifier; "" for OK or for statuses that carry no class.
std::string ErrorClass(const absl::Status& status);

// True when `status` carries `expected`: the class equals it, or `expected` is
// COLLATERAL_EXPIRED and the class is one of the per-item expiry classes above.
bool MatchesErrorClass(const absl::Status& status, absl::string_view expected);

// True when the class is an expiry class (COLLATERAL_EXPIRED family) or COLLATERAL_NOT_YET_VALID.
bool IsCollateralTimeError(const absl::Status& status);

}  // namespace pml::tdx
