#pragma once
// Elliptic-curve keys and ECDSA: generation, PEM/DER import and export, raw-point import (as
// quotes and SPDM reports carry keys), signing and verification in DER or raw r||s form.
// All functions are thread-safe; an EVP_PKEY is safe to share read-only across threads.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::crypto {

enum class Curve { kP256, kP384, kSecp256k1 };

// Digest used with a curve in this project: SHA-256 for P-256/secp256k1, SHA-384 for P-384.
enum class Digest { kSha256, kSha384 };

// Generates a fresh key. kInternal if OpenSSL fails.
absl::StatusOr<EvpPkeyPtr> GenerateEcKey(Curve curve);

// PKCS#8 PEM of the private key (unencrypted). Secret: write with mode 0600, never log.
absl::StatusOr<SecretBytes> PrivateKeyToPem(const EVP_PKEY& key);
// PKCS#8 PrivateKeyInfo DER of a private key (secret).
absl::StatusOr<SecretBytes> PrivateKeyToPkcs8Der(const EVP_PKEY& key);
// Parses PKCS#8 DER (the whole input). kInvalidArgument when malformed.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPkcs8Der(absl::Span<const uint8_t> der);
// Parses a PEM private key (PKCS#8 or SEC1). kInvalidArgument when malformed.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem);
// Parses a PEM public key (SubjectPublicKeyInfo). kInvalidArgument when malformed.
absl::StatusOr<EvpPkeyPtr> PublicKeyFromPem(absl::string_view pem);
// SubjectPublicKeyInfo DER / PEM of the public half.
absl::StatusOr<std::vector<uint8_t>> PublicKeyToDer(const EVP_PKEY& key);
absl::StatusOr<std::string> PublicKeyToPem(const EVP_PKEY& key);
absl::StatusOr<EvpPkeyPtr> PublicKeyFromDer(absl::Span<const uint8_t> der);

// Imports a public key from its raw point: 64/96 bytes X||Y (as in TDX quotes) or 65/97 bytes
// with the 0x04 prefix. kInvalidArgument when the length is wrong or the point is not on the
// curve.
absl::StatusOr<EvpPkeyPtr> PublicKeyFromRawPoint(Curve curve, absl::Span<const uint8_t> point);
// The uncompressed point 0x04||X||Y of an EC public key.
absl::StatusOr<std::vector<uint8_t>> PublicKeyToRawPoint(const EVP_PKEY& key);

// Raw private scalar (big-endian, curve-size bytes) and import from it.
absl::StatusOr<SecretBytes> PrivateKeyToScalar(const EVP_PKEY& key);
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromScalar(Curve curve, absl::Span<const uint8_t> scalar);

// ECDSA over `message` (hashed with `digest`). Returns a DER signature.
absl::StatusOr<std::vector<uint8_t>> SignEcdsaDer(const EVP_PKEY& key, Digest digest,
                                                  absl::Span<const uint8_t> message);
// The same signature as raw r||s, each zero-padded to `component_size` bytes (32 or 48).
absl::StatusOr<std::vector<uint8_t>> SignEcdsaRaw(const EVP_PKEY& key, Digest digest,
                                                  absl::Span<const uint8_t> message,
                                                  size_t component_size);

// Verifies. OK when valid; kInvalidArgument when the signature is malformed (wrong length,
// bad DER); kUnauthenticated when well-formed but wrong.
absl::Status VerifyEcdsaDer(const EVP_PKEY& key, Digest digest, absl::Span<const uint8_t> message,
                            absl::Span<const uint8_t> der_signature);
absl::Status VerifyEcdsaRaw(const EVP_PKEY& key, Digest digest, absl::Span<const uint8_t> message,
                            absl::Span<const uint8_t> raw_signature);
// Converts raw r||s (even length) to DER, and DER to raw with `component_size`-byte halves.
absl::StatusOr<std::vector<uint8_t>> EcdsaRawToDer(absl::Span<const uint8_t> raw);
absl::StatusOr<std::vector<uint8_t>> EcdsaDerToRaw(absl::Span<const uint8_t> der,
                                                   size_t component_size);

}  // namespace pml::crypto
