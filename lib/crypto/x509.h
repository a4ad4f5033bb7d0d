#pragma once
// Parsing and checking X.509 certificates and CRLs: PEM/DER parsing, one-link signature checks
// (a certificate or CRL against its issuer's key), names, validity times, revocation lookups,
// extension extraction by OID, and a small DER walker for vendor extensions (Intel SGX PCK,
// NVIDIA device certificates). Chain *policy* (which anchor, which names, which order) belongs to
// the caller: these helpers check exactly one thing each, so the callers can report which
// check failed. Issuing certificates is cert_builder.h's job.
//
// Thread-safety: every function is thread-safe. An X509 / X509_CRL may be read from several
// threads at once (OpenSSL 3 locks its internal caches).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {

// Upper bound on certificates accepted from one PEM bundle or DER concatenation.
inline constexpr size_t kMaxChainCertificates = 16;

// Parses every "CERTIFICATE" PEM block of `pem` in order; text between blocks (and a trailing
// NUL, as quotes carry) is ignored. kInvalidArgument when there is no block, a block does not
// decode, or there are more than `max_certs`.
absl::StatusOr<std::vector<X509Ptr>> ParsePemCertificates(
    absl::string_view pem, size_t max_certs = kMaxChainCertificates);

// Parses exactly one DER certificate; trailing bytes are an error. kInvalidArgument when
// malformed.
absl::StatusOr<X509Ptr> ParseDerCertificate(absl::Span<const uint8_t> der);

// Parses back-to-back DER certificates (as some vendors concatenate them). kInvalidArgument when
// any is malformed, there is none, or there are more than `max_certs`.
absl::StatusOr<std::vector<X509Ptr>> ParseDerCertificates(
    absl::Span<const uint8_t> der, size_t max_certs = kMaxChainCertificates);

// Parses a CRL given as DER, or as PEM ("X509 CRL" block) when the input starts with "-----".
// kInvalidArgument when malformed or followed by trailing bytes (DER).
absl::StatusOr<X509CrlPtr> ParseCrl(absl::Span<const uint8_t> der_or_pem);

// DER encodings (the bytes a cache keys on). kInternal if OpenSSL fails.
absl::StatusOr<std::vector<uint8_t>> CertificateDer(const X509& cert);

// Checks the certificate's / CRL's signature with `issuer_key`. OK when valid;
// kUnauthenticated when it does not verify (also for an algorithm/key mismatch). Checks nothing
// else (no names, times or extensions).
absl::Status VerifyCertificateSignature(const X509& cert, const EVP_PKEY& issuer_key);
absl::Status VerifyCrlSignature(const X509_CRL& crl, const EVP_PKEY& issuer_key);

// The subject public key (borrowed from `cert`: valid while `cert` lives). kInvalidArgument when
// the key cannot be decoded.
absl::StatusOr<const EVP_PKEY*> CertificatePublicKey(const X509& cert);

// Names. Equality is OpenSSL's canonical comparison (X509_NAME_cmp).
bool NameEquals(const X509_NAME& a, const X509_NAME& b);
// True when `cert`'s issuer name equals `issuer`'s subject name.
bool IssuerNameMatches(const X509& cert, const X509& issuer);
// True when `crl`'s issuer name equals `cert`'s issuer name (a CRL covers the certificates of
// the CA that issued it).
bool CrlIssuerMatchesCertIssuer(const X509_CRL& crl, const X509& cert);
// The first commonName (UTF-8), or "" when there is none.
std::string CommonName(const X509_NAME& name);
std::string SubjectCommonName(const X509& cert);
std::string IssuerCommonName(const X509& cert);
// One-line RFC 2253 text, for messages.
std::string NameToString(const X509_NAME& name);

// Validity and CRL times. kInvalidArgument when a time field is malformed. A CRL without
// nextUpdate reports absl::InfiniteFuture().
struct Validity {
  absl::Time not_before;
  absl::Time not_after;
};
absl::StatusOr<Validity> CertificateValidity(const X509& cert);
struct CrlTimes {
  absl::Time this_update;
  absl::Time next_update;
};
absl::StatusOr<CrlTimes> CrlValidity(const X509_CRL& crl);
absl::StatusOr<absl::Time> Asn1TimeToTime(const ASN1_TIME& t);

// Serial number as minimal big-endian magnitude bytes (the sign is dropped; X.509 serials are
// positive). Empty when the serial cannot be read.
std::vector<uint8_t> SerialNumber(const X509& cert);
// Serial numbers listed in the CRL, in the same form.
std::vector<std::vector<uint8_t>> RevokedSerials(const X509_CRL& crl);
// True when `crl` lists `cert`'s serial. Does not check that `crl` belongs to `cert`'s issuer:
// do that with CrlIssuerMatchesCertIssuer.
bool IsRevoked(const X509_CRL& crl, const X509& cert);

// The DER content of the extnValue OCTET STRING of the extension with dotted `oid`, nullopt when
// the certificate has none. kInvalidArgument when `oid` is not a valid dotted OID or the
// extension appears more than once.
absl::StatusOr<std::optional<std::vector<uint8_t>>> FindExtension(const X509& cert,
                                                                  absl::string_view oid);

// A minimal, bounds-checked DER walker for definite-length TLVs with single-byte tags (all that
// X.509 vendor extensions use). The input must outlive the reader and the spans it returns.
struct DerTlv {
  uint8_t tag = 0;
  absl::Span<const uint8_t> content;
  absl::Span<const uint8_t> raw;  // the whole element: tag, length and content
};
inline constexpr uint8_t kDerInteger = 0x02;
inline constexpr uint8_t kDerOctetString = 0x04;
inline constexpr uint8_t kDerOid = 0x06;
inline constexpr uint8_t kDerEnumerated = 0x0a;
inline constexpr uint8_t kDerSequence = 0x30;

class DerReader {
 public:
  explicit DerReader(absl::Span<const uint8_t> data) : data_(data) {}
  bool empty() const { return pos_ >= data_.size(); }
  // The tag of the next element, or -1 at the end (does not advance).
  int PeekTag() const { return pos_ < data_.size() ? data_[pos_] : -1; }
  // The next TLV. kInvalidArgument (naming `what`) on a truncated or indefinite-length element,
  // a multi-byte tag, or a length that does not fit.
  absl::StatusOr<DerTlv> Next(absl::string_view what);
  // Next() and require `tag`.
  absl::StatusOr<DerTlv> Expect(uint8_t tag, absl::string_view what);

 private:
  absl::Span<const uint8_t> data_;
  size_t pos_ = 0;
};

// Dotted text of an OID's content bytes ("1.2.840.113741.1.13.1"). kInvalidArgument when
// malformed.
absl::StatusOr<std::string> DerOidToString(absl::Span<const uint8_t> content);
// A non-negative INTEGER/ENUMERATED content that fits in 63 bits. kInvalidArgument otherwise.
absl::StatusOr<int64_t> DerNonNegativeInteger(absl::Span<const uint8_t> content);

}  // namespace pml::crypto
