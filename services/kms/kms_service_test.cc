#include "services/kms/kms_service.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/role_table_check.h"

namespace pml::kms {
namespace {

using ::testing::IsEmpty;

TEST(RoleTableTest, EveryMethodHasAnEntry) {
  ASSERT_GT(v1::GetAppKeysRequest::descriptor()->file()->service_count(), 0);
  const rpc::RoleTable table = KmsRoleTable();
  EXPECT_THAT(rpc::MethodsMissingFromRoleTable(
                  table, *v1::GetAppKeysRequest::descriptor()->file()->FindServiceByName("KmsAdmin")), IsEmpty());
  EXPECT_THAT(rpc::MethodsMissingFromRoleTable(
                  table, *v1::GetAppKeysRequest::descriptor()->file()->FindServiceByName("KeyRelease")), IsEmpty());
}

}  // namespace
}  // namespace pml::kms
