// `pmlctl verify token`: exit codes and what it prints, over tokens signed here with a fresh
// P-256 key in the shape pml-verifier's Appraiser issues (services/attestation/appraiser.cc).

#include "tools/pmlctl/token_cmd.h"

#include <stdlib.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/jwt.h"
#include "lib/crypto/key.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

using ::pml::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

// 2025-07-01T00:00:00Z; tokens live ten minutes from here.
constexpr int64_t kIssued = 1751328000;
constexpr int64_t kExpires = kIssued + 600;
constexpr char kDuring[] = "2025-07-01T00:05:00Z";
constexpr char kKid[] = "test-key-1";

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

Json Submodule(const std::string& status, Json failed_checks = Json::array(),
               bool simulated = false) {
  return {{"ear.status", status},
          {"ear.appraisal-policy-id", "prod"},
          {"pml.failed_checks", std::move(failed_checks)},
          {"simulated", simulated}};
}

// An allowed, affirming EAR payload for one TD and one GPU.
Json AllowedPayload() {
  Json cpu = Submodule("affirming");
  cpu["attester_tcb_status"] = "UpToDate";
  Json gpu = Submodule("affirming");
  gpu["pml_cc_mode"] = "on";
  return {{"eat_profile", "tag:github.com,2023:veraison/ear"},
          {"iss", "pml-verifier"},
          {"iat", kIssued},
          {"nbf", kIssued},
          {"exp", kExpires},
          {"jti", "00112233445566778899aabbccddeeff"},
          {"ear.verifier-id", {{"developer", "pml"}, {"build", "test"}}},
          {"ear.status", "affirming"},
          {"pml.allowed", true},
          {"pml.report_data", std::string(128, 'a')},
          {"pml.verification_time", kIssued},
          {"pml.policy", {{"id", "prod"}, {"version", 3}, {"sha256", std::string(64, 'b')}}},
          {"simulated", false},
          {"submods", {{"cpu0", cpu}, {"gpu0", gpu}}}};
}

Json RefusedPayload() {
  Json p = AllowedPayload();
  p["pml.allowed"] = false;
  p["ear.status"] = "contraindicated";
  p["submods"]["gpu0"] = Submodule(
      "contraindicated",
      Json::array({{{"check", "policy_gpu_cc_mode"}, {"detail", "confidential computing is off"}},
                   {{"check", "gpu_nonce_binding"}, {"detail", "nonce does not match"}}}));
  return p;
}

class VerifyTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml-vt-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
    ASSERT_THAT(key, IsOk());
    key_ = std::move(key).value();
    auto jwk = crypto::Jwk::FromPublicKey(*key_, kKid);
    ASSERT_THAT(jwk, IsOk());
    crypto::JwkSet set;
    ASSERT_THAT(set.Add(std::move(jwk).value()), IsOk());
    jwks_path_ = dir_ + "/jwks.json";
    ASSERT_THAT(core::WriteFileAtomic(jwks_path_, set.ToJson().dump()), IsOk());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Sign(const Json& payload, const EVP_PKEY& key, const std::string& kid = kKid) {
    auto token = crypto::SignJwt({{"kid", kid}}, payload, key);
    EXPECT_THAT(token, IsOk());
    return token.ok() ? *token : std::string();
  }
  std::string Sign(const Json& payload) { return Sign(payload, *key_); }

  VerifyTokenOptions Options(const std::string& token) const {
    VerifyTokenOptions o;
    o.token = token;
    o.jwks_path = jwks_path_;
    o.at = kDuring;
    return o;
  }

  static RunResult Run(const VerifyTokenOptions& o) {
    std::ostringstream out, err;
    RunResult r;
    r.code = RunVerifyToken(o, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  std::string dir_;
  std::string jwks_path_;
  crypto::EvpPkeyPtr key_;
};

TEST_F(VerifyTokenTest, AllowedTokenExitsZeroWithSummary) {
  const RunResult r = Run(Options(Sign(AllowedPayload())));
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("VERIFIED  ES256 signature by kid test-key-1, issuer pml-verifier"));
  EXPECT_THAT(r.out, HasSubstr("allowed:      yes\n"));
  EXPECT_THAT(r.out, HasSubstr("status:       affirming\n"));
  EXPECT_THAT(r.out,
              HasSubstr(absl::StrCat("policy:       prod v3  sha256 ", std::string(64, 'b'))));
  EXPECT_THAT(r.out, HasSubstr("expires:      2025-07-01T00:10:00Z (in 5m)"));
  EXPECT_THAT(r.out, HasSubstr("  cpu0: affirming  tcb UpToDate\n"));
  EXPECT_THAT(r.out, HasSubstr("  gpu0: affirming  cc on\n"));
  EXPECT_THAT(r.out, HasSubstr("verdict: ALLOWED\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("SIMULATED")));
  EXPECT_EQ(r.err, "");
}

TEST_F(VerifyTokenTest, RefusedTokenExitsOneAndPrintsFailedChecks) {
  const RunResult r = Run(Options(Sign(RefusedPayload())));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("VERIFIED  ES256"));  // the token is genuine; its verdict is no
  EXPECT_THAT(r.out, HasSubstr("allowed:      NO\n"));
  EXPECT_THAT(r.out, HasSubstr("status:       contraindicated\n"));
  EXPECT_THAT(r.out, HasSubstr("  gpu0: contraindicated\n"
                               "    - policy_gpu_cc_mode: confidential computing is off\n"
                               "    - gpu_nonce_binding: nonce does not match\n"));
  EXPECT_THAT(r.out, HasSubstr("verdict: NOT ALLOWED (2 failed checks)"));
}

TEST_F(VerifyTokenTest, TokenWithoutAllowedClaimIsNotAllowed) {
  Json p = AllowedPayload();
  p.erase("pml.allowed");
  const RunResult r = Run(Options(Sign(p)));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("allowed:      NO (the token has no boolean pml.allowed)"));
}

TEST_F(VerifyTokenTest, TamperedSignatureIsRejected) {
  std::string token = Sign(AllowedPayload());
  // A character in the middle of the signature: every bit there is significant, so the
  // base64url stays canonical and only the signature check can fail.
  const size_t i = token.rfind('.') + 10;
  token[i] = token[i] == 'A' ? 'B' : 'A';
  const RunResult r = Run(Options(token));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token signature does not verify"));
  EXPECT_THAT(r.out, Not(HasSubstr("allowed")));
}

TEST_F(VerifyTokenTest, TamperedPayloadIsRejected) {
  const std::string token = Sign(RefusedPayload());
  const std::string allowed = Sign(AllowedPayload());
  // The allowed payload under the refused token's signature.
  const size_t a = token.find('.'), b = token.rfind('.');
  const std::string forged =
      token.substr(0, a) +
      allowed.substr(allowed.find('.'), allowed.rfind('.') - allowed.find('.')) + token.substr(b);
  ASSERT_NE(forged, token);
  const RunResult r = Run(Options(forged));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token signature does not verify"));
}

TEST_F(VerifyTokenTest, ExpiredAtTimeIsRejected) {
  VerifyTokenOptions o = Options(Sign(AllowedPayload()));
  o.at = absl::StrCat(kExpires + 61);  // past exp and the 60 s leeway
  const RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token expired at 2025-07-01T00:10:00"));
  EXPECT_THAT(r.out, HasSubstr("checked at:   2025-07-01T00:11:01Z"));
}

TEST_F(VerifyTokenTest, NotYetValidIsRejected) {
  VerifyTokenOptions o = Options(Sign(AllowedPayload()));
  o.at = "2025-06-30T23:00:00Z";
  const RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token not yet valid"));
}

TEST_F(VerifyTokenTest, UnknownKidIsRejectedAndKnownKidsListed) {
  auto other = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(other, IsOk());
  const RunResult r = Run(Options(Sign(AllowedPayload(), **other, "rotated-away")));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  "));
  EXPECT_THAT(r.out, HasSubstr("rotated-away"));
  EXPECT_THAT(r.out, HasSubstr("jwks kids:    test-key-1\n"));
}

TEST_F(VerifyTokenTest, KnownKidSignedByAnotherKeyIsRejected) {
  auto other = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(other, IsOk());
  const RunResult r = Run(Options(Sign(AllowedPayload(), **other, kKid)));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token signature does not verify"));
}

TEST_F(VerifyTokenTest, Es384IsRejectedEvenWhenItsKeyIsPublished) {
  auto p384 = crypto::GenerateEcKey(crypto::Curve::kP384);
  ASSERT_THAT(p384, IsOk());
  auto jwk256 = crypto::Jwk::FromPublicKey(*key_, kKid);
  auto jwk384 = crypto::Jwk::FromPublicKey(**p384, "p384");
  ASSERT_THAT(jwk256, IsOk());
  ASSERT_THAT(jwk384, IsOk());
  crypto::JwkSet set;
  ASSERT_THAT(set.Add(std::move(jwk256).value()), IsOk());
  ASSERT_THAT(set.Add(std::move(jwk384).value()), IsOk());
  ASSERT_THAT(core::WriteFileAtomic(jwks_path_, set.ToJson().dump()), IsOk());
  const RunResult r = Run(Options(Sign(AllowedPayload(), **p384, "p384")));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token alg \"ES384\" is not allowed"));
}

TEST_F(VerifyTokenTest, WrongIssuerIsRejectedUnlessTheCheckIsOff) {
  Json p = AllowedPayload();
  p["iss"] = "someone-else";
  VerifyTokenOptions o = Options(Sign(p));
  RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REJECTED  token iss"));

  o.issuer = "";
  r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("issuer someone-else"));
}

TEST_F(VerifyTokenTest, MalformedTokenIsUsageError) {
  for (const std::string token : {"not-a-token", "a.b", "%%%.e30.abc", "e30.e30.abc", "a.b.c.d"}) {
    SCOPED_TRACE(token);
    const RunResult r = Run(Options(token));
    EXPECT_EQ(r.code, kVerifyExitUsage) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("pmlctl verify token: error: not a well-formed token"));
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(VerifyTokenTest, TokenWithoutExpIsUsageError) {
  Json p = AllowedPayload();
  p.erase("exp");
  const RunResult r = Run(Options(Sign(p)));
  EXPECT_EQ(r.code, kVerifyExitUsage) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("token has no exp"));
}

TEST_F(VerifyTokenTest, MissingJwksFileIsUsageError) {
  VerifyTokenOptions o = Options(Sign(AllowedPayload()));
  o.jwks_path = dir_ + "/absent.json";
  const RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitUsage) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--jwks: "));
  EXPECT_THAT(r.err, HasSubstr("absent.json"));
  EXPECT_EQ(r.out, "");
}

TEST_F(VerifyTokenTest, UnusableJwksIsUsageError) {
  const std::string token = Sign(AllowedPayload());
  for (const std::string text : {"not json", "{\"keys\": 3}", "{\"keys\": []}"}) {
    SCOPED_TRACE(text);
    ASSERT_THAT(core::WriteFileAtomic(jwks_path_, text), IsOk());
    const RunResult r = Run(Options(token));
    EXPECT_EQ(r.code, kVerifyExitUsage) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("--jwks: "));
  }
}

TEST_F(VerifyTokenTest, UsageErrors) {
  const std::string token = Sign(AllowedPayload());
  struct Case {
    const char* name;
    VerifyTokenOptions options;
    const char* message;
  };
  VerifyTokenOptions no_token = Options("");
  VerifyTokenOptions no_jwks = Options(token);
  no_jwks.jwks_path = "";
  VerifyTokenOptions bad_at = Options(token);
  bad_at.at = "yesterday";
  VerifyTokenOptions extra = Options(token);
  extra.extras = {"--jkws"};
  VerifyTokenOptions missing_file = Options("@" + dir_ + "/absent.jwt");
  VerifyTokenOptions empty_file = Options("@" + jwks_path_ + ".empty");
  ASSERT_THAT(core::WriteFileAtomic(jwks_path_ + ".empty", " \n"), IsOk());
  const Case cases[] = {
      {"no token", no_token, "TOKEN"},
      {"no jwks", no_jwks, "--jwks is required"},
      {"bad at", bad_at, "--at"},
      {"extra", extra, "unexpected argument --jkws"},
      {"missing token file", missing_file, "absent.jwt"},
      {"empty token file", empty_file, "the token is empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const RunResult r = Run(c.options);
    EXPECT_EQ(r.code, kVerifyExitUsage) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
  }
}

TEST_F(VerifyTokenTest, ReadsTokenFromFile) {
  const std::string path = dir_ + "/token.jwt";
  ASSERT_THAT(core::WriteFileAtomic(path, Sign(AllowedPayload()) + "\n"), IsOk());
  const RunResult r = Run(Options("@" + path));
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
}

TEST_F(VerifyTokenTest, SimulatedTokenWarnsLoudly) {
  Json p = AllowedPayload();
  p["simulated"] = true;
  p["ear.status"] = "warning";
  p["submods"]["gpu0"]["simulated"] = true;
  const RunResult r = Run(Options(Sign(p)));
  // The policy allowed it, so the verdict stands; the output says what it is worth.
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("WARNING: SIMULATED evidence: proves nothing"));
  EXPECT_THAT(r.out, HasSubstr("simulated:    YES\n"));
  EXPECT_THAT(r.out, HasSubstr("  gpu0: affirming  cc on  SIMULATED\n"));
  EXPECT_THAT(r.out, HasSubstr("verdict: ALLOWED (SIMULATED)"));

  VerifyTokenOptions o = Options(Sign(p));
  o.json = true;
  const RunResult j = Run(o);
  EXPECT_EQ(j.code, kVerifyExitVerified);
  EXPECT_THAT(j.err, HasSubstr("SIMULATED evidence: proves nothing"));
  EXPECT_EQ(Json::parse(j.out)["simulated"], true);
}

TEST_F(VerifyTokenTest, JsonPrintsTheVerifiedPayload) {
  VerifyTokenOptions o = Options(Sign(RefusedPayload()));
  o.json = true;
  const RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_EQ(Json::parse(r.out), RefusedPayload());
  EXPECT_EQ(r.err, "");
}

TEST_F(VerifyTokenTest, JsonReportsRejection) {
  std::string token = Sign(AllowedPayload());
  const size_t i = token.rfind('.') + 10;
  token[i] = token[i] == 'A' ? 'B' : 'A';
  VerifyTokenOptions o = Options(token);
  o.json = true;
  const RunResult r = Run(o);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["verified"], false);
  EXPECT_EQ(j["reason"], "token signature does not verify");
  EXPECT_EQ(j["jwks_kids"], Json::array({kKid}));
}

TEST_F(VerifyTokenTest, SubmodulesPrintInDeviceOrderAndEscapeControlCharacters) {
  Json p = AllowedPayload();
  for (const char* name : {"gpu10", "gpu2", "nvswitch0", "gpu1"}) {
    p["submods"][name] = Submodule("affirming");
  }
  p["pml.allowed"] = false;
  p["submods"]["gpu2"] = Submodule(
      "contraindicated", Json::array({{{"check", "gpu_verification"}, {"detail", "bad\x1b[2Jx"}}}));
  const RunResult r = Run(Options(Sign(p)));
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  const size_t cpu0 = r.out.find("  cpu0:"), gpu0 = r.out.find("  gpu0:"),
               gpu1 = r.out.find("  gpu1:"), gpu2 = r.out.find("  gpu2:"),
               gpu10 = r.out.find("  gpu10:"), sw0 = r.out.find("  nvswitch0:");
  ASSERT_NE(sw0, std::string::npos) << r.out;
  EXPECT_LT(cpu0, gpu0);
  EXPECT_LT(gpu0, gpu1);
  EXPECT_LT(gpu1, gpu2);
  EXPECT_LT(gpu2, gpu10);
  EXPECT_LT(gpu10, sw0);
  EXPECT_THAT(r.out, HasSubstr("    - gpu_verification: bad\\x1b[2Jx\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace pml::pmlctl
