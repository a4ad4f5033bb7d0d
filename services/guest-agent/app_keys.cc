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

namespace pml::guest {
namespace {

// lib/crypto/ossl.h has no BN_CTX alias yet; this one stays private to this file.
using BnCtxPtr = std::unique_ptr<BN_CTX, crypto::CDeleter<BN_CTX_free>>;

constexpr absl::string_view kDerivationLabel = "pml-guest-key:v1";
constexpr size_t kScalarBytes = 32;
constexpr size_t kScalarOkmBytes = 48;  // 128 bits beyond the order (FIPS 186-5 A.2.1)
constexpr size_t kEd25519Bytes = 32;
constexpr size_t kEcdsaRawBytes = 64;
constexpr size_t kRecoverableBytes = 65;
constexpr size_t kDigestBytes = 32;

// ---- Keccak-256 (FIPS 202 §3 permutation; the pre-standard 0x01 padding) ----

constexpr uint64_t kKeccakRoundConstants[24] = {
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008};
// ρ offsets and π order over lanes indexed x + 5y, walking the π cycle from lane 1.
constexpr int kKeccakRho[24] = {1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
                                27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44};
constexpr int kKeccakPi[24] = {10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
                               15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1};
constexpr size_t kKeccak256Rate = 136;  // (1600 − 2·256) / 8

uint64_t Rotl(uint64_t x, int n) { return (x << n) | (x >> (64 - n)); }

void KeccakF1600(uint64_t st[25]) {
  for (uint64_t rc : kKeccakRoundConstants) {
    uint64_t c[5];
    for (int x = 0; x < 5; ++x) {
      c[x] = st[x] ^ st[x + 5] ^ st[x + 10] ^ st[x + 15] ^ st[x + 20];
    }
    for (int x = 0; x < 5; ++x) {
      const uint64_t d = c[(x + 4) % 5] ^ Rotl(c[(x + 1) % 5], 1);
      for (int y = 0; y < 25; y += 5) {
        st[y + x] ^= d;
      }
    }
    uint64_t carry = st[1];
    for (int i = 0; i < 24; ++i) {
      const int j = kKeccakPi[i];
      const uint64_t next = st[j];
      st[j] = Rotl(carry, kKeccakRho[i]);
      carry = next;
    }
    for (int y = 0; y < 25; y += 5) {
      for (int x = 0; x < 5; ++x) {
        c[x] = st[y + x];
      }
      for (int x = 0; x < 5; ++x) {
        st[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
      }
    }
    st[0] ^= rc;
  }
}

void KeccakXorByte(uint64_t st[25], size_t pos, uint8_t b) {
  st[pos / 8] ^= uint64_t{b} << (8 * (pos % 8));  // lanes are little-endian
}

// ---- secp256k1 / P-256 helpers ----

struct Group {
  crypto::EcGroupPtr group;
  BnCtxPtr ctx;
  const BIGNUM* order = nullptr;  // owned by group
};

absl::StatusOr<Group> MakeGroup(int nid) {
  crypto::ClearOpensslErrors();
  Group g;
  g.group.reset(EC_GROUP_new_by_curve_name(nid));
  g.ctx.reset(BN_CTX_new());
  if (g.group == nullptr || g.ctx == nullptr) {
    return crypto::OpensslError("ec group");
  }
  g.order = EC_GROUP_get0_order(g.group.get());
  return g;
}

crypto::BignumPtr Bn(absl::Span<const uint8_t> bytes) {
  return crypto::BignumPtr(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
}

// SEC1 compressed form of an EC key's public point.
absl::StatusOr<std::vector<uint8_t>> CompressedPublicKey(const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> point, crypto::PublicKeyToRawPoint(key));
  if (point.size() != 1 + 2 * kScalarBytes || point[0] != 0x04) {
    return absl::InternalError("unexpected ec public point encoding");
  }
  std::vector<uint8_t> out(1 + kScalarBytes);
  out[0] = static_cast<uint8_t>(0x02 | (point.back() & 1));
  std::memcpy(out.data() + 1, point.data() + 1, kScalarBytes);
  return out;
}

// A secp256k1 public key from SEC1 (33 compressed or 65 uncompressed bytes).
absl::StatusOr<crypto::EvpPkeyPtr> Secp256k1PublicKey(absl::Span<const uint8_t> sec1) {
  if (sec1.size() != 33 && sec1.size() != 65) {
    return absl::InvalidArgumentError(absl::StrCat(
        "public key has ", sec1.size(), " bytes, want 33 (compressed) or 65 (uncompressed)"));
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(NID_secp256k1));
  crypto::EcPointPtr p(EC_POINT_new(g.group.get()));
  if (p == nullptr) {
    return crypto::OpensslError("ec point");
  }
  if (EC_POINT_oct2point(g.group.get(), p.get(), sec1.data(), sec1.size(), g.ctx.get()) != 1) {
    crypto::ClearOpensslErrors();
    return absl::InvalidArgumentError("public key is not a point on secp256k1");
  }
  std::vector<uint8_t> uncompressed(1 + 2 * kScalarBytes);
  if (EC_POINT_point2oct(g.group.get(), p.get(), POINT_CONVERSION_UNCOMPRESSED, uncompressed.data(),
                         uncompressed.size(), g.ctx.get()) != uncompressed.size()) {
    return crypto::OpensslError("ec point encoding");
  }
  return crypto::PublicKeyFromRawPoint(crypto::Curve::kSecp256k1, uncompressed);
}

// ECDSA over a 32-byte digest as raw r ‖ s with s in the lower half (as k256 signs).
absl::StatusOr<std::vector<uint8_t>> SignPrehashLowS(const EVP_PKEY& key,
                                                     absl::Span<const uint8_t> digest) {
  crypto::ClearOpensslErrors();
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(&key), nullptr));
  size_t len = 0;
  if (ctx == nullptr || EVP_PKEY_sign_init(ctx.get()) != 1 ||
      EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) {
    return crypto::OpensslError("ecdsa sign");
  }
  std::vector<uint8_t> der(len);
  if (EVP_PKEY_sign(ctx.get(), der.data(), &len, digest.data(), digest.size()) != 1) {
    return crypto::OpensslError("ecdsa sign");
  }
  der.resize(len);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, crypto::EcdsaDerToRaw(der, kScalarBytes));

  char group_name[32] = {};
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, group_name,
                                     sizeof(group_name), nullptr) != 1) {
    return crypto::OpensslError("ec group name");
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(OBJ_txt2nid(group_name)));
  crypto::BignumPtr s = Bn(absl::MakeConstSpan(raw).subspan(kScalarBytes));
  crypto::BignumPtr half(BN_dup(g.order));
  if (s == nullptr || half == nullptr || BN_rshift1(half.get(), half.get()) != 1) {
    return crypto::OpensslError("ecdsa low s");
  }
  if (BN_cmp(s.get(), half.get()) > 0) {
    if (BN_sub(s.get(), g.order, s.get()) != 1 ||
        BN_bn2binpad(s.get(), raw.data() + kScalarBytes, static_cast<int>(kScalarBytes)) < 0) {
      return crypto::OpensslError("ecdsa low s");
    }
  }
  return raw;
}

// Verifies raw r ‖ s over a 32-byte digest with k256's rules: r, s in [1, n−1] (else malformed),
// high s refused.
absl::StatusOr<bool> VerifyPrehash(const EVP_PKEY& key, absl::Span<const uint8_t> digest,
                                   absl::Span<const uint8_t> raw) {
  if (raw.size() != kEcdsaRawBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("signature has ", raw.size(), " bytes, want ", kEcdsaRawBytes, " (r ‖ s)"));
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(NID_secp256k1));
  crypto::BignumPtr r = Bn(raw.subspan(0, kScalarBytes));
  crypto::BignumPtr s = Bn(raw.subspan(kScalarBytes));
  crypto::BignumPtr half(BN_dup(g.order));
  if (r == nullptr || s == nullptr || half == nullptr || BN_rshift1(half.get(), half.get()) != 1) {
    return crypto::OpensslError("ecdsa verify");
  }
  if (BN_is_zero(r.get()) || BN_is_zero(s.get()) || BN_cmp(r.get(), g.order) >= 0 ||
      BN_cmp(s.get(), g.order) >= 0) {
    return absl::InvalidArgumentError("signature r or s is outside [1, n-1]");
  }
  if (BN_cmp(s.get(), half.get()) > 0) {
    return false;  // malleable twin: k256 refuses it
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, crypto::EcdsaRawToDer(raw));
  crypto::ClearOpensslErrors();
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(&key), nullptr));
  if (ctx == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return crypto::OpensslError("ecdsa verify init");
  }
  const int rc = EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size());
  crypto::ClearOpensslErrors();
  return rc == 1;
}

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

// (okm mod (n − 1)) + 1 as 32 big-endian bytes.
absl::StatusOr<crypto::SecretBytes> ReduceToScalar(const crypto::SecretBytes& okm, int nid) {
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(nid));
  crypto::BignumPtr x = Bn(okm.span());
  crypto::BignumPtr n_minus_1(BN_dup(g.order));
  std::vector<uint8_t> out(kScalarBytes);
  const bool ok = x != nullptr && n_minus_1 != nullptr && BN_sub_word(n_minus_1.get(), 1) == 1 &&
                  BN_mod(x.get(), x.get(), n_minus_1.get(), g.ctx.get()) == 1 &&
                  BN_add_word(x.get(), 1) == 1 &&
                  BN_bn2binpad(x.get(), out.data(), static_cast<int>(out.size())) >= 0;
  if (x != nullptr) {
    BN_clear(x.get());
  }
  if (!ok) {
    return crypto::OpensslError("scalar reduction");
  }
  return crypto::SecretBytes(std::move(out));
}

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
                       ReduceToScalar(okm, k1 ? NID_secp256k1 : NID_X9_62_prime256v1));
  PML_ASSIGN_OR_RETURN(
      m.pkey, crypto::PrivateKeyFromScalar(k1 ? crypto::Curve::kSecp256k1 : crypto::Curve::kP256,
                                           m.private_key.span()));
  PML_ASSIGN_OR_RETURN(m.public_key, CompressedPublicKey(*m.pkey));
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

std::array<uint8_t, 32> Keccak256(absl::Span<const uint8_t> data) {
  uint64_t st[25] = {};
  while (data.size() >= kKeccak256Rate) {
    for (size_t i = 0; i < kKeccak256Rate; ++i) {
      KeccakXorByte(st, i, data[i]);
    }
    KeccakF1600(st);
    data.remove_prefix(kKeccak256Rate);
  }
  for (size_t i = 0; i < data.size(); ++i) {
    KeccakXorByte(st, i, data[i]);
  }
  KeccakXorByte(st, data.size(), 0x01);
  KeccakXorByte(st, kKeccak256Rate - 1, 0x80);
  KeccakF1600(st);
  std::array<uint8_t, 32> out{};
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(st[i / 8] >> (8 * (i % 8)));
  }
  return out;
}

std::string KeyChainMessage(absl::string_view purpose, absl::Span<const uint8_t> public_key) {
  return absl::StrCat(purpose, ":", core::HexEncode(public_key));
}

absl::StatusOr<std::vector<uint8_t>> RecoverSecp256k1PublicKey(
    absl::Span<const uint8_t> digest, absl::Span<const uint8_t> signature) {
  if (digest.size() != kDigestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest has ", digest.size(), " bytes, want ", kDigestBytes));
  }
  if (signature.size() != kRecoverableBytes) {
    return absl::InvalidArgumentError(absl::StrCat("recoverable signature has ", signature.size(),
                                                   " bytes, want ", kRecoverableBytes));
  }
  int v = signature[64];
  if (v >= 27) {
    v -= 27;
  }
  if (v != 0 && v != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery id ", static_cast<int>(signature[64]), " is not 0, 1, 27 or 28"));
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(NID_secp256k1));
  BN_CTX* ctx = g.ctx.get();
  crypto::BignumPtr r = Bn(signature.subspan(0, kScalarBytes));
  crypto::BignumPtr s = Bn(signature.subspan(kScalarBytes, kScalarBytes));
  crypto::BignumPtr e = Bn(digest);
  if (r == nullptr || s == nullptr || e == nullptr) {
    return crypto::OpensslError("bignum");
  }
  if (BN_is_zero(r.get()) || BN_is_zero(s.get()) || BN_cmp(r.get(), g.order) >= 0 ||
      BN_cmp(s.get(), g.order) >= 0) {
    return absl::InvalidArgumentError("signature r or s is outside [1, n-1]");
  }
  // R = the point with x = r and y's parity v; Q = r⁻¹ (s·R − e·G) (SEC 1 v2 §4.1.6).
  crypto::EcPointPtr big_r(EC_POINT_new(g.group.get()));
  if (big_r == nullptr) {
    return crypto::OpensslError("ec point");
  }
  if (EC_POINT_set_compressed_coordinates(g.group.get(), big_r.get(), r.get(), v, ctx) != 1) {
    crypto::ClearOpensslErrors();
    return absl::InvalidArgumentError(
        "signature recovers no public key (r is not an x on the curve)");
  }
  crypto::BignumPtr r_inv(BN_mod_inverse(nullptr, r.get(), g.order, ctx));
  crypto::BignumPtr t(BN_new());
  crypto::BignumPtr u1(BN_new());
  crypto::BignumPtr u2(BN_new());
  crypto::EcPointPtr q(EC_POINT_new(g.group.get()));
  if (r_inv == nullptr || t == nullptr || u1 == nullptr || u2 == nullptr || q == nullptr ||
      BN_mod_mul(t.get(), e.get(), r_inv.get(), g.order, ctx) != 1 ||
      BN_mod_sub(u1.get(), g.order, t.get(), g.order, ctx) != 1 ||
      BN_mod_mul(u2.get(), s.get(), r_inv.get(), g.order, ctx) != 1 ||
      EC_POINT_mul(g.group.get(), q.get(), u1.get(), big_r.get(), u2.get(), ctx) != 1) {
    return crypto::OpensslError("ecdsa public key recovery");
  }
  if (EC_POINT_is_at_infinity(g.group.get(), q.get()) == 1) {
    return absl::InvalidArgumentError("signature recovers the point at infinity");
  }
  std::vector<uint8_t> out(1 + kScalarBytes);
  if (EC_POINT_point2oct(g.group.get(), q.get(), POINT_CONVERSION_COMPRESSED, out.data(),
                         out.size(), ctx) != out.size()) {
    return crypto::OpensslError("ec point encoding");
  }
  return out;
}

absl::StatusOr<std::vector<uint8_t>> SignSecp256k1Recoverable(const EVP_PKEY& key,
                                                              absl::Span<const uint8_t> digest) {
  if (digest.size() != kDigestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest has ", digest.size(), " bytes, want ", kDigestBytes));
  }
  char group_name[32] = {};
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, group_name,
                                     sizeof(group_name), nullptr) != 1 ||
      absl::string_view(group_name) != "secp256k1") {
    crypto::ClearOpensslErrors();
    return absl::InvalidArgumentError("recoverable signing needs a secp256k1 key");
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig, SignPrehashLowS(key, digest));
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> expected, CompressedPublicKey(key));
  sig.push_back(0);
  for (uint8_t v = 0; v < 2; ++v) {
    sig.back() = v;
    absl::StatusOr<std::vector<uint8_t>> recovered = RecoverSecp256k1PublicKey(digest, sig);
    if (recovered.ok() && *recovered == expected) {
      return sig;
    }
  }
  // Only when R's x exceeded n (probability ~2^-128), which v ∈ {0,1} cannot express.
  return absl::InternalError("no recovery id reproduces the signing key");
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
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> public_key, CompressedPublicKey(**signing_key));
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
    PML_ASSIGN_OR_RETURN(out.signature, SignPrehashLowS(*m.pkey, crypto::Sha256(data)));
  } else {
    PML_ASSIGN_OR_RETURN(out.signature, SignPrehashLowS(*m.pkey, data));
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
  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, Secp256k1PublicKey(public_key));
  if (alg == SignAlgorithm::kSecp256k1Prehashed) {
    PML_RETURN_IF_ERROR(CheckDigest(data));
    return VerifyPrehash(*key, data, signature);
  }
  return VerifyPrehash(*key, crypto::Sha256(data), signature);
}

}  // namespace pml::guest
