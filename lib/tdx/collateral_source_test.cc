#include "lib/tdx/collateral_source.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/clock.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/collateral_source_factory.h"
#include "lib/tdx/tcb_info.h"
#include "lib/tdx/testing/vectors.h"
#include "lib/tdx/verify.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::tdx::testing;

constexpr Fmspc kB0c06f = {0xb0, 0xc0, 0x6f, 0x00, 0x00, 0x00};
constexpr Fmspc k20a06f = {0x20, 0xa0, 0x6f, 0x00, 0x00, 0x00};

Collateral VectorCollateral(const std::string& name) {
  auto c = LoadCollateralJsonFile(tv::VectorDir(name) + "/collateral.json");
  EXPECT_THAT(c, IsOk());
  return c.ok() ? *c : Collateral();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/pml_tdx_XXXXXX";
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
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

// Counts calls and serves a fixed collateral (or an error).
class CountingSource : public CollateralSource {
 public:
  explicit CountingSource(absl::StatusOr<Collateral> c) : c_(std::move(c)) {}
  absl::StatusOr<Collateral> GetCollateral(const Fmspc&, PckCaType, bool) override {
    ++*calls_;
    return c_;
  }
  std::shared_ptr<int> calls() const { return calls_; }

 private:
  absl::StatusOr<Collateral> c_;
  std::shared_ptr<int> calls_ = std::make_shared<int>(0);
};

TEST(BundleFileSourceTest, ServesASingleCollateralForAnyRequest) {
  PML_ASSERT_OK_AND_ASSIGN(auto source,
                           MakeBundleFileSource(tv::VectorDir("tdx-v4-phala-b0c06f") +
                                                "/collateral.json"));
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, source->GetCollateral(kB0c06f, PckCaType::kPlatform, true));
  EXPECT_TRUE(c == VectorCollateral("tdx-v4-phala-b0c06f"));
}

TEST(BundleFileSourceTest, SelectsFromAnArrayByFmspcTeeAndCa) {
  TempDir dir;
  PML_ASSERT_OK_AND_ASSIGN(std::string a, CollateralToJson(VectorCollateral("tdx-v4-phala-b0c06f")));
  PML_ASSERT_OK_AND_ASSIGN(std::string b, CollateralToJson(VectorCollateral("tdx-v4-phala-near-20a06f")));
  const std::string path = dir.path() + "/bundle.json";
  ASSERT_THAT(core::WriteFileAtomic(path, "[" + a + "," + b + "]"), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(auto source, MakeBundleFileSource(path));
  PML_ASSERT_OK_AND_ASSIGN(Collateral got, source->GetCollateral(k20a06f, PckCaType::kPlatform, true));
  EXPECT_TRUE(got == VectorCollateral("tdx-v4-phala-near-20a06f"));
  EXPECT_THAT(source->GetCollateral(k20a06f, PckCaType::kPlatform, false),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("20a06f000000")));
  EXPECT_THAT(source->GetCollateral(kB0c06f, PckCaType::kProcessor, true),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("processor")));
}

TEST(BundleFileSourceTest, RejectsMissingOrMalformedFiles) {
  EXPECT_THAT(MakeBundleFileSource("/nonexistent.json"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nonexistent")));
  TempDir dir;
  ASSERT_THAT(core::WriteFileAtomic(dir.path() + "/x.json", "{oops"), IsOk());
  EXPECT_THAT(MakeBundleFileSource(dir.path() + "/x.json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not json")));
}

TEST(CacheDirSourceTest, FetchesOnceWritesAFileAndServesFromMemory) {
  TempDir dir;
  const Collateral c = VectorCollateral("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(absl::Time next, CollateralNextUpdate(c));
  core::FakeClock clock(next - absl::Hours(24 * 10));
  auto upstream = std::make_unique<CountingSource>(c);
  auto calls = upstream->calls();
  PML_ASSERT_OK_AND_ASSIGN(auto source,
                           MakeCacheDirSource({.dir = dir.path(), .upstream = std::move(upstream)},
                                              clock));
  for (int i = 0; i < 3; ++i) {
    PML_ASSERT_OK_AND_ASSIGN(Collateral got, source->GetCollateral(kB0c06f, PckCaType::kPlatform, true));
    EXPECT_TRUE(got == c);
  }
  EXPECT_EQ(*calls, 1);
  const std::string file = dir.path() + "/" + CollateralCacheFileName(kB0c06f, PckCaType::kPlatform, true);
  EXPECT_EQ(CollateralCacheFileName(kB0c06f, PckCaType::kPlatform, true),
            "tdx-platform-b0c06f000000.json");
  ASSERT_TRUE(core::PathExists(file));

  // A fresh source without upstream (offline) reads the file.
  PML_ASSERT_OK_AND_ASSIGN(auto offline, MakeCacheDirSource({.dir = dir.path()}, clock));
  PML_ASSERT_OK_AND_ASSIGN(Collateral again, offline->GetCollateral(kB0c06f, PckCaType::kPlatform, true));
  EXPECT_TRUE(again == c);
  EXPECT_THAT(offline->GetCollateral(k20a06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no upstream")));
}

TEST(CacheDirSourceTest, RefreshesNearExpiryAndFallsBackToStaleWhenUpstreamIsDown) {
  TempDir dir;
  const Collateral c = VectorCollateral("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(absl::Time next, CollateralNextUpdate(c));
  core::FakeClock clock(next - absl::Hours(24));
  {
    auto up = std::make_unique<CountingSource>(c);
    PML_ASSERT_OK_AND_ASSIGN(auto s, MakeCacheDirSource({.dir = dir.path(), .upstream = std::move(up)}, clock));
    ASSERT_THAT(s->GetCollateral(kB0c06f, PckCaType::kPlatform, true), IsOk());
  }
  clock.Set(next - absl::Minutes(30));  // inside the default one-hour refresh margin
  auto down = std::make_unique<CountingSource>(absl::UnavailableError("pcs down"));
  auto calls = down->calls();
  PML_ASSERT_OK_AND_ASSIGN(auto s, MakeCacheDirSource({.dir = dir.path(), .upstream = std::move(down)}, clock));
  PML_ASSERT_OK_AND_ASSIGN(Collateral stale, s->GetCollateral(kB0c06f, PckCaType::kPlatform, true));
  EXPECT_TRUE(stale == c);
  EXPECT_EQ(*calls, 1);
  // With nothing cached, the upstream error surfaces.
  EXPECT_THAT(s->GetCollateral(k20a06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("pcs down")));
}

TEST(CollateralSourceFactoryTest, BuildsEachKindAndVerifiesThroughIt) {
  core::FakeClock clock(absl::UnixEpoch());
  const std::string vector = "tdx-v4-phala-b0c06f";
  PML_ASSERT_OK_AND_ASSIGN(
      auto bundle,
      MakeCollateralSource({.kind = CollateralSourceKind::kBundleFile,
                            .path = tv::VectorDir(vector) + "/collateral.json"},
                           clock));
  const auto expected = tv::ReadExpected(vector);
  TrustAnchors anchors;
  ASSERT_THAT(anchors.AddFromFile(tv::IntelRootPubkeyPath(), "intel", false), IsOk());
  Verifier verifier(std::move(anchors));
  PML_ASSERT_OK_AND_ASSIGN(
      VerifiedQuote v,
      verifier.Verify(tv::ReadQuoteBytes(vector), *bundle,
                      absl::FromUnixSeconds(expected["verify_at_unix"].get<int64_t>())));
  EXPECT_EQ(TcbStatusName(v.tcb_status()), expected["expected"]["status"].get<std::string>());

  EXPECT_THAT(MakeCollateralSource({.kind = CollateralSourceKind::kBundleFile}, clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(MakeCollateralSource({.kind = CollateralSourceKind::kCacheDir}, clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(MakeCollateralSource({.kind = CollateralSourceKind::kPcs,
                                    .pcs = {.base_url = "ftp://x"}},
                                   clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not http")));
}

}  // namespace
}  // namespace pml::tdx
