#pragma once
// Certificate-path and OCSP helpers that x509.h lacks: building and verifying a chain from an
// ordered list of certificates to one pinned anchor (OpenSSL's X509_verify_cert with the caller's
// time or none), SubjectPublicKeyInfo digests for pinning, and OCSP requests and responses
// (RFC 6960) checked against the caller's anchor and time.
//
// Thread-safety: every function is thread-safe; X509 objects are only read.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {

// SHA-256 of the certificate's DER SubjectPublicKeyInfo (what key pins compare). kInternal if
// OpenSSL cannot encode it.
absl::StatusOr<Sha256Digest> SpkiSha256(const X509& cert);

struct ChainVerifyOptions {
  // nullopt: validity periods are not checked (NVAT sets X509_V_FLAG_NO_CHECK_TIME and reports
  // expiry separately). Otherwise every certificate must be valid at this time.
  std::optional<absl::Time> at;
  // RFC 5280 strictness checks (X509_V_FLAG_X509_STRICT).
  bool strict = true;
};

// Verifies `certs` (leaf first; further certificates are untrusted intermediates in any order;
// a self-signed certificate among them is ignored so that only `anchor` can end the path) up to
// `anchor`. Returns the verified path, leaf first, ending with `anchor` (each element owned).
// kFailedPrecondition naming OpenSSL's verify error and depth when no path to `anchor` verifies;
// kInvalidArgument when `certs` is empty.
absl::StatusOr<std::vector<X509Ptr>> VerifyChainToAnchor(absl::Span<const X509Ptr> certs,
                                                         const X509& anchor,
                                                         const ChainVerifyOptions& options = {});

// An owned copy (reference-count increment) of `cert`.
X509Ptr CopyCertificate(const X509& cert);

// OCSP (RFC 6960).
enum class OcspCertStatus { kGood, kRevoked, kUnknown };
absl::string_view OcspCertStatusName(OcspCertStatus s);  // "good", "revoked", "unknown"

struct OcspResult {
  OcspCertStatus status = OcspCertStatus::kUnknown;
  // CRLReason name as NVIDIA reports it ("certificateHold", "keyCompromise", ...); empty unless
  // revoked.
  std::string revocation_reason;
  absl::Time this_update;
  absl::Time next_update = absl::InfiniteFuture();  // absent nextUpdate: infinite
  // The response's nonce extension value (the OCTET STRING content), nullopt when absent.
  std::optional<std::vector<uint8_t>> nonce;
};

// DER OCSPRequest for one certificate (CertID hashed with SHA-1, as NVAT), optionally with a
// nonce extension. kInternal if OpenSSL fails.
absl::StatusOr<std::vector<uint8_t>> BuildOcspRequest(const X509& cert, const X509& issuer,
                                                      absl::Span<const uint8_t> nonce);

// Checks a DER OCSPResponse about `cert` (issued by `issuer`): responseStatus successful, a
// basic response whose signature verifies with a responder certificate that chains (through
// the response's certificates and `intermediates`) to `anchor` at time `now` (or is `issuer`
// itself), a SingleResponse whose CertID (SHA-1 or SHA-384) names `cert`, and
// thisUpdate <= now + `skew` and now - `skew` <= nextUpdate.
// kInvalidArgument when the DER is malformed; kFailedPrecondition naming the failed check
// otherwise. A revoked or unknown status is a result, not an error.
absl::StatusOr<OcspResult> CheckOcspResponse(absl::Span<const uint8_t> der, const X509& cert,
                                             const X509& issuer, const X509& anchor,
                                             absl::Span<const X509Ptr> intermediates,
                                             absl::Time now,
                                             absl::Duration skew = absl::Minutes(5));

}  // namespace pml::crypto
