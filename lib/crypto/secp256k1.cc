#include "lib/crypto/secp256k1.h"

#include <cstring>
#include <utility>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/crypto/key.h"

namespace pml::crypto {
namespace {

using BnCtxPtr = std::unique_ptr<BN_CTX, CDeleter<BN_CTX_free>>;

constexpr size_t kScalarBytes = 32;
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
  EcGroupPtr group;
  BnCtxPtr ctx;
  const BIGNUM* order = nullptr;  // owned by group
};

absl::StatusOr<Group> MakeGroup(int nid) {
  ClearOpensslErrors();
  Group g;
  g.group.reset(EC_GROUP_new_by_curve_name(nid));
  g.ctx.reset(BN_CTX_new());
  if (g.group == nullptr || g.ctx == nullptr) {
    return OpensslError("ec group");
  }
  g.order = EC_GROUP_get0_order(g.group.get());
  return g;
}

BignumPtr Bn(absl::Span<const uint8_t> bytes) {
  return BignumPtr(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
}

// SEC1 compressed form of an EC key's public point.
absl::StatusOr<std::vector<uint8_t>> CompressedPublicKey(const EVP_PKEY& key) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> point, PublicKeyToRawPoint(key));
  if (point.size() != 1 + 2 * kScalarBytes || point[0] != 0x04) {
    return absl::InternalError("unexpected ec public point encoding");
  }
  std::vector<uint8_t> out(1 + kScalarBytes);
  out[0] = static_cast<uint8_t>(0x02 | (point.back() & 1));
  std::memcpy(out.data() + 1, point.data() + 1, kScalarBytes);
  return out;
}

// A secp256k1 public key from SEC1 (33 compressed or 65 uncompressed bytes).
absl::StatusOr<EvpPkeyPtr> Secp256k1PublicKey(absl::Span<const uint8_t> sec1) {
  if (sec1.size() != 33 && sec1.size() != 65) {
    return absl::InvalidArgumentError(absl::StrCat(
        "public key has ", sec1.size(), " bytes, want 33 (compressed) or 65 (uncompressed)"));
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(NID_secp256k1));
  EcPointPtr p(EC_POINT_new(g.group.get()));
  if (p == nullptr) {
    return OpensslError("ec point");
  }
  if (EC_POINT_oct2point(g.group.get(), p.get(), sec1.data(), sec1.size(), g.ctx.get()) != 1) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError("public key is not a point on secp256k1");
  }
  std::vector<uint8_t> uncompressed(1 + 2 * kScalarBytes);
  if (EC_POINT_point2oct(g.group.get(), p.get(), POINT_CONVERSION_UNCOMPRESSED, uncompressed.data(),
                         uncompressed.size(), g.ctx.get()) != uncompressed.size()) {
    return OpensslError("ec point encoding");
  }
  return PublicKeyFromRawPoint(Curve::kSecp256k1, uncompressed);
}

// ECDSA over a 32-byte digest as raw r ‖ s with s in the lower half (as k256 signs).
absl::StatusOr<std::vector<uint8_t>> SignPrehashLowS(const EVP_PKEY& key,
                                                     absl::Span<const uint8_t> digest) {
  ClearOpensslErrors();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(&key), nullptr));
  size_t len = 0;
  if (ctx == nullptr || EVP_PKEY_sign_init(ctx.get()) != 1 ||
      EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) {
    return OpensslError("ecdsa sign");
  }
  std::vector<uint8_t> der(len);
  if (EVP_PKEY_sign(ctx.get(), der.data(), &len, digest.data(), digest.size()) != 1) {
    return OpensslError("ecdsa sign");
  }
  der.resize(len);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, EcdsaDerToRaw(der, kScalarBytes));

  char group_name[32] = {};
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, group_name,
                                     sizeof(group_name), nullptr) != 1) {
    return OpensslError("ec group name");
  }
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(OBJ_txt2nid(group_name)));
  BignumPtr s = Bn(absl::MakeConstSpan(raw).subspan(kScalarBytes));
  BignumPtr half(BN_dup(g.order));
  if (s == nullptr || half == nullptr || BN_rshift1(half.get(), half.get()) != 1) {
    return OpensslError("ecdsa low s");
  }
  if (BN_cmp(s.get(), half.get()) > 0) {
    if (BN_sub(s.get(), g.order, s.get()) != 1 ||
        BN_bn2binpad(s.get(), raw.data() + kScalarBytes, static_cast<int>(kScalarBytes)) < 0) {
      return OpensslError("ecdsa low s");
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
  BignumPtr r = Bn(raw.subspan(0, kScalarBytes));
  BignumPtr s = Bn(raw.subspan(kScalarBytes));
  BignumPtr half(BN_dup(g.order));
  if (r == nullptr || s == nullptr || half == nullptr || BN_rshift1(half.get(), half.get()) != 1) {
    return OpensslError("ecdsa verify");
  }
  if (BN_is_zero(r.get()) || BN_is_zero(s.get()) || BN_cmp(r.get(), g.order) >= 0 ||
      BN_cmp(s.get(), g.order) >= 0) {
    return absl::InvalidArgumentError("signature r or s is outside [1, n-1]");
  }
  if (BN_cmp(s.get(), half.get()) > 0) {
    return false;  // malleable twin: k256 refuses it
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, EcdsaRawToDer(raw));
  ClearOpensslErrors();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(&key), nullptr));
  if (ctx == nullptr || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return OpensslError("ecdsa verify init");
  }
  const int rc = EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size());
  ClearOpensslErrors();
  return rc == 1;
}

// (okm mod (n − 1)) + 1 as 32 big-endian bytes.
absl::StatusOr<SecretBytes> ReduceToScalar(const SecretBytes& okm, int nid) {
  PML_ASSIGN_OR_RETURN(Group g, MakeGroup(nid));
  BignumPtr x = Bn(okm.span());
  BignumPtr n_minus_1(BN_dup(g.order));
  std::vector<uint8_t> out(kScalarBytes);
  const bool ok = x != nullptr && n_minus_1 != nullptr && BN_sub_word(n_minus_1.get(), 1) == 1 &&
                  BN_mod(x.get(), x.get(), n_minus_1.get(), g.ctx.get()) == 1 &&
                  BN_add_word(x.get(), 1) == 1 &&
                  BN_bn2binpad(x.get(), out.data(), static_cast<int>(out.size())) >= 0;
  if (x != nullptr) {
    BN_clear(x.get());
  }
  if (!ok) {
    return OpensslError("scalar reduction");
  }
  return SecretBytes(std::move(out));
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
  BignumPtr r = Bn(signature.subspan(0, kScalarBytes));
  BignumPtr s = Bn(signature.subspan(kScalarBytes, kScalarBytes));
  BignumPtr e = Bn(digest);
  if (r == nullptr || s == nullptr || e == nullptr) {
    return OpensslError("bignum");
  }
  if (BN_is_zero(r.get()) || BN_is_zero(s.get()) || BN_cmp(r.get(), g.order) >= 0 ||
      BN_cmp(s.get(), g.order) >= 0) {
    return absl::InvalidArgumentError("signature r or s is outside [1, n-1]");
  }
  // R = the point with x = r and y's parity v; Q = r⁻¹ (s·R − e·G) (SEC 1 v2 §4.1.6).
  EcPointPtr big_r(EC_POINT_new(g.group.get()));
  if (big_r == nullptr) {
    return OpensslError("ec point");
  }
  if (EC_POINT_set_compressed_coordinates(g.group.get(), big_r.get(), r.get(), v, ctx) != 1) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError(
        "signature recovers no public key (r is not an x on the curve)");
  }
  BignumPtr r_inv(BN_mod_inverse(nullptr, r.get(), g.order, ctx));
  BignumPtr t(BN_new());
  BignumPtr u1(BN_new());
  BignumPtr u2(BN_new());
  EcPointPtr q(EC_POINT_new(g.group.get()));
  if (r_inv == nullptr || t == nullptr || u1 == nullptr || u2 == nullptr || q == nullptr ||
      BN_mod_mul(t.get(), e.get(), r_inv.get(), g.order, ctx) != 1 ||
      BN_mod_sub(u1.get(), g.order, t.get(), g.order, ctx) != 1 ||
      BN_mod_mul(u2.get(), s.get(), r_inv.get(), g.order, ctx) != 1 ||
      EC_POINT_mul(g.group.get(), q.get(), u1.get(), big_r.get(), u2.get(), ctx) != 1) {
    return OpensslError("ecdsa public key recovery");
  }
  if (EC_POINT_is_at_infinity(g.group.get(), q.get()) == 1) {
    return absl::InvalidArgumentError("signature recovers the point at infinity");
  }
  std::vector<uint8_t> out(1 + kScalarBytes);
  if (EC_POINT_point2oct(g.group.get(), q.get(), POINT_CONVERSION_COMPRESSED, out.data(),
                         out.size(), ctx) != out.size()) {
    return OpensslError("ec point encoding");
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
    ClearOpensslErrors();
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

absl::StatusOr<std::vector<uint8_t>> Secp256k1CompressedPublicKey(const EVP_PKEY& key) {
  return CompressedPublicKey(key);
}

absl::StatusOr<EvpPkeyPtr> Secp256k1PublicKeyFromSec1(absl::Span<const uint8_t> sec1) {
  return Secp256k1PublicKey(sec1);
}

absl::StatusOr<std::vector<uint8_t>> EcdsaSignPrehashLowS(const EVP_PKEY& key,
                                                          absl::Span<const uint8_t> digest) {
  return SignPrehashLowS(key, digest);
}

absl::StatusOr<bool> VerifySecp256k1Prehash(const EVP_PKEY& key, absl::Span<const uint8_t> digest,
                                            absl::Span<const uint8_t> raw) {
  return VerifyPrehash(key, digest, raw);
}

absl::StatusOr<SecretBytes> ScalarFromOkm(const SecretBytes& okm, Curve curve) {
  return ReduceToScalar(okm, curve == Curve::kSecp256k1 ? NID_secp256k1
                             : curve == Curve::kP384    ? NID_secp384r1
                                                        : NID_X9_62_prime256v1);
}

}  // namespace pml::crypto
