// Round trip: quotes and collateral from the simulator (lib/tee) through the real DCAP verifier
// (lib/tdx), unchanged. Only this test links both; lib/tdx itself never links lib/tee.

#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/trust_anchors.h"
#include "lib/tdx/verify.h"
#include "lib/tee/simulated_pki.h"
#include "lib/tee/simulator.h"
#include "lib/tdx/simulated_anchor.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::StartsWith;

// Offsets of quote v4 (tdx-quote-verification.md §2.3).
constexpr size_t kS = 636;
constexpr size_t kSignedRegionEnd = 632;
constexpr size_t kQeReport = kS + 134;
constexpr size_t kQeReportSig = kS + 518;
constexpr size_t kQeAuthData = kS + 584;

absl::Time Now() {
  return absl::FromCivil(absl::CivilSecond(2026, 5, 1, 12, 0, 0), absl::UTCTimeZone());
}

std::vector<uint8_t> ReportData() {
  std::vector<uint8_t> rd(64);
  for (size_t i = 0; i < rd.size(); ++i) {
    rd[i] = static_cast<uint8_t>(0xA0 + i);
  }
  return rd;
}

tdx::TrustAnchors AnchorsWithSimulatedRoot() {
  tdx::TrustAnchors anchors = tdx::TrustAnchors::IntelDefault();
  PML_CHECK(anchors
                .AddPublicKeyPem(kSimulatedRootPublicKeyPem, "pml-simulated-tdx-root",
                                 /*simulated=*/true)
                .ok());
  return anchors;
}

class SimulatorRoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = TdxSimulator::Create(SimulatorOptions{});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(sim).value();
    auto c = sim_->Collateral(Now());
    ASSERT_TRUE(c.ok()) << c.status();
    auto parsed = tdx::ParseCollateralJson(c->ToJson());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    collateral_ = std::move(parsed).value();
  }

  static absl::StatusOr<tdx::VerifiedQuote> Verify(const std::vector<uint8_t>& quote,
                                                   const tdx::TrustAnchors& anchors,
                                                   const tdx::Collateral& collateral) {
    PML_ASSIGN_OR_RETURN(tdx::Quote q, tdx::ParseQuote(quote));
    return tdx::VerifyQuote(q, collateral, anchors, Now());
  }

  static std::vector<uint8_t> Quote(const SimulatorOptions& o = {}) {
    auto sim = TdxSimulator::Create(o);
    PML_CHECK(sim.ok());
    auto q = (*sim)->GetQuote(ReportData());
    PML_CHECK(q.ok());
    return *q;
  }

  std::unique_ptr<TdxSimulator> sim_;
  tdx::Collateral collateral_;
};

TEST_F(SimulatorRoundTripTest, VerifiesUpToDateAndSimulatedUnderTheSimulatedAnchor) {
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim_->GetQuote(ReportData()));
  PML_ASSERT_OK_AND_ASSIGN(tdx::VerifiedQuote v,
                           Verify(q, AnchorsWithSimulatedRoot(), collateral_));
  EXPECT_EQ(v.tcb_status(), tdx::TcbStatus::kUpToDate);
  EXPECT_TRUE(v.simulated());
  EXPECT_EQ(v.trust_anchor_name(), "pml-simulated-tdx-root");
  EXPECT_EQ(v.fmspc(), kSimulatedFmspc);
  EXPECT_TRUE(v.advisory_ids().empty());
  EXPECT_FALSE(v.collateral_expired());
  ASSERT_TRUE(v.quote().td_report.has_value());
  EXPECT_EQ(std::vector<uint8_t>(v.quote().td_report->report_data.begin(),
                                 v.quote().td_report->report_data.end()),
            ReportData());
}

TEST_F(SimulatorRoundTripTest, ExtendedRtmr3IsWhatTheVerifiedQuoteCarries) {
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TdxSimulator> sim,
                           TdxSimulator::Create(SimulatorOptions{}));
  Measurement d;
  d.fill(0x5A);
  ASSERT_THAT(sim->ExtendRtmr(3, d), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(RtmrValues regs, sim->GetRtmrs());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(ReportData()));
  PML_ASSERT_OK_AND_ASSIGN(tdx::VerifiedQuote v,
                           Verify(q, AnchorsWithSimulatedRoot(), collateral_));
  EXPECT_EQ(v.quote().td_report->rtmr[3], regs[3]);
}

TEST_F(SimulatorRoundTripTest, CollateralFromAnotherPkiInstanceVerifies) {
  // A verifier in another process rebuilds the PKI from the labels; nothing is shared but code.
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxPki other, SimulatedTdxPki::Create());
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, other.MakeCollateral(Now()));
  PML_ASSERT_OK_AND_ASSIGN(tdx::Collateral parsed, tdx::ParseCollateralJson(c.ToJson()));
  PML_ASSERT_OK_AND_ASSIGN(tdx::VerifiedQuote v,
                           Verify(Quote(), AnchorsWithSimulatedRoot(), parsed));
  EXPECT_EQ(v.tcb_status(), tdx::TcbStatus::kUpToDate);
}

TEST_F(SimulatorRoundTripTest, PcsSplitCollateralVerifies) {
  PML_ASSERT_OK_AND_ASSIGN(SimulatedTdxCollateral c, sim_->Collateral(Now()));
  const std::string dir = absl::StrCat(::testing::TempDir(), "/pml_tee_rt_split_", getpid());
  std::filesystem::remove_all(dir);
  ASSERT_THAT(c.WritePcsSplit(dir), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(tdx::Collateral loaded, tdx::LoadCollateralDir(dir));
  std::filesystem::remove_all(dir);
  PML_ASSERT_OK_AND_ASSIGN(tdx::VerifiedQuote v,
                           Verify(Quote(), AnchorsWithSimulatedRoot(), loaded));
  EXPECT_EQ(v.tcb_status(), tdx::TcbStatus::kUpToDate);
}

TEST_F(SimulatorRoundTripTest, WithoutTheSimulatedAnchorTheRootIsUntrusted) {
  const absl::StatusOr<tdx::VerifiedQuote> v =
      Verify(Quote(), tdx::TrustAnchors::IntelDefault(), collateral_);
  EXPECT_THAT(v, StatusIs(absl::StatusCode::kFailedPrecondition,
                          AnyOf(StartsWith("SGX_PCK_CERT_CHAIN_UNTRUSTED"),
                                StartsWith("ROOT_CA_UNTRUSTED"))));
}

TEST_F(SimulatorRoundTripTest, DebugTdStillVerifiesDcapLeavesItToPolicy) {
  SimulatorOptions o;
  o.td_attributes = kTdAttributeDebug | kTdAttributeSeptVeDisable;
  PML_ASSERT_OK_AND_ASSIGN(tdx::VerifiedQuote v,
                           Verify(Quote(o), AnchorsWithSimulatedRoot(), collateral_));
  EXPECT_EQ(v.quote().td_report->td_attributes & tdx::kTdAttributeDebug, tdx::kTdAttributeDebug);
}

TEST_F(SimulatorRoundTripTest, LowerTeeTcbSvnsAreOutOfDateOrUnsupported) {
  struct Case {
    const char* name;
    std::array<uint8_t, 16> svn;
    std::optional<tdx::TcbStatus> want;  // nullopt: TCB_NOT_SUPPORTED
  };
  const Case cases[] = {
      {"late microcode behind", {5, 1, 1}, tdx::TcbStatus::kOutOfDate},
      {"module behind", {3, 1, 2}, tdx::TcbStatus::kOutOfDate},
      {"module unknown", {1, 1, 2}, std::nullopt},
      {"newer than current", {7, 1, 3}, tdx::TcbStatus::kUpToDate},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SimulatorOptions o;
    o.tee_tcb_svn = c.svn;
    const auto v = Verify(Quote(o), AnchorsWithSimulatedRoot(), collateral_);
    if (c.want.has_value()) {
      ASSERT_THAT(v, IsOk());
      EXPECT_EQ(tdx::TcbStatusName(v->tcb_status()), tdx::TcbStatusName(*c.want));
    } else {
      EXPECT_THAT(v,
                  StatusIs(absl::StatusCode::kFailedPrecondition, StartsWith("TCB_NOT_SUPPORTED")));
    }
  }
}

TEST_F(SimulatorRoundTripTest, ExpiredCollateralIsReported) {
  PML_ASSERT_OK_AND_ASSIGN(tdx::Quote q, tdx::ParseQuote(Quote()));
  const auto v =
      tdx::VerifyQuote(q, collateral_, AnchorsWithSimulatedRoot(), Now() + absl::Hours(24 * 31));
  ASSERT_FALSE(v.ok());
  EXPECT_TRUE(tdx::MatchesErrorClass(v.status(), tdx::error_class::kCollateralExpired))
      << v.status();
}

// Flipping any single byte of what the signatures cover must be rejected.
TEST_F(SimulatorRoundTripTest, EverySingleByteFlipIsRejected) {
  const std::vector<uint8_t> good = Quote();
  const tdx::TrustAnchors anchors = AnchorsWithSimulatedRoot();
  ASSERT_THAT(Verify(good, anchors, collateral_), IsOk());
  std::vector<std::pair<size_t, size_t>> ranges = {
      {0, kSignedRegionEnd},            // header + TD report (quote signature)
      {kS, kS + 128},                   // quote signature, attestation key
      {kQeReport, kQeReportSig + 64},   // QE report and its signature
      {kQeAuthData, kQeAuthData + 32},  // QE authentication data
  };
  for (const auto& [begin, end] : ranges) {
    for (size_t i = begin; i < end; ++i) {
      std::vector<uint8_t> bad = good;
      bad[i] ^= 0x01;
      const auto v = Verify(bad, anchors, collateral_);
      EXPECT_FALSE(v.ok()) << "flip at offset " << i << " was accepted";
    }
  }
}

TEST_F(SimulatorRoundTripTest, FlipsFailWithTheRightClass) {
  const std::vector<uint8_t> good = Quote();
  const tdx::TrustAnchors anchors = AnchorsWithSimulatedRoot();
  struct Case {
    const char* name;
    size_t offset;
    absl::string_view cls;
  };
  const Case cases[] = {
      {"report data", 600, tdx::error_class::kInvalidQuoteSignature},
      {"rtmr3", 530, tdx::error_class::kInvalidQuoteSignature},
      {"quote signature", kS + 10, tdx::error_class::kInvalidQuoteSignature},
      {"qe report mrenclave", kQeReport + 70, tdx::error_class::kInvalidQeReportSignature},
      {"qe report data", kQeReport + 330, tdx::error_class::kInvalidQeReportSignature},
      {"qe report signature", kQeReportSig + 5, tdx::error_class::kInvalidQeReportSignature},
      {"qe auth data", kQeAuthData + 3, tdx::error_class::kInvalidQeReportData},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<uint8_t> bad = good;
    bad[c.offset] ^= 0x80;
    const auto v = Verify(bad, anchors, collateral_);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(tdx::ErrorClass(v.status()), c.cls) << v.status();
  }
}

TEST_F(SimulatorRoundTripTest, TamperedCollateralIsRejected) {
  const std::vector<uint8_t> q = Quote();
  const tdx::TrustAnchors anchors = AnchorsWithSimulatedRoot();
  tdx::Collateral tcb = collateral_;
  tcb.tcb_info_body[tcb.tcb_info_body.find("UpToDate")] = 'u';
  EXPECT_THAT(Verify(q, anchors, tcb), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                StartsWith("TCB_INFO_INVALID_SIGNATURE")));
  tdx::Collateral qe = collateral_;
  qe.qe_identity_signature[0] ^= 1;
  EXPECT_THAT(Verify(q, anchors, qe), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               StartsWith("QE_IDENTITY_INVALID_SIGNATURE")));
}

}  // namespace
}  // namespace pml::tee

namespace pml::tee {
namespace {

// The verifier pins lib/tdx's copy of the simulated root; it must be the key lib/tee derives.
TEST(SimulatedAnchorTest, VerifierPinEqualsSimulatorRoot) {
  EXPECT_EQ(tdx::kSimulatedTdxRootPublicKeyPem, kSimulatedRootPublicKeyPem);
}

}  // namespace
}  // namespace pml::tee
