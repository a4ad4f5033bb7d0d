#pragma once
// The KMS's key derivations (DESIGN.md §5; dstack's tree, specs/dstack-compat.md §4.2, plus the
// epoch, and the instance id for disk keys). Every app key is HKDF-SHA256 of one root secret of
// one epoch:
//
//   info(P, A, E, I) = "pml-kms:v1" ‖ lp(P) ‖ lp(A) ‖ be32(E) ‖ lp(I)      lp(x) = be32(|x|) ‖ x
//   okm(ikm, P, A, E, I, L) = HKDF-SHA256(ikm, salt = "pml-kms:v1", info(P, A, E, I), L)
//
//   app CA key (P-256)    scalar(okm(root CA scalar,  "app-ca",             app, E, "",  48))
//   disk key (32 bytes)   okm(root CA scalar,         "app-disk-crypt-key", app, E, instance, 32)
//   env key (X25519)      okm(root CA scalar,         "env-encrypt-key",    app, E, "",  32)
//   app key (secp256k1)   scalar(okm(root k256 scalar, "app-key",           app, E, "",  48))
//
// scalar(x) = (x mod (n − 1)) + 1 (lib/crypto/secp256k1.h ScalarFromOkm). The epoch enters every
// derivation, so a rotation gives every app new keys while old epochs still derive the old ones;
// the instance id enters the disk key, so replicas of one app never share a disk key (dstack's do
// when instance ids are absent). tests/vectors/kms-derivations.json holds vectors computed by an
// independent implementation (tests/vectors/gen_kms_derivations.py).
//
// Signatures, as dstack makes them so its verifiers accept ours:
//   k256_signature = root k256 recoverable signature over
//                    keccak256("dstack-kms-issued:" ‖ app id ‖ SEC1-compressed app public key)
//   env pubkey sig = root k256 recoverable signature over
//                    keccak256("dstack-env-encrypt-pubkey" ‖ ":" ‖ app id [‖ be64(timestamp)] ‖
//                              env public key)
//
// Thread-safety: pure functions.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::kms {

inline constexpr size_t kAppIdBytes = 20;

// One epoch's root secrets (what RootKeys keeps and JoinCluster copies).
struct RootSecret {
  uint32_t epoch = 0;
  crypto::SecretBytes ca_scalar;    // P-256 root CA private scalar, 32 bytes
  crypto::SecretBytes k256_scalar;  // secp256k1 root private scalar, 32 bytes
};

// The derived secrets for one app (and instance) in one epoch.
struct DerivedAppSecrets {
  crypto::SecretBytes app_ca_scalar;  // P-256
  crypto::SecretBytes disk_key;       // 32 bytes; empty when no instance id was given
  crypto::SecretBytes env_key;        // X25519 secret
  std::array<uint8_t, 32> env_public_key{};
  crypto::SecretBytes k256_scalar;    // secp256k1
  std::vector<uint8_t> k256_public_key;  // SEC1 compressed, 33 bytes
};

// HKDF output for one derivation (exposed for the vectors test).
absl::StatusOr<crypto::SecretBytes> DeriveOkm(const crypto::SecretBytes& ikm,
                                              absl::string_view purpose,
                                              absl::Span<const uint8_t> app_id, uint32_t epoch,
                                              absl::Span<const uint8_t> instance_id, size_t length);

// Every derivation above. kInvalidArgument when app_id is not 20 bytes or instance_id is neither
// empty nor 20 bytes (no disk key without one).
absl::StatusOr<DerivedAppSecrets> DeriveAppSecrets(const RootSecret& root,
                                                   absl::Span<const uint8_t> app_id,
                                                   absl::Span<const uint8_t> instance_id);

// The disk key alone: okm(root CA scalar, "app-disk-crypt-key", app, epoch, instance, 32).
// kInvalidArgument for an app id or instance id that is not 20 bytes.
absl::StatusOr<crypto::SecretBytes> DeriveDiskKey(const RootSecret& root,
                                                  absl::Span<const uint8_t> app_id,
                                                  absl::Span<const uint8_t> instance_id);

// keccak256 messages of the two signature kinds above (the digest is signed).
std::vector<uint8_t> KmsIssuedMessage(absl::Span<const uint8_t> app_id,
                                      absl::Span<const uint8_t> app_public_key);
std::vector<uint8_t> EnvPubKeyMessage(absl::Span<const uint8_t> app_id,
                                      std::optional<uint64_t> timestamp,
                                      absl::Span<const uint8_t> env_public_key);

// Signs keccak256(message) with the root k256 key: 65 bytes r ‖ s ‖ v.
absl::StatusOr<std::vector<uint8_t>> SignWithRootK256(const RootSecret& root,
                                                      absl::Span<const uint8_t> message);

}  // namespace pml::kms
