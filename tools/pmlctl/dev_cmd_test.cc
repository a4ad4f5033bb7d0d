#include "tools/pmlctl/dev_cmd.h"

#include <stdlib.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tee/simulator.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

using ::pml::testing::IsOk;
using ::testing::HasSubstr;

class SimulatedCollateralTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml-dev-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int Run(const SimulatedCollateralOptions& o) {
    out_.str("");
    err_.str("");
    return RunSimulatedCollateral(o, out_, err_);
  }

  std::string dir_;
  std::ostringstream out_, err_;
};

// The point of the command: its file verifies the simulator's quotes with `verify quote`.
TEST_F(SimulatedCollateralTest, WrittenFileVerifiesASimulatorQuote) {
  SimulatedCollateralOptions o;
  o.out = dir_ + "/collateral.json";
  o.at = "2025-07-01T00:00:00Z";
  ASSERT_EQ(Run(o), kDevExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("SIMULATED collateral for development"));
  EXPECT_THAT(out_.str(), HasSubstr("valid 2025-06-30T23:00:00Z to 2025-07-31T00:00:00Z"));

  PML_ASSERT_OK_AND_ASSIGN(auto sim, tee::TdxSimulator::Create(tee::SimulatorOptions{}));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(std::vector<uint8_t>(64, 7)));
  ASSERT_THAT(core::WriteFileAtomic(dir_ + "/quote.bin", std::string(q.begin(), q.end())), IsOk());
  VerifyQuoteOptions v;
  v.quote_path = dir_ + "/quote.bin";
  v.collateral_path = o.out;
  v.at = "2025-07-02T00:00:00Z";
  v.trust_simulated_tee = true;
  std::ostringstream vout, verr;
  EXPECT_EQ(RunVerifyQuote(v, vout, verr), kVerifyExitVerified) << vout.str() << verr.str();
  EXPECT_THAT(vout.str(), HasSubstr("SIMULATED"));
}

TEST_F(SimulatedCollateralTest, DashWritesJsonToStdoutAndTheNoticeToStderr) {
  SimulatedCollateralOptions o;
  o.out = "-";
  ASSERT_EQ(Run(o), kDevExitOk) << err_.str();
  const auto j = nlohmann::json::parse(out_.str());
  EXPECT_TRUE(j.contains("tcb_info"));
  EXPECT_TRUE(j.contains("qe_identity_signature"));
  EXPECT_THAT(err_.str(), HasSubstr("SIMULATED"));
}

TEST_F(SimulatedCollateralTest, UsageAndIoErrorsExitTwo) {
  SimulatedCollateralOptions o;
  o.out = dir_ + "/c.json";
  o.at = "tomorrow";
  EXPECT_EQ(Run(o), kDevExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--at"));
  EXPECT_FALSE(core::PathExists(o.out));

  o.at.clear();
  o.out = dir_ + "/no-such-dir/c.json";
  EXPECT_EQ(Run(o), kDevExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("no-such-dir"));
}

}  // namespace
}  // namespace pml::pmlctl
