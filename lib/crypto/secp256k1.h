#pragma once
// secp256k1 as Ethereum and dstack use it, plus the EC helpers the guest agent's key derivation
// and the KMS share: Keccak-256, recoverable signatures (r ‖ s ‖ v, low s), SEC1 compressed
// public keys, and turning HKDF output into a private scalar.
// Thread-safety: pure functions.

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::crypto {

// Keccak-256 (the original Keccak padding, as Ethereum and dstack use; not SHA3-256, which
// OpenSSL 3.0 has; Keccak-256 arrived only in OpenSSL 3.2).
std::array<uint8_t, 32> Keccak256(absl::Span<const uint8_t> data);

// A recoverable secp256k1 ECDSA signature r ‖ s ‖ v (65 bytes, low s, v ∈ {0,1}) over a 32-byte
// digest, as Ethereum's sign_recoverable. kInvalidArgument when the key is not secp256k1 or the
// digest is not 32 bytes; kInternal if OpenSSL fails.
absl::StatusOr<std::vector<uint8_t>> SignSecp256k1Recoverable(const EVP_PKEY& key,
                                                              absl::Span<const uint8_t> digest);

// The SEC1-compressed public key (33 bytes) that produced a recoverable signature over a 32-byte
// digest; v may be 0/1 or 27/28. kInvalidArgument when the digest or signature is malformed or
// recovers no key (a signature that recovers *some* key is not thereby valid: compare it).
absl::StatusOr<std::vector<uint8_t>> RecoverSecp256k1PublicKey(absl::Span<const uint8_t> digest,
                                                               absl::Span<const uint8_t> signature);

// SEC1 compressed form (33 bytes) of a 256-bit EC key's public point (secp256k1 or P-256).
absl::StatusOr<std::vector<uint8_t>> Secp256k1CompressedPublicKey(const EVP_PKEY& key);

// A secp256k1 public key from SEC1 (33 compressed or 65 uncompressed bytes). kInvalidArgument
// when malformed or not on the curve.
absl::StatusOr<EvpPkeyPtr> Secp256k1PublicKeyFromSec1(absl::Span<const uint8_t> sec1);

// ECDSA over a 32-byte digest as raw r ‖ s with s in the lower half (as k256 signs).
absl::StatusOr<std::vector<uint8_t>> EcdsaSignPrehashLowS(const EVP_PKEY& key,
                                                          absl::Span<const uint8_t> digest);

// Verifies raw r ‖ s over a 32-byte digest with k256's rules: r, s in [1, n−1] (else
// kInvalidArgument), a high s is `false`.
absl::StatusOr<bool> VerifySecp256k1Prehash(const EVP_PKEY& key, absl::Span<const uint8_t> digest,
                                            absl::Span<const uint8_t> raw);

// (okm mod (n − 1)) + 1 as a 32-byte big-endian private scalar of `curve` (P-256 or secp256k1;
// give at least 48 bytes of okm so the bias is negligible, FIPS 186-5 A.2.1).
absl::StatusOr<SecretBytes> ScalarFromOkm(const SecretBytes& okm, Curve curve);

}  // namespace pml::crypto
