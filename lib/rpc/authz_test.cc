#include "lib/rpc/authz.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::rpc {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Identity Id(Role r) { return Identity{r, "n", "spiffe://pml/x/n"}; }

TEST(RoleTableTest, AllowsListedRolesOnly) {
  RoleTable t{{"/p.S/Create", {{Role::kOperator}}}, {"/p.S/Get", {{Role::kOperator, Role::kViewer}}}};
  EXPECT_THAT(t.Check("/p.S/Create", Id(Role::kOperator)), IsOk());
  EXPECT_THAT(t.Check("/p.S/Get", Id(Role::kViewer)), IsOk());
  EXPECT_THAT(t.Check("/p.S/Create", Id(Role::kViewer)),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("role viewer may not call /p.S/Create; allowed roles: operator")));
}

TEST(RoleTableTest, DeniesMethodWithoutEntry) {
  RoleTable t{{"/p.S/Get", {{Role::kViewer}}}};
  EXPECT_THAT(t.Check("/p.S/Other", Id(Role::kOperator)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not in the role table")));
}

TEST(RoleTableTest, EmptyRoleListDeniesEveryone) {
  RoleTable t{{"/p.S/Nobody", {}}};
  for (Role r : AllRoles()) {
    EXPECT_THAT(t.Check("/p.S/Nobody", Id(r)),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("allowed roles: none")));
  }
}

TEST(RoleTableTest, PublicMethodAdmitsAnyone) {
  RoleTable t{{"/p.S/Pub", {{}, /*public_method=*/true}}};
  EXPECT_THAT(t.Check("/p.S/Pub", Id(Role::kViewer)), IsOk());
}

TEST(RoleTableTest, MethodsAreSorted) {
  RoleTable t{{"/b", {}}, {"/a", {}}};
  EXPECT_THAT(t.Methods(), ElementsAre("/a", "/b"));
}

}  // namespace
}  // namespace pml::rpc
