#include "services/vmm/vmm_service.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/role_table_check.h"

namespace pml::vmm {
namespace {

using ::testing::IsEmpty;

TEST(RoleTableTest, EveryMethodHasAnEntry) {
  ASSERT_GT(v1::CreateVmRequest::descriptor()->file()->service_count(), 0);
  const rpc::RoleTable table = VmmRoleTable();
  EXPECT_THAT(rpc::MethodsMissingFromRoleTable(
                  table, *v1::CreateVmRequest::descriptor()->file()->FindServiceByName("Vmm")), IsEmpty());
}

}  // namespace
}  // namespace pml::vmm
