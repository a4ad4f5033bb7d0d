#include "lib/rpc/metrics.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pml::rpc {
namespace {

using ::testing::HasSubstr;

std::string Scrape(Metrics& m) {
  prometheus::TextSerializer s;
  return s.Serialize(m.registry().Collect());
}

TEST(SplitMethodNameTest, SplitsServiceAndMethod) {
  EXPECT_EQ(SplitMethodName("/pml.vmm.v1.Vmm/CreateVm"),
            (std::pair<std::string, std::string>{"pml.vmm.v1.Vmm", "CreateVm"}));
  EXPECT_EQ(SplitMethodName("garbage").first, "unknown");
  EXPECT_EQ(SplitMethodName("/only").first, "unknown");
}

TEST(MetricsTest, UsesGoGrpcPrometheusNamesAndLabels) {
  Metrics m("vmm", "1.2.3");
  m.OnStarted("unary", "pml.vmm.v1.Vmm", "GetVm");
  m.OnReceived("unary", "pml.vmm.v1.Vmm", "GetVm");
  m.OnSent("unary", "pml.vmm.v1.Vmm", "GetVm");
  m.OnHandled("unary", "pml.vmm.v1.Vmm", "GetVm", "NotFound", 0.002);
  const std::string text = Scrape(m);
  EXPECT_THAT(text, HasSubstr("grpc_server_started_total{grpc_method=\"GetVm\",grpc_service=\"pml.vmm.v1.Vmm\",grpc_type=\"unary\"} 1"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"GetVm\",grpc_service=\"pml.vmm.v1.Vmm\",grpc_type=\"unary\"} 1"));
  EXPECT_THAT(text, HasSubstr("grpc_server_msg_received_total{"));
  EXPECT_THAT(text, HasSubstr("grpc_server_msg_sent_total{"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handling_seconds_bucket{grpc_method=\"GetVm\",grpc_service=\"pml.vmm.v1.Vmm\",grpc_type=\"unary\",le=\"0.005\"} 1"));
  EXPECT_THAT(text, HasSubstr("pml_build_info{component=\"vmm\",version=\"1.2.3\"} 1"));
}

TEST(MetricsTest, TypeNamesMatchGoGrpcPrometheus) {
  using T = grpc::experimental::ServerRpcInfo::Type;
  EXPECT_STREQ(GrpcTypeName(T::UNARY), "unary");
  EXPECT_STREQ(GrpcTypeName(T::CLIENT_STREAMING), "client_stream");
  EXPECT_STREQ(GrpcTypeName(T::SERVER_STREAMING), "server_stream");
  EXPECT_STREQ(GrpcTypeName(T::BIDI_STREAMING), "bidi_stream");
}

TEST(MetricsTest, ServeReportsPortInUse) {
  Metrics a("a", "0"), b("b", "0");
  ASSERT_TRUE(a.Serve("127.0.0.1:0").ok());
  ASSERT_GT(a.port(), 0);
  absl::Status s = b.Serve("127.0.0.1:" + std::to_string(a.port()));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot serve metrics"));
}

}  // namespace
}  // namespace pml::rpc
