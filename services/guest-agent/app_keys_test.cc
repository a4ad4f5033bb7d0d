#include "services/guest-agent/app_keys.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

std::vector<uint8_t> Bytes(absl::string_view s) { return {s.begin(), s.end()}; }
std::vector<uint8_t> ToVec(absl::Span<const uint8_t> s) { return {s.begin(), s.end()}; }

// A fixed app key: 0x01..0x20.
crypto::SecretBytes TestAppKey() {
  std::vector<uint8_t> k(32);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<uint8_t>(i + 1);
  }
  return crypto::SecretBytes(std::move(k));
}

std::unique_ptr<AppKeys> MakeKeys(std::vector<uint8_t> kms_signature = {}) {
  auto keys = AppKeys::Create(TestAppKey(), std::move(kms_signature));
  EXPECT_THAT(keys, IsOk());
  return keys.ok() ? std::move(keys).value() : nullptr;
}

// ---- independent reference computations (OpenSSL directly, not the code under test) ----

std::vector<uint8_t> Hex(absl::string_view hex) {
  auto b = core::HexDecode(hex);
  EXPECT_THAT(b, IsOk());
  return b.ok() ? *b : std::vector<uint8_t>{};
}

std::vector<uint8_t> ReferenceHkdf(absl::Span<const uint8_t> ikm, absl::string_view salt,
                                   absl::string_view info, size_t length) {
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  std::vector<uint8_t> out(length);
  size_t out_len = length;
  EXPECT_NE(ctx, nullptr);
  EXPECT_EQ(EVP_PKEY_derive_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), reinterpret_cast<const uint8_t*>(salt.data()),
                                        static_cast<int>(salt.size())),
            1);
  EXPECT_EQ(EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())), 1);
  EXPECT_EQ(EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), reinterpret_cast<const uint8_t*>(info.data()),
                                        static_cast<int>(info.size())),
            1);
  EXPECT_EQ(EVP_PKEY_derive(ctx.get(), out.data(), &out_len), 1);
  EXPECT_EQ(out_len, length);
  return out;
}

std::string Be32(size_t n) {
  return std::string{static_cast<char>((n >> 24) & 0xff), static_cast<char>((n >> 16) & 0xff),
                     static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
}

std::string ReferenceInfo(absl::string_view alg, absl::string_view purpose,
                          absl::string_view path) {
  return absl::StrCat("pml-guest-key:v1", Be32(alg.size()), alg, Be32(purpose.size()), purpose,
                      Be32(path.size()), path);
}

crypto::BignumPtr BnHex(absl::string_view hex) {
  const std::string text(hex);
  BIGNUM* n = nullptr;
  EXPECT_GT(BN_hex2bn(&n, text.c_str()), 0);
  return crypto::BignumPtr(n);
}

// (okm mod (n − 1)) + 1, big-endian, 32 bytes.
std::vector<uint8_t> ReferenceScalar(absl::Span<const uint8_t> okm, absl::string_view order_hex) {
  crypto::BignumPtr order = BnHex(order_hex);
  crypto::BignumPtr x(BN_bin2bn(okm.data(), static_cast<int>(okm.size()), nullptr));
  std::unique_ptr<BN_CTX, crypto::CDeleter<BN_CTX_free>> ctx(BN_CTX_new());
  EXPECT_EQ(BN_sub_word(order.get(), 1), 1);
  EXPECT_EQ(BN_mod(x.get(), x.get(), order.get(), ctx.get()), 1);
  EXPECT_EQ(BN_add_word(x.get(), 1), 1);
  std::vector<uint8_t> out(32);
  EXPECT_EQ(BN_bn2binpad(x.get(), out.data(), 32), 32);
  return out;
}

constexpr absl::string_view kSecp256k1Order =
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";
constexpr absl::string_view kP256Order =
    "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

// SEC1-compressed public key of a secp256k1/P-256 scalar, via lib/crypto's import.
std::vector<uint8_t> CompressedFromScalar(crypto::Curve curve, absl::Span<const uint8_t> scalar) {
  auto key = crypto::PrivateKeyFromScalar(curve, scalar);
  EXPECT_THAT(key, IsOk());
  if (!key.ok()) {
    return {};
  }
  auto point = crypto::PublicKeyToRawPoint(**key);
  EXPECT_THAT(point, IsOk());
  if (!point.ok() || point->size() != 65) {
    return {};
  }
  std::vector<uint8_t> out(point->begin(), point->begin() + 33);
  out[0] = static_cast<uint8_t>(0x02 | (point->back() & 1));
  return out;
}

// ECDSA verification over a 32-byte digest with OpenSSL directly (r ‖ s → DER).
bool ReferenceVerifyPrehash(absl::Span<const uint8_t> compressed_pub,
                            absl::Span<const uint8_t> digest, absl::Span<const uint8_t> raw) {
  crypto::EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_secp256k1));
  crypto::EcPointPtr p(EC_POINT_new(group.get()));
  if (EC_POINT_oct2point(group.get(), p.get(), compressed_pub.data(), compressed_pub.size(),
                         nullptr) != 1) {
    return false;
  }
  std::vector<uint8_t> uncompressed(65);
  EC_POINT_point2oct(group.get(), p.get(), POINT_CONVERSION_UNCOMPRESSED, uncompressed.data(),
                     uncompressed.size(), nullptr);
  auto pub = crypto::PublicKeyFromRawPoint(crypto::Curve::kSecp256k1, uncompressed);
  auto der = crypto::EcdsaRawToDer(raw);
  if (!pub.ok() || !der.ok()) {
    return false;
  }
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub->get(), nullptr));
  return EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_verify(ctx.get(), der->data(), der->size(), digest.data(), digest.size()) == 1;
}

bool IsLowS(absl::Span<const uint8_t> raw64) {
  crypto::BignumPtr half = BnHex(kSecp256k1Order);
  BN_rshift1(half.get(), half.get());
  crypto::BignumPtr s(BN_bin2bn(raw64.data() + 32, 32, nullptr));
  return BN_cmp(s.get(), half.get()) <= 0;
}

// ---- Keccak-256 ----

TEST(Keccak256Test, KnownAnswers) {
  // "", "abc" and the pangram are the published Keccak-256 values; the longer ones (around the
  // 136-byte rate) come from a separate implementation checked against SHA3-256.
  struct Case {
    std::vector<uint8_t> input;
    const char* want;
  };
  auto pattern = [](size_t n) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) {
      v[i] = static_cast<uint8_t>((i * 7 + 3) & 0xff);
    }
    return v;
  };
  const Case cases[] = {
      {{}, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
      {Bytes("abc"), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
      {Bytes("The quick brown fox jumps over the lazy dog"),
       "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"},
      {pattern(135), "00ef96af9cf4b24c7f269d922294444a197d0a33638c2e56634c57e892103a8f"},
      {pattern(136), "742061bcad767ed4c4f5883b1dcb1aad11afdcc140dc469d953759b127b9f9ed"},
      {pattern(137), "e3371f61e770abf254c34239c3b0099ad90594507415bc81dd0a10b9692bbf2a"},
      {pattern(272), "ac141fd7b0a0ffcd2e967254d508da3ec616596493c36fa304425647d90e6de5"},
      {pattern(1000), "80cdc8dd52cbb3dbaea8f383209893fa2bb52efbd5aedbb4b26dcfe307fcdc9b"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input.size());
    EXPECT_EQ(core::HexEncode(Keccak256(c.input)), c.want);
  }
}

// ---- derivation ----

TEST(AppKeysTest, KnownAnswerMatchesAnIndependentHkdf) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  const crypto::SecretBytes app_key = TestAppKey();
  {
    SCOPED_TRACE("secp256k1");
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("wallet/eth", "mainnet", "secp256k1"));
    const std::vector<uint8_t> okm =
        ReferenceHkdf(app_key.span(), "pml-guest-key:v1",
                      ReferenceInfo("secp256k1", "mainnet", "wallet/eth"), 48);
    const std::vector<uint8_t> want = ReferenceScalar(okm, kSecp256k1Order);
    EXPECT_EQ(ToVec(k.private_key.span()), want);
    EXPECT_EQ(k.public_key, CompressedFromScalar(crypto::Curve::kSecp256k1, want));
    // Frozen (also computed with Python hmac/hashlib), so a change to the derivation, which
    // would change every app's keys, fails here.
    EXPECT_EQ(core::HexEncode(k.private_key.span()),
              "ee0ecec922dc16f8ac2a0985b2f1adebc9a8797f734970a26e791d7459f28157");
  }
  {
    SCOPED_TRACE("ed25519");
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("signer", "", "ed25519"));
    const std::vector<uint8_t> want = ReferenceHkdf(app_key.span(), "pml-guest-key:v1",
                                                    ReferenceInfo("ed25519", "", "signer"), 32);
    EXPECT_EQ(ToVec(k.private_key.span()), want);
    crypto::EvpPkeyPtr ed(
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, want.data(), want.size()));
    ASSERT_NE(ed, nullptr);
    std::vector<uint8_t> pub(32);
    size_t len = pub.size();
    ASSERT_EQ(EVP_PKEY_get_raw_public_key(ed.get(), pub.data(), &len), 1);
    EXPECT_EQ(k.public_key, pub);
    EXPECT_EQ(core::HexEncode(k.private_key.span()),
              "7448e61f12cba0fba3bdc890e6b1f163ced02b81543c15f7cbb520584a837420");
  }
  {
    SCOPED_TRACE("p256");
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("tls/site", "tls", "p256"));
    const std::vector<uint8_t> okm = ReferenceHkdf(app_key.span(), "pml-guest-key:v1",
                                                   ReferenceInfo("p256", "tls", "tls/site"), 48);
    const std::vector<uint8_t> want = ReferenceScalar(okm, kP256Order);
    EXPECT_EQ(ToVec(k.private_key.span()), want);
    EXPECT_EQ(k.public_key, CompressedFromScalar(crypto::Curve::kP256, want));
  }
}

TEST(AppKeysTest, StableAcrossCallsAndObjects) {
  auto a = MakeKeys();
  auto b = MakeKeys();  // a restarted agent with the same app key
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (absl::string_view alg : {"secp256k1", "ed25519", "p256"}) {
    SCOPED_TRACE(alg);
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k1, a->GetKey("p", "u", alg));
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k2, a->GetKey("p", "u", alg));
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k3, b->GetKey("p", "u", alg));
    EXPECT_TRUE(k1.private_key == k2.private_key);
    EXPECT_TRUE(k1.private_key == k3.private_key);
    EXPECT_EQ(k1.public_key, k3.public_key);
    EXPECT_THAT(k1.private_key.span(), SizeIs(32));
  }
}

TEST(AppKeysTest, DiffersPerPathPurposeAndAlgorithm) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  struct Tuple {
    const char* path;
    const char* purpose;
    const char* alg;
  };
  const Tuple tuples[] = {
      {"a", "x", "secp256k1"},
      {"b", "x", "secp256k1"},
      {"a", "y", "secp256k1"},
      {"a", "x", "ed25519"},
      {"a", "x", "p256"},
      {"", "", "secp256k1"},
      // Shifting bytes between fields must not collide (the length prefixes).
      {"ab", "c", "secp256k1"},
      {"b", "ca", "secp256k1"},
      {"abc", "", "secp256k1"},
      {"", "abc", "secp256k1"},
  };
  std::set<std::string> seen;
  for (const Tuple& t : tuples) {
    SCOPED_TRACE(absl::StrCat(t.path, "|", t.purpose, "|", t.alg));
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey(t.path, t.purpose, t.alg));
    EXPECT_TRUE(seen.insert(core::HexEncode(k.private_key.span())).second);
  }
  // A different app key gives different keys.
  std::vector<uint8_t> other(32, 0x42);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<AppKeys> other_keys,
                           AppKeys::Create(crypto::SecretBytes(std::move(other)), {}));
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, other_keys->GetKey("a", "x", "secp256k1"));
  EXPECT_FALSE(seen.count(core::HexEncode(k.private_key.span())));
}

TEST(AppKeysTest, AlgorithmAliasesAndDefault) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey canonical, keys->GetKey("p", "u", "secp256k1"));
  for (absl::string_view alias : {"", "k256"}) {
    SCOPED_TRACE(alias);
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("p", "u", alias));
    EXPECT_EQ(k.algorithm, KeyAlgorithm::kSecp256k1);
    EXPECT_TRUE(k.private_key == canonical.private_key);
  }
}

TEST(AppKeysTest, RefusesBadInput) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  EXPECT_THAT(
      keys->GetKey("p", "u", "rsa"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported key algorithm \"rsa\"")));
  EXPECT_THAT(keys->GetKey("p", "u", "Ed25519"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"Ed25519\"")));
  EXPECT_THAT(keys->GetKey(std::string(kMaxKeyPathBytes + 1, 'p'), "u", "ed25519"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key path has 513 bytes")));
  EXPECT_THAT(keys->GetKey("p", std::string(kMaxKeyPurposeBytes + 1, 'u'), "ed25519"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key purpose has 257 bytes")));
  EXPECT_THAT(keys->GetKey(std::string(kMaxKeyPathBytes, 'p'),
                           std::string(kMaxKeyPurposeBytes, 'u'), "secp256k1"),
              IsOk());
}

TEST(AppKeysTest, CreateRefusesKeysThatAreNotSecp256k1Scalars) {
  EXPECT_THAT(AppKeys::Create(crypto::SecretBytes(std::vector<uint8_t>(31, 1)), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("app key has 31 bytes")));
  EXPECT_THAT(AppKeys::Create(crypto::SecretBytes(std::vector<uint8_t>(32, 0)), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("app key is not a secp256k1 private key")));
  EXPECT_THAT(AppKeys::Create(crypto::SecretBytes(Hex(kSecp256k1Order)), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

// ---- signature chain ----

TEST(AppKeysTest, SignatureChainVerifiesUpToTheKmsRoot) {
  // A KMS root key signs the app key the way dstack's KMS does (k256_signature).
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr kms_root,
                           crypto::GenerateEcKey(crypto::Curve::kSecp256k1));
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes kms_scalar, crypto::PrivateKeyToScalar(*kms_root));
  const std::vector<uint8_t> kms_pub =
      CompressedFromScalar(crypto::Curve::kSecp256k1, kms_scalar.span());
  const std::vector<uint8_t> app_pub =
      CompressedFromScalar(crypto::Curve::kSecp256k1, TestAppKey().span());
  const std::vector<uint8_t> app_id(20, 0xa1);
  std::vector<uint8_t> kms_message = Bytes("dstack-kms-issued:");
  kms_message.insert(kms_message.end(), app_id.begin(), app_id.end());
  kms_message.insert(kms_message.end(), app_pub.begin(), app_pub.end());
  const auto kms_digest = Keccak256(kms_message);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> kms_sig,
                           SignSecp256k1Recoverable(*kms_root, kms_digest));

  auto keys = MakeKeys(kms_sig);
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(keys->AppPublicKey(), app_pub);

  for (absl::string_view alg : {"secp256k1", "ed25519", "p256"}) {
    SCOPED_TRACE(alg);
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("wallet/eth", "mainnet", alg));
    ASSERT_THAT(k.signature_chain, SizeIs(2));
    const std::vector<uint8_t>& app_sig = k.signature_chain[0];
    ASSERT_THAT(app_sig, SizeIs(65));
    EXPECT_LE(app_sig[64], 1);
    EXPECT_TRUE(IsLowS(app_sig));
    // dstack's message: purpose ":" hex(SEC1-compressed, or raw ed25519, public key).
    const std::string message = absl::StrCat("mainnet:", core::HexEncode(k.public_key));
    EXPECT_EQ(KeyChainMessage("mainnet", k.public_key), message);
    const auto digest = Keccak256(Bytes(message));
    EXPECT_TRUE(ReferenceVerifyPrehash(app_pub, digest, absl::MakeConstSpan(app_sig).first(64)));
    EXPECT_THAT(RecoverSecp256k1PublicKey(digest, app_sig), IsOkAndHolds(app_pub));
    // The second link is the KMS's, passed through, and recovers to the KMS root.
    EXPECT_EQ(k.signature_chain[1], kms_sig);
    EXPECT_THAT(RecoverSecp256k1PublicKey(kms_digest, k.signature_chain[1]), IsOkAndHolds(kms_pub));
  }
}

TEST(AppKeysTest, ChainOfAnotherPurposeDoesNotVerify) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("p", "mainnet", "secp256k1"));
  const auto wrong = Keccak256(Bytes(KeyChainMessage("testnet", k.public_key)));
  EXPECT_FALSE(ReferenceVerifyPrehash(keys->AppPublicKey(), wrong,
                                      absl::MakeConstSpan(k.signature_chain[0]).first(64)));
  EXPECT_THAT(RecoverSecp256k1PublicKey(wrong, k.signature_chain[0]),
              Not(IsOkAndHolds(keys->AppPublicKey())));
  EXPECT_THAT(k.signature_chain[1], SizeIs(0));  // no KMS signature supplied
}

TEST(AppKeysTest, RecoveryRefusesMalformedInput) {
  const std::vector<uint8_t> digest(32, 7);
  std::vector<uint8_t> sig(65, 1);
  sig[64] = 5;
  EXPECT_THAT(RecoverSecp256k1PublicKey(digest, sig),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("recovery id 5")));
  EXPECT_THAT(RecoverSecp256k1PublicKey(digest, std::vector<uint8_t>(64, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has 64 bytes")));
  EXPECT_THAT(RecoverSecp256k1PublicKey(std::vector<uint8_t>(31, 1), std::vector<uint8_t>(65, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("digest has 31 bytes")));
  EXPECT_THAT(RecoverSecp256k1PublicKey(digest, std::vector<uint8_t>(65, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside [1, n-1]")));
}

// ---- Sign / Verify ----

TEST(AppKeysTest, SignVerifyRoundTripAndTamper) {
  auto keys = MakeKeys(Bytes("kms-signature"));
  ASSERT_NE(keys, nullptr);
  const std::vector<uint8_t> message = Bytes("request-hash:response-hash");
  const auto sha = crypto::Sha256(message);
  struct Case {
    const char* alg;
    std::vector<uint8_t> data;
    const char* key_alg;
  };
  const Case cases[] = {
      {"ed25519", message, "ed25519"},
      {"secp256k1", message, "secp256k1"},
      {"k256", message, "secp256k1"},
      {"secp256k1_prehashed", {sha.begin(), sha.end()}, "secp256k1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.alg);
    PML_ASSERT_OK_AND_ASSIGN(SignResult r, keys->Sign(c.alg, c.data));
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey signing_key, keys->GetKey("vms", "signing", c.key_alg));
    EXPECT_EQ(r.public_key, signing_key.public_key);
    ASSERT_THAT(r.signature, SizeIs(64));
    ASSERT_THAT(r.signature_chain, SizeIs(3));
    EXPECT_EQ(r.signature_chain[0], r.signature);
    EXPECT_THAT(
        RecoverSecp256k1PublicKey(Keccak256(Bytes(KeyChainMessage("signing", r.public_key))),
                                  r.signature_chain[1]),
        IsOkAndHolds(keys->AppPublicKey()));
    EXPECT_EQ(r.signature_chain[2], Bytes("kms-signature"));

    EXPECT_THAT(AppKeys::Verify(c.alg, c.data, r.signature, r.public_key), IsOkAndHolds(true));
    std::vector<uint8_t> data = c.data;
    data[3] ^= 1;
    EXPECT_THAT(AppKeys::Verify(c.alg, data, r.signature, r.public_key), IsOkAndHolds(false));
    std::vector<uint8_t> sig = r.signature;
    sig[10] ^= 1;
    EXPECT_THAT(AppKeys::Verify(c.alg, c.data, sig, r.public_key), IsOkAndHolds(false));
    PML_ASSERT_OK_AND_ASSIGN(DerivedKey other, keys->GetKey("other", "signing", c.key_alg));
    EXPECT_THAT(AppKeys::Verify(c.alg, c.data, r.signature, other.public_key), IsOkAndHolds(false));
  }
}

TEST(AppKeysTest, Secp256k1SignsSha256OfTheDataWithLowS) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  const std::vector<uint8_t> data = Bytes("hello");
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("vms", "signing", "secp256k1"));
  PML_ASSERT_OK_AND_ASSIGN(
      crypto::EvpPkeyPtr pub,
      crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, k.private_key.span()));
  for (int i = 0; i < 16; ++i) {
    PML_ASSERT_OK_AND_ASSIGN(SignResult r, keys->Sign("secp256k1", data));
    EXPECT_TRUE(IsLowS(r.signature));
    // OpenSSL's own ECDSA-SHA-256 verification, not the code under test.
    EXPECT_THAT(crypto::VerifyEcdsaRaw(*pub, crypto::Digest::kSha256, data, r.signature), IsOk());
  }
}

TEST(AppKeysTest, VerifyRefusesHighSLikeK256) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  const std::vector<uint8_t> data = Bytes("malleable");
  PML_ASSERT_OK_AND_ASSIGN(SignResult r, keys->Sign("secp256k1", data));
  // (r, n − s) is the same signature's twin: valid for plain ECDSA, refused by k256.
  crypto::BignumPtr n = BnHex(kSecp256k1Order);
  crypto::BignumPtr s(BN_bin2bn(r.signature.data() + 32, 32, nullptr));
  ASSERT_EQ(BN_sub(s.get(), n.get(), s.get()), 1);
  std::vector<uint8_t> twin = r.signature;
  ASSERT_EQ(BN_bn2binpad(s.get(), twin.data() + 32, 32), 32);
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("vms", "signing", "secp256k1"));
  PML_ASSERT_OK_AND_ASSIGN(
      crypto::EvpPkeyPtr pub,
      crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, k.private_key.span()));
  ASSERT_THAT(crypto::VerifyEcdsaRaw(*pub, crypto::Digest::kSha256, data, twin), IsOk());
  EXPECT_THAT(AppKeys::Verify("secp256k1", data, twin, r.public_key), IsOkAndHolds(false));
}

TEST(AppKeysTest, VerifyAcceptsAnUncompressedSecp256k1Key) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  const std::vector<uint8_t> data = Bytes("x");
  PML_ASSERT_OK_AND_ASSIGN(SignResult r, keys->Sign("secp256k1", data));
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey k, keys->GetKey("vms", "signing", "secp256k1"));
  PML_ASSERT_OK_AND_ASSIGN(
      crypto::EvpPkeyPtr key,
      crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, k.private_key.span()));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> uncompressed, crypto::PublicKeyToRawPoint(*key));
  EXPECT_THAT(AppKeys::Verify("secp256k1", data, r.signature, uncompressed), IsOkAndHolds(true));
}

TEST(AppKeysTest, SignAndVerifyRefuseMalformedInput) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  const std::vector<uint8_t> data = Bytes("data");
  EXPECT_THAT(keys->Sign("rsa", data),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported signing algorithm \"rsa\"")));
  EXPECT_THAT(keys->Sign("p256", data),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"p256\"")));
  EXPECT_THAT(keys->Sign("secp256k1_prehashed", std::vector<uint8_t>(31, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("secp256k1_prehashed data has 31 bytes")));

  PML_ASSERT_OK_AND_ASSIGN(SignResult ed, keys->Sign("ed25519", data));
  PML_ASSERT_OK_AND_ASSIGN(SignResult k1, keys->Sign("secp256k1", data));
  struct Case {
    const char* label;
    const char* alg;
    std::vector<uint8_t> data;
    std::vector<uint8_t> sig;
    std::vector<uint8_t> pub;
    const char* want;
  };
  std::vector<uint8_t> off_curve(33, 0xff);
  off_curve[0] = 0x02;  // x ≥ p: no such point
  std::vector<uint8_t> zero_r = k1.signature;
  std::fill(zero_r.begin(), zero_r.begin() + 32, 0);
  const Case cases[] = {
      {"unknown algorithm", "ecdsa", data, k1.signature, k1.public_key, "\"ecdsa\""},
      {"ed25519 short key", "ed25519", data, ed.signature, Bytes("short"), "public key has 5"},
      {"ed25519 short sig", "ed25519", data, Bytes("sig"), ed.public_key, "signature has 3"},
      {"k1 key length", "secp256k1", data, k1.signature, std::vector<uint8_t>(32, 2),
       "public key has 32 bytes"},
      {"k1 off curve", "secp256k1", data, k1.signature, off_curve, "not a point on secp256k1"},
      {"k1 sig length", "secp256k1", data, std::vector<uint8_t>(65, 1), k1.public_key,
       "signature has 65 bytes"},
      {"k1 zero r", "secp256k1", data, zero_r, k1.public_key, "outside [1, n-1]"},
      {"prehashed length", "secp256k1_prehashed", data, k1.signature, k1.public_key,
       "data has 4 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_THAT(AppKeys::Verify(c.alg, c.data, c.sig, c.pub),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
  }
}

// ---- TLS keys (Tappd.DeriveKey) ----

TEST(AppKeysTest, TlsKeysAreDeterministicP256PerPath) {
  auto keys = MakeKeys();
  ASSERT_NE(keys, nullptr);
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr a1, keys->DeriveTlsKey("site-a"));
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr a2, keys->DeriveTlsKey("site-a"));
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr b, keys->DeriveTlsKey("site-b"));
  char group[32] = {};
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(a1.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), nullptr),
            1);
  EXPECT_EQ(absl::string_view(group), "prime256v1");
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes s1, crypto::PrivateKeyToScalar(*a1));
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes s2, crypto::PrivateKeyToScalar(*a2));
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes sb, crypto::PrivateKeyToScalar(*b));
  EXPECT_TRUE(s1 == s2);
  EXPECT_FALSE(s1 == sb);
  PML_ASSERT_OK_AND_ASSIGN(DerivedKey via_get_key, keys->GetKey("site-a", "tls", "p256"));
  EXPECT_TRUE(s1 == via_get_key.private_key);
  // Usable for signing, as a certificate key must be.
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig,
                           crypto::SignEcdsaDer(*a1, crypto::Digest::kSha256, Bytes("tbs")));
  EXPECT_THAT(crypto::VerifyEcdsaDer(*a1, crypto::Digest::kSha256, Bytes("tbs"), sig), IsOk());
}

}  // namespace
}  // namespace pml::guest
