// Round trip: reports and chains from the simulated GPUs (lib/tee) through the real GPU verifier
// (lib/gpu), unchanged. Only this test links both; lib/gpu itself never links lib/tee.

#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/report.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/simulated.h"
#include "lib/gpu/verify.h"
#include "lib/tee/simulated_gpu.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Time Now() {
  return absl::FromCivil(absl::CivilSecond(2026, 5, 1, 12, 0, 0), absl::UTCTimeZone());
}

gpu::Nonce TestNonce(uint8_t base = 0x40) {
  gpu::Nonce n{};
  for (size_t i = 0; i < n.size(); ++i) {
    n[i] = static_cast<uint8_t>(base + i);
  }
  return n;
}

gpu::VerifyOptions Options() {
  gpu::VerifyOptions o;
  o.now = Now();
  o.policy.require_ocsp = false;
  return o;
}

// What pml-verifier trusts under --trust-simulated-tee: NVIDIA's built-in roots plus the
// simulated root, by key.
gpu::TrustAnchors SimulatedAnchors(const SimulatedGpuPki& /*pki*/) {
  return gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot();
}

// A root with the simulated root's name but another key.
std::string ImpostorRootPem() {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP384);
  PML_CHECK(key.ok());
  crypto::CertSpec spec;
  spec.common_name = std::string{kGpuRootCommonName};
  spec.organization = std::string{kGpuOrganization};
  spec.is_ca = true;
  spec.digest = crypto::Digest::kSha384;
  spec.not_before = absl::FromCivil(absl::CivilSecond(2024, 1, 1, 0, 0, 0), absl::UTCTimeZone());
  spec.not_after = absl::FromCivil(absl::CivilSecond(2049, 1, 1, 0, 0, 0), absl::UTCTimeZone());
  auto cert = crypto::IssueCertificate(spec, **key, **key, nullptr);
  PML_CHECK(cert.ok());
  auto pem = crypto::CertificateToPem(**cert);
  PML_CHECK(pem.ok());
  return *pem;
}

class SimulatedGpuRoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pki = SimulatedGpuPki::Create();
    ASSERT_THAT(pki.status(), IsOk());
    pki_ = std::make_shared<const SimulatedGpuPki>(std::move(pki).value());
    auto gpu = SimulatedGpu::Create(SimulatedGpuOptions{}, pki_);
    ASSERT_THAT(gpu.status(), IsOk());
    gpu_ = std::move(gpu).value();
    auto report = gpu_->GetReport(TestNonce());
    ASSERT_THAT(report.status(), IsOk());
    report_ = std::move(report).value();
  }

  static absl::StatusOr<gpu::VerifiedGpu> Verify(gpu::Verifier& verifier,
                                                 const std::vector<uint8_t>& bytes,
                                                 const std::string& chain,
                                                 const gpu::Nonce& nonce) {
    PML_ASSIGN_OR_RETURN(gpu::Report report, gpu::ParseReport(bytes));
    return verifier.Verify(report, chain, nonce, Options());
  }

  std::shared_ptr<const SimulatedGpuPki> pki_;
  std::unique_ptr<SimulatedGpu> gpu_;
  std::vector<uint8_t> report_;
};

TEST_F(SimulatedGpuRoundTripTest, VerifiesWithTheSimulatedRootAsAnchor) {
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, report_, gpu_->CertChainPem(), TestNonce());
  ASSERT_THAT(v.status(), IsOk());
  EXPECT_EQ(v->arch(), gpu::Arch::kHopper);
  EXPECT_EQ(v->hwmodel(), kGpuDeviceIdCommonName);
  EXPECT_EQ(v->driver_version(), "580.159.04-sim");
  EXPECT_EQ(v->vbios_version(), "96.00.9F.00.04");
  EXPECT_TRUE(v->fwid_present());
  EXPECT_EQ(v->device_chain().cert_status, "valid");
  EXPECT_EQ(v->nonce(), TestNonce());
  const auto claims = v->Claims();
  EXPECT_EQ(claims["x-nvidia-gpu-attestation-report-signature-verified"], true);
  EXPECT_EQ(claims["x-nvidia-gpu-attestation-report-nonce-match"], true);
  // No NVIDIA RIM exists for a simulated GPU: lib/gpu's simulated golden values stand in, and
  // every claim set says simulated.
  EXPECT_TRUE(v->simulated());
  EXPECT_EQ(claims["x-pml-simulated"], true);
  EXPECT_TRUE(v->measres()) << absl::StrJoin(v->Failures(), "; ");
  EXPECT_TRUE(v->Passed()) << absl::StrJoin(v->Failures(), "; ");
  EXPECT_EQ(v->driver_rim().id, gpu::kSimulatedGoldenRimId);
  EXPECT_EQ(v->device_chain().ocsp_source, "simulated");

  // The collector's arch string and the DeviceEvidence path agree.
  auto arch = gpu::ParseArch(gpu_->ArchName());
  ASSERT_THAT(arch.status(), IsOk());
  gpu::DeviceEvidence evidence{*arch, TestNonce(), report_, gpu_->CertChainPem()};
  EXPECT_THAT(verifier.Verify(evidence, TestNonce(), Options()).status(), IsOk());
}

TEST_F(SimulatedGpuRoundTripTest, RimIdsNameNoNvidiaRim) {
  auto report = gpu::ParseReport(report_);
  ASSERT_THAT(report.status(), IsOk());
  auto driver = gpu::DriverRimId(*report, gpu::Arch::kHopper);
  auto vbios = gpu::VbiosRimId(*report, gpu::Arch::kHopper);
  ASSERT_THAT(driver.status(), IsOk());
  ASSERT_THAT(vbios.status(), IsOk());
  EXPECT_EQ(*driver, "NV_GPU_DRIVER_GH100_580.159.04-sim");
  EXPECT_EQ(*vbios, "NV_GPU_VBIOS_PSIM_0000_886_96009F0004");
  EXPECT_TRUE(gpu::IsValidRimId(*driver));
}

TEST_F(SimulatedGpuRoundTripTest, SeveralGpusVerifyAsOneSet) {
  std::vector<gpu::DeviceEvidence> set;
  for (uint32_t i = 0; i < 4; ++i) {
    SimulatedGpuOptions o;
    o.index = i;
    auto g = SimulatedGpu::Create(o, pki_);
    ASSERT_THAT(g.status(), IsOk());
    auto r = (*g)->GetReport(TestNonce());
    ASSERT_THAT(r.status(), IsOk());
    set.push_back({gpu::Arch::kHopper, TestNonce(), *r, (*g)->CertChainPem()});
  }
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = verifier.VerifySet(set, {}, TestNonce(), Options());
  ASSERT_THAT(v.status(), IsOk());
  ASSERT_EQ(v->gpus().size(), 4u);
  EXPECT_NE(v->gpus()[0].ueid(), v->gpus()[1].ueid());
}

TEST_F(SimulatedGpuRoundTripTest, UntrustedWithoutTheSimulatedRoot) {
  // An impostor root with the same name.
  auto impostor = gpu::TrustAnchors::UnpinnedFromPem(ImpostorRootPem(), pki_->root_cert_pem());
  ASSERT_THAT(impostor.status(), IsOk());
  gpu::Verifier v1(*impostor);
  auto r1 = Verify(v1, report_, gpu_->CertChainPem(), TestNonce());
  EXPECT_THAT(r1.status(), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(gpu::ErrorClass(r1.status()), gpu::error_class::kCertChainUntrusted);

  // The built-in NVIDIA anchors without the simulated flag refuse, and say why.
  gpu::Verifier v0(gpu::TrustAnchors::NvidiaDefault());
  auto r0 = Verify(v0, report_, gpu_->CertChainPem(), TestNonce());
  EXPECT_THAT(r0.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--trust-simulated-tee")));
  EXPECT_FALSE(gpu::TrustAnchors::NvidiaDefault().trusts_simulated());

  // NVIDIA's pinned roots (the default anchors), when the shared vectors are at hand.
  const char* shared = std::getenv("PML_SHARED_DIR");  // NOLINT(concurrency-mt-unsafe)
  if (shared == nullptr || *shared == '\0') {
    GTEST_SKIP() << "PML_SHARED_DIR not set";
  }
  auto nvidia = gpu::TrustAnchors::NvidiaFromFiles(
      absl::StrCat(shared, "/vectors/gpu/roots/nvidia-device-identity-ca.pem"),
      absl::StrCat(shared, "/vectors/gpu/roots/nvidia-corim-signing-root-ca.pem"));
  if (!nvidia.ok()) {
    GTEST_SKIP() << nvidia.status();
  }
  gpu::Verifier v2(*nvidia);
  auto r2 = Verify(v2, report_, gpu_->CertChainPem(), TestNonce());
  EXPECT_THAT(r2.status(), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(gpu::ErrorClass(r2.status()), gpu::error_class::kCertChainUntrusted);

  // And the simulated root cannot be loaded as NVIDIA's.
  EXPECT_THAT(
      gpu::TrustAnchors::NvidiaFromPem(pki_->root_cert_pem(), pki_->root_cert_pem()).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CERT_CHAIN_UNTRUSTED")));
}

TEST_F(SimulatedGpuRoundTripTest, RejectsEveryFlippedSignedByte) {
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  const size_t signed_size = report_.size() - gpu::kSignatureSize;
  size_t signature_failures = 0;
  for (size_t i = 0; i < signed_size; ++i) {
    std::vector<uint8_t> tampered = report_;
    tampered[i] ^= 0x01;
    auto v = Verify(verifier, tampered, gpu_->CertChainPem(), TestNonce());
    ASSERT_FALSE(v.ok()) << "byte " << i;
    // A flip either breaks the structure, the nonce (offsets 4..35), or the signature.
    const std::string cls = gpu::ErrorClass(v.status());
    ASSERT_THAT(cls, ::testing::AnyOf(gpu::error_class::kReportMalformed,
                                      gpu::error_class::kOpaqueDataUnsupported,
                                      gpu::error_class::kInvalidReportSignature))
        << "byte " << i << ": " << v.status();
    if (cls == gpu::error_class::kInvalidReportSignature) {
      ++signature_failures;
    }
  }
  // Measurement values, responder nonce and most opaque bytes parse and fail only the signature.
  EXPECT_GT(signature_failures, 64u * 48u);
  // The signature itself.
  std::vector<uint8_t> tampered = report_;
  tampered[report_.size() - 1] ^= 0x01;
  auto v = Verify(verifier, tampered, gpu_->CertChainPem(), TestNonce());
  EXPECT_EQ(gpu::ErrorClass(v.status()), gpu::error_class::kInvalidReportSignature);
}

TEST_F(SimulatedGpuRoundTripTest, RejectsAnotherNonce) {
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, report_, gpu_->CertChainPem(), TestNonce(0x41));
  EXPECT_THAT(v.status(), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(gpu::ErrorClass(v.status()), gpu::error_class::kNonceMismatch);
}

TEST_F(SimulatedGpuRoundTripTest, RejectsAnotherGpusChain) {
  SimulatedGpuOptions o;
  o.index = 1;
  auto other = SimulatedGpu::Create(o, pki_);
  ASSERT_THAT(other.status(), IsOk());
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, report_, (*other)->CertChainPem(), TestNonce());
  EXPECT_EQ(gpu::ErrorClass(v.status()), gpu::error_class::kInvalidReportSignature);
}

TEST_F(SimulatedGpuRoundTripTest, RejectsAFwidThatIsNotTheLeafs) {
  // A leaf issued for other firmware, the report re-signed by that leaf's key: only the FWID
  // binding can catch it.
  SimulatedGpuOptions o;
  o.fwid = crypto::Sha384("other firmware");
  auto other = SimulatedGpu::Create(o, pki_);
  ASSERT_THAT(other.status(), IsOk());
  std::vector<uint8_t> signed_bytes(report_.begin(), report_.end() - gpu::kSignatureSize);
  auto sig =
      crypto::SignEcdsaRaw((*other)->attestation_key(), crypto::Digest::kSha384, signed_bytes, 48);
  ASSERT_THAT(sig.status(), IsOk());
  signed_bytes.insert(signed_bytes.end(), sig->begin(), sig->end());
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, signed_bytes, (*other)->CertChainPem(), TestNonce());
  EXPECT_EQ(gpu::ErrorClass(v.status()), gpu::error_class::kFwidMismatch) << v.status();
}

// The golden values stand in for RIMs: fed to the verifier's matching rule, they match a default
// simulated GPU and catch an overridden measurement.
gpu::Rim GoldenAsRim(const SimulatedGpuGolden& golden) {
  gpu::Rim rim;
  rim.product = "GH100";
  rim.colloquial_version = golden.driver_version;
  for (const SimulatedGoldenMeasurement& g : golden.measurements) {
    gpu::RimMeasurement m;
    m.index = g.index;
    m.active = true;
    m.size = g.value.size();
    m.alternatives.emplace_back(g.value.begin(), g.value.end());
    rim.measurements.push_back(std::move(m));
  }
  return rim;
}

TEST_F(SimulatedGpuRoundTripTest, GoldenValuesMatchUnderTheVerifiersRule) {
  const gpu::Rim golden = GoldenAsRim(SimulatedGpuGoldenMeasurements(
      gpu_->options().driver_version, gpu_->options().vbios_version));
  auto report = gpu::ParseReport(report_);
  ASSERT_THAT(report.status(), IsOk());
  auto match = gpu::MatchMeasurements(*report, &golden, nullptr);
  ASSERT_THAT(match.status(), IsOk());
  EXPECT_TRUE(match->success());
  EXPECT_EQ(match->compared, kGpuActiveMeasurements - 1);  // index 35: NVDEC0 disabled
  EXPECT_THAT(match->skipped, ElementsAre(35));

  SimulatedGpuOptions o;
  GpuMeasurements m = DefaultSimulatedGpuMeasurements(o.driver_version, o.vbios_version);
  m[9] = crypto::Sha384("index 9 again");
  o.measurements = m;
  auto tampered = SimulatedGpu::Create(o, pki_);
  ASSERT_THAT(tampered.status(), IsOk());
  auto bytes = (*tampered)->GetReport(TestNonce());
  ASSERT_THAT(bytes.status(), IsOk());
  auto report2 = gpu::ParseReport(*bytes);
  ASSERT_THAT(report2.status(), IsOk());
  auto match2 = gpu::MatchMeasurements(*report2, &golden, nullptr);
  ASSERT_THAT(match2.status(), IsOk());
  EXPECT_FALSE(match2->success());
  ASSERT_EQ(match2->mismatches.size(), 1u);
  EXPECT_EQ(match2->mismatches[0].index, 9u);
}

// lib/gpu's stand-in RIM (simulated.h) and lib/tee's golden values are the same numbers.
TEST_F(SimulatedGpuRoundTripTest, VerifierGoldenRimEqualsTheSimulatorsGoldenValues) {
  const SimulatedGpuOptions o;
  const SimulatedGpuGolden golden =
      SimulatedGpuGoldenMeasurements(o.driver_version, o.vbios_version);
  const gpu::Rim rim =
      gpu::SimulatedGoldenRim(gpu::RimKind::kDriver, o.driver_version, o.vbios_version);
  ASSERT_EQ(rim.measurements.size(), golden.measurements.size());
  for (size_t i = 0; i < golden.measurements.size(); ++i) {
    EXPECT_EQ(rim.measurements[i].index, golden.measurements[i].index);
    ASSERT_EQ(rim.measurements[i].alternatives.size(), 1u);
    EXPECT_EQ(rim.measurements[i].alternatives[0],
              std::vector<uint8_t>(golden.measurements[i].value.begin(),
                                   golden.measurements[i].value.end()));
  }
  EXPECT_EQ(gpu::kSimulatedGpuRootSpkiSha256, kSimulatedGpuRootSpkiSha256Hex);
}

TEST_F(SimulatedGpuRoundTripTest, MeasurementMismatchFailsTheVerdict) {
  SimulatedGpuOptions o;
  GpuMeasurements m = DefaultSimulatedGpuMeasurements(o.driver_version, o.vbios_version);
  m[4] = crypto::Sha384("another firmware");
  o.measurements = m;
  auto g = SimulatedGpu::Create(o, pki_);
  ASSERT_THAT(g.status(), IsOk());
  auto bytes = (*g)->GetReport(TestNonce());
  ASSERT_THAT(bytes.status(), IsOk());
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, *bytes, (*g)->CertChainPem(), TestNonce());
  ASSERT_THAT(v.status(), IsOk());
  EXPECT_TRUE(v->simulated());
  EXPECT_FALSE(v->measres());
  EXPECT_FALSE(v->Passed());
  ASSERT_EQ(v->measurements().mismatches.size(), 1u);
  EXPECT_EQ(v->measurements().mismatches[0].index, 4u);
  EXPECT_EQ(v->Claims()["x-nvidia-mismatch-measurement-records"][0]["index"], 4);
}

TEST_F(SimulatedGpuRoundTripTest, PpcieReportParsesWithSwitchPdis) {
  SimulatedGpuOptions o;
  o.ppcie = true;
  auto g = SimulatedGpu::Create(o, pki_);
  ASSERT_THAT(g.status(), IsOk());
  auto bytes = (*g)->GetReport(TestNonce());
  ASSERT_THAT(bytes.status(), IsOk());
  gpu::Verifier verifier(SimulatedAnchors(*pki_));
  auto v = Verify(verifier, *bytes, (*g)->CertChainPem(), TestNonce());
  ASSERT_THAT(v.status(), IsOk());
  std::set<std::string> unique(v->switch_pdis().begin(), v->switch_pdis().end());
  EXPECT_EQ(v->switch_pdis().size(), 16u);
  EXPECT_EQ(unique.size(), 4u);
  auto feature = gpu::FeatureFlag(v->report());
  ASSERT_THAT(feature.status(), IsOk());
  EXPECT_EQ(*feature, std::optional<uint16_t>(2));
}

}  // namespace
}  // namespace pml::tee
