#pragma once
// Trust anchors for DCAP verification: pinned root *public keys* (P-256), never certificates or
// names (shared/specs/tdx-quote-verification.md §10). A chain is trusted when its self-signed
// root carries one of these keys and every link verifies cryptographically, so either Intel SGX
// Root CA variant (2033 or 2049) is accepted and a same-name fake root is not.
//
// An anchor may be marked `simulated` (the development simulator's root, lib/tee). The verifier
// treats it exactly like Intel's, and every result verified through it says simulated() == true.
// Add one only when the operator asked for it explicitly (--trust-simulated-tee).
//
// Thread-safety: const methods are thread-safe; Add* must not race with readers.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::tdx {

// The Intel SGX Root CA public key, uncompressed P-256 point 04||X||Y (QvE INTEL_ROOT_PUB_KEY;
// SPKI SHA-256 a0af0312...a49e).
extern const uint8_t kIntelSgxRootCaPublicKey[65];

// SHA-256 of the Intel SGX Root CA certificate (the 2049 variant, §10).
extern const uint8_t kIntelSgxRootCaCertSha256[32];

struct TrustAnchor {
  std::string name;
  std::vector<uint8_t> public_key;  // uncompressed P-256 point, 65 bytes
  bool simulated = false;
  // SHA-256 digests of root certificates already known to be the anchor's valid self-signed
  // certificate (checked when added, or built in); a chain root with one of these digests needs
  // no self-signature check. Any other root with the anchor's key is checked.
  std::vector<std::array<uint8_t, 32>> known_root_digests;
};

class TrustAnchors {
 public:
  // No anchors: nothing verifies.
  TrustAnchors() = default;

  // Only the pinned Intel SGX Root CA key.
  static TrustAnchors IntelDefault();

  // Adds a root key given as an uncompressed/raw P-256 point (64 or 65 bytes), as a PEM
  // SubjectPublicKeyInfo, or taken from a PEM/DER root certificate. From a certificate only the
  // key is trusted; if the certificate is validly self-signed its SHA-256 is also remembered
  // (known_root_digests), which saves one signature check per cold verification.
  // kInvalidArgument when the input is malformed or not a P-256 key; kAlreadyExists when the
  // key is already an anchor (with either flag).
  absl::Status AddRawPoint(absl::Span<const uint8_t> point, absl::string_view name,
                           bool simulated);
  absl::Status AddPublicKeyPem(absl::string_view pem, absl::string_view name, bool simulated);
  absl::Status AddCertificate(absl::Span<const uint8_t> pem_or_der, absl::string_view name,
                              bool simulated);
  // Reads a file holding a PEM public key or a PEM/DER certificate.
  absl::Status AddFromFile(absl::string_view path, absl::string_view name, bool simulated);

  // The anchor whose key equals `point` (65-byte uncompressed), or null. The pointer is valid
  // while this object (or a copy of it) lives.
  std::shared_ptr<const TrustAnchor> Find(absl::Span<const uint8_t> point) const;

  size_t size() const { return anchors_.size(); }
  const std::vector<std::shared_ptr<const TrustAnchor>>& anchors() const { return anchors_; }

 private:
  absl::Status Add(absl::Span<const uint8_t> point, absl::string_view name, bool simulated,
                   std::optional<std::array<uint8_t, 32>> root_digest);
  std::vector<std::shared_ptr<const TrustAnchor>> anchors_;
};

}  // namespace pml::tdx
