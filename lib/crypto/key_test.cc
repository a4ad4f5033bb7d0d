#include "lib/crypto/key.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::crypto {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(KeyTest, SignVerifyRawRoundTripsAndRejectsFlip) {
  for (Curve c : {Curve::kP256, Curve::kP384, Curve::kSecp256k1}) {
    SCOPED_TRACE(static_cast<int>(c));
    PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(c));
    const size_t n = c == Curve::kP384 ? 48 : 32;
    const Digest d = c == Curve::kP384 ? Digest::kSha384 : Digest::kSha256;
    const std::vector<uint8_t> msg = {1, 2, 3};
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, SignEcdsaRaw(*key, d, msg, n));
    ASSERT_EQ(sig.size(), 2 * n);
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> point, PublicKeyToRawPoint(*key));
    PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr pub, PublicKeyFromRawPoint(c, point));
    EXPECT_THAT(VerifyEcdsaRaw(*pub, d, msg, sig), IsOk());
    sig[5] ^= 1;
    EXPECT_THAT(VerifyEcdsaRaw(*pub, d, msg, sig),
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
  }
}

TEST(KeyTest, RawPointRejectsWrongLengthAndOffCurve) {
  EXPECT_THAT(PublicKeyFromRawPoint(Curve::kP256, std::vector<uint8_t>(63)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("63 bytes")));
  std::vector<uint8_t> bad(64, 0x01);
  EXPECT_THAT(PublicKeyFromRawPoint(Curve::kP256, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not on the curve")));
}

TEST(KeyTest, PemAndScalarRoundTrip) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(Curve::kSecp256k1));
  PML_ASSERT_OK_AND_ASSIGN(SecretBytes pem, PrivateKeyToPem(*key));
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr back,
                           PrivateKeyFromPem(core::ToString(pem.span())));
  PML_ASSERT_OK_AND_ASSIGN(SecretBytes s1, PrivateKeyToScalar(*key));
  PML_ASSERT_OK_AND_ASSIGN(SecretBytes s2, PrivateKeyToScalar(*back));
  EXPECT_TRUE(s1 == s2);
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr again, PrivateKeyFromScalar(Curve::kSecp256k1, s1.span()));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> p1, PublicKeyToRawPoint(*key));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> p2, PublicKeyToRawPoint(*again));
  EXPECT_EQ(p1, p2);
}

TEST(HashTest, KnownAnswers) {
  EXPECT_EQ(core::HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(core::HexEncode(Sha384("")).substr(0, 16), "38b060a751ac9638");
}

TEST(HashTest, HkdfRfc5869Case1) {
  PML_ASSERT_OK_AND_ASSIGN(auto ikm, core::HexDecode("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"));
  PML_ASSERT_OK_AND_ASSIGN(auto salt, core::HexDecode("000102030405060708090a0b0c"));
  PML_ASSERT_OK_AND_ASSIGN(auto info, core::HexDecode("f0f1f2f3f4f5f6f7f8f9"));
  PML_ASSERT_OK_AND_ASSIGN(auto okm, HkdfSha256(ikm, salt, info, 42));
  EXPECT_EQ(core::HexEncode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(SecretBytesTest, ComparesByValue) {
  SecretBytes a(std::vector<uint8_t>{1, 2, 3});
  SecretBytes b(std::vector<uint8_t>{1, 2, 3});
  SecretBytes c(std::vector<uint8_t>{1, 2, 4});
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
}

}  // namespace
}  // namespace pml::crypto
