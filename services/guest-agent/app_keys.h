#pragma once
// App keys: what the guest agent derives from the app key for dstack's GetKey, Sign and Verify
// and for Tappd.DeriveKey (dstack-compat.md §2.4, §4.2).
//
// The app key is a 32-byte secp256k1 private scalar supplied at boot by the KMS (dstack's
// `k256_key`) or, in development, by a local key provider. It has two jobs, as in dstack: it is
// the input keying material of every derivation below, and it signs the derived public keys (the
// first link of the signature chain). The KMS may also supply its own signature over the app key
// (dstack's `k256_signature`: the KMS root secp256k1 key's recoverable signature over
// keccak256("dstack-kms-issued:" ‖ app_id ‖ SEC1-compressed app public key)); it is passed
// through unchanged as the chain's second link.
//
// Derivation (deliberately not dstack's `HKDF(k256_key, [path])`, which gives every algorithm and
// purpose the same bytes): for a canonical algorithm name A ("secp256k1", "ed25519", "p256"),
// purpose U and path P,
//   okm = HKDF-SHA256(ikm = app key, salt = "pml-guest-key:v1",
//                     info = "pml-guest-key:v1" ‖ be32(|A|) ‖ A ‖ be32(|U|) ‖ U ‖ be32(|P|) ‖ P,
//                     L)
//   ed25519:          L = 32; the private key is okm (the RFC 8032 seed).
//   secp256k1, p256:  L = 48; the private scalar is (okm as a big-endian integer mod (n − 1)) + 1,
//                     32 bytes big-endian (FIPS 186-5 A.2.1: 128 extra bits make the bias
//                     negligible, and no input fails).
// The length prefixes make the info injective, so no two (A, U, P) share a key. Keys depend only
// on the app key and (A, U, P): the same across calls, agent restarts and replicas of one app.
//
// Signature chain of a derived key, as dstack builds it, so dstack verifiers accept it:
//   chain[0] = app key's recoverable secp256k1 signature (r ‖ s ‖ v, 65 bytes, low s, v ∈ {0,1})
//              over keccak256(U ‖ ":" ‖ lower-hex(public key)), with the public key SEC1-compressed
//              (33 bytes) for secp256k1 and p256, raw (32 bytes) for ed25519;
//   chain[1] = the KMS signature over the app key (empty when there is none, as with dstack's
//              local key providers).
//
// Secrets live in crypto::SecretBytes and never appear in a Status message. Thread-safety: an
// AppKeys is immutable after Create; every method is const and safe to call concurrently. The
// free functions are pure and thread-safe.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secp256k1.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::guest {

inline constexpr size_t kAppKeyBytes = 32;
// Bounds that keep the HKDF info under OpenSSL 3.0's 1024-byte limit.
inline constexpr size_t kMaxKeyPathBytes = 512;
inline constexpr size_t kMaxKeyPurposeBytes = 256;
// What Sign uses, as dstack does: GetKey(path "vms", purpose "signing", the base algorithm).
inline constexpr absl::string_view kSigningKeyPath = "vms";
inline constexpr absl::string_view kSigningKeyPurpose = "signing";
// The purpose DeriveTlsKey uses (Tappd.DeriveKey has none).
inline constexpr absl::string_view kTlsKeyPurpose = "tls";

enum class KeyAlgorithm { kSecp256k1, kEd25519, kP256 };

// "secp256k1", also "k256" (dstack's alias) and "" (dstack's GetKey default); "ed25519"; "p256".
// kInvalidArgument naming the unknown algorithm (bounded) otherwise.
absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name);
// The canonical name, as it enters the derivation.
absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm);

struct DerivedKey {
  KeyAlgorithm algorithm = KeyAlgorithm::kSecp256k1;
  // 32 bytes: the big-endian scalar (secp256k1, p256) or the seed (ed25519). What dstack's GetKey
  // returns as `key`.
  crypto::SecretBytes private_key;
  // SEC1 compressed (33 bytes) for secp256k1 and p256; raw (32 bytes) for ed25519.
  std::vector<uint8_t> public_key;
  // [app key's signature over this key, KMS signature over the app key (may be empty)].
  std::vector<std::vector<uint8_t>> signature_chain;
};

// What dstack's /Sign returns.
struct SignResult {
  // ed25519: 64 bytes (RFC 8032). secp256k1 and secp256k1_prehashed: r ‖ s, 64 bytes, low s.
  std::vector<uint8_t> signature;
  // [signature, then the signing key's two-link chain]: 3 entries, as dstack.
  std::vector<std::vector<uint8_t>> signature_chain;
  std::vector<uint8_t> public_key;  // as DerivedKey::public_key
};

class AppKeys {
 public:
  // `app_key` must be a secp256k1 private scalar: 32 bytes, big-endian, in [1, n−1];
  // kInvalidArgument otherwise (without its value). `kms_signature` may be empty; it is not
  // checked here (the KMS root key is the relying party's to check).
  static absl::StatusOr<std::unique_ptr<AppKeys>> Create(crypto::SecretBytes app_key,
                                                         std::vector<uint8_t> kms_signature);

  // dstack GetKey / Tappd.DeriveK256Key: the key for (path, purpose, algorithm) and its chain.
  // kInvalidArgument naming the field: an unknown algorithm, a path over kMaxKeyPathBytes or a
  // purpose over kMaxKeyPurposeBytes. kInternal if OpenSSL fails.
  absl::StatusOr<DerivedKey> GetKey(absl::string_view path, absl::string_view purpose,
                                    absl::string_view algorithm) const;

  // Tappd.DeriveKey: the P-256 key for `path` (GetKey(path, kTlsKeyPurpose, "p256")) as an
  // EVP_PKEY for a certificate. Deterministic per app and path. Errors as GetKey.
  absl::StatusOr<crypto::EvpPkeyPtr> DeriveTlsKey(absl::string_view path) const;

  // dstack /Sign: `algorithm` is "ed25519" (pure Ed25519 over data), "secp256k1" (ECDSA over
  // SHA-256(data)) or "secp256k1_prehashed" (ECDSA over data, which must be a 32-byte digest);
  // "k256" means "secp256k1". The key is GetKey(kSigningKeyPath, kSigningKeyPurpose, the base
  // algorithm). ECDSA nonces are random (OpenSSL 3.0 has no RFC 6979), so signatures differ per
  // call while all verify. kInvalidArgument naming the algorithm or the data length.
  absl::StatusOr<SignResult> Sign(absl::string_view algorithm,
                                  absl::Span<const uint8_t> data) const;

  // dstack /Verify: whether `signature` over `data` verifies under `public_key` (the forms Sign
  // returns; secp256k1 also takes an uncompressed 65-byte key). A well-formed signature that
  // does not verify, including a high-s ECDSA one (dstack's k256 refuses those), is `false`.
  // kInvalidArgument naming the field when the algorithm is unknown, the public key is malformed
  // or not on the curve, the signature has the wrong length or an ECDSA r or s outside
  // [1, n−1], or prehashed data is not 32 bytes. Needs no secret.
  static absl::StatusOr<bool> Verify(absl::string_view algorithm, absl::Span<const uint8_t> data,
                                     absl::Span<const uint8_t> signature,
                                     absl::Span<const uint8_t> public_key);

  // The app key's public key, SEC1 compressed (33 bytes): what chain[0] recovers to.
  const std::vector<uint8_t>& AppPublicKey() const { return app_public_key_; }
  const std::vector<uint8_t>& KmsSignature() const { return kms_signature_; }

 private:
  AppKeys(crypto::SecretBytes app_key, crypto::EvpPkeyPtr app_signing_key,
          std::vector<uint8_t> app_public_key, std::vector<uint8_t> kms_signature);

  const crypto::SecretBytes app_key_;
  const crypto::EvpPkeyPtr app_signing_key_;  // the same scalar as a secp256k1 EVP_PKEY
  const std::vector<uint8_t> app_public_key_;
  const std::vector<uint8_t> kms_signature_;
};

// The secp256k1 primitives live in lib/crypto/secp256k1.h; these names stay for callers here.
using crypto::Keccak256;
using crypto::RecoverSecp256k1PublicKey;
using crypto::SignSecp256k1Recoverable;

// The text chain[0] signs (before keccak256): purpose ‖ ":" ‖ lower-hex(public_key).
std::string KeyChainMessage(absl::string_view purpose, absl::Span<const uint8_t> public_key);

}  // namespace pml::guest
