#include "lib/gpu/nras.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

constexpr absl::string_view kDir = "h100nvl-595.71.05-azure-nras";

class NrasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto jwks_text = core::ReadFile(tv::VectorPath(kDir, "nras-jwks-subset.json"));
    ASSERT_THAT(jwks_text, IsOk());
    auto jwks = Jwks::Parse(*jwks_text);
    ASSERT_THAT(jwks, IsOk());
    jwks_ = std::make_unique<Jwks>(*std::move(jwks));
    auto response = core::ReadFile(tv::VectorPath(kDir, "nras-response.json"));
    ASSERT_THAT(response, IsOk());
    response_ = *response;
    nonce_ = tv::AzureReport().nonce;
    // PROVENANCE.md: iat = 1789591804, exp = iat + 3600.
    now_ = absl::FromUnixSeconds(1789591804 + 60);
  }
  std::unique_ptr<Jwks> jwks_;
  std::string response_;
  Nonce nonce_{};
  absl::Time now_;
};

TEST_F(NrasTest, VerifiesTheRealToken) {
  PML_ASSERT_OK_AND_ASSIGN(NrasResult r, VerifyNrasResponse(response_, *jwks_, nonce_, now_));
  EXPECT_TRUE(r.overall_result);
  EXPECT_EQ(r.overall_claims["x-nvidia-ver"], "2.0");
  ASSERT_EQ(r.device_claims.count("GPU-0"), 1u);
  EXPECT_EQ(r.device_claims["GPU-0"]["measres"], "success");
  EXPECT_EQ(r.device_claims["GPU-0"]["ueid"], "622721942297844926908041030373242648900055531445");
}

TEST_F(NrasTest, RejectsAnotherNonce) {
  Nonce other = nonce_;
  other[0] ^= 1;
  EXPECT_THAT(VerifyNrasResponse(response_, *jwks_, other, now_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("eat_nonce")));
}

TEST_F(NrasTest, RejectsAnExpiredToken) {
  EXPECT_THAT(VerifyNrasResponse(response_, *jwks_, nonce_, now_ + absl::Hours(2)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("NRAS_TOKEN_EXPIRED")));
}

TEST_F(NrasTest, RejectsASwappedDetachedToken) {
  // Replace GPU-0's detached token with the overall one: the submods digest no longer matches.
  nlohmann::json j = nlohmann::json::parse(response_);
  j[1]["GPU-0"] = j[0][1];
  EXPECT_THAT(VerifyNrasResponse(j.dump(), *jwks_, nonce_, now_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("submods digest")));
}

TEST_F(NrasTest, RejectsATamperedPayload) {
  nlohmann::json j = nlohmann::json::parse(response_);
  std::string jwt = j[0][1].get<std::string>();
  const size_t dot = jwt.find('.');
  jwt[dot + 5] = jwt[dot + 5] == 'A' ? 'B' : 'A';
  j[0][1] = jwt;
  auto r = VerifyNrasResponse(j.dump(), *jwks_, nonce_, now_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::AnyOf(HasSubstr("NRAS_TOKEN_INVALID_SIGNATURE"),
                                                     HasSubstr("NRAS_TOKEN_MALFORMED")));
}

TEST_F(NrasTest, RejectsAnUnknownKey) {
  auto empty = Jwks::Parse(R"({"keys":[]})");
  ASSERT_THAT(empty, IsOk());
  EXPECT_THAT(VerifyNrasResponse(response_, *empty, nonce_, now_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("NRAS_TOKEN_UNKNOWN_KEY")));
}

TEST(BuildNrasRequestTest, ReproducesTheCapturedRequest) {
  auto text = core::ReadFile(tv::VectorPath(kDir, "nras-request-evidence.json"));
  ASSERT_THAT(text, IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<DeviceEvidence> ev, ParseEvidenceJson(*text));
  PML_ASSERT_OK_AND_ASSIGN(std::string body, BuildNrasRequest(ev, *ev[0].nonce, Arch::kHopper));
  nlohmann::json got = nlohmann::json::parse(body);
  nlohmann::json want = nlohmann::json::parse(*text);
  EXPECT_EQ(got["nonce"], want["nonce"]);
  EXPECT_EQ(got["arch"], want["arch"]);
  EXPECT_EQ(got["claims_version"], "2.0");
  EXPECT_EQ(got["evidence_list"], want["evidence_list"]);
}

}  // namespace
}  // namespace pml::gpu
