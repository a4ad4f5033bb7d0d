#include "lib/tdx/trust_anchors.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"

namespace pml::tdx {

// §1/§10 of the spec: 04 0ba9c4c0 c0c86193 ... 0904ae73 94.
const uint8_t kIntelSgxRootCaPublicKey[65] = {
    0x04, 0x0b, 0xa9, 0xc4, 0xc0, 0xc0, 0xc8, 0x61, 0x93, 0xa3, 0xfe, 0x23, 0xd6, 0xb0, 0x2c,
    0xda, 0x10, 0xa8, 0xbb, 0xd4, 0xe8, 0x8e, 0x48, 0xb4, 0x45, 0x85, 0x61, 0xa3, 0x6e, 0x70,
    0x55, 0x25, 0xf5, 0x67, 0x91, 0x8e, 0x2e, 0xdc, 0x88, 0xe4, 0x0d, 0x86, 0x0b, 0xd0, 0xcc,
    0x4e, 0xe2, 0x6a, 0xac, 0xc9, 0x88, 0xe5, 0x05, 0xa9, 0x53, 0x55, 0x8c, 0x45, 0x3f, 0x6b,
    0x09, 0x04, 0xae, 0x73, 0x94};

// SHA-256 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3 (§1, §10).
const uint8_t kIntelSgxRootCaCertSha256[32] = {
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3};

TrustAnchors TrustAnchors::IntelDefault() {
  TrustAnchors a;
  auto anchor = std::make_shared<TrustAnchor>();
  anchor->name = "Intel SGX Root CA";
  anchor->public_key.assign(std::begin(kIntelSgxRootCaPublicKey),
                            std::end(kIntelSgxRootCaPublicKey));
  std::array<uint8_t, 32> digest;
  std::copy(std::begin(kIntelSgxRootCaCertSha256), std::end(kIntelSgxRootCaCertSha256),
            digest.begin());
  anchor->known_root_digests.push_back(digest);
  a.anchors_.push_back(std::move(anchor));
  return a;
}

absl::Status TrustAnchors::AddRawPoint(absl::Span<const uint8_t> point, absl::string_view name,
                                       bool simulated) {
  return Add(point, name, simulated, std::nullopt);
}

absl::Status TrustAnchors::Add(absl::Span<const uint8_t> point, absl::string_view name,
                               bool simulated, std::optional<std::array<uint8_t, 32>> root_digest) {
  // Import validates that the point is on the curve.
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key,
                       crypto::PublicKeyFromRawPoint(crypto::Curve::kP256, point));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, crypto::PublicKeyToRawPoint(*key));
  if (Find(raw) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("trust anchor key ", core::HexEncode(raw).substr(0, 32),
                                                 "... is already present"));
  }
  auto anchor = std::make_shared<TrustAnchor>();
  anchor->name = std::string(name);
  anchor->public_key = std::move(raw);
  anchor->simulated = simulated;
  if (root_digest.has_value()) anchor->known_root_digests.push_back(*root_digest);
  anchors_.push_back(std::move(anchor));
  return absl::OkStatus();
}

absl::Status TrustAnchors::AddPublicKeyPem(absl::string_view pem, absl::string_view name,
                                           bool simulated) {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::PublicKeyFromPem(pem));
  auto raw = crypto::PublicKeyToRawPoint(*key);
  if (!raw.ok() || raw->size() != 65) {
    return absl::InvalidArgumentError("trust anchor is not a P-256 public key");
  }
  return AddRawPoint(*raw, name, simulated);
}

absl::Status TrustAnchors::AddCertificate(absl::Span<const uint8_t> pem_or_der,
                                          absl::string_view name, bool simulated) {
  crypto::X509Ptr cert;
  const std::string text = core::ToString(pem_or_der);
  if (absl::StrContains(text, "-----BEGIN CERTIFICATE-----")) {
    PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> certs, crypto::ParsePemCertificates(text));
    if (certs.size() != 1) {
      return absl::InvalidArgumentError("trust anchor pem must hold exactly one certificate");
    }
    cert = std::move(certs[0]);
  } else {
    PML_ASSIGN_OR_RETURN(cert, crypto::ParseDerCertificate(pem_or_der));
  }
  PML_ASSIGN_OR_RETURN(const EVP_PKEY* key, crypto::CertificatePublicKey(*cert));
  auto raw = crypto::PublicKeyToRawPoint(*key);
  if (!raw.ok() || raw->size() != 65) {
    return absl::InvalidArgumentError("trust anchor certificate key is not P-256");
  }
  // A self-signed root whose signature verifies now need not be re-verified in every chain.
  std::optional<std::array<uint8_t, 32>> digest;
  if (crypto::IssuerNameMatches(*cert, *cert) &&
      crypto::VerifyCertificateSignature(*cert, *key).ok()) {
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, crypto::CertificateDer(*cert));
    digest = crypto::Sha256(der);
  }
  return Add(*raw, name, simulated, digest);
}

absl::Status TrustAnchors::AddFromFile(absl::string_view path, absl::string_view name,
                                       bool simulated) {
  PML_ASSIGN_OR_RETURN(std::string data, core::ReadFile(path, 1 << 20));
  if (absl::StrContains(data, "-----BEGIN PUBLIC KEY-----")) {
    return AddPublicKeyPem(data, name, simulated);
  }
  return AddCertificate(core::AsBytes(data), name, simulated);
}

std::shared_ptr<const TrustAnchor> TrustAnchors::Find(absl::Span<const uint8_t> point) const {
  for (const auto& a : anchors_) {
    if (a->public_key.size() == point.size() &&
        std::equal(point.begin(), point.end(), a->public_key.begin())) {
      return a;
    }
  }
  return nullptr;
}

}  // namespace pml::tdx
