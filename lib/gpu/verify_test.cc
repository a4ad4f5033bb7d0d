#include "lib/gpu/verify.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace tv = ::pml::gpu::testing;

VerifyOptions NoOcsp(absl::Time now, RimSource* rims) {
  VerifyOptions o;
  o.now = now;
  o.rims = rims;
  o.policy.require_ocsp = false;
  return o;
}

void ExpectRimClaims(const RimClaims& got, const Json& want, absl::string_view which) {
  SCOPED_TRACE(which);
  if (!want.is_object())
    return;
  if (want.contains("id")) {
    EXPECT_EQ(got.id, want["id"].get<std::string>());
  }
  if (want.contains("signature_verified")) {
    EXPECT_EQ(got.signature_verified, want["signature_verified"].get<bool>()) << got.detail;
  }
  if (want.contains("cert_status")) {
    EXPECT_EQ(got.cert_chain.cert_status, want["cert_status"].get<std::string>()) << got.detail;
  }
  if (want.contains("version_match")) {
    EXPECT_EQ(got.version_match, want["version_match"].get<bool>());
  }
}

void ExpectDevice(const VerifiedGpu& v, const Json& e) {
  if (e.contains("arch")) {
    EXPECT_EQ(ArchName(v.arch()), e["arch"].get<std::string>());
  }
  if (e.contains("driver_version")) {
    EXPECT_EQ(v.driver_version(), e["driver_version"].get<std::string>());
  }
  if (e.contains("vbios_version")) {
    EXPECT_EQ(v.vbios_version(), e["vbios_version"].get<std::string>());
  }
  if (e.contains("fwid_present")) {
    EXPECT_EQ(v.fwid_present(), e["fwid_present"].get<bool>());
  }
  if (e.contains("ueid")) {
    EXPECT_EQ(v.ueid(), e["ueid"].get<std::string>());
  }
  if (e.contains("hwmodel")) {
    EXPECT_EQ(v.hwmodel(), e["hwmodel"].get<std::string>());
  }
  if (e.contains("measres")) {
    EXPECT_EQ(v.measres(), e["measres"].get<bool>());
  }
  if (e.contains("compared")) {
    EXPECT_EQ(v.measurements().compared, e["compared"].get<size_t>());
  }
  if (e.contains("skipped")) {
    EXPECT_THAT(v.measurements().skipped,
                ElementsAreArray(e["skipped"].get<std::vector<uint32_t>>()));
  }
  if (e.contains("mismatch_indices")) {
    std::vector<uint32_t> got;
    for (const auto& m : v.measurements().mismatches)
      got.push_back(m.index);
    EXPECT_THAT(got, ElementsAreArray(e["mismatch_indices"].get<std::vector<uint32_t>>()));
  }
  ExpectRimClaims(v.driver_rim(), e.value("driver_rim", Json()), "driver_rim");
  ExpectRimClaims(v.vbios_rim(), e.value("vbios_rim", Json()), "vbios_rim");
  if (e.contains("passed_without_ocsp")) {
    EXPECT_EQ(v.Passed(), e["passed_without_ocsp"].get<bool>())
        << ::testing::PrintToString(v.Failures());
  }
  // Evidence checks that passed are reported as such; the device chain is valid (notAfter 9999).
  EXPECT_EQ(v.device_chain().cert_status, "valid");
  const Json claims = v.Claims();
  const std::string p = v.is_switch() ? "x-nvidia-switch-" : "x-nvidia-gpu-";
  EXPECT_EQ(claims[p + "attestation-report-signature-verified"], true);
  EXPECT_EQ(claims[p + "attestation-report-nonce-match"], true);
  EXPECT_EQ(claims["measres"], v.measres() ? "success" : "fail");
  EXPECT_EQ(claims["eat_nonce"], core::HexEncode(v.nonce()));
}

absl::StatusOr<Nonce> CaseNonce(const Json& c) {
  const std::string dir = c["dir"].get<std::string>();
  if (c.contains("nonce_file")) {
    PML_ASSIGN_OR_RETURN(std::string text,
                         core::ReadFile(tv::VectorPath(dir, c["nonce_file"].get<std::string>())));
    return ParseNonceHex(text);
  }
  return ParseNonceHex(c["nonce"].get<std::string>());
}

absl::StatusOr<VerifiedGpu> RunReportCase(const Json& c, Verifier& verifier) {
  const std::string dir = c["dir"].get<std::string>();
  std::vector<uint8_t> bytes;
  if (c.contains("report")) {
    PML_ASSIGN_OR_RETURN(bytes,
                         core::ReadFileBytes(tv::VectorPath(dir, c["report"].get<std::string>())));
  } else {
    PML_ASSIGN_OR_RETURN(std::string hex,
                         core::ReadFile(tv::VectorPath(dir, c["report_hex"].get<std::string>())));
    PML_ASSIGN_OR_RETURN(bytes, DecodeHexReport(hex));
  }
  PML_ASSIGN_OR_RETURN(std::string chain,
                       core::ReadFile(tv::VectorPath(dir, c["chain"].get<std::string>())));
  PML_ASSIGN_OR_RETURN(Nonce nonce, CaseNonce(c));
  StaticRimSource static_rims;
  std::unique_ptr<DirectoryRimSource> dir_rims;
  RimSource* rims = nullptr;
  if (c.contains("rims")) {
    for (const auto& [id, file] : c["rims"].items()) {
      PML_RETURN_IF_ERROR(static_rims.AddFile(id, tv::VectorPath(dir, file.get<std::string>())));
    }
    rims = &static_rims;
  } else if (c.contains("rim_dir")) {
    dir_rims =
        std::make_unique<DirectoryRimSource>(tv::VectorPath(dir, c["rim_dir"].get<std::string>()));
    rims = dir_rims.get();
  }
  PML_ASSIGN_OR_RETURN(Report report, ParseReport(bytes));
  return verifier.Verify(report, chain, nonce,
                         NoOcsp(tv::ParseTime(c["now"].get<std::string>()), rims));
}

class GpuVectorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto anchors = tv::VectorAnchors();
    ASSERT_THAT(anchors, IsOk());
    anchors_ = std::make_unique<TrustAnchors>(*std::move(anchors));
  }
  std::unique_ptr<TrustAnchors> anchors_;
};

TEST_P(GpuVectorTest, GivesTheOutcomeItsProvenanceStates) {
  const std::vector<Json> cases = tv::CasesFor(GetParam());
  ASSERT_FALSE(cases.empty()) << "no expectation for vector dir " << GetParam()
                              << " in lib/gpu/testdata/vector_expectations.json";
  for (const Json& c : cases) {
    SCOPED_TRACE(c.value("name", "?"));
    const Json& e = c["expect"];
    Verifier verifier(*anchors_);
    if (c.contains("rim")) {
      auto xml = core::ReadFile(tv::VectorPath(GetParam(), c["rim"].get<std::string>()));
      ASSERT_THAT(xml, IsOk());
      auto rim = ParseRim(*xml);
      ASSERT_THAT(rim, IsOk());
      auto sig = VerifyRim(*rim, anchors_->rim_root());
      if (e["ok"].get<bool>()) {
        EXPECT_THAT(sig, IsOk());
      } else {
        ASSERT_FALSE(sig.ok());
        EXPECT_EQ(sig.status().code(), absl::StatusCode::kFailedPrecondition) << sig.status();
        EXPECT_EQ(ErrorClass(sig.status()), e["error_class"].get<std::string>()) << sig.status();
      }
      continue;
    }
    if (c.contains("evidence_json")) {
      auto text = core::ReadFile(tv::VectorPath(GetParam(), c["evidence_json"].get<std::string>()));
      ASSERT_THAT(text, IsOk());
      auto gpus = ParseEvidenceJson(*text);
      ASSERT_THAT(gpus, IsOk());
      std::vector<DeviceEvidence> switches;
      if (c.contains("switch_evidence_json")) {
        auto st = core::ReadFile(
            tv::VectorPath(GetParam(), c["switch_evidence_json"].get<std::string>()));
        ASSERT_THAT(st, IsOk());
        auto sw = ParseEvidenceJson(*st);
        ASSERT_THAT(sw, IsOk());
        switches = *std::move(sw);
      }
      ASSERT_TRUE((*gpus)[0].nonce.has_value());
      auto set = verifier.VerifySet(*gpus, switches, *(*gpus)[0].nonce,
                                    NoOcsp(tv::ParseTime(c["now"].get<std::string>()), nullptr));
      ASSERT_THAT(set, IsOk());
      EXPECT_EQ(set->gpus().size(), e.value("gpus", size_t{0}));
      EXPECT_EQ(set->switches().size(), e.value("switches", size_t{0}));
      EXPECT_EQ(set->topology_checked(), e.value("topology_checked", false));
      for (const auto& g : set->gpus())
        ExpectDevice(g, e);
      if (e.contains("gpu_switch_pdis")) {
        for (const auto& g : set->gpus()) {
          std::vector<std::string> pdis = g.switch_pdis();
          std::sort(pdis.begin(), pdis.end());
          pdis.erase(std::unique(pdis.begin(), pdis.end()), pdis.end());
          EXPECT_THAT(pdis, ElementsAreArray(e["gpu_switch_pdis"].get<std::vector<std::string>>()));
        }
      }
      for (const auto& s : set->switches()) {
        EXPECT_EQ(s.arch(), Arch::kLs10);
        if (e.contains("switch_vbios_version")) {
          EXPECT_EQ(s.vbios_version(), e["switch_vbios_version"].get<std::string>());
        }
      }
      EXPECT_EQ(set->Claims()["GPU-0"]["x-nvidia-gpu-attestation-report-signature-verified"], true);
      continue;
    }
    auto result = RunReportCase(c, verifier);
    if (!e["ok"].get<bool>()) {
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
      EXPECT_EQ(ErrorClass(result.status()), e["error_class"].get<std::string>())
          << result.status();
      continue;
    }
    ASSERT_THAT(result, IsOk());
    ExpectDevice(*result, e);
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, GpuVectorTest, ::testing::ValuesIn(tv::ListVectorDirs()),
                         tv::NameFromDir);

class VerifyReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto anchors = tv::VectorAnchors();
    ASSERT_THAT(anchors, IsOk());
    anchors_ = std::make_unique<TrustAnchors>(*std::move(anchors));
    real_ = tv::AzureReport();
    ASSERT_FALSE(real_.bytes.empty());
  }
  absl::StatusOr<VerifiedGpu> Run(const std::vector<uint8_t>& bytes, const Nonce& nonce) {
    auto report = ParseReport(bytes);
    if (!report.ok())
      return report.status();
    if (verifier_ == nullptr)
      verifier_ = std::make_unique<Verifier>(*anchors_);
    return verifier_->Verify(*report, real_.chain, nonce, NoOcsp(Now(), nullptr));
  }
  static absl::Time Now() {
    return absl::FromCivil(absl::CivilDay(2026, 9, 17), absl::UTCTimeZone());
  }
  std::unique_ptr<TrustAnchors> anchors_;
  std::unique_ptr<Verifier> verifier_;
  tv::RealReport real_;
};

TEST_F(VerifyReportTest, AcceptsTheRealReport) {
  EXPECT_THAT(Run(real_.bytes, real_.nonce), IsOk());
}

TEST_F(VerifyReportTest, RejectsEveryFlippedSignedByte) {
  // Every byte the signature covers, flipped, is either a parse error or a signature failure.
  const size_t signed_len = real_.bytes.size() - kSignatureSize;
  for (size_t i = 0; i < signed_len; ++i) {
    std::vector<uint8_t> b = real_.bytes;
    b[i] ^= 0x01;
    auto r = Run(b, real_.nonce);
    ASSERT_FALSE(r.ok()) << "offset " << i;
    const std::string cls = ErrorClass(r.status());
    EXPECT_TRUE(cls == "INVALID_REPORT_SIGNATURE" || cls == "REPORT_MALFORMED" ||
                cls == "OPAQUE_DATA_UNSUPPORTED")
        << i << ": " << r.status();
  }
}

TEST_F(VerifyReportTest, RejectsAFlippedSignatureByte) {
  std::vector<uint8_t> b = real_.bytes;
  b[b.size() - 10] ^= 0x80;
  EXPECT_THAT(Run(b, real_.nonce), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("INVALID_REPORT_SIGNATURE")));
}

TEST_F(VerifyReportTest, RejectsAnotherNonce) {
  Nonce other = real_.nonce;
  other[31] ^= 1;
  EXPECT_THAT(Run(real_.bytes, other),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("NONCE_MISMATCH")));
}

TEST_F(VerifyReportTest, RejectsAChainNotEndingAtThePinnedRoot) {
  // The chain without its last two certificates cannot reach the pinned root.
  auto certs = crypto::ParsePemCertificates(real_.chain);
  ASSERT_THAT(certs, IsOk());
  std::string truncated;
  size_t pos = 0;
  for (int i = 0; i < 3; ++i)
    pos = real_.chain.find("-----END CERTIFICATE-----", pos) + 25;
  truncated = real_.chain.substr(0, pos);
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(VerifyReport(*report, truncated, *anchors_, real_.nonce, NoOcsp(Now(), nullptr)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("CERT_CHAIN_UNTRUSTED")));
}

TEST_F(VerifyReportTest, RejectsAWrongClaimedArch) {
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  VerifyOptions o = NoOcsp(Now(), nullptr);
  o.expected_arch = Arch::kBlackwell;
  EXPECT_THAT(VerifyReport(*report, real_.chain, *anchors_, real_.nonce, o),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ARCH_MISMATCH")));
}

TEST_F(VerifyReportTest, RequiresTheVerificationTime) {
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  VerifyOptions o;
  EXPECT_THAT(VerifyReport(*report, real_.chain, *anchors_, real_.nonce, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("now")));
}

TEST_F(VerifyReportTest, FailsTheVerdictWithoutOcspByDefault) {
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  DirectoryRimSource rims(tv::VectorPath("h100nvl-595.71.05-azure-nras", "rims"));
  VerifyOptions o;
  o.now = Now();
  o.rims = &rims;
  auto v = VerifyReport(*report, real_.chain, *anchors_, real_.nonce, o);
  ASSERT_THAT(v, IsOk());
  EXPECT_TRUE(v->measres());
  EXPECT_FALSE(v->Passed());
  EXPECT_EQ(v->device_chain().ocsp_status, "unknown");
  EXPECT_THAT(v->Failures(), ::testing::Contains(HasSubstr("device chain ocsp-status unknown")));
}

TEST_F(VerifyReportTest, WarmVerifierReusesChainAndRims) {
  Verifier verifier(*anchors_);
  DirectoryRimSource rims(tv::VectorPath("h100nvl-595.71.05-azure-nras", "rims"));
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  for (int i = 0; i < 3; ++i) {
    auto v = verifier.Verify(*report, real_.chain, real_.nonce, NoOcsp(Now(), &rims));
    ASSERT_THAT(v, IsOk());
    EXPECT_TRUE(v->Passed());
  }
  const auto stats = verifier.stats();
  EXPECT_EQ(stats.chain_misses, 1u);
  EXPECT_EQ(stats.chain_hits, 2u);
  EXPECT_EQ(stats.rim_fetches, 2u);
  EXPECT_EQ(stats.rim_hits, 4u);
}

TEST_F(VerifyReportTest, TamperedRimFailsTheMeasurementResult) {
  // Change one golden hash in the genuine driver RIM: the signature no longer verifies, the
  // RIM's golden values are not used, and measres fails.
  const std::string dir = "h100nvl-595.71.05-azure-nras";
  auto xml = core::ReadFile(tv::VectorPath(dir, "rims/NV_GPU_DRIVER_GH100_595.71.05.xml"));
  ASSERT_THAT(xml, IsOk());
  const size_t pos = xml->find("Hash0=\"") + 7;
  (*xml)[pos] = (*xml)[pos] == 'a' ? 'b' : 'a';
  StaticRimSource rims;
  rims.Add("NV_GPU_DRIVER_GH100_595.71.05", *xml);
  ASSERT_THAT(rims.AddFile("NV_GPU_VBIOS_1010_0210_886_96009F0004",
                           tv::VectorPath(dir, "rims/NV_GPU_VBIOS_1010_0210_886_96009F0004.xml")),
              IsOk());
  auto report = ParseReport(real_.bytes);
  ASSERT_THAT(report, IsOk());
  auto v = VerifyReport(*report, real_.chain, *anchors_, real_.nonce, NoOcsp(Now(), &rims));
  ASSERT_THAT(v, IsOk());
  EXPECT_FALSE(v->driver_rim().signature_verified);
  EXPECT_THAT(v->driver_rim().detail, HasSubstr("RIM_INVALID_SIGNATURE"));
  EXPECT_FALSE(v->measres());
  EXPECT_FALSE(v->Passed());
}

TEST(CheckPpcieTopologyTest, RejectsTooFewSwitches) {
  std::vector<const Report*> none;
  EXPECT_THAT(CheckPpcieTopology(none, none),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TOPOLOGY_MISMATCH")));
}

TEST(TrustAnchorsTest, BuiltInRootsAreTheVectorRoots) {
  auto files = TrustAnchors::NvidiaFromFiles(
      tv::GpuVectorsDir() + "/roots/nvidia-device-identity-ca.pem",
      tv::GpuVectorsDir() + "/roots/nvidia-corim-signing-root-ca.pem");
  ASSERT_THAT(files, IsOk());
  const TrustAnchors built_in = TrustAnchors::NvidiaDefault();
  EXPECT_EQ(X509_cmp(&built_in.device_root(), &files->device_root()), 0);
  EXPECT_EQ(X509_cmp(&built_in.rim_root(), &files->rim_root()), 0);
  EXPECT_FALSE(built_in.trusts_simulated());
  const TrustAnchors with_sim = built_in.WithSimulatedRoot();
  EXPECT_TRUE(with_sim.trusts_simulated());
  EXPECT_TRUE(TrustAnchors(with_sim).trusts_simulated());  // copies keep the flag
}

TEST(TrustAnchorsTest, RejectsAnUnpinnedRoot) {
  // The CoRIM root is not the device root: pinning catches swapped files.
  auto a = TrustAnchors::NvidiaFromFiles(
      tv::GpuVectorsDir() + "/roots/nvidia-corim-signing-root-ca.pem",
      tv::GpuVectorsDir() + "/roots/nvidia-corim-signing-root-ca.pem");
  EXPECT_THAT(
      a, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not the pinned NVIDIA key")));
}

}  // namespace
}  // namespace pml::gpu
