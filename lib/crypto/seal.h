#pragma once
// Sealing a payload to an X25519 public key (DESIGN.md §5): the KMS releases app keys and root
// secrets this way, so only the holder of the requester's one-time private key can open them.
//
//   sender:    e = fresh X25519 key;  shared = X25519(e, recipient)   (all-zero shared refused)
//   key      = HKDF-SHA256(ikm = shared, salt = "pml-seal:v1",
//                          info = "pml-seal:v1" ‖ be32(|label|) ‖ label ‖ e_pub ‖ recipient_pub,
//                          32 bytes)
//   box      = e_pub ‖ nonce (12 random bytes) ‖ AES-256-GCM(key, nonce, plaintext, aad) ‖ tag
//
// `label` separates uses (e.g. "pml-kms-app-keys:v1"); `aad` binds context the plaintext belongs
// to (the app id). Both public keys enter the KDF, so a box cannot be re-targeted.
// Thread-safety: pure functions.

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::crypto {

inline constexpr size_t kX25519KeyBytes = 32;

// Labels of the KMS's sealed payloads (wire constants shared by the KMS and its clients).
inline constexpr char kKmsAppKeysSealLabel[] = "pml-kms-app-keys:v1";
inline constexpr char kKmsRootSecretsSealLabel[] = "pml-kms-root-secrets:v1";
inline constexpr size_t kSealNonceBytes = 12;
inline constexpr size_t kSealTagBytes = 16;

using X25519PublicKey = std::array<uint8_t, kX25519KeyBytes>;

struct X25519KeyPair {
  SecretBytes private_key;  // 32 bytes (RFC 7748 scalar, unclamped as stored by OpenSSL)
  X25519PublicKey public_key{};
};

// A fresh key pair. kInternal if OpenSSL fails.
absl::StatusOr<X25519KeyPair> GenerateX25519();
// The public key of a 32-byte private key. kInvalidArgument for the wrong length.
absl::StatusOr<X25519PublicKey> X25519PublicFromPrivate(absl::Span<const uint8_t> private_key);
// X25519(private, peer). kInvalidArgument for wrong lengths or a low-order peer key (all-zero
// shared secret).
absl::StatusOr<SecretBytes> X25519SharedSecret(absl::Span<const uint8_t> private_key,
                                               absl::Span<const uint8_t> peer_public_key);

struct SealedBox {
  X25519PublicKey ephemeral_public_key{};
  std::array<uint8_t, kSealNonceBytes> nonce{};
  std::vector<uint8_t> ciphertext;  // ciphertext ‖ 16-byte tag
};

// Seals `plaintext` to `recipient_public_key` (32 bytes) under a fresh sender key.
// kInvalidArgument for a malformed or low-order recipient key.
absl::StatusOr<SealedBox> Seal(absl::Span<const uint8_t> recipient_public_key,
                               absl::Span<const uint8_t> plaintext, absl::Span<const uint8_t> aad,
                               absl::string_view label);
// A sender key held as OpenSSL's key object, so that each box it seals costs one X25519
// operation (the key agreement) and not three (generating a key, re-deriving its public half
// from raw bytes, agreeing). Immutable and thread-safe.
//
// Reusing one sender key across boxes is safe as long as each recipient key is one-time: the
// shared secret, and with it the AES key, then differs per box, and the nonce is random. What
// reuse gives up is forward secrecy against whoever later learns the sender key while it is
// kept; a sender that holds longer-lived secrets anyway (the KMS's root keys) loses nothing by
// keeping one for a short while.
class SealSender {
 public:
  static absl::StatusOr<std::shared_ptr<const SealSender>> Generate();
  const X25519PublicKey& public_key() const { return public_key_; }
  // X25519(this key, peer), with X25519SharedSecret's checks.
  absl::StatusOr<SecretBytes> SharedSecret(absl::Span<const uint8_t> peer_public_key) const;

 private:
  SealSender() = default;
  EvpPkeyPtr key_;
  X25519PublicKey public_key_{};
};

// Seal under the caller's sender key.
absl::StatusOr<SealedBox> Seal(const SealSender& sender,
                               absl::Span<const uint8_t> recipient_public_key,
                               absl::Span<const uint8_t> plaintext, absl::Span<const uint8_t> aad,
                               absl::string_view label);
// Opens a box sealed to the key pair whose private half is `recipient_private_key`.
// kInvalidArgument for malformed keys or a ciphertext shorter than the tag; kPermissionDenied
// "sealed box does not open" when authentication fails (wrong key, label, aad or tampering).
absl::StatusOr<SecretBytes> Open(absl::Span<const uint8_t> recipient_private_key,
                                 const SealedBox& box, absl::Span<const uint8_t> aad,
                                 absl::string_view label);

// AES-256-GCM with a 32-byte key: nonce (12 random bytes) ‖ ciphertext ‖ tag. For secrets at
// rest under a local key (the KMS seals its root-key epochs with its cluster key).
absl::StatusOr<std::vector<uint8_t>> AeadSeal(absl::Span<const uint8_t> key,
                                              absl::Span<const uint8_t> plaintext,
                                              absl::Span<const uint8_t> aad);
// kInvalidArgument for a wrong key length or a blob shorter than nonce and tag;
// kPermissionDenied when authentication fails.
absl::StatusOr<SecretBytes> AeadOpen(absl::Span<const uint8_t> key,
                                     absl::Span<const uint8_t> sealed,
                                     absl::Span<const uint8_t> aad);

}  // namespace pml::crypto
