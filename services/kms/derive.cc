#include "services/kms/derive.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/seal.h"
#include "lib/crypto/secp256k1.h"

namespace pml::kms {
namespace {

constexpr absl::string_view kLabel = "pml-kms:v1";

void AppendBe32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8)
    out.push_back(static_cast<char>((v >> s) & 0xff));
}

void AppendLp(std::string& out, absl::Span<const uint8_t> field) {
  AppendBe32(out, static_cast<uint32_t>(field.size()));
  out.append(field.begin(), field.end());
}

}  // namespace

absl::StatusOr<crypto::SecretBytes> DeriveOkm(const crypto::SecretBytes& ikm,
                                              absl::string_view purpose,
                                              absl::Span<const uint8_t> app_id, uint32_t epoch,
                                              absl::Span<const uint8_t> instance_id,
                                              size_t length) {
  std::string info(kLabel);
  AppendLp(info, core::AsBytes(purpose));
  AppendLp(info, app_id);
  AppendBe32(info, epoch);
  AppendLp(info, instance_id);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> okm,
                       crypto::HkdfSha256(ikm.span(), core::AsBytes(kLabel), core::AsBytes(info),
                                          length));
  return crypto::SecretBytes(std::move(okm));
}

absl::StatusOr<DerivedAppSecrets> DeriveAppSecrets(const RootSecret& root,
                                                   absl::Span<const uint8_t> app_id,
                                                   absl::Span<const uint8_t> instance_id) {
  if (app_id.size() != kAppIdBytes)
    return absl::InvalidArgumentError(absl::StrCat("app id: ", app_id.size(), " bytes, want 20"));
  if (!instance_id.empty() && instance_id.size() != 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance id: ", instance_id.size(), " bytes, want 20 or none"));
  }
  if (root.ca_scalar.size() != 32 || root.k256_scalar.size() != 32)
    return absl::InternalError("root secret of the wrong size");
  DerivedAppSecrets d;
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes ca_okm,
                       DeriveOkm(root.ca_scalar, "app-ca", app_id, root.epoch, {}, 48));
  PML_ASSIGN_OR_RETURN(d.app_ca_scalar, crypto::ScalarFromOkm(ca_okm, crypto::Curve::kP256));
  if (!instance_id.empty()) {
    PML_ASSIGN_OR_RETURN(d.disk_key, DeriveOkm(root.ca_scalar, "app-disk-crypt-key", app_id,
                                               root.epoch, instance_id, 32));
  }
  PML_ASSIGN_OR_RETURN(d.env_key,
                       DeriveOkm(root.ca_scalar, "env-encrypt-key", app_id, root.epoch, {}, 32));
  PML_ASSIGN_OR_RETURN(d.env_public_key, crypto::X25519PublicFromPrivate(d.env_key.span()));
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes k_okm,
                       DeriveOkm(root.k256_scalar, "app-key", app_id, root.epoch, {}, 48));
  PML_ASSIGN_OR_RETURN(d.k256_scalar, crypto::ScalarFromOkm(k_okm, crypto::Curve::kSecp256k1));
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr k,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1,
                                                    d.k256_scalar.span()));
  PML_ASSIGN_OR_RETURN(d.k256_public_key, crypto::Secp256k1CompressedPublicKey(*k));
  return d;
}

absl::StatusOr<crypto::SecretBytes> DeriveDiskKey(const RootSecret& root,
                                                  absl::Span<const uint8_t> app_id,
                                                  absl::Span<const uint8_t> instance_id) {
  if (app_id.size() != kAppIdBytes || instance_id.size() != 20)
    return absl::InvalidArgumentError("disk key: app id and instance id must be 20 bytes");
  return DeriveOkm(root.ca_scalar, "app-disk-crypt-key", app_id, root.epoch, instance_id, 32);
}

std::vector<uint8_t> KmsIssuedMessage(absl::Span<const uint8_t> app_id,
                                      absl::Span<const uint8_t> app_public_key) {
  std::string m = "dstack-kms-issued:";
  m.append(app_id.begin(), app_id.end());
  m.append(app_public_key.begin(), app_public_key.end());
  return std::vector<uint8_t>(m.begin(), m.end());
}

std::vector<uint8_t> EnvPubKeyMessage(absl::Span<const uint8_t> app_id,
                                      std::optional<uint64_t> timestamp,
                                      absl::Span<const uint8_t> env_public_key) {
  std::string m = "dstack-env-encrypt-pubkey:";
  m.append(app_id.begin(), app_id.end());
  if (timestamp.has_value()) {
    for (int s = 56; s >= 0; s -= 8)
      m.push_back(static_cast<char>((*timestamp >> s) & 0xff));
  }
  m.append(env_public_key.begin(), env_public_key.end());
  return std::vector<uint8_t>(m.begin(), m.end());
}

absl::StatusOr<std::vector<uint8_t>> SignWithRootK256(const RootSecret& root,
                                                      absl::Span<const uint8_t> message) {
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr k,
                       crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1,
                                                    root.k256_scalar.span()));
  const auto digest = crypto::Keccak256(message);
  return crypto::SignSecp256k1Recoverable(*k, digest);
}

}  // namespace pml::kms
