#include "services/attestation/verifier_service.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/role_table_check.h"

namespace pml::attestation {
namespace {

using ::testing::IsEmpty;

TEST(RoleTableTest, EveryMethodHasAnEntry) {
  ASSERT_GT(v1::VerifyTdxQuoteRequest::descriptor()->file()->service_count(), 0);
  const rpc::RoleTable table = VerifierRoleTable();
  EXPECT_THAT(rpc::MethodsMissingFromRoleTable(
                  table, *v1::VerifyTdxQuoteRequest::descriptor()->file()->FindServiceByName("Attestation")), IsEmpty());
}

}  // namespace
}  // namespace pml::attestation
