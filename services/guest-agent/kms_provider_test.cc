// The KMS key provider's trust bootstrap against a fake KMS on loopback (real TLS): the identity CA
// fetched over an unverified connection is accepted only when its SPKI is the app's pin, and the
// key-release connection is then verified against it. The fake refuses every GetAppKeys with its
// own reason, so reaching it proves the pinned TLS connection was made; kms_test.py covers a real
// release.

#include "services/guest-agent/kms_provider.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/ratls/cert.h"
#include "lib/tee/simulator.h"
#include "pml/kms/v1/kms.grpc.pb.h"
#include "services/guest-agent/boot.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string SpkiHex(const EVP_PKEY& key) {
  auto der = crypto::PublicKeyToDer(key);
  EXPECT_THAT(der, IsOk());
  return der.ok() ? core::HexEncode(*der) : std::string();
}

std::string Der(const X509& cert) {
  auto der = crypto::CertificateToDer(cert);
  EXPECT_THAT(der, IsOk());
  return der.ok() ? core::ToString(*der) : std::string();
}

std::string Pem(const X509& cert) {
  auto pem = crypto::CertificateToPem(cert);
  EXPECT_THAT(pem, IsOk());
  return pem.ok() ? *pem : std::string();
}

// A CA: its key and self-signed certificate.
struct Ca {
  crypto::EvpPkeyPtr key;
  crypto::X509Ptr cert;
};

Ca MakeCa(const std::string& name) {
  Ca ca;
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  EXPECT_THAT(key, IsOk());
  ca.key = *std::move(key);
  crypto::CertSpec spec;
  spec.common_name = name;
  spec.is_ca = true;
  auto cert = crypto::IssueCertificate(spec, *ca.key, *ca.key, nullptr);
  EXPECT_THAT(cert, IsOk());
  ca.cert = *std::move(cert);
  return ca;
}

// KeyRelease as far as the guest's bootstrap needs: GetPublicInfo answers `identity_ca_der`;
// GetAppKeys counts the call and refuses with its own reason.
class FakeKeyRelease final : public kms::v1::KeyRelease::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetPublicInfo(grpc::CallbackServerContext* ctx,
                                          const kms::v1::GetPublicInfoRequest*,
                                          kms::v1::GetPublicInfoResponse* resp) override {
    resp->set_identity_ca_cert(identity_ca_der);
    resp->set_key_provider_id("ignored by the guest: it checks the certificate itself");
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* GetAppKeys(grpc::CallbackServerContext* ctx,
                                       const kms::v1::GetAppKeysRequest*,
                                       kms::v1::GetAppKeysResponse*) override {
    ++get_app_keys_calls;
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "fake kms: refused"));
    return r;
  }

  std::string identity_ca_der;
  std::atomic<int> get_app_keys_calls{0};
};

class KmsProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-kmsprov-", getpid(), "-", reinterpret_cast<uintptr_t>(this) % 100000);
    std::filesystem::create_directories(dir_ / "state");
    std::filesystem::create_directories(dir_ / "config");
    identity_ = MakeCa("pml kms identity");
    other_ = MakeCa("another kms");
    pin_ = SpkiHex(*identity_.key);
    tee::SimulatorOptions so;
    so.state_dir = (dir_ / "state").string();
    auto sim = tee::TdxSimulator::Create(so);
    ASSERT_THAT(sim, IsOk());
    sim_ = *std::move(sim);
    auto log = RuntimeEventLog::Open((dir_ / "state/runtime.log").string(), *sim_);
    ASSERT_THAT(log, IsOk());
    log_ = *std::move(log);
    id_.app_id.assign(20, 0xA1);
    id_.compose_hash.assign(32, 0xC0);
    id_.tee_kind = "simulated";
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
    log_.reset();
    sim_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts the fake KMS with a TLS certificate for 127.0.0.1 issued by `tls_issuer`, carrying
  // the RA-TLS usage `usage` (as pml-kms's guest certificate carries "kms:rpc").
  void StartKms(const Ca& tls_issuer, absl::string_view usage = ratls::kUsageKmsRpc) {
    auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
    ASSERT_THAT(key, IsOk());
    crypto::CertSpec spec;
    spec.common_name = "kms node";
    spec.ip_sans = {"127.0.0.1"};
    spec.server_auth = true;
    if (!usage.empty()) {
      ratls::RaTlsClaims claims;
      claims.usage = std::string(usage);
      spec.extensions = ratls::RaTlsExtensions(claims);
    }
    auto cert = crypto::IssueCertificate(spec, **key, *tls_issuer.key, tls_issuer.cert.get());
    ASSERT_THAT(cert, IsOk());
    auto key_pem = crypto::PrivateKeyToPem(**key);
    ASSERT_THAT(key_pem, IsOk());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({std::string(key_pem->span().begin(), key_pem->span().end()),
                                      Pem(**cert) + Pem(*tls_issuer.cert)});
    fake_.identity_ca_der = Der(*identity_.cert);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  absl::StatusOr<KmsKeys> Fetch(const std::string& pin, const std::string& root_ca_path = "") {
    KmsProviderOptions o;
    o.address = address_;
    o.root_ca_pem_path = root_ca_path;
    o.pinned_key_provider_id = pin;
    o.timeout = absl::Seconds(20);
    return FetchKeysFromKms(o, *log_, nullptr, id_);
  }

  std::filesystem::path dir_;
  Ca identity_, other_;
  std::string pin_;
  FakeKeyRelease fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<tee::TdxSimulator> sim_;
  std::unique_ptr<RuntimeEventLog> log_;
  AgentIdentity id_;
};

TEST_F(KmsProviderTest, FetchKmsIdentityCaAcceptsThePinnedCa) {
  StartKms(identity_);
  for (const std::string& pin : {pin_, absl::AsciiStrToUpper(pin_)}) {
    auto pem = FetchKmsIdentityCa(address_, pin, absl::Seconds(20));
    ASSERT_THAT(pem, IsOk());
    auto certs = crypto::ParsePemCertificates(*pem);
    ASSERT_THAT(certs, IsOk());
    ASSERT_EQ(certs->size(), 1u);
    EXPECT_EQ(Der(*(*certs)[0]), Der(*identity_.cert));
  }
}

TEST_F(KmsProviderTest, FetchKmsIdentityCaRefusesACaThatIsNotThePin) {
  StartKms(identity_);
  const std::string other_pin = SpkiHex(*other_.key);
  auto pem = FetchKmsIdentityCa(address_, other_pin, absl::Seconds(20));
  // Both values named, each bounded to its last 64 hex digits.
  EXPECT_THAT(pem, StatusIs(absl::StatusCode::kFailedPrecondition,
                            AllOf(HasSubstr("key_provider_id"), HasSubstr(address_),
                                  HasSubstr("..." + pin_.substr(pin_.size() - 64)),
                                  HasSubstr("..." + other_pin.substr(other_pin.size() - 64)),
                                  Not(HasSubstr(pin_)))));
  EXPECT_THAT(FetchKmsIdentityCa(address_, "", absl::Seconds(20)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("key_provider_id")));
}

TEST_F(KmsProviderTest, FetchKmsIdentityCaRefusesMalformedAnswers) {
  StartKms(identity_);
  // The pinned key in a certificate another key signed: not the identity CA's own certificate.
  crypto::CertSpec spec;
  spec.common_name = "pml kms identity";
  spec.is_ca = true;
  auto rewrapped = crypto::IssueCertificate(spec, *identity_.key, *other_.key, nullptr);
  ASSERT_THAT(rewrapped, IsOk());
  struct Case {
    const char* name;
    std::string der;
    const char* message;
  } cases[] = {
      {"missing", "", "no identity_ca_cert"},
      {"not DER", "\x30\x03garbage", "identity_ca_cert"},
      {"not self-signed", Der(**rewrapped), "not self-signed"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fake_.identity_ca_der = c.der;
    EXPECT_THAT(FetchKmsIdentityCa(address_, pin_, absl::Seconds(20)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST_F(KmsProviderTest, FetchKmsIdentityCaNamesAnUnreachableKms) {
  EXPECT_THAT(FetchKmsIdentityCa("127.0.0.1:1", pin_, absl::Seconds(5)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("KMS 127.0.0.1:1")));
}

TEST_F(KmsProviderTest, WithoutACaFileTheFetchedCaAuthenticatesTheKeyRelease) {
  StartKms(identity_);
  // The evidence went over TLS verified against the fetched CA: the fake's own refusal comes back.
  EXPECT_THAT(Fetch(pin_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                    AllOf(HasSubstr(address_), HasSubstr("fake kms: refused"))));
  EXPECT_EQ(fake_.get_app_keys_calls.load(), 1);
}

TEST_F(KmsProviderTest, WithoutACaFileAMismatchSendsNothing) {
  StartKms(identity_);
  const std::string other_pin = SpkiHex(*other_.key);
  EXPECT_THAT(
      Fetch(other_pin),
      StatusIs(
          absl::StatusCode::kFailedPrecondition,
          AllOf(HasSubstr("key_provider_id pins ..." + other_pin.substr(other_pin.size() - 64)),
                HasSubstr("presents identity CA ..." + pin_.substr(pin_.size() - 64)))));
  EXPECT_EQ(fake_.get_app_keys_calls.load(), 0);
}

TEST_F(KmsProviderTest, AFetchedCaDoesNotVouchForAServerItDidNotSign) {
  // The server hands out the pinned CA but its TLS certificate comes from another CA: the key
  // release connection fails its verification, so no evidence reaches it.
  StartKms(other_);
  EXPECT_THAT(Fetch(pin_), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address_)));
  EXPECT_EQ(fake_.get_app_keys_calls.load(), 0);
}

TEST_F(KmsProviderTest, AServerWhoseLeafIsNotAKmsRpcCertificateIsRefused) {
  for (absl::string_view usage : {absl::string_view(""), ratls::kUsageAppCa,
                                  absl::string_view("app:custom")}) {
    SCOPED_TRACE(usage);
    if (server_ != nullptr)
      server_->Shutdown();
    StartKms(identity_, usage);
    EXPECT_THAT(Fetch(pin_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                      AllOf(HasSubstr(address_), HasSubstr("kms:rpc"))));
  }
}

TEST_F(KmsProviderTest, AFileCaIsStillReadAndChecked) {
  StartKms(identity_);
  const std::string path = (dir_ / "config/kms-root-ca.pem").string();
  std::ofstream(path) << Pem(*identity_.cert);
  EXPECT_THAT(Fetch(pin_, path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fake kms: refused")));
  std::ofstream(path) << Pem(*other_.cert);
  EXPECT_THAT(Fetch(pin_, path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("key_provider_id")));
  EXPECT_EQ(fake_.get_app_keys_calls.load(), 1);
}

TEST_F(KmsProviderTest, BootFetchesTheCaWhenTheConfigDirHasNone) {
  StartKms(identity_);
  // What the VMM delivers: app-compose.json and .sys-config.json with an https:// KMS URL.
  std::ofstream(dir_ / "config/app-compose.json")
      << nlohmann::json{{"name", "k"}, {"key_provider", "kms"}, {"key_provider_id", pin_}}.dump();
  std::ofstream(dir_ / "config/.sys-config.json")
      << nlohmann::json{{"kms_urls", {absl::StrCat("https://", address_, "/")}}}.dump();
  BootOptions o;
  o.config_dir = (dir_ / "config").string();
  o.state_dir = (dir_ / "state").string();
  o.tee_kind = "simulated";
  EXPECT_THAT(RunBoot(o, *log_, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fake kms: refused")));
  EXPECT_EQ(fake_.get_app_keys_calls.load(), 1);
}

TEST(KmsTargetFromUrlTest, AcceptsHostPortAndHttpsUrls) {
  struct Case {
    const char* url;
    const char* want;  // nullptr: kInvalidArgument
  } cases[] = {
      {"127.0.0.1:8443", "127.0.0.1:8443"},
      {"kms.example:8443", "kms.example:8443"},
      {"https://127.0.0.1:8443", "127.0.0.1:8443"},
      {"https://127.0.0.1:8443/", "127.0.0.1:8443"},
      {"https://kms.example", "kms.example:443"},
      {"https://[::1]:8443", "[::1]:8443"},
      {"https://[::1]", "[::1]:443"},
      {"http://127.0.0.1:8443", nullptr},
      {"ftp://kms", nullptr},
      {"https://kms.example:8443/prefix", nullptr},
      {"https://", nullptr},
      {"https://:8443", nullptr},
      {"", nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    auto target = KmsTargetFromUrl(c.url);
    if (c.want != nullptr) {
      EXPECT_THAT(target, IsOk());
      EXPECT_EQ(target.value_or(""), c.want);
    } else {
      EXPECT_THAT(target, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KMS URL")));
    }
  }
}

}  // namespace
}  // namespace pml::guest
