#include "lib/rpc/client.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::rpc {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RetryServiceConfigTest, RetriesOnlyTheListedMethodsOnUnavailable) {
  const auto json = nlohmann::json::parse(
      RetryServiceConfigJson({"/pml.vmm.v1.Vmm/GetVm", "/pml.vmm.v1.Vmm/ListVms"}));
  const auto& mc = json.at("methodConfig").at(0);
  ASSERT_EQ(mc.at("name").size(), 2u);
  EXPECT_EQ(mc.at("name").at(0).at("service"), "pml.vmm.v1.Vmm");
  EXPECT_EQ(mc.at("name").at(0).at("method"), "GetVm");
  EXPECT_EQ(mc.at("retryPolicy").at("retryableStatusCodes"), nlohmann::json({"UNAVAILABLE"}));
  EXPECT_EQ(mc.at("retryPolicy").at("maxAttempts"), 3);
}

TEST(MakeChannelTest, NamesMissingFiles) {
  ClientConfig c{.target = "127.0.0.1:1", .tls = {.cert = "/nope/c.pem", .key = "/nope/k.pem", .ca = "/nope/ca.pem"}};
  EXPECT_THAT(MakeChannel(c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ca")));
  c.tls.ca = "";
  EXPECT_THAT(MakeChannel(c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CA bundle")));
}

}  // namespace
}  // namespace pml::rpc
