#include "lib/crypto/seal.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::crypto {
namespace {

using ::pml::testing::IsOk;

std::vector<uint8_t> B(absl::string_view s) { return {s.begin(), s.end()}; }

TEST(SealTest, OpensOnlyWithTheRightKeyLabelAndAad) {
  auto r = GenerateX25519();
  auto other = GenerateX25519();
  ASSERT_THAT(r, IsOk());
  ASSERT_THAT(other, IsOk());
  const auto msg = B("app keys");
  auto box = Seal(r->public_key, msg, B("app-id"), "label");
  ASSERT_THAT(box, IsOk());
  EXPECT_EQ(box->ciphertext.size(), msg.size() + kSealTagBytes);
  auto opened = Open(r->private_key.span(), *box, B("app-id"), "label");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(std::vector<uint8_t>(opened->span().begin(), opened->span().end()), msg);
  EXPECT_EQ(Open(other->private_key.span(), *box, B("app-id"), "label").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Open(r->private_key.span(), *box, B("app-iD"), "label").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Open(r->private_key.span(), *box, B("app-id"), "lab3l").status().code(),
            absl::StatusCode::kPermissionDenied);
  for (size_t i = 0; i < box->ciphertext.size(); ++i) {
    SealedBox t = *box;
    t.ciphertext[i] ^= 0x01;
    EXPECT_FALSE(Open(r->private_key.span(), t, B("app-id"), "label").ok()) << i;
  }
  SealedBox t = *box;
  t.nonce[0] ^= 1;
  EXPECT_FALSE(Open(r->private_key.span(), t, B("app-id"), "label").ok());
  t = *box;
  t.ciphertext.resize(3);
  EXPECT_EQ(Open(r->private_key.span(), t, B("app-id"), "label").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SealTest, EveryBoxIsFresh) {
  auto r = GenerateX25519();
  ASSERT_THAT(r, IsOk());
  auto a = Seal(r->public_key, B("x"), {}, "l");
  auto b = Seal(r->public_key, B("x"), {}, "l");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(a->ephemeral_public_key, b->ephemeral_public_key);
  EXPECT_NE(a->ciphertext, b->ciphertext);
}

TEST(SealTest, AReusedSenderKeyStillGivesEachRecipientItsOwnBox) {
  auto sender = SealSender::Generate();
  auto r1 = GenerateX25519();
  auto r2 = GenerateX25519();
  ASSERT_THAT(sender, IsOk());
  ASSERT_THAT(r1, IsOk());
  ASSERT_THAT(r2, IsOk());
  auto a = Seal(**sender, r1->public_key, B("same"), B("app"), "l");
  auto b = Seal(**sender, r2->public_key, B("same"), B("app"), "l");
  auto c = Seal(**sender, r1->public_key, B("same"), B("app"), "l");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(a->ephemeral_public_key, (*sender)->public_key());
  EXPECT_EQ(b->ephemeral_public_key, (*sender)->public_key());
  EXPECT_NE(a->ciphertext, b->ciphertext);
  EXPECT_NE(a->nonce, c->nonce);  // same sender and recipient: a fresh nonce still
  EXPECT_NE(a->ciphertext, c->ciphertext);
  EXPECT_THAT(Open(r1->private_key.span(), *a, B("app"), "l"), IsOk());
  EXPECT_THAT(Open(r2->private_key.span(), *b, B("app"), "l"), IsOk());
  EXPECT_THAT(Open(r1->private_key.span(), *c, B("app"), "l"), IsOk());
  EXPECT_EQ(Open(r2->private_key.span(), *a, B("app"), "l").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SealTest, LowOrderAndMalformedKeysAreRefused) {
  const std::vector<uint8_t> zero(32, 0);
  EXPECT_EQ(Seal(zero, B("x"), {}, "l").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Seal(std::vector<uint8_t>(31, 1), B("x"), {}, "l").status().code(),
            absl::StatusCode::kInvalidArgument);
  // u = 1 is a low-order point too.
  std::vector<uint8_t> one(32, 0);
  one[0] = 1;
  EXPECT_EQ(Seal(one, B("x"), {}, "l").status().code(), absl::StatusCode::kInvalidArgument);
}

// RFC 7748 §6.1 test vector: Alice's and Bob's keys and their shared secret.
TEST(SealTest, X25519MatchesRfc7748) {
  auto a = *core::HexDecode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  auto b_pub = *core::HexDecode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  auto a_pub = X25519PublicFromPrivate(a);
  ASSERT_THAT(a_pub, IsOk());
  EXPECT_EQ(core::HexEncode(*a_pub),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  auto shared = X25519SharedSecret(a, b_pub);
  ASSERT_THAT(shared, IsOk());
  EXPECT_EQ(core::HexEncode(shared->span()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
}

TEST(SealTest, AeadRoundTripAndTamper) {
  const std::vector<uint8_t> key(32, 7);
  auto sealed = AeadSeal(key, B("root secrets"), B("epoch 1"));
  ASSERT_THAT(sealed, IsOk());
  auto opened = AeadOpen(key, *sealed, B("epoch 1"));
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(std::string(opened->span().begin(), opened->span().end()), "root secrets");
  EXPECT_EQ(AeadOpen(key, *sealed, B("epoch 2")).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(AeadOpen(std::vector<uint8_t>(32, 8), *sealed, B("epoch 1")).status().code(),
            absl::StatusCode::kPermissionDenied);
  (*sealed)[14] ^= 1;
  EXPECT_FALSE(AeadOpen(key, *sealed, B("epoch 1")).ok());
  EXPECT_EQ(AeadOpen(key, std::vector<uint8_t>(10), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AeadSeal(std::vector<uint8_t>(16), B("x"), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pml::crypto
