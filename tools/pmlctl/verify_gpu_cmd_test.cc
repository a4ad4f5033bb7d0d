// `pmlctl verify gpu` over the shared GPU vectors: exit codes and what it prints. Expected
// outcomes come from lib/gpu/testdata/vector_expectations.json (transcribed PROVENANCE.md).

#include "tools/pmlctl/verify_gpu_cmd.h"

#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/gpu/testing/vectors.h"
#include "tools/pmlctl/verify_cmd.h"

namespace pml::pmlctl {
namespace {

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

struct CmdRun {
  int code = -1;
  std::string out, err;
};

CmdRun Verify(const VerifyGpuOptions& o) {
  std::ostringstream out, err;
  CmdRun r;
  r.code = RunVerifyGpu(o, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

VerifyGpuOptions Azure() {
  const std::string dir = "h100nvl-595.71.05-azure-nras";
  const nlohmann::json c = Case(dir, "full");
  VerifyGpuOptions o;
  o.report_path = tv::VectorPath(dir, c["report"].get<std::string>());
  o.cert_chain_path = tv::VectorPath(dir, c["chain"].get<std::string>());
  o.nonce = "@" + tv::VectorPath(dir, c["nonce_file"].get<std::string>());
  o.rim_dir = tv::VectorPath(dir, c["rim_dir"].get<std::string>());
  o.at = c["now"].get<std::string>();
  return o;
}

TEST(VerifyGpuCmdTest, OfflineWithoutOcspIsNotPassedUnlessAllowed) {
  const nlohmann::json c = Case("h100nvl-595.71.05-azure-nras", "full");
  VerifyGpuOptions o = Azure();
  CmdRun strict = Verify(o);
  EXPECT_EQ(strict.code, kVerifyExitRejected) << strict.out << strict.err;
  EXPECT_THAT(strict.out, HasSubstr("ocsp-status unknown"));

  o.allow_missing_ocsp = true;
  CmdRun lenient = Verify(o);
  EXPECT_EQ(lenient.code, c["expect"]["passed_without_ocsp"].get<bool>() ? kVerifyExitVerified
                                                                         : kVerifyExitRejected)
      << lenient.out << lenient.err;
  EXPECT_THAT(lenient.out, HasSubstr(c["expect"]["driver_version"].get<std::string>()));

  o.json = true;
  CmdRun json = Verify(o);
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["GPU-0"]["x-nvidia-gpu-driver-version"], c["expect"]["driver_version"]);
  EXPECT_EQ(j["GPU-0"]["ueid"], c["expect"]["ueid"]);
}

TEST(VerifyGpuCmdTest, RimsByIdEqualsFile) {
  const std::string dir = "h100-545.00-nvtrust-2023-full";
  const nlohmann::json c = Case(dir, "rims_in_window");
  VerifyGpuOptions o;
  o.report_path = tv::VectorPath(dir, c["report_hex"].get<std::string>());
  o.cert_chain_path = tv::VectorPath(dir, c["chain"].get<std::string>());
  o.nonce = c["nonce"].get<std::string>();
  o.at = c["now"].get<std::string>();
  o.allow_missing_ocsp = true;
  for (const auto& [id, file] : c["rims"].items())
    o.rims.push_back(id + "=" + tv::VectorPath(dir, file.get<std::string>()));
  CmdRun r = Verify(o);
  EXPECT_EQ(r.code, c["expect"]["passed_without_ocsp"].get<bool>() ? 0 : 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("measurements match"));

  // A file whose name is not a RIM id needs ID=FILE, and says so.
  o.rims = {tv::VectorPath(dir, c["rims"].begin().value().get<std::string>())};
  CmdRun bad = Verify(o);
  EXPECT_EQ(bad.code, kVerifyExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("ID=FILE"));
}

TEST(VerifyGpuCmdTest, BadSignatureIsRejectedWithItsClass) {
  const std::string dir = "negative/bad-report-signature";
  const nlohmann::json c = Case(dir, "gpu");
  VerifyGpuOptions o;
  o.report_path = tv::VectorPath(dir, c["report_hex"].get<std::string>());
  o.cert_chain_path = tv::VectorPath(dir, c["chain"].get<std::string>());
  o.nonce = c["nonce"].get<std::string>();
  o.at = c["now"].get<std::string>();
  CmdRun r = Verify(o);
  EXPECT_EQ(r.code, kVerifyExitRejected);
  EXPECT_THAT(r.out, HasSubstr(c["expect"]["error_class"].get<std::string>()));
}

TEST(VerifyGpuCmdTest, PpcieEvidenceChecksTheTopology) {
  const std::string dir = "hgx-h100-ppcie-8gpu-4nvswitch-590.12";
  const nlohmann::json c = Case(dir, "ppcie_topology");
  VerifyGpuOptions o;
  o.evidence_paths = {tv::VectorPath(dir, c["evidence_json"].get<std::string>())};
  o.switch_evidence_paths = {tv::VectorPath(dir, c["switch_evidence_json"].get<std::string>())};
  o.at = c["now"].get<std::string>();
  CmdRun r = Verify(o);
  EXPECT_THAT(r.out, HasSubstr("PPCIe topology: ok"));
  EXPECT_THAT(r.out, HasSubstr("GPU-7:"));
  EXPECT_THAT(r.out, HasSubstr("SWITCH-3:"));
}

TEST(VerifyGpuCmdTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Verify(VerifyGpuOptions{}).code, kVerifyExitUsage);
  VerifyGpuOptions o = Azure();
  o.nonce = "abcd";
  EXPECT_EQ(Verify(o).code, kVerifyExitUsage);
  o = Azure();
  o.at = "yesterday";
  EXPECT_EQ(Verify(o).code, kVerifyExitUsage);
  o = Azure();
  o.cert_chain_path.clear();
  CmdRun r = Verify(o);
  EXPECT_EQ(r.code, kVerifyExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--cert-chain"));
}

}  // namespace
}  // namespace pml::pmlctl
