#include "lib/tdx/errors.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pml::tdx {
namespace {

TEST(ErrorClassTest, ExtractsTheUpperCasePrefix) {
  EXPECT_EQ(ErrorClass(MakeError(absl::StatusCode::kFailedPrecondition,
                                 error_class::kInvalidQuoteSignature, "x: y")),
            "INVALID_QUOTE_SIGNATURE");
  EXPECT_EQ(ErrorClass(absl::OkStatus()), "");
  EXPECT_EQ(ErrorClass(absl::InternalError("lower: case")), "");
  EXPECT_EQ(ErrorClass(absl::InternalError("NO_SEPARATOR")), "");
  EXPECT_EQ(ErrorClass(absl::InternalError(": EMPTY")), "");
}

TEST(ErrorClassTest, CollateralExpiredNamesTheFamily) {
  const absl::Status crl = MakeError(absl::StatusCode::kFailedPrecondition,
                                     error_class::kCrlExpired, "pck_crl.nextUpdate passed");
  EXPECT_TRUE(MatchesErrorClass(crl, "SGX_CRL_EXPIRED"));
  EXPECT_TRUE(MatchesErrorClass(crl, "COLLATERAL_EXPIRED"));
  EXPECT_FALSE(MatchesErrorClass(crl, "SGX_TCB_INFO_EXPIRED"));
  EXPECT_TRUE(IsCollateralTimeError(crl));
  const absl::Status early = MakeError(absl::StatusCode::kFailedPrecondition,
                                       error_class::kCollateralNotYetValid, "x");
  EXPECT_FALSE(MatchesErrorClass(early, "COLLATERAL_EXPIRED"));
  EXPECT_TRUE(IsCollateralTimeError(early));
  const absl::Status sig = MakeError(absl::StatusCode::kFailedPrecondition,
                                     error_class::kInvalidQuoteSignature, "x");
  EXPECT_FALSE(MatchesErrorClass(sig, "COLLATERAL_EXPIRED"));
  EXPECT_FALSE(IsCollateralTimeError(sig));
}

}  // namespace
}  // namespace pml::tdx
