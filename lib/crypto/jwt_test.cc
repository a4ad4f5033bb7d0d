#include "lib/crypto/jwt.h"

#include <string>
#include <vector>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"

namespace pml::crypto {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using json = nlohmann::json;

constexpr absl::Time kNow = absl::FromUnixSeconds(1700000000);

// RFC 7515 Appendix A.3: the ES256 example key and its signed JWS.
constexpr char kRfcX[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr char kRfcY[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
constexpr char kRfcToken[] =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
// Its RFC 7638 thumbprint, computed with Python's hashlib over the canonical JSON.
constexpr char kRfcThumbprint[] = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";

VerifyJwtOptions Options(absl::Time now = kNow) {
  VerifyJwtOptions o;
  o.now = now;
  o.allowed_algs = {"ES256", "ES384"};
  return o;
}

json Claims() {
  return {{"iss", "pml-verifier"},
          {"iat", absl::ToUnixSeconds(kNow)},
          {"exp", absl::ToUnixSeconds(kNow + absl::Minutes(5))},
          {"submods", {{"cpu0", {{"tdx_mrtd", "00ff"}}}}}};
}

struct Signer {
  EvpPkeyPtr key;
  JwkSet set;
  std::string kid;
};

Signer MakeSigner(Curve curve) {
  Signer s;
  auto key = GenerateEcKey(curve);
  PML_CHECK(key.ok());
  s.key = *std::move(key);
  auto jwk = Jwk::FromPublicKey(*s.key);
  PML_CHECK(jwk.ok());
  s.kid = jwk->kid;
  PML_CHECK(s.set.Add(*std::move(jwk)).ok());
  return s;
}

std::string B64(absl::string_view s) { return core::Base64UrlEncode(s); }

std::vector<std::string> Split(absl::string_view token) { return absl::StrSplit(token, '.'); }

TEST(JwtTest, RoundTripsEs256AndEs384) {
  for (Curve c : {Curve::kP256, Curve::kP384}) {
    SCOPED_TRACE(static_cast<int>(c));
    Signer s = MakeSigner(c);
    PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
    PML_ASSERT_OK_AND_ASSIGN(VerifiedJwt v, VerifyJwt(token, s.set, Options()));
    const std::string alg = c == Curve::kP256 ? "ES256" : "ES384";
    EXPECT_EQ(v.header, json({{"alg", alg}, {"typ", "JWT"}, {"kid", s.kid}}));
    EXPECT_EQ(v.payload, Claims());
    // r||s, each the field size (RFC 7518 §3.4).
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, core::Base64UrlDecode(Split(token)[2]));
    EXPECT_EQ(sig.size(), c == Curve::kP256 ? 64u : 96u);
  }
}

TEST(JwtTest, HeaderExtraMayAddMembersAndOverrideTyp) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(
      std::string token,
      SignJwt({{"kid", s.kid}, {"typ", "eat+jwt"}, {"alg", "ES256"}}, Claims(), *s.key));
  PML_ASSERT_OK_AND_ASSIGN(VerifiedJwt v, VerifyJwt(token, s.set, Options()));
  EXPECT_EQ(v.header["typ"], "eat+jwt");
}

TEST(JwtTest, SignRefusesBadInputs) {
  Signer s = MakeSigner(Curve::kP256);
  EXPECT_THAT(
      SignJwt(nullptr, json::array({1}), *s.key),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("payload is not a JSON object")));
  EXPECT_THAT(SignJwt(json::array(), Claims(), *s.key),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header_extra")));
  EXPECT_THAT(SignJwt({{"alg", "none"}}, Claims(), *s.key),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alg does not match")));
  EXPECT_THAT(SignJwt({{"crit", {"b64"}}}, Claims(), *s.key),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("crit")));
  EXPECT_THAT(SignJwt(nullptr, {{"sub", std::string("\xff\xfe")}}, *s.key),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")));
  EXPECT_THAT(SignJwt(nullptr, {{"big", std::string(kMaxJwtBytes, 'a')}}, *s.key),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit 65536")));
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr k1, GenerateEcKey(Curve::kSecp256k1));
  EXPECT_THAT(SignJwt(nullptr, Claims(), *k1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not supported")));
}

TEST(JwtTest, TamperedPayloadHeaderOrSignatureFails) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  const std::vector<std::string> p = Split(token);

  json claims = Claims();
  claims["submods"]["cpu0"]["tdx_mrtd"] = "00fe";
  const std::string payload_edit = absl::StrCat(p[0], ".", B64(claims.dump()), ".", p[2]);
  EXPECT_THAT(VerifyJwt(payload_edit, s.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));

  const json header = {{"alg", "ES256"}, {"kid", s.kid}, {"typ", "jwt"}};
  const std::string header_edit = absl::StrCat(B64(header.dump()), ".", p[1], ".", p[2]);
  EXPECT_THAT(VerifyJwt(header_edit, s.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));

  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, core::Base64UrlDecode(p[2]));
  for (size_t i : {size_t{0}, size_t{31}, size_t{32}, size_t{63}}) {
    std::vector<uint8_t> bad = sig;
    bad[i] ^= 0x01;
    const std::string sig_edit = absl::StrCat(p[0], ".", p[1], ".", core::Base64UrlEncode(bad));
    EXPECT_THAT(VerifyJwt(sig_edit, s.set, Options()),
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")))
        << "byte " << i;
  }
}

TEST(JwtTest, RefusesWrongSignatureLength) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  const std::vector<std::string> p = Split(token);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, core::Base64UrlDecode(p[2]));
  // A DER signature where raw r||s belongs.
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der, EcdsaRawToDer(sig));
  for (const std::vector<uint8_t>& bad :
       {std::vector<uint8_t>(sig.begin(), sig.end() - 1), der, std::vector<uint8_t>()}) {
    const std::string t = absl::StrCat(p[0], ".", p[1], ".", core::Base64UrlEncode(bad));
    EXPECT_THAT(VerifyJwt(t, s.set, Options()),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr(absl::StrCat("signature is ", bad.size(), " bytes, want 64"))));
  }
}

TEST(JwtTest, RefusesNonCanonicalBase64Url) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  // 64 signature bytes take 86 characters whose last 4 bits are padding: setting the lowest one
  // leaves the decoded bytes unchanged, so only a canonicality check notices.
  constexpr absl::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string bad = token;
  bad.back() = kAlphabet[kAlphabet.find(bad.back()) ^ 1];
  ASSERT_EQ(core::Base64UrlDecode(Split(bad)[2]).value(),
            core::Base64UrlDecode(Split(token)[2]).value());
  EXPECT_THAT(VerifyJwt(bad, s.set, Options()), StatusIs(absl::StatusCode::kInvalidArgument,
                                                         HasSubstr("signature is not canonical")));
  EXPECT_THAT(VerifyJwt(token + "=", s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not canonical")));
}

TEST(JwtTest, RefusesAlgNoneHmacRsaAndUnlistedAlgs) {
  Signer s = MakeSigner(Curve::kP256);
  const std::string payload = B64(Claims().dump());
  VerifyJwtOptions permissive = Options();
  permissive.allowed_algs = {"ES256", "none", "HS256", "RS256"};

  const std::string none =
      absl::StrCat(B64(json({{"alg", "none"}, {"kid", s.kid}}).dump()), ".", payload, ".");
  EXPECT_THAT(
      VerifyJwt(none, s.set, permissive),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("alg \"none\" is not allowed")));

  // The classic confusion: an HMAC keyed with the verifier's public key.
  const std::string hs_input =
      absl::StrCat(B64(json({{"alg", "HS256"}, {"kid", s.kid}}).dump()), ".", payload);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> point, PublicKeyToRawPoint(*s.key));
  const Sha256Digest mac = HmacSha256(point, core::AsBytes(hs_input));
  const std::string hs = absl::StrCat(hs_input, ".", core::Base64UrlEncode(mac));
  EXPECT_THAT(
      VerifyJwt(hs, s.set, permissive),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("alg \"HS256\" is not allowed")));

  const std::string rs = absl::StrCat(B64(json({{"alg", "RS256"}, {"kid", s.kid}}).dump()), ".",
                                      payload, ".", B64(std::string(256, 'x')));
  EXPECT_THAT(
      VerifyJwt(rs, s.set, permissive),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("alg \"RS256\" is not allowed")));

  // ES384 is implemented but not in the default allow-list.
  Signer s384 = MakeSigner(Curve::kP384);
  PML_ASSERT_OK_AND_ASSIGN(std::string es384, SignJwt({{"kid", s384.kid}}, Claims(), *s384.key));
  VerifyJwtOptions defaults;
  defaults.now = kNow;
  EXPECT_THAT(
      VerifyJwt(es384, s384.set, defaults),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("alg \"ES384\" is not allowed")));

  const std::string no_alg = absl::StrCat(B64(json({{"kid", s.kid}}).dump()), ".", payload, ".x");
  EXPECT_THAT(VerifyJwt(no_alg, s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no string alg")));
}

TEST(JwtTest, RefusesAlgThatDoesNotMatchTheKeyCurve) {
  Signer s = MakeSigner(Curve::kP384);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  const std::vector<std::string> p = Split(token);
  const std::string t =
      absl::StrCat(B64(json({{"alg", "ES256"}, {"kid", s.kid}}).dump()), ".", p[1], ".", p[2]);
  EXPECT_THAT(VerifyJwt(t, s.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not match key")));
}

TEST(JwtTest, RefusesUnknownOrMissingKid) {
  Signer s = MakeSigner(Curve::kP256);
  Signer other = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  EXPECT_THAT(VerifyJwt(token, other.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("is not a known key")));
  // The right kid naming another key: the signature check catches it.
  PML_ASSERT_OK_AND_ASSIGN(std::string forged, SignJwt({{"kid", s.kid}}, Claims(), *other.key));
  EXPECT_THAT(VerifyJwt(forged, s.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
  PML_ASSERT_OK_AND_ASSIGN(std::string no_kid, SignJwt(nullptr, Claims(), *s.key));
  EXPECT_THAT(VerifyJwt(no_kid, s.set, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no kid")));
  PML_ASSERT_OK_AND_ASSIGN(std::string int_kid, SignJwt({{"kid", 7}}, Claims(), *s.key));
  EXPECT_THAT(VerifyJwt(int_kid, s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kid is not a string")));
}

TEST(JwtTest, ExpiryHonoursLeeway) {
  Signer s = MakeSigner(Curve::kP256);
  const absl::Time exp = kNow + absl::Minutes(5);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  EXPECT_THAT(VerifyJwt(token, s.set, Options(exp + absl::Seconds(59))), IsOk());
  EXPECT_THAT(VerifyJwt(token, s.set, Options(exp + absl::Seconds(60))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("token expired")));
  VerifyJwtOptions strict = Options(exp);
  strict.leeway = absl::ZeroDuration();
  EXPECT_THAT(VerifyJwt(token, s.set, strict),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("token expired")));
  strict.now = exp - absl::Seconds(1);
  EXPECT_THAT(VerifyJwt(token, s.set, strict), IsOk());
}

TEST(JwtTest, NotBeforeAndIssuedAtHonourLeeway) {
  Signer s = MakeSigner(Curve::kP256);
  json claims = Claims();
  claims["nbf"] = absl::ToUnixSeconds(kNow);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, claims, *s.key));
  EXPECT_THAT(VerifyJwt(token, s.set, Options(kNow - absl::Seconds(60))), IsOk());
  EXPECT_THAT(VerifyJwt(token, s.set, Options(kNow - absl::Seconds(61))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not yet valid: nbf")));

  json future = Claims();
  future["iat"] = absl::ToUnixSeconds(kNow + absl::Seconds(61));
  PML_ASSERT_OK_AND_ASSIGN(std::string t2, SignJwt({{"kid", s.kid}}, future, *s.key));
  EXPECT_THAT(VerifyJwt(t2, s.set, Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not yet valid: iat")));
}

TEST(JwtTest, TimeClaimsMustBeNumbersAndExpMayBeRequired) {
  Signer s = MakeSigner(Curve::kP256);
  json no_exp = Claims();
  no_exp.erase("exp");
  PML_ASSERT_OK_AND_ASSIGN(std::string t1, SignJwt({{"kid", s.kid}}, no_exp, *s.key));
  EXPECT_THAT(VerifyJwt(t1, s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token has no exp")));
  VerifyJwtOptions lax = Options();
  lax.require_exp = false;
  EXPECT_THAT(VerifyJwt(t1, s.set, lax), IsOk());

  json str_exp = Claims();
  str_exp["exp"] = "tomorrow";
  PML_ASSERT_OK_AND_ASSIGN(std::string t2, SignJwt({{"kid", s.kid}}, str_exp, *s.key));
  EXPECT_THAT(VerifyJwt(t2, s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exp is not a number")));

  json frac = Claims();
  frac["exp"] = 1700000000.5;  // kNow + 0.5 s
  PML_ASSERT_OK_AND_ASSIGN(std::string t3, SignJwt({{"kid", s.kid}}, frac, *s.key));
  VerifyJwtOptions strict = Options();
  strict.leeway = absl::ZeroDuration();
  EXPECT_THAT(VerifyJwt(t3, s.set, strict), IsOk());
  strict.now = kNow + absl::Milliseconds(500);
  EXPECT_THAT(VerifyJwt(t3, s.set, strict),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("token expired")));
}

TEST(JwtTest, ChecksIssuerWhenGiven) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  VerifyJwtOptions o = Options();
  o.issuer = "pml-verifier";
  EXPECT_THAT(VerifyJwt(token, s.set, o), IsOk());
  o.issuer = "someone-else";
  EXPECT_THAT(VerifyJwt(token, s.set, o),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("iss \"pml-verifier\" is not \"someone-else\"")));
  json no_iss = Claims();
  no_iss.erase("iss");
  PML_ASSERT_OK_AND_ASSIGN(std::string t2, SignJwt({{"kid", s.kid}}, no_iss, *s.key));
  EXPECT_THAT(VerifyJwt(t2, s.set, o),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("iss (none)")));
}

TEST(JwtTest, RefusesMalformedTokens) {
  Signer s = MakeSigner(Curve::kP256);
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
  const std::vector<std::string> p = Split(token);
  struct Case {
    const char* name;
    std::string token;
    const char* reason;
  };
  const Case cases[] = {
      {"empty", "", "not a compact jws"},
      {"two parts", absl::StrCat(p[0], ".", p[1]), "not a compact jws"},
      {"four parts", token + ".x", "not a compact jws"},
      {"header not base64url", absl::StrCat("e+J.", p[1], ".", p[2]), "header is not canonical"},
      {"header not json", absl::StrCat(B64("{alg"), ".", p[1], ".", p[2]), "not a JSON object"},
      {"header array", absl::StrCat(B64("[]"), ".", p[1], ".", p[2]), "not a JSON object"},
      {"crit",
       absl::StrCat(B64(json({{"alg", "ES256"}, {"kid", s.kid}, {"crit", {"x"}}}).dump()), ".",
                    p[1], ".", p[2]),
       "crit is not supported"},
      {"header depth bomb",
       absl::StrCat(B64(std::string(1000, '[') + std::string(1000, ']')), ".", p[1], ".", p[2]),
       "nests deeper than 32"},
      {"oversize", std::string(kMaxJwtBytes + 1, 'a'), "limit 65536"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(VerifyJwt(c.token, s.set, Options()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.reason)));
  }
}

TEST(JwtTest, RefusesDeeplyNestedPayloadAfterSignature) {
  Signer s = MakeSigner(Curve::kP256);
  json deep = json::array();
  for (int i = 0; i < 40; ++i) {
    deep = json::array({deep});
  }
  json claims = Claims();
  claims["deep"] = deep;
  PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, claims, *s.key));
  EXPECT_THAT(VerifyJwt(token, s.set, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("payload nests deeper")));
}

TEST(JwtTest, ThumbprintIsSha256OfCanonicalJwk) {
  for (Curve c : {Curve::kP256, Curve::kP384}) {
    SCOPED_TRACE(static_cast<int>(c));
    PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(c));
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> point, PublicKeyToRawPoint(*key));
    const size_t n = (point.size() - 1) / 2;
    const std::string x = core::Base64UrlEncode(absl::MakeConstSpan(point).subspan(1, n));
    const std::string y = core::Base64UrlEncode(absl::MakeConstSpan(point).subspan(1 + n, n));
    const std::string canonical =
        absl::StrCat("{\"crv\":\"", c == Curve::kP256 ? "P-256" : "P-384",
                     "\",\"kty\":\"EC\",\"x\":\"", x, "\",\"y\":\"", y, "\"}");
    const std::string want = core::Base64UrlEncode(Sha256(canonical));
    EXPECT_THAT(JwkThumbprint(*key), ::pml::testing::IsOkAndHolds(want));
    PML_ASSERT_OK_AND_ASSIGN(Jwk jwk, Jwk::FromPublicKey(*key));
    EXPECT_EQ(jwk.kid, want);
    EXPECT_EQ(want.size(), 43u);
  }
}

TEST(JwtTest, ThumbprintMatchesRfc7515ExampleKey) {
  const json set = {{"keys", {{{"kty", "EC"}, {"crv", "P-256"}, {"x", kRfcX}, {"y", kRfcY}}}}};
  PML_ASSERT_OK_AND_ASSIGN(JwkSet jwks, JwkSet::Parse(set));
  ASSERT_EQ(jwks.size(), 1u);
  EXPECT_EQ(jwks.keys()[0].kid, kRfcThumbprint);  // no kid given: the thumbprint
  EXPECT_THAT(JwkThumbprint(*jwks.keys()[0].key), ::pml::testing::IsOkAndHolds(kRfcThumbprint));
}

TEST(JwtTest, ParsedRfcKeyVerifiesRfcSignatureButTokenWithoutKidIsRefused) {
  const json set = {{"keys", {{{"kty", "EC"}, {"crv", "P-256"}, {"x", kRfcX}, {"y", kRfcY}}}}};
  PML_ASSERT_OK_AND_ASSIGN(JwkSet jwks, JwkSet::Parse(set));
  const std::vector<std::string> p = Split(kRfcToken);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, core::Base64UrlDecode(p[2]));
  EXPECT_THAT(VerifyEcdsaRaw(*jwks.keys()[0].key, Digest::kSha256,
                             core::AsBytes(absl::StrCat(p[0], ".", p[1])), sig),
              IsOk());
  // The example has no kid; we require one.
  EXPECT_THAT(VerifyJwt(kRfcToken, jwks, Options()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no kid")));
}

// Checks a token with OpenSSL's EVP API directly (raw r||s converted to DER by hand, the key
// rebuilt from the published JWK), independently of VerifyJwt and VerifyEcdsaRaw.
TEST(JwtTest, TokenVerifiesWithOpensslEvpDirectly) {
  for (Curve c : {Curve::kP256, Curve::kP384}) {
    SCOPED_TRACE(static_cast<int>(c));
    Signer s = MakeSigner(c);
    PML_ASSERT_OK_AND_ASSIGN(std::string token, SignJwt({{"kid", s.kid}}, Claims(), *s.key));
    const std::vector<std::string> p = Split(token);
    const json pub = s.set.ToJson()["keys"][0];
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> x,
                             core::Base64UrlDecode(pub["x"].get<std::string>()));
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> y,
                             core::Base64UrlDecode(pub["y"].get<std::string>()));
    std::vector<uint8_t> point = {0x04};
    point.insert(point.end(), x.begin(), x.end());
    point.insert(point.end(), y.begin(), y.end());
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(
            "group", const_cast<char*>(c == Curve::kP256 ? "P-256" : "P-384"), 0),
        OSSL_PARAM_construct_octet_string("pub", point.data(), point.size()), OSSL_PARAM_END};
    EvpPkeyCtxPtr fctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* raw_key = nullptr;
    ASSERT_EQ(EVP_PKEY_fromdata_init(fctx.get()), 1);
    ASSERT_EQ(EVP_PKEY_fromdata(fctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params), 1);
    EvpPkeyPtr key(raw_key);

    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> sig, core::Base64UrlDecode(p[2]));
    const size_t n = sig.size() / 2;
    EcdsaSigPtr esig(ECDSA_SIG_new());
    ASSERT_EQ(ECDSA_SIG_set0(esig.get(), BN_bin2bn(sig.data(), static_cast<int>(n), nullptr),
                             BN_bin2bn(sig.data() + n, static_cast<int>(n), nullptr)),
              1);
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(esig.get(), &der);
    ASSERT_GT(der_len, 0);
    const std::vector<uint8_t> der_sig(der, der + der_len);
    OPENSSL_free(der);

    const std::string input = absl::StrCat(p[0], ".", p[1]);
    EvpMdCtxPtr md(EVP_MD_CTX_new());
    ASSERT_EQ(
        EVP_DigestVerifyInit(md.get(), nullptr, c == Curve::kP256 ? EVP_sha256() : EVP_sha384(),
                             nullptr, key.get()),
        1);
    EXPECT_EQ(EVP_DigestVerify(md.get(), der_sig.data(), der_sig.size(),
                               reinterpret_cast<const unsigned char*>(input.data()), input.size()),
              1);
    const std::string tampered = input + " ";
    EXPECT_EQ(
        EVP_DigestVerify(md.get(), der_sig.data(), der_sig.size(),
                         reinterpret_cast<const unsigned char*>(tampered.data()), tampered.size()),
        0);
  }
}

TEST(JwkTest, ToJsonHasPublicMembersOnly) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(Curve::kP384));
  PML_ASSERT_OK_AND_ASSIGN(Jwk jwk, Jwk::FromPublicKey(*key, "k1"));
  const json j = jwk.ToJson();
  std::vector<std::string> names;
  for (const auto& [name, value] : j.items()) {
    names.push_back(name);
  }
  EXPECT_THAT(names, ElementsAre("alg", "crv", "kid", "kty", "use", "x", "y"));
  EXPECT_EQ(j["kid"], "k1");
  EXPECT_EQ(j["alg"], "ES384");
  EXPECT_EQ(j["crv"], "P-384");
  EXPECT_EQ(j["use"], "sig");
  EXPECT_EQ(j["x"].get<std::string>().size(), 64u);  // 48 bytes
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr k1, GenerateEcKey(Curve::kSecp256k1));
  EXPECT_THAT(Jwk::FromPublicKey(*k1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("secp256k1")));
}

TEST(JwkSetTest, ParseRoundTripsAndFinds) {
  JwkSet set;
  for (Curve c : {Curve::kP256, Curve::kP384, Curve::kP256}) {
    PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(c));
    PML_ASSERT_OK_AND_ASSIGN(Jwk jwk, Jwk::FromPublicKey(*key));
    ASSERT_THAT(set.Add(std::move(jwk)), IsOk());
  }
  const json j = set.ToJson();
  PML_ASSERT_OK_AND_ASSIGN(JwkSet parsed, JwkSet::ParseText(j.dump()));
  EXPECT_EQ(parsed.ToJson(), j);
  ASSERT_EQ(parsed.size(), 3u);
  for (const Jwk& k : set.keys()) {
    const Jwk* found = parsed.Find(k.kid);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(EVP_PKEY_eq(found->key.get(), k.key.get()), 1);
  }
  EXPECT_EQ(parsed.Find("nope"), nullptr);
}

TEST(JwkSetTest, AddRefusesDuplicateKid) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(Curve::kP256));
  JwkSet set;
  PML_ASSERT_OK_AND_ASSIGN(Jwk a, Jwk::FromPublicKey(*key, "same"));
  PML_ASSERT_OK_AND_ASSIGN(Jwk b, Jwk::FromPublicKey(*key, "same"));
  ASSERT_THAT(set.Add(std::move(a)), IsOk());
  EXPECT_THAT(set.Add(std::move(b)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("\"same\" already present")));
  EXPECT_THAT(set.Add(Jwk{}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no key")));
}

TEST(JwkSetTest, ParseSkipsKeysItCannotUse) {
  const json set = {
      {"keys",
       {{{"kty", "RSA"}, {"n", "AQAB"}, {"e", "AQAB"}, {"kid", "rsa"}},
        {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
        {{"kty", "EC"}, {"crv", "P-521"}, {"x", "AA"}, {"y", "AA"}, {"kid", "p521"}},
        {{"kty", "EC"}, {"crv", "P-256"}, {"use", "enc"}, {"x", kRfcX}, {"y", kRfcY}},
        {{"kty", "EC"},
         {"crv", "P-256"},
         {"use", "sig"},
         {"x", kRfcX},
         {"y", kRfcY},
         {"kid", "ok"}}}}};
  PML_ASSERT_OK_AND_ASSIGN(JwkSet parsed, JwkSet::Parse(set));
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed.keys()[0].kid, "ok");
  EXPECT_EQ(parsed.keys()[0].alg, "ES256");
}

TEST(JwkSetTest, ParseRefusesMalformedKeys) {
  auto ec = [](json extra) {
    json k = {{"kty", "EC"}, {"crv", "P-256"}, {"x", kRfcX}, {"y", kRfcY}, {"kid", "a"}};
    for (const auto& [name, value] : extra.items()) {
      if (value.is_null()) {
        k.erase(name);
      } else {
        k[name] = value;
      }
    }
    return k;
  };
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> x, core::Base64UrlDecode(kRfcX));
  x[31] ^= 1;  // off the curve
  const std::string short_x = core::Base64UrlEncode(absl::MakeConstSpan(x).subspan(1));
  // 32 bytes take 43 characters whose last 2 bits are padding: set the lowest.
  std::string noncanon_y = kRfcY;
  ASSERT_EQ(noncanon_y.back(), '0');
  noncanon_y.back() = '1';
  struct Case {
    const char* name;
    json set;
    const char* reason;
  };
  const Case cases[] = {
      {"not an object", json::array(), "jwks is not a JSON object"},
      {"no keys", json::object(), "no keys array"},
      {"keys not array", {{"keys", 1}}, "no keys array"},
      {"key not object", {{"keys", {1}}}, "key 0 is not an object"},
      {"no kty", {{"keys", {ec({{"kty", nullptr}})}}}, "key 0 has no string kty"},
      {"no crv", {{"keys", {ec({{"crv", nullptr}})}}}, "no string crv"},
      {"no y", {{"keys", {ec({{"y", nullptr}})}}}, "no string x and y"},
      {"short x", {{"keys", {ec({{"x", short_x}})}}}, "x/y are 31/32 bytes"},
      {"off curve", {{"keys", {ec({{"x", core::Base64UrlEncode(x)}})}}}, "is not a P-256 point"},
      {"non-canonical", {{"keys", {ec({{"y", noncanon_y}})}}}, "y is not canonical"},
      {"alg mismatch", {{"keys", {ec({{"alg", "ES384"}})}}}, "alg does not match crv P-256"},
      {"private",
       {{"keys", {ec({{"d", "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X5fCE9-E9LI"}})}}},
       "private member d"},
      {"empty kid", {{"keys", {ec({{"kid", ""}})}}}, "kid is not a non-empty string"},
      {"duplicate kid", {{"keys", {ec({}), ec({})}}}, "key 1 repeats kid \"a\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(JwkSet::Parse(c.set),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.reason)));
  }
  EXPECT_THAT(JwkSet::ParseText("{\"keys\": ["),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(JwkSet::ParseText(std::string(100, '[')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests deeper")));
}

}  // namespace
}  // namespace pml::crypto
