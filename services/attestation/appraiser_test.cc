// Appraisal over simulated bundles (lib/tee: a simulated TD plus 0, 1 or 8 simulated GPUs) built
// the way a guest builds them (RTMR3 runtime events + the dstack event log, report data from
// lib/ratls, GPU evidence taken with the nonce derived from it): a matching policy passes, and
// each single deviation fails with its named check. A real TDX vector is appraised in
// appraiser_vector_test below.

#include "services/attestation/appraiser.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/clock.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/jwt.h"
#include "lib/ratls/report_data.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/testing/vectors.h"
#include "lib/tee/simulated_gpu.h"
#include "lib/tee/simulator.h"
#include "services/attestation/policy_store.h"
#include "services/attestation/signing_keys.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::vector<uint8_t> Fill(size_t n, uint8_t v) { return std::vector<uint8_t>(n, v); }

tee::Measurement M(uint8_t v) {
  tee::Measurement m;
  m.fill(v);
  return m;
}

// What a simulated CVM presents: every knob a test may turn before Build().
struct BundleSpec {
  size_t gpus = 0;
  bool debug = false;
  std::vector<uint8_t> compose_hash = Fill(32, 0xC0);
  std::vector<uint8_t> app_id = Fill(20, 0xA1);
  std::vector<uint8_t> instance_id = Fill(20, 0x1D);
  std::vector<uint8_t> os_image_hash = Fill(32, 0x05);
  std::vector<uint8_t> nonce = Fill(32, 0x77);  // the relying party's nonce
  bool gpu_cc_off = false;                      // GPU 0 reported with CC off
  bool gpu_measurement_mismatch = false;        // GPU 0 runs other firmware
  bool gpu_wrong_nonce = false;                 // GPU 0's report taken with another nonce
  // An app-id event appended after boot (what a workload able to extend RTMR3 could add).
  std::vector<uint8_t> app_id_after_boot;
};

class AppraiserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-appraiser-", ::testing::UnitTest::GetInstance()->random_seed(), "-",
                        reinterpret_cast<uintptr_t>(this));
    std::filesystem::create_directories(dir_);
    auto pki = tee::SimulatedGpuPki::Create();
    ASSERT_THAT(pki, IsOk());
    gpu_pki_ = std::make_shared<const tee::SimulatedGpuPki>(*std::move(pki));
    MakeAppraiser(/*trust_simulated=*/true);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void MakeAppraiser(bool trust_simulated) {
    appraiser_.reset();
    VerifierCoreOptions vo;
    auto anchors = MakeTrustAnchors(trust_simulated);
    ASSERT_THAT(anchors, IsOk());
    vo.anchors = *anchors;
    vo.cache_dir = (dir_ / absl::StrCat("collateral-", trust_simulated)).string();
    vo.offline = true;
    auto core = VerifierCore::Create(std::move(vo), clock_, nullptr);
    ASSERT_THAT(core, IsOk());
    tdx_ = *std::move(core);
    // The simulated platform's collateral, imported as an operator would (RefreshCollateral).
    auto sim = tee::TdxSimulator::Create(tee::SimulatorOptions{});
    ASSERT_THAT(sim, IsOk());
    auto collateral = (*sim)->Collateral(clock_.Now());
    ASSERT_THAT(collateral, IsOk());
    RefreshInput refresh;
    refresh.import_json = collateral->ToJson();
    ASSERT_THAT(tdx_->Refresh(refresh), IsOk());

    GpuCoreOptions go;
    go.anchors = trust_simulated ? gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot()
                                 : gpu::TrustAnchors::NvidiaDefault();
    go.offline = true;
    auto gc = GpuCore::Create(std::move(go), clock_, nullptr);
    ASSERT_THAT(gc, IsOk());
    gpu_ = *std::move(gc);
    auto store = PolicyStore::Open(":memory:");
    ASSERT_THAT(store, IsOk());
    policies_ = *std::move(store);
    auto keys = SigningKeyStore::Open((dir_ / "keys").string(), clock_.Now());
    ASSERT_THAT(keys, IsOk());
    keys_ = *std::move(keys);
    appraiser_ = std::make_unique<Appraiser>(*tdx_, *gpu_, policies_.get(), *keys_, clock_,
                                             AppraiserOptions{}, &registry_);
  }

  // Builds the bundle as the guest agent does: runtime events into RTMR3 and the log, the quote
  // over report data for the nonce, GPU evidence with the derived GPU nonce.
  AppraiseInput Build(const BundleSpec& spec) {
    tee::SimulatorOptions so;
    so.mrtd = M(0x11);
    so.rtmr0 = M(0x20);
    so.rtmr1 = M(0x21);
    so.rtmr2 = M(0x22);
    so.mrconfigid.fill(0);
    so.mrconfigid[0] = 0x01;
    std::copy(spec.compose_hash.begin(), spec.compose_hash.end(), so.mrconfigid.begin() + 1);
    if (spec.debug)
      so.td_attributes |= tdx::kTdAttributeDebug;
    auto sim = tee::TdxSimulator::Create(so);
    PML_CHECK(sim.ok());
    Json log = Json::array();
    auto event = [&](absl::string_view name, const std::vector<uint8_t>& payload) {
      const tdx::Bytes48 d = tdx::RuntimeEventDigest(name, payload);
      PML_CHECK((*sim)->ExtendRtmr(3, d).ok());
      log.push_back({{"imr", 3},
                     {"event_type", tdx::kDstackRuntimeEventType},
                     {"digest", core::HexEncode(d)},
                     {"event", std::string(name)},
                     {"event_payload", core::HexEncode(payload)}});
    };
    event("system-preparing", {});
    event("app-id", spec.app_id);
    event("compose-hash", spec.compose_hash);
    event("instance-id", spec.instance_id);
    event("boot-mr-done", {});
    event("os-image-hash", spec.os_image_hash);
    event("system-ready", {});
    if (!spec.app_id_after_boot.empty())
      event("app-id", spec.app_id_after_boot);

    AppraiseInput in;
    auto rd = ratls::ComputeReportData(ratls::ReportDataPurpose::kNonce, spec.nonce);
    PML_CHECK(rd.ok());
    in.expected_report_data = *rd;
    auto quote = (*sim)->GetQuote(*rd);
    PML_CHECK(quote.ok());
    in.tdx_quote = *quote;
    in.event_log = log.dump();
    in.app_info = {spec.app_id, spec.compose_hash, spec.instance_id, spec.os_image_hash,
                   "development"};
    const ratls::GpuNonceBytes gpu_nonce = ratls::GpuNonce(*rd);
    for (size_t i = 0; i < spec.gpus; ++i) {
      tee::SimulatedGpuOptions go;
      go.index = static_cast<uint32_t>(i);
      if (i == 0 && spec.gpu_measurement_mismatch) {
        tee::GpuMeasurements m =
            tee::DefaultSimulatedGpuMeasurements(go.driver_version, go.vbios_version);
        m[3] = crypto::Sha384("tampered firmware");
        go.measurements = m;
      }
      auto g = tee::SimulatedGpu::Create(go, gpu_pki_);
      PML_CHECK(g.ok());
      std::vector<uint8_t> n(gpu_nonce.begin(), gpu_nonce.end());
      if (i == 0 && spec.gpu_wrong_nonce)
        n[0] ^= 1;
      auto report = (*g)->GetReport(n);
      PML_CHECK(report.ok());
      BundleGpu bg;
      bg.device = {
          static_cast<uint32_t>(i), absl::StrCat("GPU-sim-", i), false, gpu::Arch::kHopper, *report,
          (*g)->CertChainPem()};
      bg.cc_mode = (i == 0 && spec.gpu_cc_off) ? ReportedCcMode::kOff : ReportedCcMode::kOn;
      in.gpus.push_back(std::move(bg));
    }
    return in;
  }

  // The policy that lists exactly what Build() measures by default.
  Json MatchingPolicy(size_t gpus) {
    BundleSpec d;
    return Json{
        {"allowed_os", Json::array({{{"mrtd", core::HexEncode(M(0x11))},
                                     {"rtmr0", core::HexEncode(M(0x20))},
                                     {"rtmr1", core::HexEncode(M(0x21))},
                                     {"rtmr2", core::HexEncode(M(0x22))}}})},
        {"allowed_compose_hashes", Json::array({core::HexEncode(d.compose_hash)})},
        {"allowed_app_ids", Json::array({core::HexEncode(d.app_id)})},
        {"allowed_image_variants", Json::array({"development"})},
        {"allow_simulated", true},
        {"gpu", {{"count", gpus}}},
    };
  }

  absl::StatusOr<AppraisalResult> Appraise(AppraiseInput in, const Json& policy) {
    in.inline_policy_json = policy.dump();
    return appraiser_->Appraise(in);
  }

  static std::vector<AppraisalCheck> Checks(const AppraisalResult& r) {
    std::vector<AppraisalCheck> out;
    for (const auto& f : r.failures)
      out.push_back(f.check);
    return out;
  }
  static std::string Describe(const AppraisalResult& r) {
    std::vector<std::string> s;
    for (const auto& f : r.failures)
      s.push_back(absl::StrCat(AppraisalCheckName(f.check), ": ", f.detail));
    return absl::StrJoin(s, "\n");
  }

  // Exactly one failed check, `want`, in submodule `where`.
  void ExpectOnly(const AppraisalResult& r, AppraisalCheck want, absl::string_view where) {
    EXPECT_FALSE(r.allowed);
    EXPECT_EQ(r.status, EarStatus::kContraindicated);
    ASSERT_EQ(r.failures.size(), 1u) << Describe(r);
    EXPECT_EQ(r.failures[0].check, want) << Describe(r);
    bool found = false;
    for (const auto& d : r.devices) {
      if (d.submodule == where) {
        found = true;
        EXPECT_EQ(d.status, EarStatus::kContraindicated);
        ASSERT_EQ(d.failures.size(), 1u);
        EXPECT_EQ(d.failures[0].check, want);
      } else {
        EXPECT_TRUE(d.failures.empty()) << d.submodule;
      }
    }
    EXPECT_TRUE(found) << where;
  }

  core::FakeClock clock_{absl::FromUnixSeconds(1777636800)};  // 2026-05-01
  std::filesystem::path dir_;
  std::shared_ptr<const tee::SimulatedGpuPki> gpu_pki_;
  prometheus::Registry registry_;
  std::unique_ptr<VerifierCore> tdx_;
  std::unique_ptr<GpuCore> gpu_;
  std::unique_ptr<PolicyStore> policies_;
  std::unique_ptr<SigningKeyStore> keys_;
  std::unique_ptr<Appraiser> appraiser_;
};

class AppraiserGpuCountTest : public AppraiserTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(AppraiserGpuCountTest, MatchingPolicyPassesWithAWarningForSimulatedEvidence) {
  const size_t n = GetParam();
  auto r = Appraise(Build({.gpus = n}), MatchingPolicy(n));
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->allowed) << Describe(*r);
  EXPECT_TRUE(r->simulated);
  EXPECT_EQ(r->status, EarStatus::kWarning);  // simulated, allowed by the policy
  ASSERT_EQ(r->devices.size(), n + 1);
  EXPECT_EQ(r->devices[0].submodule, "cpu0");
  if (n > 0) {
    EXPECT_EQ(r->devices[n].submodule, absl::StrCat("gpu", n - 1));
  }
  EXPECT_EQ(r->devices[0].claims["tdx_mrtd"], core::HexEncode(M(0x11)));
  EXPECT_EQ(r->devices[0].claims["attester_tcb_status"], "UpToDate");
  EXPECT_EQ(r->devices[0].claims["simulated"], true);

  // The token verifies with the published keys and carries one submodule per device.
  auto jwks = crypto::JwkSet::Parse(keys_->Jwks(clock_.Now(), absl::Hours(24)));
  ASSERT_THAT(jwks, IsOk());
  crypto::VerifyJwtOptions vo;
  vo.now = clock_.Now();
  vo.issuer = "pml-verifier";
  auto token = crypto::VerifyJwt(r->token, *jwks, vo);
  ASSERT_THAT(token, IsOk());
  const Json& p = token->payload;
  EXPECT_EQ(p["ear.status"], "warning");
  EXPECT_EQ(p["simulated"], true);
  EXPECT_EQ(p["submods"].size(), n + 1);
  EXPECT_EQ(p["submods"]["cpu0"]["tdx_rtmr1"], core::HexEncode(M(0x21)));
  EXPECT_EQ(p["pml.policy"]["id"], r->policy_id);
  EXPECT_EQ(p["exp"].get<int64_t>() - p["iat"].get<int64_t>(), 600);
  EXPECT_EQ(token->header["kid"], r->token_kid);
}

INSTANTIATE_TEST_SUITE_P(Gpus, AppraiserGpuCountTest, ::testing::Values(0, 1, 8));

TEST_F(AppraiserTest, WrongReportData) {
  AppraiseInput in = Build({.gpus = 1});
  in.expected_report_data[5] ^= 1;
  auto r = Appraise(in, MatchingPolicy(1));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kReportDataBinding, "cpu0");
}

TEST_F(AppraiserTest, WrongGpuNonce) {
  auto r = Appraise(Build({.gpus = 1, .gpu_wrong_nonce = true}), MatchingPolicy(1));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kGpuNonceBinding, "gpu0");
}

TEST_F(AppraiserTest, ReorderedEventLog) {
  AppraiseInput in = Build({});
  Json log = Json::parse(in.event_log);
  std::swap(log[1], log[2]);
  in.event_log = log.dump();
  auto r = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->allowed);
  ASSERT_FALSE(r->failures.empty());
  EXPECT_EQ(r->failures[0].check, AppraisalCheck::kEventLogReplay) << Describe(*r);
  // The identity the log would have vouched for is not taken from it: the policy's app checks
  // fail too, saying why, and nothing else does.
  for (size_t i = 1; i < r->failures.size(); ++i) {
    EXPECT_THAT(r->failures[i].check,
                ::testing::AnyOf(AppraisalCheck::kPolicyComposeHash, AppraisalCheck::kPolicyAppId));
    EXPECT_THAT(r->failures[i].detail, HasSubstr("does not replay"));
  }
}

TEST_F(AppraiserTest, EditedEventLog) {
  AppraiseInput in = Build({});
  Json log = Json::parse(in.event_log);
  // Another compose hash with its digest recomputed: the log no longer replays to RTMR3.
  const std::vector<uint8_t> other = Fill(32, 0xEE);
  log[2]["event_payload"] = core::HexEncode(other);
  log[2]["digest"] = core::HexEncode(tdx::RuntimeEventDigest("compose-hash", other));
  in.event_log = log.dump();
  auto r = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->allowed);
  EXPECT_THAT(Checks(*r), ::testing::Contains(AppraisalCheck::kEventLogReplay)) << Describe(*r);
}

TEST_F(AppraiserTest, AnIdentityEventAfterBootIsNotTheAppsIdentity) {
  // The log replays (the event is really in RTMR3), but only the boot sequence names the app:
  // a second app-id, after boot-mr-done, fails the consistency check and is never used.
  AppraiseInput in = Build({.app_id_after_boot = Fill(20, 0xB2)});
  in.app_info.app_id = Fill(20, 0xB2);
  auto r = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->allowed);
  EXPECT_THAT(Checks(*r), ::testing::Contains(AppraisalCheck::kAppInfoConsistency))
      << Describe(*r);
  EXPECT_THAT(Describe(*r), HasSubstr("more than one app-id"));
}

TEST_F(AppraiserTest, ComposeHashNotInPolicy) {
  // A consistent CVM running another compose file.
  auto r = Appraise(Build({.compose_hash = Fill(32, 0xD0)}), MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kPolicyComposeHash, "cpu0");
  EXPECT_THAT(r->failures[0].detail, HasSubstr("not in inline policy"));
}

TEST_F(AppraiserTest, AppInfoThatDisagreesWithTheLog) {
  AppraiseInput in = Build({});
  in.app_info.instance_id = Fill(20, 0x99);
  auto r = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kAppInfoConsistency, "cpu0");
  EXPECT_THAT(r->failures[0].detail, HasSubstr("instance_id"));
}

TEST_F(AppraiserTest, DebugTd) {
  auto r = Appraise(Build({.debug = true}), MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kPolicyDebugTd, "cpu0");
  Json allow = MatchingPolicy(0);
  allow["allow_debug"] = true;
  auto ok = Appraise(Build({.debug = true}), allow);
  ASSERT_THAT(ok, IsOk());
  EXPECT_TRUE(ok->allowed) << Describe(*ok);
}

TEST_F(AppraiserTest, GpuWithCcOff) {
  auto r = Appraise(Build({.gpus = 1, .gpu_cc_off = true}), MatchingPolicy(1));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kPolicyGpuCcMode, "gpu0");
}

TEST_F(AppraiserTest, GpuMeasurementMismatch) {
  auto r = Appraise(Build({.gpus = 8, .gpu_measurement_mismatch = true}), MatchingPolicy(8));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kPolicyGpuMeasurements, "gpu0");
  EXPECT_THAT(r->failures[0].detail, HasSubstr("mismatch"));
}

TEST_F(AppraiserTest, WrongGpuCount) {
  auto r = Appraise(Build({.gpus = 1}), MatchingPolicy(8));
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kPolicyGpuCount, "cpu0");
}

TEST_F(AppraiserTest, SimulatedEvidenceUnderADefaultPolicy) {
  Json p = MatchingPolicy(1);
  p.erase("allow_simulated");  // default: false
  auto r = Appraise(Build({.gpus = 1}), p);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->allowed);
  std::vector<std::string> where;
  for (const auto& d : r->devices) {
    ASSERT_EQ(d.failures.size(), 1u) << d.submodule << ": " << Describe(*r);
    EXPECT_EQ(d.failures[0].check, AppraisalCheck::kPolicySimulated);
  }
}

TEST_F(AppraiserTest, SimulatedEvidenceIsUntrustedWithoutTheFlag) {
  MakeAppraiser(/*trust_simulated=*/false);
  auto r = Appraise(Build({.gpus = 1}), MatchingPolicy(1));
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->allowed);
  EXPECT_FALSE(r->simulated);
  EXPECT_THAT(Checks(*r), ::testing::Contains(AppraisalCheck::kTdxVerification));
  EXPECT_THAT(Checks(*r), ::testing::Contains(AppraisalCheck::kGpuVerification));
}

TEST_F(AppraiserTest, StoredPoliciesAreUsedByIdAndVersion) {
  auto canonical = ParsePolicyJson(MatchingPolicy(0).dump());
  ASSERT_THAT(canonical, IsOk());
  ASSERT_THAT(
      policies_->Put("app-y", PolicyToJson(*canonical), "spiffe://pml/operator/t", clock_.Now()),
      IsOk());
  AppraiseInput in = Build({});
  in.policy_id = "app-y";
  auto r = appraiser_->Appraise(in);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->allowed) << Describe(*r);
  EXPECT_EQ(r->policy_id, "app-y");
  EXPECT_EQ(r->policy_version, 1);
  in.policy_id = "nope";
  EXPECT_THAT(appraiser_->Appraise(in), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(AppraiserTest, UnusableInputIsAnError) {
  AppraiseInput in = Build({});
  in.inline_policy_json = "{\"allowed_os\": 7}";
  EXPECT_THAT(appraiser_->Appraise(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline_policy_json")));
  in = Build({});
  in.tdx_quote.resize(40);
  in.inline_policy_json = MatchingPolicy(0).dump();
  EXPECT_THAT(appraiser_->Appraise(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("evidence.tdx_quote")));
}

TEST_F(AppraiserTest, OmitTokenAndTtlCap) {
  AppraiseInput in = Build({});
  in.omit_token = true;
  auto r = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->token.empty());
  in.omit_token = false;
  in.token_ttl = absl::Hours(1000);
  auto capped = Appraise(in, MatchingPolicy(0));
  ASSERT_THAT(capped, IsOk());
  EXPECT_EQ(capped->token_expires_at, clock_.Now() + absl::Hours(24));
}

}  // namespace
}  // namespace pml::attestation

// ---- A real TDX vector (shared/vectors/tdx): its measurements come from the quote itself, its
// verification time and expected verdict from its expected.json, its collateral from the vector.

namespace pml::attestation {
namespace {

class AppraiserVectorTest : public AppraiserTest {
 protected:
  static constexpr absl::string_view kVector = "tdx-v4-phala-b0c06f";

  void SetUp() override {
    AppraiserTest::SetUp();
    MakeAppraiser(/*trust_simulated=*/false);
    const Json expected =
        tdx::testing::ReadJsonFile(tdx::testing::VectorDir(kVector) + "/expected.json");
    ASSERT_TRUE(expected["expected"]["ok"].get<bool>());
    at_ = absl::FromUnixSeconds(expected["verify_at_unix"].get<int64_t>());
    status_ = expected["expected"]["status"].get<std::string>();
    auto collateral = core::ReadFile(tdx::testing::VectorDir(kVector) + "/collateral.json");
    ASSERT_THAT(collateral, IsOk());
    RefreshInput refresh;
    refresh.import_json = *collateral;
    ASSERT_THAT(tdx_->Refresh(refresh), IsOk());
    quote_ = tdx::testing::ReadQuoteBytes(kVector);
    ASSERT_FALSE(quote_.empty());
    auto parsed = tdx::ParseQuote(quote_);
    ASSERT_THAT(parsed, IsOk());
    td_ = *parsed->td_report;
  }

  AppraiseInput Input() const {
    AppraiseInput in;
    in.tdx_quote = quote_;
    std::copy(td_.report_data.begin(), td_.report_data.end(), in.expected_report_data.begin());
    in.at = at_;
    return in;
  }

  // Lists exactly the vector's MRTD and RTMR0-2; no event log exists for it.
  Json Policy() const {
    return Json{{"allowed_os", Json::array({{{"mrtd", core::HexEncode(td_.mr_td)},
                                             {"rtmr0", core::HexEncode(td_.rtmr[0])},
                                             {"rtmr1", core::HexEncode(td_.rtmr[1])},
                                             {"rtmr2", core::HexEncode(td_.rtmr[2])}}})},
                {"allow_any_app", true},
                {"require_event_log", false},
                {"allowed_tcb_statuses", Json::array({status_})},
                {"allowed_image_variants", Json::array({"production", "development"})}};
  }

  absl::Time at_;
  std::string status_;
  std::vector<uint8_t> quote_;
  tdx::TdReport td_;
};

TEST_F(AppraiserVectorTest, PassesUnderAPolicyListingItsMeasurements) {
  auto r = Appraise(Input(), Policy());
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->allowed) << Describe(*r);
  EXPECT_FALSE(r->simulated);
  EXPECT_EQ(r->devices[0].claims["attester_tcb_status"], status_);
  EXPECT_EQ(r->devices[0].claims["tdx_mrtd"], core::HexEncode(td_.mr_td));
  EXPECT_EQ(r->devices[0].claims["simulated"], false);
}

TEST_F(AppraiserVectorTest, FailsWhenOneMeasurementIsChanged) {
  for (const char* reg : {"mrtd", "rtmr0", "rtmr1", "rtmr2"}) {
    Json p = Policy();
    std::string hex = p["allowed_os"][0][reg].get<std::string>();
    hex[0] = hex[0] == '0' ? '1' : '0';
    p["allowed_os"][0][reg] = hex;
    auto r = Appraise(Input(), p);
    ASSERT_THAT(r, IsOk());
    ExpectOnly(*r, AppraisalCheck::kPolicyOsMeasurements, "cpu0");
  }
}

TEST_F(AppraiserVectorTest, DefaultPolicyShapeStillNeedsTheEventLog) {
  Json p = Policy();
  p.erase("require_event_log");
  auto r = Appraise(Input(), p);
  ASSERT_THAT(r, IsOk());
  ExpectOnly(*r, AppraisalCheck::kEventLogReplay, "cpu0");
}

}  // namespace
}  // namespace pml::attestation
