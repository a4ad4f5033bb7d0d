#pragma once
// Error classes of NVIDIA GPU / NVSwitch evidence verification. Every non-OK status that lib/gpu
// returns for a parse or verification failure has a message "<CLASS>: <detail>", CLASS being one
// of the names below (upper-case, modelled on NVIDIA attestation-sdk error names). The canonical
// code says what kind of failure it is:
//   kInvalidArgument     malformed input (report, certificate chain, RIM, token bytes)
//   kFailedPrecondition  verification refused it (signature, chain, nonce, FWID, topology)
//   kNotFound            a RIM or OCSP response the caller's source does not have
//   kUnavailable         an online source failed (retry is safe)
// Clients branch on the code; reports, tests and metrics use the class.
//
// Thread-safety: all functions are pure.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::gpu {

namespace error_class {
inline constexpr absl::string_view kReportMalformed = "REPORT_MALFORMED";
inline constexpr absl::string_view kOpaqueDataUnsupported = "OPAQUE_DATA_UNSUPPORTED";
inline constexpr absl::string_view kCertChainMalformed = "CERT_CHAIN_MALFORMED";
inline constexpr absl::string_view kCertChainUntrusted = "CERT_CHAIN_UNTRUSTED";
inline constexpr absl::string_view kUnsupportedArch = "UNSUPPORTED_ARCH";
inline constexpr absl::string_view kArchMismatch = "ARCH_MISMATCH";
inline constexpr absl::string_view kInvalidReportSignature = "INVALID_REPORT_SIGNATURE";
inline constexpr absl::string_view kNonceMismatch = "NONCE_MISMATCH";
inline constexpr absl::string_view kFwidMismatch = "FWID_MISMATCH";
inline constexpr absl::string_view kEvidenceMalformed = "EVIDENCE_MALFORMED";
inline constexpr absl::string_view kRimMalformed = "RIM_MALFORMED";
inline constexpr absl::string_view kRimInvalidSignature = "RIM_INVALID_SIGNATURE";
inline constexpr absl::string_view kRimChainUntrusted = "RIM_CHAIN_UNTRUSTED";
inline constexpr absl::string_view kRimNotFound = "RIM_NOT_FOUND";
inline constexpr absl::string_view kRimIdMismatch = "RIM_ID_MISMATCH";
inline constexpr absl::string_view kRimServiceUnavailable = "RIM_SERVICE_UNAVAILABLE";
inline constexpr absl::string_view kOcspResponseInvalid = "OCSP_RESPONSE_INVALID";
inline constexpr absl::string_view kOcspNotFound = "OCSP_NOT_FOUND";
inline constexpr absl::string_view kOcspUnavailable = "OCSP_UNAVAILABLE";
inline constexpr absl::string_view kTopologyMismatch = "TOPOLOGY_MISMATCH";
inline constexpr absl::string_view kTokenMalformed = "NRAS_TOKEN_MALFORMED";
inline constexpr absl::string_view kTokenInvalidSignature = "NRAS_TOKEN_INVALID_SIGNATURE";
inline constexpr absl::string_view kTokenUnknownKey = "NRAS_TOKEN_UNKNOWN_KEY";
inline constexpr absl::string_view kTokenClaimMismatch = "NRAS_TOKEN_CLAIM_MISMATCH";
inline constexpr absl::string_view kTokenExpired = "NRAS_TOKEN_EXPIRED";
}  // namespace error_class

// A status with `code` and message "<cls>: <detail>".
absl::Status MakeError(absl::StatusCode code, absl::string_view cls, absl::string_view detail);

// The class of `status`: the message up to the first ": " when that prefix is an upper-case
// identifier; "" for OK or for statuses without a class.
std::string ErrorClass(const absl::Status& status);

// `status` with its code kept and, when it has no class yet, `cls` prepended to the message. OK
// stays OK. Used to classify errors from lower layers (lib/core, lib/crypto).
absl::Status WithClass(const absl::Status& status, absl::string_view cls);

}  // namespace pml::gpu
