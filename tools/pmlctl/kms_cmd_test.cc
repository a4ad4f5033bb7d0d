#include "tools/pmlctl/kms_cmd.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/secp256k1.h"

namespace pml::pmlctl {
namespace {

namespace v1 = ::pml::kms::v1;
using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Json = nlohmann::json;

constexpr absl::string_view kAppHex = "0123456789abcdef0123456789abcdef01234567";

std::string AppBytes() { return core::ToString(*core::HexDecode(kAppHex)); }

google::protobuf::Timestamp Ts(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(nanos);
  return ts;
}

// ---- flags

TEST(ParseTimeFlagTest, AcceptsRfc3339AndUnixSeconds) {
  EXPECT_THAT(ParseTimeFlag("--since", "2025-07-01T00:00:00Z"),
              IsOkAndHolds(absl::FromUnixSeconds(1751328000)));
  EXPECT_THAT(ParseTimeFlag("--since", "2025-07-01T02:00:00+02:00"),
              IsOkAndHolds(absl::FromUnixSeconds(1751328000)));
  EXPECT_THAT(ParseTimeFlag("--since", "1751328000"),
              IsOkAndHolds(absl::FromUnixSeconds(1751328000)));
}

TEST(ParseTimeFlagTest, RejectsOtherTextNamingTheFlag) {
  EXPECT_THAT(ParseTimeFlag("--until", "yesterday"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--until \"yesterday\": want RFC 3339")));
}

// Every AuditAction / AuditOutcome in the proto has a name that parses back, so a new enum value
// cannot be left out of --action/--outcome.
TEST(AuditNamesTest, EveryProtoValueRoundTrips) {
  const auto* actions = v1::AuditAction_descriptor();
  for (int i = 0; i < actions->value_count(); ++i) {
    const auto value = static_cast<v1::AuditAction>(actions->value(i)->number());
    SCOPED_TRACE(actions->value(i)->name());
    if (value == v1::AUDIT_ACTION_UNSPECIFIED) {
      continue;
    }
    const std::string name = AuditActionName(value);
    EXPECT_THAT(name, Not(StartsWith("unknown")));
    EXPECT_THAT(ParseAuditAction(name), IsOkAndHolds(value));
  }
  const auto* outcomes = v1::AuditOutcome_descriptor();
  for (int i = 0; i < outcomes->value_count(); ++i) {
    const auto value = static_cast<v1::AuditOutcome>(outcomes->value(i)->number());
    SCOPED_TRACE(outcomes->value(i)->name());
    if (value == v1::AUDIT_OUTCOME_UNSPECIFIED) {
      continue;
    }
    const std::string name = AuditOutcomeName(value);
    EXPECT_THAT(name, Not(StartsWith("unknown")));
    EXPECT_THAT(ParseAuditOutcome(name), IsOkAndHolds(value));
  }
}

TEST(AuditNamesTest, UsesKebabCaseNames) {
  EXPECT_EQ(AuditActionName(v1::AUDIT_ACTION_KEY_RELEASE), "key-release");
  EXPECT_EQ(AuditActionName(v1::AUDIT_ACTION_ROOT_KEY_GENERATE), "root-key-generate");
  EXPECT_EQ(AuditOutcomeName(v1::AUDIT_OUTCOME_REFUSED), "refused");
  EXPECT_EQ(AuditActionName(static_cast<v1::AuditAction>(99)), "unknown(99)");
}

TEST(AuditNamesTest, RejectsUnknownAndUnspecifiedListingTheChoices) {
  EXPECT_THAT(ParseAuditAction("KEY_RELEASE"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--action \"KEY_RELEASE\": want one of key-release, cert-sign")));
  EXPECT_THAT(ParseAuditAction("unspecified"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParseAuditOutcome("denied"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--outcome \"denied\": want one of allowed, refused, error")));
}

// ---- output

TEST(FormatAppPolicyTest, VerifierPolicyBinding) {
  v1::AppPolicy p;
  p.set_app_id(AppBytes());
  p.set_verifier_policy_id("prod");
  p.set_verifier_policy_version(3);
  p.set_description("payments");
  p.set_version(2);
  *p.mutable_update_time() = Ts(1751328000);
  p.set_updated_by("spiffe://pml/operator/alice");
  EXPECT_EQ(FormatAppPolicy(p),
            "app id:      0123456789abcdef0123456789abcdef01234567\n"
            "version:     2\n"
            "policy:      verifier policy \"prod\", version 3\n"
            "description: payments\n"
            "updated by:  spiffe://pml/operator/alice\n"
            "updated:     2025-07-01T00:00:00Z\n");
  EXPECT_EQ(AppPolicyRef(p), "verifier:prod@v3");
  p.set_verifier_policy_version(0);
  EXPECT_EQ(AppPolicyRef(p), "verifier:prod@latest");
  EXPECT_THAT(FormatAppPolicy(p), HasSubstr("policy:      verifier policy \"prod\", its latest"));
}

TEST(FormatAppPolicyTest, InlinePolicyShowsItsDigestAndSize) {
  v1::AppPolicy p;
  p.set_app_id(AppBytes());
  p.set_inline_policy_json("{}");
  // SHA-256("{}")
  const std::string sha = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
  EXPECT_THAT(FormatAppPolicy(p),
              HasSubstr(absl::StrCat("policy:      inline, sha256 ", sha, " (2 bytes)\n")));
  EXPECT_THAT(FormatAppPolicy(p), HasSubstr("description: -\n"));
  EXPECT_EQ(AppPolicyRef(p), absl::StrCat("inline:", sha.substr(0, 12)));
  EXPECT_EQ(AppPolicyRef(v1::AppPolicy()), "-");
}

v1::AuditEvent RefusedRelease() {
  v1::AuditEvent e;
  e.set_sequence(42);
  *e.mutable_time() = Ts(1751328000, 123000000);
  e.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  e.set_outcome(v1::AUDIT_OUTCOME_REFUSED);
  e.set_caller(absl::StrCat("attested:", kAppHex));
  e.set_app_id(AppBytes());
  e.set_compose_hash(std::string(32, '\xab'));
  e.mutable_measurements()->set_mrtd(std::string(48, '\x01'));
  e.set_tcb_status("OutOfDate");
  e.set_verifier_status("contraindicated");
  e.add_failed_checks("tcb_status");
  e.add_failed_checks("mrtd");
  e.set_reason("policy \"prod\" refused: tcb \"OutOfDate\"\n");
  e.set_policy_id("prod");
  e.set_policy_version(3);
  e.set_epoch(1);
  e.set_simulated(true);
  return e;
}

TEST(FormatAuditEventTest, OneLineWithEveryListedField) {
  EXPECT_EQ(FormatAuditEvent(RefusedRelease()),
            absl::StrCat("42 2025-07-01T00:00:00.123Z key-release refused caller=attested:",
                         kAppHex, " app=", kAppHex) +
                " epoch=1 verifier=contraindicated policy=prod@v3 failed=[tcb_status,mrtd] "
                "reason=\"policy \\\"prod\\\" refused: tcb \\\"OutOfDate\\\"\\n\" SIMULATED");
}

TEST(FormatAuditEventTest, EmptyFieldsPrintAsDash) {
  v1::AuditEvent e;
  e.set_sequence(1);
  *e.mutable_time() = Ts(1751328000);
  e.set_action(v1::AUDIT_ACTION_ROOT_KEY_GENERATE);
  e.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  EXPECT_EQ(FormatAuditEvent(e),
            "1 2025-07-01T00:00:00Z root-key-generate allowed caller=- app=- epoch=- verifier=- "
            "policy=- failed=[] reason=\"\"");
}

TEST(FormatAuditEventTest, NodeChainAndUnauthenticatedRowsAreMarked) {
  v1::AuditEvent e;
  e.set_sequence(7);
  *e.mutable_time() = Ts(1751328000);
  e.set_action(v1::AUDIT_ACTION_KEY_RELEASE);
  e.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  e.set_node("kms-a");
  e.set_node_sequence(3);
  EXPECT_EQ(FormatAuditEvent(e),
            "7 2025-07-01T00:00:00Z key-release allowed caller=- app=- epoch=- verifier=- "
            "policy=- failed=[] reason=\"\" node=kms-a#3");
  e.set_unauthenticated(true);
  e.set_unauthenticated_reason("the MAC does not \"verify\"");
  EXPECT_EQ(FormatAuditEvent(e),
            "7 UNAUTHENTICATED=\"the MAC does not \\\"verify\\\"\" 2025-07-01T00:00:00Z "
            "key-release allowed caller=- app=- epoch=- verifier=- policy=- failed=[] "
            "reason=\"\" node=kms-a#3");
  const Json j = Json::parse(AuditEventJsonLine(e));
  EXPECT_EQ(j["node"], "kms-a");
  EXPECT_EQ(j["node_sequence"], 3);
  EXPECT_EQ(j["unauthenticated"], true);
  EXPECT_EQ(j["unauthenticated_reason"], "the MAC does not \"verify\"");
  // A forged field cannot break the line.
  e.set_caller("x\n42 2025-07-01T00:00:00Z key-release refused caller=op");
  e.set_node("kms-a\nfake");
  const std::string line = FormatAuditEvent(e);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_TRUE(absl::StartsWith(line, "7 UNAUTHENTICATED=")) << line;
}

TEST(AuditEventJsonLineTest, OneObjectPerLineWithHexBytes) {
  const std::string line = AuditEventJsonLine(RefusedRelease());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const Json j = Json::parse(line);
  EXPECT_EQ(j["sequence"], 42);
  EXPECT_EQ(j["time"], "2025-07-01T00:00:00.123Z");
  EXPECT_EQ(j["action"], "key-release");
  EXPECT_EQ(j["outcome"], "refused");
  EXPECT_EQ(j["app_id"], std::string(kAppHex));
  EXPECT_EQ(j["compose_hash"], core::HexEncode(std::string(32, '\xab')));
  EXPECT_EQ(j["instance_id"], "");
  EXPECT_EQ(j["measurements"]["mrtd"], core::HexEncode(std::string(48, '\x01')));
  EXPECT_EQ(j["measurements"]["rtmr3"], "");
  EXPECT_EQ(j["failed_checks"], Json::array({"tcb_status", "mrtd"}));
  EXPECT_EQ(j["reason"], "policy \"prod\" refused: tcb \"OutOfDate\"\n");
  EXPECT_EQ(j["tcb_status"], "OutOfDate");
  EXPECT_EQ(j["policy_id"], "prod");
  EXPECT_EQ(j["policy_version"], 3);
  EXPECT_EQ(j["epoch"], 1);
  EXPECT_EQ(j["simulated"], true);
  EXPECT_TRUE(Json::parse(AuditEventJsonLine(v1::AuditEvent()))["measurements"].is_null());
}

// A self-signed P-256 CA as the KMS's epoch-1 identity root, and its key_provider_id.
struct IdentityRoot {
  std::string der;
  std::string key_provider_id;
};

IdentityRoot MakeIdentityRoot() {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  EXPECT_THAT(key, IsOk());
  crypto::CertSpec spec;
  spec.common_name = "test kms root";
  spec.is_ca = true;
  auto cert = crypto::IssueCertificate(spec, **key, **key, nullptr);
  EXPECT_THAT(cert, IsOk());
  auto der = crypto::CertificateToDer(**cert);
  auto spki = crypto::PublicKeyToDer(**key);
  EXPECT_THAT(der, IsOk());
  EXPECT_THAT(spki, IsOk());
  return {core::ToString(*der), core::HexEncode(*spki)};
}

v1::GetKmsInfoResponse Info(const IdentityRoot& root) {
  v1::GetKmsInfoResponse info;
  info.set_current_epoch(2);
  info.set_key_provider_id(root.key_provider_id);
  info.set_identity_ca_cert(root.der);
  info.set_store_kind("sqlite");
  info.set_verifier_address("verifier:7443");
  info.set_version("1.2.3");
  auto* e1 = info.add_epochs();
  e1->set_epoch(1);
  e1->set_root_ca_cert(root.der);
  e1->set_k256_public_key(std::string(33, '\x02'));
  *e1->mutable_create_time() = Ts(1751328000);
  auto* e2 = info.add_epochs();
  e2->set_epoch(2);
  e2->set_current(true);
  e2->set_root_ca_cert("other");
  e2->set_k256_public_key(std::string(33, '\x03'));
  *e2->mutable_create_time() = Ts(1751414400);
  auto* r = info.add_replicas();
  r->set_node_name("kms-0");
  r->set_url("kms-0:8443");
  *r->mutable_last_seen_time() = Ts(1751414400);
  r->set_self(true);
  return info;
}

TEST(FormatKmsInfoTest, ShowsStateEpochsAndReplicas) {
  const std::string text = FormatKmsInfo(Info(MakeIdentityRoot()));
  EXPECT_THAT(text, HasSubstr("current epoch:   2\n"));
  EXPECT_THAT(text, HasSubstr("attested:        NO (development: not in a CVM)\n"));
  EXPECT_THAT(text, HasSubstr("store:           sqlite\n"));
  EXPECT_THAT(text, HasSubstr("verifier:        verifier:7443\n"));
  EXPECT_THAT(text, HasSubstr("replica policy:  (none: replicas cannot join)\n"));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("  1      2025-07-01T00:00:00Z  ",
                                           core::HexEncode(std::string(33, '\x02')))));
  EXPECT_THAT(text, HasSubstr(" identity-root\n"));
  EXPECT_THAT(text, HasSubstr("  current\n"));
  EXPECT_THAT(text, HasSubstr("  kms-0  kms-0:8443  -       2025-07-02T00:00:00Z  (this node)\n"));
}

TEST(KmsInfoJsonTest, BytesAsHex) {
  const IdentityRoot root = MakeIdentityRoot();
  const Json j = Json::parse(KmsInfoJson(Info(root)));
  EXPECT_EQ(j["current_epoch"], 2);
  EXPECT_EQ(j["key_provider_id"], root.key_provider_id);
  EXPECT_EQ(j["epochs"][0]["root_ca_cert"], core::HexEncode(root.der));
  EXPECT_EQ(j["epochs"][1]["k256_public_key"], core::HexEncode(std::string(33, '\x03')));
  EXPECT_EQ(j["epochs"][1]["current"], true);
  EXPECT_TRUE(j["replicas"][0]["join_time"].is_null());
  EXPECT_EQ(j["replicas"][0]["last_seen_time"], "2025-07-02T00:00:00Z");
}

TEST(IdentityRootCaPemTest, WritesEpochOnesCertificateWhenItMatchesKeyProviderId) {
  const IdentityRoot root = MakeIdentityRoot();
  auto pem = IdentityRootCaPem(Info(root));
  ASSERT_THAT(pem, IsOk());
  EXPECT_THAT(*pem, StartsWith("-----BEGIN CERTIFICATE-----\n"));
}

TEST(IdentityRootCaPemTest, RefusesAnInconsistentOrMissingRoot) {
  const IdentityRoot root = MakeIdentityRoot();
  v1::GetKmsInfoResponse info = Info(root);
  info.set_key_provider_id(MakeIdentityRoot().key_provider_id);
  EXPECT_THAT(IdentityRootCaPem(info),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is not the SPKI of the identity CA certificate")));
  info = Info(root);
  info.set_identity_ca_cert("junk");
  EXPECT_THAT(IdentityRootCaPem(info),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("identity_ca_cert")));
  info.clear_identity_ca_cert();
  EXPECT_THAT(IdentityRootCaPem(info),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no identity CA")));
}

// ---- env-encryption public key

TEST(EnvEncryptPubKeyMessageTest, DstackLayout) {
  const std::vector<uint8_t> app(20, 0xaa);
  const std::vector<uint8_t> pub(32, 0xbb);
  const auto m = EnvEncryptPubKeyMessage(app, 0x0102030405060708ull, pub);
  ASSERT_EQ(m.size(), 26u + 20 + 8 + 32);
  EXPECT_EQ(std::string(m.begin(), m.begin() + 26), "dstack-env-encrypt-pubkey:");
  EXPECT_EQ(m[26], 0xaa);
  EXPECT_EQ(core::HexEncode(absl::MakeConstSpan(m).subspan(46, 8)), "0102030405060708");
  EXPECT_EQ(m[54], 0xbb);
  EXPECT_EQ(EnvEncryptPubKeyMessage(app, std::nullopt, pub).size(), 26u + 20 + 32);
}

class VerifyEnvKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PML_ASSERT_OK_AND_ASSIGN(root_, crypto::GenerateEcKey(crypto::Curve::kSecp256k1));
    PML_ASSERT_OK_AND_ASSIGN(other_, crypto::GenerateEcKey(crypto::Curve::kSecp256k1));
    PML_ASSERT_OK_AND_ASSIGN(auto root_pub, crypto::Secp256k1CompressedPublicKey(*root_));
    auto* e1 = info_.add_epochs();
    e1->set_epoch(1);
    e1->set_k256_public_key(std::string(33, '\x02'));
    auto* e2 = info_.add_epochs();
    e2->set_epoch(2);
    e2->set_k256_public_key(core::ToString(root_pub));
    resp_.set_public_key(std::string(32, '\x5a'));
    resp_.set_timestamp(1751328000);
    resp_.set_epoch(2);
    resp_.set_signature(Sign(*root_, resp_.timestamp()));
    resp_.set_signature_v0(Sign(*root_, std::nullopt));
  }

  std::string Sign(const EVP_PKEY& key, std::optional<uint64_t> ts) {
    const auto digest = crypto::Keccak256(
        EnvEncryptPubKeyMessage(core::AsBytes(AppBytes()), ts, core::AsBytes(resp_.public_key())));
    auto sig = crypto::SignSecp256k1Recoverable(key, digest);
    EXPECT_THAT(sig, IsOk());
    return core::ToString(*sig);
  }

  crypto::EvpPkeyPtr root_, other_;
  v1::GetPublicInfoResponse info_;
  v1::GetAppEnvEncryptPubKeyResponse resp_;
};

TEST_F(VerifyEnvKeyTest, AcceptsSignaturesByThatEpochsRootKey) {
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_), IsOk());
  resp_.clear_signature_v0();  // optional
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_), IsOk());
}

TEST_F(VerifyEnvKeyTest, RefusesAnotherKeysSignature) {
  resp_.set_signature(Sign(*other_, resp_.timestamp()));
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("signature: signed by secp256k1 key")));
}

TEST_F(VerifyEnvKeyTest, RefusesATamperedKeyTimestampOrAppId) {
  v1::GetAppEnvEncryptPubKeyResponse r = resp_;
  r.set_public_key(std::string(32, '\x5b'));
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), r, info_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not the KMS root k256 key "
                                                                     "of epoch 2")));
  r = resp_;
  r.set_timestamp(r.timestamp() + 1);
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), r, info_),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  std::string app = AppBytes();
  app[0] ^= 1;
  EXPECT_THAT(VerifyEnvEncryptPubKey(app, resp_, info_),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
}

TEST_F(VerifyEnvKeyTest, ChecksTheLegacySignatureWhenPresent) {
  resp_.set_signature_v0(Sign(*other_, std::nullopt));
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("signature_v0")));
}

TEST_F(VerifyEnvKeyTest, RefusesTheKeyOfAnotherEpoch) {
  resp_.set_epoch(1);
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("epoch 1")));
  resp_.set_epoch(3);
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), resp_, info_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("epoch 3")));
}

TEST_F(VerifyEnvKeyTest, RefusesMalformedFieldsNamingThem) {
  v1::GetAppEnvEncryptPubKeyResponse r = resp_;
  r.set_signature(r.signature().substr(0, 64));
  EXPECT_THAT(
      VerifyEnvEncryptPubKey(AppBytes(), r, info_),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature: want 65 bytes, got 64")));
  r = resp_;
  r.set_public_key("short");
  EXPECT_THAT(VerifyEnvEncryptPubKey(AppBytes(), r, info_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("public_key: want 32")));
  EXPECT_THAT(VerifyEnvEncryptPubKey("short", resp_, info_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("app id")));
}

}  // namespace
}  // namespace pml::pmlctl
