#include "services/guest-agent/guest_agent_service.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/role_table_check.h"

namespace pml::guest {
namespace {

using ::testing::IsEmpty;

TEST(RoleTableTest, EveryMethodHasAnEntry) {
  ASSERT_GT(v1::GetQuoteRequest::descriptor()->file()->service_count(), 0);
  const rpc::RoleTable table = GuestAgentRoleTable();
  EXPECT_THAT(rpc::MethodsMissingFromRoleTable(
                  table, *v1::GetQuoteRequest::descriptor()->file()->FindServiceByName("GuestAgent")), IsEmpty());
}

}  // namespace
}  // namespace pml::guest
