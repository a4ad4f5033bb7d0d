#include "services/guest-agent/app_keys.h"

#include <cstring>
#include <utility>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include "absl/memory/memory.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/secp256k1.h"

namespace pml::guest {
namespace {

// lib/crypto/ossl.h has no BN_CTX alias yet; this one stays private to this file.

constexpr absl::string_view kDerivationLabel = "pml-guest-key:v1";
constexpr size_t kDigestBytes = 32;
constexpr size_t kScalarOkmBytes = 48;  // 128 bits beyond the order (FIPS 186-5 A.2.1)
constexpr size_t kEd25519Bytes = 32;

// ---- derivation ----

void AppendLengthPrefixed(std::string& out, absl::string_view field) {
  const auto n = static_cast<uint32_t>(field.size());
  const char be[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                      static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(be, sizeof(be));
  out.append(field.data(), field.size());
}

struct Material {
  crypto::SecretBytes private_key;
  std::vector<uint8_t> public_key;
  crypto::EvpPkeyPtr pkey;
};


absl::StatusOr<Material> Derive(const crypto::SecretBytes& app_key, KeyAlgorithm algorithm,
                                absl::string_view purpose, absl::string_view path) {
  if (path.size() > kMaxKeyPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key path has ", path.size(), " bytes, more than ", kMaxKeyPathBytes));
  }
  if (purpose.size() > kMaxKeyPurposeBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key purpose has ", purpose.size(),
                                                   " bytes, more than ", kMaxKeyPurposeBytes));
  }
  std::string info(kDerivationLabel);
  AppendLengthPrefixed(info, KeyAlgorithmName(algorithm));
  AppendLengthPrefixed(info, purpose);
  AppendLengthPrefixed(info, path);
  const size_t length = algorithm == KeyAlgorithm::kEd25519 ? kEd25519Bytes : kScalarOkmBytes;
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> okm_bytes,
                       crypto::HkdfSha256(app_key.span(), core::AsBytes(kDerivationLabel),
                                          core::AsBytes(info), length));
  const crypto::SecretBytes okm(std::move(okm_bytes));

  Material m;
  if (algorithm == KeyAlgorithm::kEd25519) {
    crypto::ClearOpensslErrors();
    m.pkey.reset(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, okm.data(), okm.size()));
    m.public_key.resize(kEd25519Bytes);
    size_t len = m.public_key.size();
    if (m.pkey == nullptr ||
        EVP_PKEY_get_raw_public_key(m.pkey.get(), m.public_key.data(), &len) != 1 ||
        len != kEd25519Bytes) {
      return crypto::OpensslError("ed25519 key");
    }
    m.private_key = okm;
    return m;
  }
  const bool k1 = algorithm == KeyAlgorithm::kSecp256k1;
  PML_ASSIGN_OR_RETURN(m.private_key,
                       crypto::ScalarFromOkm(okm, k1 ? crypto::Curve::kSecp256k1 : crypto::Curve::kP256));
  PML_ASSIGN_OR_RETURN(
      m.pkey, crypto::PrivateKeyFromScalar(k1 ? crypto::Curve::kSecp256k1 : crypto::Curve::kP256,
                                           m.private_key.span()));
  PML_ASSIGN_OR_RETURN(m.public_key, crypto::Secp256k1CompressedPublicKey(*m.pkey));
  return m;
}

enum class SignAlgorithm { kEd25519, kSecp256k1, kSecp256k1Prehashed };

std::string Bounded(absl::string_view s) { return absl::CHexEscape(s.substr(0, 64)); }

absl::StatusOr<SignAlgorithm> ParseSignAlgorithm(absl::string_view name) {
  if (name == "ed25519") {
    return SignAlgorithm::kEd25519;
  }
  if (name == "secp256k1" || name == "k256") {
    return SignAlgorithm::kSecp256k1;
  }
  if (name == "secp256k1_prehashed") {
    return SignAlgorithm::kSecp256k1Prehashed;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported signing algorithm \"", Bounded(name),
                   "\"; want ed25519, secp256k1 or secp256k1_prehashed"));
}

// [app key's recoverable signature over keccak256(KeyChainMessage), the KMS signature].
absl::StatusOr<std::vector<std::vector<uint8_t>>> KeyChain(
    const EVP_PKEY& app_signing_key, const std::vector<uint8_t>& kms_signature,
    absl::string_view purpose, absl::Span<const uint8_t> public_key) {
  const std::string message = KeyChainMessage(purpose, public_key);
  PML_ASSIGN_OR_RETURN(
      std::vector<uint8_t> app_signature,
      SignSecp256k1Recoverable(app_signing_key, Keccak256(core::AsBytes(message))));
  return std::vector<std::vector<uint8_t>>{std::move(app_signature), kms_signature};
}

absl::Status CheckDigest(absl::Span<const uint8_t> data) {
  if (data.size() != kDigestBytes) {
    return absl::InvalidArgumentError(absl::StrCat("secp256k1_prehashed data has ", data.size(),
                                                   " bytes, want a 32-byte digest"));
  }
  return absl::OkStatus();
}

}  // namespace


std::string KeyChainMessage(absl::string_view purpose, absl::Span<const uint8_t> public_key) {
  return absl::StrCat(purpose, ":", core::HexEncode(public_key));
}


absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name) {
  if (name.empty() || name == "secp256k1" || name == "k256") {
    return KeyAlgorithm::kSecp256k1;
  }
  if (name == "ed25519") {
    return KeyAlgorithm::kEd25519;
  }
  if (name == "p256") {
    return KeyAlgorithm::kP256;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported key algorithm \"", Bounded(name),
                                                 "\"; want secp256k1, ed25519 or p256"));
}

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm) {
  switch (algorithm) {
    case KeyAlgorithm::kSecp256k1:
      return "secp256k1";
    case KeyAlgorithm::kEd25519:
      return "ed25519";
    case KeyAlgorithm::kP256:
      return "p256";
  }
  PML_CHECK(false);
  return "";
}

AppKeys::AppKeys(crypto::SecretBytes app_key, crypto::EvpPkeyPtr app_signing_key,
                 std::vector<uint8_t> app_public_key, std::vector<uint8_t> kms_signature)
    : app_key_(std::move(app_key)),
      app_signing_key_(std::move(app_signing_key)),
      app_public_key_(std::move(app_public_key)),
      kms_signature_(std::move(kms_signature)) {}

absl::StatusOr<std::unique_ptr<AppKeys>> AppKeys::Create(crypto::SecretBytes app_key,
                                                         std::vector<uint8_t> kms_signature) {
  if (app_key.size() != kAppKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("app key has ", app_key.size(), " bytes, want ", kAppKeyBytes));
  }
  absl::StatusOr<crypto::EvpPkeyPtr> signing_key =
      crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, app_key.span());
  if (!signing_key.ok()) {
    return core::Annotate(signing_key.status(), "app key is not a secp256k1 private key");
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> public_key, crypto::Secp256k1CompressedPublicKey(**signing_key));
  return absl::WrapUnique(new AppKeys(std::move(app_key), std::move(signing_key).value(),
                                      std::move(public_key), std::move(kms_signature)));
}

absl::StatusOr<DerivedKey> AppKeys::GetKey(absl::string_view path, absl::string_view purpose,
                                           absl::string_view algorithm) const {
  PML_ASSIGN_OR_RETURN(KeyAlgorithm alg, ParseKeyAlgorithm(algorithm));
  PML_ASSIGN_OR_RETURN(Material m, Derive(app_key_, alg, purpose, path));
  DerivedKey out;
  PML_ASSIGN_OR_RETURN(out.signature_chain,
                       KeyChain(*app_signing_key_, kms_signature_, purpose, m.public_key));
  out.algorithm = alg;
  out.private_key = std::move(m.private_key);
  out.public_key = std::move(m.public_key);
  return out;
}

absl::StatusOr<crypto::EvpPkeyPtr> AppKeys::DeriveTlsKey(absl::string_view path) const {
  PML_ASSIGN_OR_RETURN(Material m, Derive(app_key_, KeyAlgorithm::kP256, kTlsKeyPurpose, path));
  return std::move(m.pkey);
}

absl::StatusOr<SignResult> AppKeys::Sign(absl::string_view algorithm,
                                         absl::Span<const uint8_t> data) const {
  PML_ASSIGN_OR_RETURN(SignAlgorithm alg, ParseSignAlgorithm(algorithm));
  if (alg == SignAlgorithm::kSecp256k1Prehashed) {
    PML_RETURN_IF_ERROR(CheckDigest(data));
  }
  const KeyAlgorithm key_alg =
      alg == SignAlgorithm::kEd25519 ? KeyAlgorithm::kEd25519 : KeyAlgorithm::kSecp256k1;
  PML_ASSIGN_OR_RETURN(Material m, Derive(app_key_, key_alg, kSigningKeyPurpose, kSigningKeyPath));
  PML_ASSIGN_OR_RETURN(
      std::vector<std::vector<uint8_t>> key_chain,
      KeyChain(*app_signing_key_, kms_signature_, kSigningKeyPurpose, m.public_key));

  SignResult out;
  if (alg == SignAlgorithm::kEd25519) {
    crypto::ClearOpensslErrors();
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 64;
    out.signature.resize(len);
    if (ctx == nullptr ||
        EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, m.pkey.get()) != 1 ||
        EVP_DigestSign(ctx.get(), out.signature.data(), &len, data.data(), data.size()) != 1 ||
        len != 64) {
      return crypto::OpensslError("ed25519 sign");
    }
  } else if (alg == SignAlgorithm::kSecp256k1) {
    PML_ASSIGN_OR_RETURN(out.signature, crypto::EcdsaSignPrehashLowS(*m.pkey, crypto::Sha256(data)));
  } else {
    PML_ASSIGN_OR_RETURN(out.signature, crypto::EcdsaSignPrehashLowS(*m.pkey, data));
  }
  out.signature_chain = {out.signature, std::move(key_chain[0]), std::move(key_chain[1])};
  out.public_key = std::move(m.public_key);
  return out;
}

absl::StatusOr<bool> AppKeys::Verify(absl::string_view algorithm, absl::Span<const uint8_t> data,
                                     absl::Span<const uint8_t> signature,
                                     absl::Span<const uint8_t> public_key) {
  PML_ASSIGN_OR_RETURN(SignAlgorithm alg, ParseSignAlgorithm(algorithm));
  if (alg == SignAlgorithm::kEd25519) {
    if (public_key.size() != kEd25519Bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("public key has ", public_key.size(), " bytes, want 32"));
    }
    if (signature.size() != 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("signature has ", signature.size(), " bytes, want 64"));
    }
    crypto::ClearOpensslErrors();
    crypto::EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(),
                                                       public_key.size()));
    if (key == nullptr) {
      return crypto::OpensslError("malformed ed25519 public key",
                                  absl::StatusCode::kInvalidArgument);
    }
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (ctx == nullptr ||
        EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
      return crypto::OpensslError("ed25519 verify init");
    }
    const int rc =
        EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(), data.size());
    crypto::ClearOpensslErrors();
    return rc == 1;
  }
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::Secp256k1PublicKeyFromSec1(public_key));
  if (alg == SignAlgorithm::kSecp256k1Prehashed) {
    PML_RETURN_IF_ERROR(CheckDigest(data));
    return crypto::VerifySecp256k1Prehash(*key, data, signature);
  }
  return crypto::VerifySecp256k1Prehash(*key, crypto::Sha256(data), signature);
}

}  // namespace pml::guest
