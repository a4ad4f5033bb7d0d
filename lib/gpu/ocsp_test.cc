// OCSP: lib/crypto/x509_ext's CheckOcspResponse, CachedOcspSource, and revocation claims end to
// end. NVIDIA's OCSP responses are not among the vectors (roots/PROVENANCE.md), so these tests
// build a synthetic five-certificate device chain shaped like NVIDIA's, re-sign the real Azure
// report with its leaf, and issue OCSP responses with OpenSSL.

#include <string>
#include <vector>

#include <openssl/ocsp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/crypto/x509_ext.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/testing/synthetic_pki.h"
#include "lib/gpu/testing/vectors.h"
#include "lib/gpu/verify.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

using ::pml::gpu::testing::MakeOcsp;
using ::pml::gpu::testing::MakePki;
using ::pml::gpu::testing::Pki;

absl::Time Now() { return absl::FromCivil(absl::CivilDay(2026, 9, 17), absl::UTCTimeZone()); }

class OcspTest : public ::testing::Test {
 protected:
  void SetUp() override {
    real_ = tv::AzureReport();
    auto report = ParseReport(real_.bytes);
    ASSERT_THAT(report, IsOk());
    auto fwid = Fwid(*report);
    ASSERT_THAT(fwid, IsOk());
    ASSERT_TRUE(fwid->has_value());
    pki_ = MakePki(**fwid, Now());
    // Re-sign the real report with the synthetic leaf.
    auto sig =
        crypto::SignEcdsaRaw(*pki_.keys[0], crypto::Digest::kSha384, report->SignedBytes(), 48);
    ASSERT_THAT(sig, IsOk());
    bytes_ = real_.bytes;
    std::copy(sig->begin(), sig->end(), bytes_.end() - 96);
    auto resigned = ParseReport(bytes_);
    ASSERT_THAT(resigned, IsOk());
    report_ = std::make_unique<Report>(*std::move(resigned));
    auto root_pem = crypto::CertificateToPem(*pki_.certs[4]);
    auto rim_root = core::ReadFile(tv::GpuVectorsDir() + "/roots/nvidia-corim-signing-root-ca.pem");
    ASSERT_THAT(rim_root, IsOk());
    auto anchors = TrustAnchors::UnpinnedFromPem(*root_pem, *rim_root);
    ASSERT_THAT(anchors, IsOk());
    anchors_ = std::make_unique<TrustAnchors>(*std::move(anchors));
  }

  // Responses for device-chain certificates [1..3] with `status` for cert `which`, good else.
  void AddResponses(CachedOcspSource& src, int which, int status, int reason) {
    for (int i = 1; i <= 3; ++i) {
      const int st = i == which ? status : V_OCSP_CERTSTATUS_GOOD;
      ASSERT_THAT(src.Add(MakeOcsp(*pki_.certs[i], *pki_.certs[i + 1], *pki_.keys[i + 1], st,
                                   reason, Now() - absl::Hours(1), Now() + absl::Hours(24))),
                  IsOk());
    }
  }

  VerifyOptions Options(OcspSource* ocsp) {
    VerifyOptions o;
    o.now = Now();
    o.ocsp = ocsp;
    return o;
  }

  tv::RealReport real_;
  Pki pki_;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<Report> report_;
  std::unique_ptr<TrustAnchors> anchors_;
};

TEST_F(OcspTest, GoodResponsesGiveAGoodDeviceChain) {
  CachedOcspSource src;
  AddResponses(src, 0, V_OCSP_CERTSTATUS_GOOD, 0);
  auto v = VerifyReport(*report_, pki_.chain_pem, *anchors_, real_.nonce, Options(&src));
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->device_chain().cert_status, "valid");
  EXPECT_EQ(v->device_chain().ocsp_status, "good");
  EXPECT_TRUE(v->device_chain().ocsp_response_valid);
  EXPECT_FALSE(v->device_chain().ocsp_nonce_matches);  // stored responses carry no fresh nonce
  EXPECT_EQ(v->Claims()["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"],
            "good");
}

TEST_F(OcspTest, RevokedIntermediateRevokesTheChain) {
  CachedOcspSource src;
  AddResponses(src, 2, V_OCSP_CERTSTATUS_REVOKED, OCSP_REVOKED_STATUS_CERTIFICATEHOLD);
  auto v = VerifyReport(*report_, pki_.chain_pem, *anchors_, real_.nonce, Options(&src));
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->device_chain().cert_status, "revoked");
  EXPECT_EQ(v->device_chain().ocsp_status, "revoked");
  EXPECT_EQ(v->device_chain().revocation_reason, "certificateHold");
  EXPECT_FALSE(v->Passed());
  EXPECT_THAT(v->Failures(), ::testing::Contains(HasSubstr("device chain cert-status revoked")));
}

TEST_F(OcspTest, MissingResponseIsUnknown) {
  CachedOcspSource src;
  auto v = VerifyReport(*report_, pki_.chain_pem, *anchors_, real_.nonce, Options(&src));
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->device_chain().ocsp_status, "unknown");
  EXPECT_FALSE(v->device_chain().ocsp_response_valid);
  EXPECT_THAT(v->device_chain().detail, HasSubstr("OCSP_NOT_FOUND"));
}

TEST_F(OcspTest, StaleResponseIsNotValid) {
  CachedOcspSource src;
  for (int i = 1; i <= 3; ++i) {
    ASSERT_THAT(src.Add(MakeOcsp(*pki_.certs[i], *pki_.certs[i + 1], *pki_.keys[i + 1],
                                 V_OCSP_CERTSTATUS_GOOD, 0, Now() - absl::Hours(48),
                                 Now() - absl::Hours(24))),
                IsOk());
  }
  auto v = VerifyReport(*report_, pki_.chain_pem, *anchors_, real_.nonce, Options(&src));
  ASSERT_THAT(v, IsOk());
  EXPECT_FALSE(v->device_chain().ocsp_response_valid);
  EXPECT_THAT(v->device_chain().detail, HasSubstr("nextUpdate"));
}

TEST_F(OcspTest, ResponseSignedByAStrangerIsRejected) {
  auto stranger = crypto::GenerateEcKey(crypto::Curve::kP384);
  ASSERT_THAT(stranger, IsOk());
  crypto::CertSpec spec{
      .common_name = "stranger", .is_ca = true, .digest = crypto::Digest::kSha384};
  auto stranger_cert = crypto::IssueCertificate(spec, **stranger, **stranger, nullptr);
  ASSERT_THAT(stranger_cert, IsOk());
  const std::vector<uint8_t> der =
      MakeOcsp(*pki_.certs[1], **stranger_cert, **stranger, V_OCSP_CERTSTATUS_GOOD, 0,
               Now() - absl::Hours(1), Now() + absl::Hours(1));
  EXPECT_THAT(crypto::CheckOcspResponse(der, *pki_.certs[1], *pki_.certs[2], *pki_.certs[4],
                                        pki_.certs, Now()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AnyOf(HasSubstr("does not verify"), HasSubstr("no status"))));
}

TEST_F(OcspTest, WarmVerifierReusesOcspResults) {
  CachedOcspSource src;
  AddResponses(src, 0, V_OCSP_CERTSTATUS_GOOD, 0);
  Verifier verifier(*anchors_);
  for (int i = 0; i < 3; ++i) {
    auto v = verifier.Verify(*report_, pki_.chain_pem, real_.nonce, Options(&src));
    ASSERT_THAT(v, IsOk());
    EXPECT_EQ(v->device_chain().ocsp_status, "good");
  }
  EXPECT_EQ(verifier.stats().ocsp_fetches, 3u);
  EXPECT_EQ(verifier.stats().ocsp_hits, 6u);
}

// A source that is down, counting calls; it asks the verifier to remember failures for 30 s.
class DownOcspSource final : public OcspSource {
 public:
  absl::StatusOr<std::vector<uint8_t>> GetResponse(const X509&, const X509&,
                                                   absl::Span<const uint8_t>) override {
    ++calls;
    return absl::UnavailableError("OCSP_UNAVAILABLE: connection refused");
  }
  absl::Duration FailureTtl() const override { return absl::Seconds(30); }
  int calls = 0;
};

TEST_F(OcspTest, FailuresAreRememberedForTheSourcesTtlOnly) {
  DownOcspSource down;
  Verifier verifier(*anchors_);
  VerifyOptions o = Options(&down);
  for (int i = 0; i < 3; ++i) {
    auto v = verifier.Verify(*report_, pki_.chain_pem, real_.nonce, o);
    ASSERT_THAT(v, IsOk());
    EXPECT_EQ(v->device_chain().ocsp_status, "unknown");
    EXPECT_THAT(v->device_chain().detail, HasSubstr("connection refused"));
  }
  EXPECT_EQ(down.calls, 3);  // one per checked certificate, then remembered
  o.now += absl::Seconds(31);
  ASSERT_THAT(verifier.Verify(*report_, pki_.chain_pem, real_.nonce, o), IsOk());
  EXPECT_EQ(down.calls, 6);  // asked again after the TTL

  // Another source's responses are not hidden by the first one's failures.
  CachedOcspSource good;
  AddResponses(good, 0, V_OCSP_CERTSTATUS_GOOD, 0);
  auto v = verifier.Verify(*report_, pki_.chain_pem, real_.nonce, Options(&good));
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->device_chain().ocsp_status, "good");

  // A source that does not ask for it is never remembered as failed.
  CachedOcspSource empty;
  Verifier fresh(*anchors_);
  for (int i = 0; i < 2; ++i)
    ASSERT_THAT(fresh.Verify(*report_, pki_.chain_pem, real_.nonce, Options(&empty)), IsOk());
  EXPECT_EQ(fresh.stats().ocsp_fetches, 6u);
}

TEST(CachedOcspSourceTest, RejectsGarbage) {
  CachedOcspSource src;
  EXPECT_THAT(src.Add(std::vector<uint8_t>{1, 2, 3}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("OCSP_RESPONSE_INVALID")));
}

}  // namespace
}  // namespace pml::gpu
