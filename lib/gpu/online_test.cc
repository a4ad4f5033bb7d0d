#include "lib/gpu/online.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

constexpr absl::string_view kDir = "h100nvl-595.71.05-azure-nras";
constexpr absl::string_view kId = "NV_GPU_DRIVER_GH100_595.71.05";

// Serves canned responses by URL; anything else is a transport failure.
class FakeHttp final : public HttpClient {
 public:
  explicit FakeHttp(std::map<std::string, HttpResponse> routes) : routes_(std::move(routes)) {}
  absl::StatusOr<HttpResponse> Get(const std::string& url) override { return Find(url); }
  absl::StatusOr<HttpResponse> Post(const std::string& url, absl::string_view,
                                    absl::string_view) override {
    return Find(url);
  }

 private:
  absl::StatusOr<HttpResponse> Find(const std::string& url) {
    auto it = routes_.find(url);
    if (it == routes_.end())
      return absl::UnavailableError("no route");
    return it->second;
  }
  std::map<std::string, HttpResponse> routes_;
};

std::string Read(absl::string_view file) {
  auto s = core::ReadFile(tv::VectorPath(kDir, file));
  return s.ok() ? *s : std::string();
}

TEST(RimServiceSourceTest, DecodesAndCachesTheServiceResponse) {
  const std::string cache = ::testing::TempDir() + "/gpu_rim_cache";
  ASSERT_THAT(core::MakeDirs(cache), IsOk());
  const std::string body = Read("rims/rim-service-response_NV_GPU_DRIVER_GH100_595.71.05.json");
  RimServiceSource src(std::make_unique<FakeHttp>(std::map<std::string, HttpResponse>{
                           {"https://rim.test/v1/rim/" + std::string(kId), {200, body}}}),
                       "https://rim.test/v1/rim/", cache);
  const std::string xml = Read("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  EXPECT_THAT(src.GetRim(kId), IsOkAndHolds(xml));
  // Offline now: the cached response is served.
  RimServiceSource offline(std::make_unique<FakeHttp>(std::map<std::string, HttpResponse>{}),
                           "https://rim.test/v1/rim/", cache);
  EXPECT_THAT(offline.GetRim(kId), IsOkAndHolds(xml));
}

TEST(RimServiceSourceTest, MapsStatuses) {
  RimServiceSource src(std::make_unique<FakeHttp>(std::map<std::string, HttpResponse>{
                           {"https://rim.test/A", {404, ""}}, {"https://rim.test/B", {503, ""}}}),
                       "https://rim.test/");
  EXPECT_THAT(src.GetRim("A"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("RIM_NOT_FOUND")));
  EXPECT_THAT(src.GetRim("B"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 503")));
  EXPECT_THAT(src.GetRim("../etc"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RIM id")));
}

TEST(CurlHttpClientTest, ReadsFileUrls) {
  const std::string path = ::testing::TempDir() + "/gpu_curl_test.txt";
  ASSERT_THAT(core::WriteFileAtomic(path, "hello"), IsOk());
  auto client = MakeCurlHttpClient();
  auto resp = client->Get("file://" + path);
  ASSERT_THAT(resp, IsOk());
  EXPECT_EQ(resp->body, "hello");
  EXPECT_THAT(client->Get("file:///nonexistent/gpu"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("request failed")));
}

TEST(HttpOcspSourceTest, ReportsAnUnreachableResponder) {
  const tv::RealReport real = tv::AzureReport();
  auto certs = crypto::ParsePemCertificates(real.chain);
  ASSERT_THAT(certs, IsOk());
  HttpOcspSource src(std::make_unique<FakeHttp>(std::map<std::string, HttpResponse>{}),
                     "http://ocsp.test");
  EXPECT_TRUE(src.SendsNonce());
  EXPECT_THAT(src.GetResponse(*(*certs)[1], *(*certs)[2], std::vector<uint8_t>(32, 7)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("OCSP_UNAVAILABLE")));
}

}  // namespace
}  // namespace pml::gpu
