#include "lib/tdx/internal/tcb_eval.h"

#include <deque>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/errors.h"

namespace pml::tdx::internal {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using S = TcbStatus;

// A TDX TCB info with two levels and the TDX_01 module identity, shaped like Intel's (§4.1):
//   level 0: sgx all 2, pcesvn 11, tdx (5,0,7)  status `top`
//   level 1: sgx all 1, pcesvn 10, tdx (3,0,6)  OutOfDate
//   TDX_01: isvsvn 4 UpToDate, isvsvn 2 `module_old`
TcbInfo MakeInfo(S top = S::kUpToDate, S module_old = S::kOutOfDate) {
  TcbInfo info;
  info.id = "TDX";
  info.version = 3;
  TcbLevel l0;
  l0.sgx_components.fill(2);
  l0.pce_svn = 11;
  l0.tdx_components = std::array<uint8_t, 16>{5, 0, 7};
  l0.status = top;
  l0.advisory_ids = {"INTEL-SA-1"};
  TcbLevel l1;
  l1.sgx_components.fill(1);
  l1.pce_svn = 10;
  l1.tdx_components = std::array<uint8_t, 16>{3, 0, 6};
  l1.status = S::kOutOfDate;
  l1.advisory_ids = {"INTEL-SA-2"};
  info.tcb_levels = {l0, l1};
  TdxModuleIdentity id;
  id.id = "tdx_01";  // matched case-insensitively
  id.tcb_levels = {IsvTcbLevel{.isv_svn = 4, .status = S::kUpToDate},
                   IsvTcbLevel{.isv_svn = 2, .status = module_old}};
  info.tdx_module_identities = {id};
  info.tdx_module = TdxModule{};
  return info;
}

PckCertInfo MakePck(uint8_t sgx = 2, uint16_t pcesvn = 11) {
  PckCertInfo p;
  p.tcb_components.fill(sgx);
  p.pce_svn = pcesvn;
  return p;
}

Quote MakeTdQuote(Bytes16 svn, std::optional<Bytes16> svn2 = std::nullopt) {
  Quote q;
  q.header.version = svn2.has_value() ? 5 : 4;
  q.header.tee_type = kTeeTypeTdx;
  q.body_type = svn2.has_value() ? BodyType::kTdReport15 : BodyType::kTdReport10;
  q.td_report = TdReport{};
  q.td_report->tee_tcb_svn = svn;
  q.td_report->tee_tcb_svn_2 = svn2;
  return q;
}

// EvaluateTcb returns pointers into the TcbInfo: the fixture keeps each one alive.
class EvaluateTcbTest : public ::testing::Test {
 protected:
  const TcbInfo& Keep(TcbInfo info) {
    kept_.push_back(std::move(info));
    return kept_.back();
  }

 private:
  std::deque<TcbInfo> kept_;
};

TEST(ConvergeTest, FollowsQvlTables) {
  struct Case {
    S level, other, want;
  };
  const Case cases[] = {
      {S::kUpToDate, S::kOutOfDate, S::kOutOfDate},
      {S::kSWHardeningNeeded, S::kOutOfDate, S::kOutOfDate},
      {S::kConfigurationNeeded, S::kOutOfDate, S::kOutOfDateConfigurationNeeded},
      {S::kConfigurationAndSWHardeningNeeded, S::kOutOfDate, S::kOutOfDateConfigurationNeeded},
      {S::kOutOfDate, S::kOutOfDate, S::kOutOfDate},
      {S::kOutOfDateConfigurationNeeded, S::kOutOfDate, S::kOutOfDateConfigurationNeeded},
      {S::kConfigurationNeeded, S::kRevoked, S::kRevoked},
      {S::kUpToDate, S::kRevoked, S::kRevoked},
      {S::kConfigurationNeeded, S::kUpToDate, S::kConfigurationNeeded},
      {S::kRevoked, S::kUpToDate, S::kRevoked},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(TcbStatusName(c.level)) + "+" + std::string(TcbStatusName(c.other)));
    EXPECT_EQ(Converge(c.level, c.other), c.want);
  }
}

TEST_F(EvaluateTcbTest, SkipsModuleBytesWhenModuleVersionIsSet) {
  // TEE_TCB_SVN 04 01 07 against (5,0,7): bytes 0-1 are the module's, judged by TDX_01.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev, EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                                         MakeTdQuote({4, 1, 7}), S::kUpToDate));
  EXPECT_EQ(ev.status, S::kUpToDate);
  EXPECT_EQ(ev.level->advisory_ids[0], "INTEL-SA-1");
  ASSERT_TRUE(ev.module_status.has_value());
  EXPECT_EQ(*ev.module_status, S::kUpToDate);
}

TEST_F(EvaluateTcbTest, ComparesAllBytesForLegacyModule) {
  // TEE_TCB_SVN[1] == 0: no module identity; (4,0,7) is below (5,0,7), so level 1 matches.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev, EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                                         MakeTdQuote({4, 0, 7}), S::kUpToDate));
  EXPECT_EQ(ev.status, S::kOutOfDate);
  EXPECT_EQ(ev.level->advisory_ids[0], "INTEL-SA-2");
  EXPECT_FALSE(ev.module_status.has_value());
}

TEST_F(EvaluateTcbTest, ModuleOutOfDateConvergesWithLevel) {
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation a, EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                                        MakeTdQuote({3, 1, 7}), S::kUpToDate));
  EXPECT_EQ(a.status, S::kOutOfDate);
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation b,
                           EvaluateTcb(Keep(MakeInfo(S::kConfigurationNeeded)), MakePck(),
                                       MakeTdQuote({3, 1, 7}), S::kUpToDate));
  EXPECT_EQ(b.status, S::kOutOfDateConfigurationNeeded);
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation c,
                           EvaluateTcb(Keep(MakeInfo(S::kUpToDate, S::kRevoked)), MakePck(),
                                       MakeTdQuote({3, 1, 7}), S::kUpToDate));
  EXPECT_EQ(c.status, S::kRevoked);
}

TEST_F(EvaluateTcbTest, QeOutOfDateWithConfigurationNeededIsNotWorstWins) {
  // Intel: OutOfDateConfigurationNeeded (Phala's worst-wins merge says OutOfDate).
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev,
                           EvaluateTcb(Keep(MakeInfo(S::kConfigurationNeeded)), MakePck(),
                                       MakeTdQuote({4, 1, 7}), S::kOutOfDate));
  EXPECT_EQ(ev.status, S::kOutOfDateConfigurationNeeded);
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation revoked, EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                                              MakeTdQuote({4, 1, 7}), S::kRevoked));
  EXPECT_EQ(revoked.status, S::kRevoked);
}

TEST_F(EvaluateTcbTest, NoMatchingLevelOrModuleIsNotSupported) {
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(0), MakeTdQuote({4, 1, 7}), S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TCB_NOT_SUPPORTED")));
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(2, 9), MakeTdQuote({4, 1, 7}), S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TCB_NOT_SUPPORTED")));
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(), MakeTdQuote({4, 1, 5}), S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("tee_tcb_svn")));
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(), MakeTdQuote({1, 1, 7}), S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TCB_NOT_SUPPORTED")));
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(), MakeTdQuote({4, 3, 7}), S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TDX_MODULE_MISMATCH")));
}

TEST_F(EvaluateTcbTest, PceSvnSelectsALowerLevel) {
  // Components fit level 0 but PCESVN 10 only fits level 1.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev, EvaluateTcb(Keep(MakeInfo()), MakePck(2, 10),
                                                         MakeTdQuote({4, 1, 7}), S::kUpToDate));
  EXPECT_EQ(ev.level->advisory_ids[0], "INTEL-SA-2");
}

TEST_F(EvaluateTcbTest, TdRelaunchAdvisedForTdReport15) {
  // Launched on module svn 2 (OutOfDate); running now on svn 4 (TEE_TCB_SVN_2), the latest.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev,
                           EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                       MakeTdQuote({2, 1, 7}, Bytes16{4, 1, 7}), S::kUpToDate));
  EXPECT_EQ(ev.status, S::kTDRelaunchAdvised);
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation cfg,
                           EvaluateTcb(Keep(MakeInfo(S::kConfigurationNeeded)), MakePck(),
                                       MakeTdQuote({2, 1, 7}, Bytes16{4, 1, 7}), S::kUpToDate));
  EXPECT_EQ(cfg.status, S::kTDRelaunchAdvisedConfigurationNeeded);
  // Not when the current module is not the latest either, nor when the QE is out of date.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation stale,
                           EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                       MakeTdQuote({2, 1, 7}, Bytes16{3, 1, 7}), S::kUpToDate));
  EXPECT_EQ(stale.status, S::kOutOfDate);
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation qe,
                           EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                       MakeTdQuote({2, 1, 7}, Bytes16{4, 1, 7}), S::kOutOfDate));
  EXPECT_EQ(qe.status, S::kOutOfDate);
  // A TD report 1.0 never gets the relaunch status.
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation v4, EvaluateTcb(Keep(MakeInfo()), MakePck(),
                                                         MakeTdQuote({2, 1, 7}), S::kUpToDate));
  EXPECT_EQ(v4.status, S::kOutOfDate);
  // The running module must have an identity.
  EXPECT_THAT(EvaluateTcb(Keep(MakeInfo()), MakePck(), MakeTdQuote({2, 1, 7}, Bytes16{4, 3, 7}),
                          S::kUpToDate),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TDX_MODULE_MISMATCH")));
}

TEST_F(EvaluateTcbTest, SgxQuoteConvergesSgxLevelWithQe) {
  TcbInfo info = MakeInfo(S::kSWHardeningNeeded);
  info.id = "SGX";
  for (TcbLevel& l : info.tcb_levels) l.tdx_components.reset();
  Quote q;
  q.header.version = 3;
  q.header.tee_type = kTeeTypeSgx;
  q.body_type = BodyType::kSgxEnclaveReport;
  PML_ASSERT_OK_AND_ASSIGN(TcbEvaluation ev, EvaluateTcb(Keep(info), MakePck(), q, S::kOutOfDate));
  EXPECT_EQ(ev.status, S::kOutOfDate);
  EXPECT_FALSE(ev.module_status.has_value());
}

}  // namespace
}  // namespace pml::tdx::internal
