#include "services/attestation/verifier_core.h"

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/event_log.h"
#include "lib/tdx/testing/vectors.h"
#include "lib/tee/simulated_pki.h"
#include "lib/tee/simulator.h"
#include "services/attestation/testing/vector_expectations.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace tv = ::pml::tdx::testing;

// The vector the cache and metrics tests use (any verifying TDX vector would do).
constexpr char kVector[] = "tdx-v4-phala-b0c06f";

absl::Time VerifyAt(const Json& expected) {
  return absl::FromUnixSeconds(expected.at("verify_at_unix").get<int64_t>());
}

tdx::Collateral VectorCollateral(absl::string_view vector) {
  auto c = tdx::LoadCollateralJsonFile(tv::VectorDir(vector) + "/collateral.json");
  PML_CHECK(c.ok());
  return *c;
}

std::string VectorCollateralJson(absl::string_view vector) {
  auto c = core::ReadFile(tv::VectorDir(vector) + "/collateral.json");
  PML_CHECK(c.ok());
  return *c;
}

// A temp dir removed at teardown (STYLE.md §7: never write into the tree or the vectors).
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml-vcore-XXXXXX").string();
    PML_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A fake PCS: serves one vector's collateral, or a fixed error; counts calls.
class FakeUpstream final : public tdx::CollateralSource {
 public:
  FakeUpstream(absl::StatusOr<tdx::Collateral> answer, std::atomic<int>& calls)
      : answer_(std::move(answer)), calls_(calls) {}
  absl::StatusOr<tdx::Collateral> GetCollateral(const tdx::Fmspc&, tdx::PckCaType, bool) override {
    ++calls_;
    return answer_;
  }

 private:
  absl::StatusOr<tdx::Collateral> answer_;
  std::atomic<int>& calls_;
};

std::unique_ptr<VerifierCore> MakeCore(VerifierCoreOptions options, const core::Clock& clock,
                                       prometheus::Registry* registry = nullptr) {
  if (options.anchors.size() == 0) {
    auto anchors = MakeTrustAnchors(false);
    PML_CHECK(anchors.ok());
    options.anchors = *anchors;
  }
  auto c = VerifierCore::Create(std::move(options), clock, registry);
  PML_CHECK(c.ok());
  return std::move(c).value();
}

// Value of a counter/histogram-count series with exactly these labels; -1 when absent.
double MetricValue(prometheus::Registry& r, absl::string_view name,
                   const std::map<std::string, std::string>& labels) {
  for (const auto& family : r.Collect()) {
    if (family.name != name) {
      continue;
    }
    for (const auto& m : family.metric) {
      std::map<std::string, std::string> got;
      for (const auto& l : m.label) {
        got[l.name] = l.value;
      }
      if (got != labels) {
        continue;
      }
      return family.type == prometheus::MetricType::Histogram
                 ? static_cast<double>(m.histogram.sample_count)
                 : m.counter.value;
    }
  }
  return -1;
}

// ---- Every shared vector, through the core, as a request carrying collateral.json ----------

class VerifierCoreVectorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    expected_ = tv::ReadExpected(GetParam());
    ASSERT_TRUE(expected_.is_object()) << "no expected.json in " << GetParam();
    input_.quote = tv::ReadQuoteBytes(GetParam());
    input_.collateral = VectorCollateral(GetParam());
    core_ = MakeCore({}, clock_);
  }

  core::FakeClock clock_{absl::UnixEpoch()};
  Json expected_;
  TdxVerifyInput input_;
  std::unique_ptr<VerifierCore> core_;
};

TEST_P(VerifierCoreVectorTest, GivesExpectedResultAtVerifyTime) {
  input_.at = VerifyAt(expected_);
  auto r = core_->VerifyTdx(input_);
  EXPECT_TRUE(testing::MatchesExpected(r, expected_["expected"]));
  if (r.ok()) {
    EXPECT_EQ(r->verification_time, *input_.at);
    EXPECT_EQ(r->collateral_origin, CollateralOrigin::kRequest);
  }
}

TEST_P(VerifierCoreVectorTest, GivesExpectedResultAtEachTimeCase) {
  if (!expected_.contains("time_cases")) {
    return;  // negatives have none
  }
  for (const Json& tc : expected_["time_cases"]) {
    input_.at = VerifyAt(tc);
    SCOPED_TRACE(absl::FormatTime(*input_.at));
    auto r = core_->VerifyTdx(input_);
    EXPECT_TRUE(testing::MatchesExpected(r, tc.at("expected")));
  }
}

// A quote whose only failure is collateral time still reports its TCB evaluation (QvE's
// collateral_expiration_status), with the status the vector gives at its verify time.
TEST_P(VerifierCoreVectorTest, ReportsTcbStatusWhenOnlyCollateralTimeFailed) {
  if (!expected_.contains("time_cases") || !expected_["expected"].value("ok", false)) {
    return;
  }
  for (const Json& tc : expected_["time_cases"]) {
    input_.at = VerifyAt(tc);
    SCOPED_TRACE(absl::FormatTime(*input_.at));
    PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, core_->VerifyTdx(input_));
    EXPECT_FALSE(r.verified);
    EXPECT_TRUE(r.collateral_time_error);
    ASSERT_TRUE(r.evaluation.has_value()) << r.error_message;
    EXPECT_EQ(tdx::TcbStatusName(r.evaluation->tcb_status()),
              expected_["expected"].at("status").get<std::string>());
  }
}

// lib/tdx checks collateral time first and the time class stays the verdict (the vectors' time
// cases expect it even for TCB_NOT_SUPPORTED), but a broken quote must not hide behind an expiry:
// the message names the failure the vector expects too.
TEST_P(VerifierCoreVectorTest, NegativeVectorsStillNameTheirFailureWhenCollateralHasAlsoExpired) {
  if (expected_["expected"].value("ok", true)) {
    return;
  }
  input_.at = VerifyAt(expected_) + absl::Hours(24 * 400);
  auto r = core_->VerifyTdx(input_);
  if (!r.ok()) {  // unparseable: time plays no part
    EXPECT_TRUE(testing::MatchesExpected(r, expected_["expected"]));
    return;
  }
  EXPECT_FALSE(r->verified);
  bool named = false;
  for (const std::string& c : testing::ExpectedClasses(expected_["expected"])) {
    named = named || r->error_message.find(c) != std::string::npos;
  }
  EXPECT_TRUE(named) << r->error_class << ": " << r->error_message;
}

INSTANTIATE_TEST_SUITE_P(Shared, VerifierCoreVectorTest, ::testing::ValuesIn(tv::ListVectorDirs()),
                         tv::NameFromDir);

// ---- Input errors ---------------------------------------------------------------------------

TEST(VerifierCoreTest, EmptyQuoteIsInvalidArgumentNamingTheField) {
  core::FakeClock clock(absl::UnixEpoch());
  auto core = MakeCore({}, clock);
  EXPECT_THAT(core->VerifyTdx(TdxVerifyInput{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("quote: empty")));
}

TEST(VerifierCoreTest, UnparseableQuotesAreInvalidArgumentWithTheClass) {
  core::FakeClock clock(absl::UnixEpoch());
  auto core = MakeCore({}, clock);
  std::vector<uint8_t> real = tv::ReadQuoteBytes(kVector);
  std::vector<uint8_t> wrong_version = real;
  wrong_version[0] = 9;
  const struct {
    const char* name;
    std::vector<uint8_t> quote;
  } cases[] = {
      {"truncated", std::vector<uint8_t>(real.begin(), real.begin() + 100)},
      {"wrong version", wrong_version},
      {"over the size limit", std::vector<uint8_t>(tdx::kMaxQuoteSize + 1, 0xAB)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TdxVerifyInput in;
    in.quote = c.quote;
    in.collateral = VectorCollateral(kVector);
    EXPECT_THAT(
        core->VerifyTdx(in),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 HasSubstr(absl::StrCat("quote: ", tdx::error_class::kUnsupportedQuoteFormat))));
  }
}

// ---- Collateral from the cache directory and the upstream -----------------------------------

class VerifierCoreCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    expected_ = tv::ReadExpected(kVector);
    ASSERT_TRUE(expected_.is_object());
    input_.quote = tv::ReadQuoteBytes(kVector);
    input_.at = VerifyAt(expected_);
    clock_.Set(*input_.at);
  }
  std::string ExpectedFmspcHex() const {
    return absl::AsciiStrToLower(expected_["tcb_info"].at("fmspc").get<std::string>());
  }

  TempDir dir_;
  core::FakeClock clock_{absl::UnixEpoch()};
  Json expected_;
  TdxVerifyInput input_;
  std::atomic<int> upstream_calls_{0};
};

TEST_F(VerifierCoreCacheTest, NoCollateralAnywhereIsFailedPreconditionNamingTheFmspc) {
  auto core = MakeCore({}, clock_);
  EXPECT_THAT(core->VerifyTdx(input_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("collateral for fmspc ", ExpectedFmspcHex()))));
}

TEST_F(VerifierCoreCacheTest, ImportedBundleVerifiesFromTheCacheAndIsListed) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  auto core = MakeCore(std::move(o), clock_);
  RefreshInput refresh;
  refresh.import_json = VectorCollateralJson(kVector);
  PML_ASSERT_OK_AND_ASSIGN(RefreshResult rr, core->Refresh(refresh));
  ASSERT_EQ(rr.refreshed.size(), 1u);
  EXPECT_TRUE(rr.failures.empty());

  PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, core->VerifyTdx(input_));
  EXPECT_TRUE(testing::MatchesExpected(r, expected_["expected"]));
  EXPECT_EQ(r.collateral_origin, CollateralOrigin::kCache);

  const CacheStatus status = core->GetCacheStatus();
  ASSERT_EQ(status.entries.size(), 1u);
  const CachedCollateral& e = status.entries[0];
  EXPECT_EQ(core::HexEncode(e.fmspc), ExpectedFmspcHex());
  EXPECT_TRUE(e.is_tdx);
  EXPECT_EQ(e.origin, "bundle:request");
  EXPECT_EQ(e.expiry_item, expected_["collateral_window"].at("end_set_by").get<std::string>());
  absl::Time end;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(
      absl::RFC3339_full, expected_["collateral_window"].at("end").get<std::string>(), &end, &err));
  EXPECT_EQ(e.expires_at, end);
  EXPECT_FALSE(e.expired);
  EXPECT_EQ(e.tcb_evaluation_data_number,
            expected_["tcb_info"].at("tcbEvaluationDataNumber").get<int64_t>());
  EXPECT_EQ(e.content_sha256, tdx::CollateralDigest(VectorCollateral(kVector)));
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/" + e.file_name));
}

TEST_F(VerifierCoreCacheTest, MalformedImportIsInvalidArgumentNamingTheField) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  auto core = MakeCore(std::move(o), clock_);
  RefreshInput refresh;
  refresh.import_json = "{\"tcb_info\": 1}";
  EXPECT_THAT(core->Refresh(refresh),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("import_collateral_json: ")));
}

TEST_F(VerifierCoreCacheTest, RefreshWithoutCacheDirIsFailedPrecondition) {
  auto core = MakeCore({}, clock_);
  RefreshInput refresh;
  refresh.import_json = VectorCollateralJson(kVector);
  EXPECT_THAT(core->Refresh(refresh),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--collateral-cache-dir")));
}

TEST_F(VerifierCoreCacheTest, FetchesFromUpstreamOnceThenServesFromCache) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  o.upstream = std::make_unique<FakeUpstream>(VectorCollateral(kVector), upstream_calls_);
  o.upstream_name = "https://pccs.test";
  auto core = MakeCore(std::move(o), clock_);

  PML_ASSERT_OK_AND_ASSIGN(TdxVerification first, core->VerifyTdx(input_));
  EXPECT_TRUE(testing::MatchesExpected(first, expected_["expected"]));
  EXPECT_EQ(first.collateral_origin, CollateralOrigin::kNetwork);
  EXPECT_EQ(upstream_calls_, 1);
  PML_ASSERT_OK_AND_ASSIGN(TdxVerification second, core->VerifyTdx(input_));
  EXPECT_TRUE(second.verified);
  EXPECT_EQ(second.collateral_origin, CollateralOrigin::kCache);
  EXPECT_EQ(upstream_calls_, 1);
  ASSERT_EQ(core->GetCacheStatus().entries.size(), 1u);  // written through to the directory
  EXPECT_EQ(core->GetCacheStatus().upstream_name, "https://pccs.test");
}

TEST_F(VerifierCoreCacheTest, OfflineRequestNeverReachesTheUpstream) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  o.upstream = std::make_unique<FakeUpstream>(VectorCollateral(kVector), upstream_calls_);
  auto core = MakeCore(std::move(o), clock_);
  input_.offline = true;
  EXPECT_THAT(core->VerifyTdx(input_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(ExpectedFmspcHex())));
  EXPECT_EQ(upstream_calls_, 0);
}

TEST_F(VerifierCoreCacheTest, UpstreamOutageIsUnavailable) {
  VerifierCoreOptions o;
  o.upstream = std::make_unique<FakeUpstream>(absl::UnavailableError("pcs down"), upstream_calls_);
  auto core = MakeCore(std::move(o), clock_);
  EXPECT_THAT(core->VerifyTdx(input_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("pcs down")));
}

TEST_F(VerifierCoreCacheTest, ForcedRefreshRefetchesCachedItemsFromUpstream) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  o.upstream = std::make_unique<FakeUpstream>(VectorCollateral(kVector), upstream_calls_);
  o.upstream_name = "https://pccs.test";
  auto core = MakeCore(std::move(o), clock_);
  RefreshInput import;
  import.import_json = VectorCollateralJson(kVector);
  ASSERT_THAT(core->Refresh(import), IsOk());

  RefreshInput refresh;
  refresh.force = true;
  PML_ASSERT_OK_AND_ASSIGN(RefreshResult r, core->Refresh(refresh));
  ASSERT_EQ(r.refreshed.size(), 1u);
  EXPECT_EQ(r.refreshed[0].origin, "https://pccs.test");
  EXPECT_EQ(upstream_calls_, 1);
  EXPECT_TRUE(core->GetCacheStatus().last_refresh_time.has_value());
}

TEST_F(VerifierCoreCacheTest, RefreshFailuresAreReportedPerItem) {
  VerifierCoreOptions o;
  o.cache_dir = dir_.path();
  o.upstream = std::make_unique<FakeUpstream>(absl::NotFoundError("pcs 404"), upstream_calls_);
  auto core = MakeCore(std::move(o), clock_);
  RefreshInput refresh;
  refresh.fmspcs.push_back(tdx::Fmspc{0xB0, 0xC0, 0x6F, 0, 0, 0});
  PML_ASSERT_OK_AND_ASSIGN(RefreshResult r, core->Refresh(refresh));
  EXPECT_TRUE(r.refreshed.empty());
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].key, "B0C06F000000");
  EXPECT_THAT(r.failures[0].reason, HasSubstr("pcs 404"));
  EXPECT_THAT(core->GetCacheStatus().last_refresh_error, HasSubstr("pcs 404"));
}

// ---- Simulated TEE ------------------------------------------------------------------------

class VerifierCoreSimulatedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = tee::TdxSimulator::Create(tee::SimulatorOptions{});
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(sim).value();
    auto c = sim_->Collateral(clock_.Now());
    ASSERT_TRUE(c.ok()) << c.status();
    auto parsed = tdx::ParseCollateralJson(c->ToJson());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    input_.collateral = *parsed;
    auto q = sim_->GetQuote(std::vector<uint8_t>(64, 0x42));
    ASSERT_TRUE(q.ok()) << q.status();
    input_.quote = *q;
  }
  std::unique_ptr<VerifierCore> Core(bool trust_simulated) {
    VerifierCoreOptions o;
    auto anchors = MakeTrustAnchors(trust_simulated);
    PML_CHECK(anchors.ok());
    o.anchors = *anchors;
    return MakeCore(std::move(o), clock_);
  }

  core::FakeClock clock_{absl::FromUnixSeconds(1777636800)};  // 2026-05-01
  std::unique_ptr<tee::TdxSimulator> sim_;
  TdxVerifyInput input_;
};

TEST_F(VerifierCoreSimulatedTest, VerifiesAndSaysSimulatedWhenTrusted) {
  PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, Core(true)->VerifyTdx(input_));
  ASSERT_TRUE(r.verified) << r.error_message;
  EXPECT_TRUE(r.evaluation->simulated());
  EXPECT_EQ(r.evaluation->trust_anchor_name(), kSimulatedRootAnchorName);
  EXPECT_EQ(r.evaluation->fmspc(), tee::kSimulatedFmspc);
}

TEST_F(VerifierCoreSimulatedTest, FailsAsUntrustedRootWithoutTheFlag) {
  PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, Core(false)->VerifyTdx(input_));
  EXPECT_FALSE(r.verified);
  EXPECT_TRUE(
      testing::ClassMatches(r.error_class, {std::string(tdx::error_class::kPckCertChainUntrusted),
                                            std::string(tdx::error_class::kRootCaUntrusted)}))
      << r.error_class;
  EXPECT_FALSE(r.evaluation.has_value());
}

TEST_F(VerifierCoreSimulatedTest, ReplaysTheEventLogAndReadsTheAppId) {
  const std::vector<uint8_t> app_id(20, 0x11);
  const tdx::Bytes48 digest = tdx::RuntimeEventDigest("app-id", app_id);
  ASSERT_THAT(sim_->ExtendRtmr(3, digest), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(input_.quote, sim_->GetQuote(std::vector<uint8_t>(64, 0x42)));
  input_.event_log = Json::array({Json{{"imr", 3},
                                       {"event_type", tdx::kDstackRuntimeEventType},
                                       {"digest", core::HexEncode(digest)},
                                       {"event", "app-id"},
                                       {"event_payload", core::HexEncode(app_id)}}})
                         .dump();
  PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, Core(true)->VerifyTdx(input_));
  ASSERT_TRUE(r.event_log.has_value());
  EXPECT_EQ(r.event_log->error, "");
  EXPECT_TRUE(r.event_log->matches);
  EXPECT_TRUE(r.event_log->mismatched.empty());
  EXPECT_EQ(r.event_log->event_count, 1u);
  EXPECT_EQ(r.event_log->app_info.app_id, app_id);
  EXPECT_EQ(r.event_log->replayed[3], r.quote.td_report->rtmr[3]);
}

TEST_F(VerifierCoreSimulatedTest, MalformedEventLogIsReportedNotAnError) {
  input_.event_log = "not json";
  PML_ASSERT_OK_AND_ASSIGN(TdxVerification r, Core(true)->VerifyTdx(input_));
  EXPECT_TRUE(r.verified);
  ASSERT_TRUE(r.event_log.has_value());
  EXPECT_NE(r.event_log->error, "");
  EXPECT_FALSE(r.event_log->matches);
}

// ---- Metrics --------------------------------------------------------------------------------

TEST(VerifierCoreMetricsTest, CountsResultsLatencyAndCacheHits) {
  prometheus::Registry registry;
  const Json expected = tv::ReadExpected(kVector);
  core::FakeClock clock(VerifyAt(expected));
  auto core = MakeCore({}, clock, &registry);
  TdxVerifyInput in;
  in.quote = tv::ReadQuoteBytes(kVector);
  in.collateral = VectorCollateral(kVector);
  in.at = VerifyAt(expected);
  ASSERT_THAT(core->VerifyTdx(in), IsOk());
  ASSERT_THAT(core->VerifyTdx(in), IsOk());
  EXPECT_THAT(core->VerifyTdx(TdxVerifyInput{}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  const std::string status = expected["expected"].at("status").get<std::string>();
  EXPECT_EQ(MetricValue(registry, "pml_verifier_tdx_verifications_total",
                        {{"result", "verified"}, {"tcb_status", status}}),
            2);
  EXPECT_EQ(MetricValue(registry, "pml_verifier_tdx_verifications_total",
                        {{"result", "invalid"}, {"tcb_status", "none"}}),
            1);
  EXPECT_EQ(MetricValue(registry, "pml_verifier_tdx_verification_seconds", {}), 3);
  EXPECT_EQ(MetricValue(registry, "pml_verifier_collateral_cache_misses_total",
                        {{"cache", "collateral"}}),
            1);
  EXPECT_EQ(
      MetricValue(registry, "pml_verifier_collateral_cache_hits_total", {{"cache", "collateral"}}),
      1);
}

}  // namespace
}  // namespace pml::attestation
