#pragma once
// Issuing X.509 certificates and CRLs: the development PKI (`pmlctl pki init`), the simulated
// TEE's PCK and device chains, RA-TLS certificates and the KMS's app CAs all build theirs here.
// Parsing and verifying certificates is lib/crypto/x509.h's job.
// Thread-safe: no shared state.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {

// A non-standard extension, given as its OID (dotted text) and DER-encoded value (the content
// of the extnValue OCTET STRING).
struct CustomExtension {
  std::string oid;
  bool critical = false;
  std::vector<uint8_t> der_value;
};

struct CertSpec {
  std::string common_name;
  std::string organization;  // optional
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;   // textual IPv4/IPv6
  std::vector<std::string> uri_sans;  // e.g. spiffe://pml/operator/alice
  absl::Time not_before = absl::InfinitePast();  // InfinitePast: now - 1 hour
  absl::Time not_after = absl::InfinitePast();   // InfinitePast: not_before + 365 days
  bool is_ca = false;
  std::optional<int> path_len;  // only for CAs
  bool server_auth = false;     // extendedKeyUsage serverAuth
  bool client_auth = false;     // extendedKeyUsage clientAuth
  std::vector<uint8_t> serial;  // big-endian; empty: 16 random bytes
  std::vector<CustomExtension> extensions;
  // Digest for the issuer's signature; SHA-384 for P-384 issuers is the usual pairing.
  Digest digest = Digest::kSha256;
};

// Issues a certificate for `subject_key` (only its public half is used) signed by
// `issuer_key`. `issuer_cert` null means self-signed (issuer name = subject name). Adds
// subjectKeyIdentifier, authorityKeyIdentifier, basicConstraints (critical), keyUsage
// (critical; CAs: keyCertSign|cRLSign, leaves: digitalSignature|keyAgreement?). kInvalidArgument
// for a malformed SAN, OID or validity; kInternal if OpenSSL fails.
absl::StatusOr<X509Ptr> IssueCertificate(const CertSpec& spec, const EVP_PKEY& subject_key,
                                         const EVP_PKEY& issuer_key, const X509* issuer_cert);

// Builds a v2 CRL from `issuer_cert`/`issuer_key` listing `revoked_serials` (big-endian).
absl::StatusOr<X509CrlPtr> IssueCrl(const X509& issuer_cert, const EVP_PKEY& issuer_key,
                                    const std::vector<std::vector<uint8_t>>& revoked_serials,
                                    absl::Time this_update, absl::Time next_update,
                                    Digest digest = Digest::kSha256);

// Encodings.
absl::StatusOr<std::string> CertificateToPem(const X509& cert);
absl::StatusOr<std::vector<uint8_t>> CertificateToDer(const X509& cert);
absl::StatusOr<std::vector<uint8_t>> CrlToDer(const X509_CRL& crl);
absl::StatusOr<std::string> CrlToPem(const X509_CRL& crl);

}  // namespace pml::crypto
