// GpuCore (pml-verifier's VerifyGpuEvidence without gRPC) and its proto conversion, driven by the
// shared GPU vectors and lib/tee's simulated GPUs. Expectations come from
// lib/gpu/testdata/vector_expectations.json (transcribed from each vector's PROVENANCE.md).

#include "services/attestation/gpu_core.h"

#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/clock.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/testing/vectors.h"
#include "lib/tee/simulated_gpu.h"
#include "services/attestation/verifier_convert.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

nlohmann::json Case(absl::string_view dir, absl::string_view name) {
  for (const auto& c : tv::CasesFor(dir)) {
    if (c.value("name", "") == name)
      return c;
  }
  ADD_FAILURE() << "no expectation " << dir << "/" << name;
  return {};
}

std::vector<uint8_t> ReadReport(absl::string_view dir, const nlohmann::json& c) {
  if (c.contains("report")) {
    auto b = core::ReadFileBytes(tv::VectorPath(dir, c["report"].get<std::string>()));
    PML_CHECK(b.ok());
    return *b;
  }
  auto text = core::ReadFile(tv::VectorPath(dir, c["report_hex"].get<std::string>()));
  PML_CHECK(text.ok());
  auto b = gpu::DecodeHexReport(*text);
  PML_CHECK(b.ok());
  return *b;
}

gpu::Nonce NonceOf(absl::string_view dir, const nlohmann::json& c) {
  std::string hex = c.value("nonce", "");
  if (c.contains("nonce_file")) {
    auto t = core::ReadFile(tv::VectorPath(dir, c["nonce_file"].get<std::string>()));
    PML_CHECK(t.ok());
    hex = *t;
  }
  auto n = gpu::ParseNonceHex(hex);
  PML_CHECK(n.ok());
  return *n;
}

class GpuCoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<GpuCore> Make(bool trust_simulated, bool require_ocsp = true) {
    GpuCoreOptions o;
    o.anchors = trust_simulated ? gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot()
                                : gpu::TrustAnchors::NvidiaDefault();
    o.offline = true;
    o.policy.require_ocsp = require_ocsp;
    auto core = GpuCore::Create(std::move(o), clock_, &registry_);
    PML_CHECK(core.ok());
    return *std::move(core);
  }

  // One device from a vector case (report + chain), with the case's RIMs in the request.
  GpuVerifyInput FromCase(absl::string_view dir, absl::string_view name) {
    const nlohmann::json c = Case(dir, name);
    GpuVerifyInput in;
    GpuDeviceInput d;
    d.report = ReadReport(dir, c);
    auto chain = core::ReadFile(tv::VectorPath(dir, c["chain"].get<std::string>()));
    PML_CHECK(chain.ok());
    d.certificate_chain = *chain;
    in.devices.push_back(d);
    in.nonce = NonceOf(dir, c);
    in.at = tv::ParseTime(c["now"].get<std::string>());
    if (c.contains("rims")) {
      for (const auto& [id, file] : c["rims"].items()) {
        auto xml = core::ReadFile(tv::VectorPath(dir, file.get<std::string>()));
        PML_CHECK(xml.ok());
        in.rims.push_back({id, *xml});
      }
    }
    if (c.contains("rim_dir")) {
      const std::string rim_dir = tv::VectorPath(dir, c["rim_dir"].get<std::string>());
      for (const char* id :
           {"NV_GPU_DRIVER_GH100_595.71.05", "NV_GPU_VBIOS_1010_0210_886_96009F0004"}) {
        auto xml = core::ReadFile(absl::StrCat(rim_dir, "/", id, ".xml"));
        PML_CHECK(xml.ok());
        in.rims.push_back({id, *xml});
      }
    }
    return in;
  }

  core::FakeClock clock_{absl::FromUnixSeconds(1789603200)};  // 2026-09-17
  prometheus::Registry registry_;
};

TEST_F(GpuCoreTest, RealH100NvlPassesWithItsRimsWhenOcspIsNotRequired) {
  const nlohmann::json c = Case("h100nvl-595.71.05-azure-nras", "full");
  auto core = Make(false, /*require_ocsp=*/false);
  GpuVerifyInput in = FromCase("h100nvl-595.71.05-azure-nras", "full");
  auto v = core->Verify(in);
  ASSERT_THAT(v, IsOk());
  ASSERT_EQ(v->devices.size(), 1u);
  ASSERT_THAT(v->devices[0].result, IsOk());
  const gpu::VerifiedGpu& g = *v->devices[0].result;
  EXPECT_EQ(g.measres(), c["expect"]["measres"].get<bool>());
  EXPECT_EQ(g.driver_version(), c["expect"]["driver_version"].get<std::string>());
  EXPECT_EQ(v->overall, c["expect"]["passed_without_ocsp"].get<bool>())
      << absl::StrJoin(g.Failures(), "; ");
  EXPECT_FALSE(v->simulated);

  v1::VerifyGpuEvidenceResponse resp;
  GpuVerificationToProto(*v, &resp);
  EXPECT_EQ(resp.overall_att_result(), v->overall);
  ASSERT_EQ(resp.devices_size(), 1);
  EXPECT_EQ(resp.devices(0).measres(), "success");
  EXPECT_TRUE(resp.devices(0).gpu_driver_rim_signature_verified());
  EXPECT_EQ(resp.devices(0).gpu_driver_version(), c["expect"]["driver_version"].get<std::string>());
  EXPECT_EQ(resp.devices(0).ueid(), c["expect"]["ueid"].get<std::string>());
  EXPECT_FALSE(resp.has_ppcie_topology_check_passed());
  EXPECT_EQ(nlohmann::json::parse(resp.claims_json())["x-nvidia-overall-att-result"], v->overall);
}

TEST_F(GpuCoreTest, DefaultPolicyNeedsOcspAndSaysSo) {
  auto core = Make(false);
  auto v = core->Verify(FromCase("h100nvl-595.71.05-azure-nras", "full"));
  ASSERT_THAT(v, IsOk());
  EXPECT_FALSE(v->overall);
  ASSERT_THAT(v->devices[0].result, IsOk());
  EXPECT_THAT(v->devices[0].result->Failures(), ::testing::Contains(HasSubstr("ocsp")));
}

TEST_F(GpuCoreTest, DerChainIsAcceptedLikePem) {
  auto core = Make(false, false);
  GpuVerifyInput in = FromCase("h100nvl-595.71.05-azure-nras", "full");
  auto certs = crypto::ParsePemCertificates(in.devices[0].certificate_chain);
  ASSERT_THAT(certs, IsOk());
  std::string der;
  for (const auto& cert : *certs) {
    auto d = crypto::CertificateDer(*cert);
    ASSERT_THAT(d, IsOk());
    der += core::ToString(*d);
  }
  in.devices[0].certificate_chain = der;
  auto v = core->Verify(in);
  ASSERT_THAT(v, IsOk());
  EXPECT_THAT(v->devices[0].result, IsOk());
}

TEST_F(GpuCoreTest, BadSignatureIsAResultNotAnError) {
  const nlohmann::json c = Case("negative/bad-report-signature", "gpu");
  auto core = Make(false);
  auto v = core->Verify(FromCase("negative/bad-report-signature", "gpu"));
  ASSERT_THAT(v, IsOk());
  EXPECT_FALSE(v->overall);
  ASSERT_FALSE(v->devices[0].result.ok());
  EXPECT_EQ(gpu::ErrorClass(v->devices[0].result.status()),
            c["expect"]["error_class"].get<std::string>());
  v1::VerifyGpuEvidenceResponse resp;
  GpuVerificationToProto(*v, &resp);
  const v1::GpuClaims& d = resp.devices(0);
  EXPECT_FALSE(d.passed());
  EXPECT_EQ(d.gpu_attestation_report_cert_chain().cert_status(), "valid");  // checked before
  EXPECT_TRUE(d.gpu_arch_check());
  EXPECT_FALSE(d.gpu_attestation_report_signature_verified());
  EXPECT_FALSE(d.gpu_attestation_report_nonce_match());
  ASSERT_EQ(d.failed_checks_size(), 1);
  EXPECT_THAT(d.failed_checks(0), HasSubstr("INVALID_REPORT_SIGNATURE"));
}

TEST_F(GpuCoreTest, WrongNonceIsRefusedPerDevice) {
  auto core = Make(false);
  GpuVerifyInput in = FromCase("h100nvl-595.71.05-azure-nras", "full");
  in.nonce[0] ^= 1;
  auto v = core->Verify(in);
  ASSERT_THAT(v, IsOk());
  ASSERT_FALSE(v->devices[0].result.ok());
  EXPECT_EQ(gpu::ErrorClass(v->devices[0].result.status()), gpu::error_class::kNonceMismatch);
  v1::VerifyGpuEvidenceResponse resp;
  GpuVerificationToProto(*v, &resp);
  EXPECT_TRUE(resp.devices(0).gpu_attestation_report_signature_verified());
  EXPECT_FALSE(resp.devices(0).gpu_attestation_report_nonce_match());
}

TEST_F(GpuCoreTest, UnusableInputIsInvalidArgumentNamingTheField) {
  auto core = Make(false);
  GpuVerifyInput in = FromCase("h100nvl-595.71.05-azure-nras", "full");
  EXPECT_THAT(core->Verify(GpuVerifyInput{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no devices")));
  GpuVerifyInput truncated = in;
  truncated.devices[0].report.resize(100);
  EXPECT_THAT(core->Verify(truncated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("evidence[0].spdm_report")));
  GpuVerifyInput bad_chain = in;
  bad_chain.devices[0].certificate_chain = "-----BEGIN CERTIFICATE-----\nAAAA\n";
  EXPECT_THAT(core->Verify(bad_chain), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("evidence[0].certificate_chain")));
  GpuVerifyInput bad_rim = in;
  bad_rim.rims.push_back({"../etc/passwd", "<x/>"});
  EXPECT_THAT(core->Verify(bad_rim),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rim_id")));
}

TEST_F(GpuCoreTest, PpcieSetChecksTheTopology) {
  const std::string dir = "hgx-h100-ppcie-8gpu-4nvswitch-590.12";
  const nlohmann::json c = Case(dir, "ppcie_topology");
  auto gpus_json = core::ReadFile(tv::VectorPath(dir, c["evidence_json"].get<std::string>()));
  auto switches_json =
      core::ReadFile(tv::VectorPath(dir, c["switch_evidence_json"].get<std::string>()));
  ASSERT_THAT(gpus_json, IsOk());
  ASSERT_THAT(switches_json, IsOk());
  auto gpus = gpu::ParseEvidenceJson(*gpus_json);
  auto switches = gpu::ParseEvidenceJson(*switches_json);
  ASSERT_THAT(gpus, IsOk());
  ASSERT_THAT(switches, IsOk());
  GpuVerifyInput in;
  for (const auto* list : {&*gpus, &*switches}) {
    for (const auto& e : *list) {
      GpuDeviceInput d;
      d.index = static_cast<uint32_t>(in.devices.size());
      d.arch = e.arch;
      d.is_switch = list == &*switches;
      d.report = e.report;
      d.certificate_chain = e.certificate_chain;
      in.devices.push_back(d);
      in.nonce = *e.nonce;
    }
  }
  in.at = tv::ParseTime(c["now"].get<std::string>());
  auto core = Make(false);
  auto v = core->Verify(in);
  ASSERT_THAT(v, IsOk());
  ASSERT_EQ(v->devices.size(),
            c["expect"]["gpus"].get<size_t>() + c["expect"]["switches"].get<size_t>());
  for (const auto& d : v->devices)
    EXPECT_THAT(d.result, IsOk());
  ASSERT_TRUE(v->topology.has_value());
  EXPECT_THAT(*v->topology, IsOk());
  v1::VerifyGpuEvidenceResponse resp;
  GpuVerificationToProto(*v, &resp);
  ASSERT_TRUE(resp.has_ppcie_topology_check_passed());
  EXPECT_TRUE(resp.ppcie_topology_check_passed());
  EXPECT_EQ(resp.devices(8).device_kind(), common::v1::GPU_DEVICE_KIND_NVSWITCH);
  EXPECT_TRUE(resp.devices(0).ppcie_enabled());

  // Drop one switch: the topology check fails and so does the verdict.
  in.devices.pop_back();
  auto v2 = core->Verify(in);
  ASSERT_THAT(v2, IsOk());
  ASSERT_TRUE(v2->topology.has_value());
  EXPECT_THAT(*v2->topology,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TOPOLOGY_MISMATCH")));
  EXPECT_FALSE(v2->overall);
}

TEST_F(GpuCoreTest, SimulatedGpusNeedTheFlagAndSaySimulated) {
  auto pki = tee::SimulatedGpuPki::Create();
  ASSERT_THAT(pki, IsOk());
  auto shared = std::make_shared<const tee::SimulatedGpuPki>(*std::move(pki));
  gpu::Nonce nonce{};
  nonce.fill(0x5a);
  GpuVerifyInput in;
  in.nonce = nonce;
  for (uint32_t i = 0; i < 2; ++i) {
    tee::SimulatedGpuOptions o;
    o.index = i;
    auto g = tee::SimulatedGpu::Create(o, shared);
    ASSERT_THAT(g, IsOk());
    auto report = (*g)->GetReport(nonce);
    ASSERT_THAT(report, IsOk());
    in.devices.push_back(
        {i, absl::StrCat("GPU-sim-", i), false, gpu::Arch::kHopper, *report, (*g)->CertChainPem()});
  }

  auto strict = Make(false);
  auto refused = strict->Verify(in);
  ASSERT_THAT(refused, IsOk());
  EXPECT_FALSE(refused->overall);
  EXPECT_FALSE(refused->simulated);
  for (const auto& d : refused->devices) {
    EXPECT_THAT(d.result.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("--trust-simulated-tee")));
  }

  auto lenient = Make(true);
  auto v = lenient->Verify(in);
  ASSERT_THAT(v, IsOk());
  EXPECT_TRUE(v->overall);
  EXPECT_TRUE(v->simulated);
  v1::VerifyGpuEvidenceResponse resp;
  GpuVerificationToProto(*v, &resp);
  EXPECT_TRUE(resp.simulated());
  EXPECT_TRUE(resp.devices(1).simulated());
  EXPECT_EQ(resp.devices(1).uuid(), "GPU-sim-1");
  EXPECT_EQ(nlohmann::json::parse(resp.claims_json())["GPU-0"]["x-pml-simulated"], true);

  // The metrics counted every device.
  const std::string text = prometheus::TextSerializer().Serialize(registry_.Collect());
  EXPECT_THAT(text, HasSubstr("pml_verifier_gpu_verifications_total{result=\"rejected\"} 2"));
  EXPECT_THAT(text, HasSubstr("pml_verifier_gpu_verifications_total{result=\"passed\"} 2"));
}

}  // namespace
}  // namespace pml::attestation
