#include "lib/rpc/identity.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::rpc {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseSpiffeIdTest, AcceptsEachRole) {
  for (Role r : AllRoles()) {
    const std::string uri = std::string("spiffe://pml/") + std::string(RoleName(r)) + "/alice-1.x_y";
    PML_ASSERT_OK_AND_ASSIGN(Identity id, ParseSpiffeId(uri));
    EXPECT_EQ(id.role, r);
    EXPECT_EQ(id.name, "alice-1.x_y");
    EXPECT_EQ(id.spiffe_id, uri);
  }
}

TEST(ParseSpiffeIdTest, RejectsMalformed) {
  struct Case {
    const char* uri;
    const char* reason;
  };
  const Case cases[] = {
      {"spiffe://other/operator/alice", "not spiffe://pml/"},
      {"spiffe://pml/root/alice", "unknown role root"},
      {"spiffe://pml/operator", "exactly <role>/<name>"},
      {"spiffe://pml/operator/alice/extra", "exactly <role>/<name>"},
      {"spiffe://pml/operator/", "1..128"},
      {"spiffe://pml/operator/al%20ice", "[A-Za-z0-9._-]"},
      {"spiffe://pml/operator/alice?x=1", "[A-Za-z0-9._-]"},
      {"SPIFFE://pml/operator/alice", "not spiffe://pml/"},
      {"spiffe://pml//alice", "unknown role"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.uri);
    EXPECT_THAT(ParseSpiffeId(c.uri),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.reason)));
  }
  EXPECT_THAT(ParseSpiffeId("spiffe://pml/operator/" + std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1..128")));
}

TEST(IdentityFromUrisTest, PicksTheOnePmlUri) {
  PML_ASSERT_OK_AND_ASSIGN(
      Identity id, IdentityFromUris({"https://example.com/x", "spiffe://pml/viewer/bob"}));
  EXPECT_EQ(id.role, Role::kViewer);
}

TEST(IdentityFromUrisTest, NoneIsUnauthenticatedSeveralIsDenied) {
  EXPECT_THAT(IdentityFromUris({"https://example.com"}),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no spiffe://pml/")));
  EXPECT_THAT(IdentityFromUris({"spiffe://pml/viewer/a", "spiffe://pml/operator/b"}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("more than one")));
  EXPECT_THAT(IdentityFromUris({"spiffe://pml/god/a"}),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown role")));
}

}  // namespace
}  // namespace pml::rpc
