#pragma once
// Internal to lib/tdx: a strict, allocation-light DER reader for the X.509 certificates and CRLs
// of Intel's DCAP PKI (all ECDSA P-256 with SHA-256). OpenSSL 3.0's d2i_X509 costs ~3 ECDSA
// verifications per certificate (its key decoder), which alone would cap cold verification far
// below target, so the verifier reads the few fields it needs here. The signature always covers
// the exact TBS bytes these fields are read from.
//
// Accepted: v3 certificates / v1-v2 CRLs, signature algorithm ecdsa-with-SHA256 (also in the TBS),
// subject key id-ecPublicKey on prime256v1. Unknown critical certificate extensions are
// rejected (RFC 5280 §4.2). Errors are kInvalidArgument naming the field.
// Thread-safety: immutable after Parse.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/tdx/internal/p256.h"

namespace pml::tdx::internal {

struct LiteExtension {
  std::string oid;  // dotted
  bool critical = false;
  std::vector<uint8_t> value;  // content of extnValue
};

class LiteCert {
 public:
  // Parses one DER certificate (no trailing bytes) and imports its P-256 key with `group`.
  static absl::StatusOr<std::shared_ptr<const LiteCert>> Parse(std::vector<uint8_t> der,
                                                               const P256Group& group);

  const std::vector<uint8_t>& der() const { return der_; }
  const std::array<uint8_t, 32>& digest() const { return digest_; }  // SHA-256 of der()
  const std::vector<uint8_t>& issuer_der() const { return issuer_; }
  const std::vector<uint8_t>& subject_der() const { return subject_; }
  const std::string& issuer_cn() const { return issuer_cn_; }
  const std::string& subject_cn() const { return subject_cn_; }
  absl::Time not_before() const { return not_before_; }
  absl::Time not_after() const { return not_after_; }
  // Minimal big-endian magnitude.
  const std::vector<uint8_t>& serial() const { return serial_; }
  bool is_ca() const { return is_ca_; }
  const P256Key& key() const { return *key_; }
  const std::vector<LiteExtension>& extensions() const { return extensions_; }
  const LiteExtension* FindExtension(absl::string_view oid) const;

  // Verifies this certificate's signature with `issuer_key`. OK or kUnauthenticated.
  absl::Status VerifySignedBy(const P256Key& issuer_key) const;
  bool IsSelfIssued() const { return issuer_ == subject_; }

 private:
  LiteCert() = default;
  std::vector<uint8_t> der_;
  std::array<uint8_t, 32> digest_{};
  std::array<uint8_t, 32> tbs_digest_{};
  std::vector<uint8_t> sig_r_;
  std::vector<uint8_t> sig_s_;
  std::vector<uint8_t> issuer_;
  std::vector<uint8_t> subject_;
  std::string issuer_cn_;
  std::string subject_cn_;
  absl::Time not_before_;
  absl::Time not_after_;
  std::vector<uint8_t> serial_;
  bool is_ca_ = false;
  std::shared_ptr<const P256Key> key_;
  std::vector<LiteExtension> extensions_;
};

class LiteCrl {
 public:
  static absl::StatusOr<std::shared_ptr<const LiteCrl>> Parse(absl::Span<const uint8_t> der);

  const std::vector<uint8_t>& issuer_der() const { return issuer_; }
  const std::string& issuer_cn() const { return issuer_cn_; }
  absl::Time this_update() const { return this_update_; }
  // absl::InfiniteFuture() when absent.
  absl::Time next_update() const { return next_update_; }
  // True when `serial` (minimal big-endian magnitude) is listed.
  bool IsRevoked(absl::Span<const uint8_t> serial) const;
  size_t revoked_count() const { return revoked_.size(); }

  absl::Status VerifySignedBy(const P256Key& issuer_key) const;

 private:
  LiteCrl() = default;
  std::array<uint8_t, 32> tbs_digest_{};
  std::vector<uint8_t> sig_r_;
  std::vector<uint8_t> sig_s_;
  std::vector<uint8_t> issuer_;
  std::string issuer_cn_;
  absl::Time this_update_;
  absl::Time next_update_;
  std::vector<std::vector<uint8_t>> revoked_;  // sorted
};

// The "CERTIFICATE" PEM blocks of `pem` (BEGIN to END line inclusive, views into `pem`), in
// order. kInvalidArgument when there is none, one is unterminated, or more than `max_certs`.
absl::StatusOr<std::vector<absl::string_view>> SplitPemCertificates(absl::string_view pem,
                                                                    size_t max_certs = 16);
// The DER inside one block from SplitPemCertificates. kInvalidArgument on bad base64.
absl::StatusOr<std::vector<uint8_t>> DecodePemCertificate(absl::string_view block);

// Decodes every "CERTIFICATE" PEM block of `pem` into DER, in order (at most `max_certs`).
// kInvalidArgument when there is none, a block is unterminated or its base64 is bad.
absl::StatusOr<std::vector<std::vector<uint8_t>>> PemCertificatesToDer(absl::string_view pem,
                                                                       size_t max_certs = 16);

}  // namespace pml::tdx::internal
