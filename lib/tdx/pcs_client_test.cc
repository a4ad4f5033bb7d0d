#include "lib/tdx/pcs_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/testing/vectors.h"
#include "lib/tdx/verify.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::tdx::testing;

struct HttpReply {
  int code = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// A tiny one-request-per-connection HTTP/1.1 server on 127.0.0.1:0, enough for the PCS client.
class TinyHttpServer {
 public:
  using Handler = std::function<HttpReply(const std::string& target)>;

  explicit TinyHttpServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  std::vector<std::string> targets() {
    absl::MutexLock lock(&mu_);
    return targets_;
  }

 private:
  void Serve() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < (64 << 10)) {
        const ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      std::string target;
      const size_t sp1 = req.find(' ');
      const size_t sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
      if (sp2 != std::string::npos) target = req.substr(sp1 + 1, sp2 - sp1 - 1);
      {
        absl::MutexLock lock(&mu_);
        targets_.push_back(target);
      }
      const HttpReply r = handler_(target);
      std::string out = absl::StrCat("HTTP/1.1 ", r.code, " X\r\nContent-Length: ", r.body.size(),
                                     "\r\nConnection: close\r\n");
      for (const auto& [k, v] : r.headers) absl::StrAppend(&out, k, ": ", v, "\r\n");
      absl::StrAppend(&out, "\r\n", r.body);
      size_t off = 0;
      while (off < out.size()) {
        const ssize_t n = write(c, out.data() + off, out.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(c);
    }
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> targets_ ABSL_GUARDED_BY(mu_);
};

// URL-encodes everything but unreserved characters, as PCS does for its chain headers.
std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::AsciiStrToUpper(core::HexEncode(absl::Span<const uint8_t>(&c, 1))));
    }
  }
  return out;
}

std::string Read(const std::string& vector, const std::string& file) {
  auto s = core::ReadFile(tv::VectorDir(vector) + "/collateral/" + file);
  EXPECT_THAT(s, IsOk());
  return s.ok() ? *s : "";
}

// Serves one vector's PCS-split files the way PCS/PCCS do.
TinyHttpServer::Handler VectorPcs(const std::string& vector, bool legacy_tcb_header) {
  return [=](const std::string& target) -> HttpReply {
    if (absl::StartsWith(target, "/tdx/certification/v4/tcb?fmspc=")) {
      return {200, Read(vector, "tcb_info.json"),
              {{legacy_tcb_header ? "SGX-TCB-Info-Issuer-Chain" : "TCB-Info-Issuer-Chain",
                UrlEncode(Read(vector, "tcb_info_issuer_chain.pem"))}}};
    }
    if (absl::StartsWith(target, "/tdx/certification/v4/qe/identity")) {
      return {200, Read(vector, "qe_identity.json"),
              {{"SGX-Enclave-Identity-Issuer-Chain",
                UrlEncode(Read(vector, "qe_identity_issuer_chain.pem"))}}};
    }
    if (target == "/sgx/certification/v4/pckcrl?ca=platform&encoding=der") {
      return {200, Read(vector, "pck_crl.der"),
              {{"SGX-PCK-CRL-Issuer-Chain", UrlEncode(Read(vector, "pck_crl_issuer_chain.pem"))}}};
    }
    if (target == "/sgx/certification/v4/rootcacrl") {  // PCCS answers hex text
      return {200, core::HexEncode(Read(vector, "root_ca_crl.der")), {}};
    }
    return {404, "not found", {}};
  };
}

constexpr Fmspc kB0c06f = {0xb0, 0xc0, 0x6f, 0x00, 0x00, 0x00};

TEST(PcsSourceTest, FetchesTheSameCollateralAsTheSplitFiles) {
  const std::string vector = "tdx-v4-phala-b0c06f";
  for (bool legacy : {false, true}) {
    SCOPED_TRACE(legacy ? "SGX-TCB-Info-Issuer-Chain" : "TCB-Info-Issuer-Chain");
    TinyHttpServer server(VectorPcs(vector, legacy));
    PML_ASSERT_OK_AND_ASSIGN(auto source, MakePcsSource({.base_url = server.base_url() + "/",
                                                         .root_ca_crl_url = "",
                                                         .update = "standard"}));
    PML_ASSERT_OK_AND_ASSIGN(Collateral got, source->GetCollateral(kB0c06f, PckCaType::kPlatform, true));
    PML_ASSERT_OK_AND_ASSIGN(Collateral want, LoadCollateralDir(tv::VectorDir(vector) + "/collateral"));
    EXPECT_TRUE(got == want);
    EXPECT_THAT(server.targets(),
                ::testing::Contains("/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=standard"));
  }
}

TEST(PcsSourceTest, VerifierVerifiesThroughThePcsSource) {
  const std::string vector = "tdx-v4-phala-b0c06f";
  TinyHttpServer server(VectorPcs(vector, false));
  PML_ASSERT_OK_AND_ASSIGN(auto source,
                           MakePcsSource({.base_url = server.base_url(), .root_ca_crl_url = ""}));
  TrustAnchors anchors;
  ASSERT_THAT(anchors.AddFromFile(tv::IntelRootPubkeyPath(), "intel", false), IsOk());
  Verifier verifier(std::move(anchors));
  const auto expected = tv::ReadExpected(vector);
  const absl::Time now = absl::FromUnixSeconds(expected["verify_at_unix"].get<int64_t>());
  for (int i = 0; i < 2; ++i) {
    PML_ASSERT_OK_AND_ASSIGN(VerifiedQuote v, verifier.Verify(tv::ReadQuoteBytes(vector), *source, now));
    EXPECT_EQ(TcbStatusName(v.tcb_status()), expected["expected"]["status"].get<std::string>());
  }
  EXPECT_EQ(server.targets().size(), 4u);  // fetched once, then served from the verifier's map
}

TEST(PcsSourceTest, MapsHttpFailures) {
  TinyHttpServer server([](const std::string& target) -> HttpReply {
    if (absl::StrContains(target, "tcb")) return {503, "busy", {}};
    return {404, "", {}};
  });
  PML_ASSERT_OK_AND_ASSIGN(auto source, MakePcsSource({.base_url = server.base_url()}));
  EXPECT_THAT(source->GetCollateral(kB0c06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("503")));
  TinyHttpServer missing([](const std::string&) -> HttpReply { return {404, "", {}}; });
  PML_ASSERT_OK_AND_ASSIGN(auto source2, MakePcsSource({.base_url = missing.base_url()}));
  EXPECT_THAT(source2->GetCollateral(kB0c06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("404")));
}

TEST(PcsSourceTest, MissingChainHeaderIsMalformed) {
  const std::string vector = "tdx-v4-phala-b0c06f";
  auto inner = VectorPcs(vector, false);
  TinyHttpServer server([&](const std::string& target) {
    HttpReply r = inner(target);
    r.headers.clear();
    return r;
  });
  PML_ASSERT_OK_AND_ASSIGN(auto source, MakePcsSource({.base_url = server.base_url()}));
  EXPECT_THAT(source->GetCollateral(kB0c06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tcb-info-issuer-chain")));
}

TEST(PcsSourceTest, UnreachableServerIsUnavailable) {
  int port = 0;
  {
    TinyHttpServer server([](const std::string&) { return HttpReply{}; });
    port = std::stoi(server.base_url().substr(server.base_url().rfind(':') + 1));
  }  // closed: nothing listens there now
  PML_ASSERT_OK_AND_ASSIGN(auto source,
                           MakePcsSource({.base_url = absl::StrCat("http://127.0.0.1:", port),
                                          .timeout = absl::Seconds(5)}));
  EXPECT_THAT(source->GetCollateral(kB0c06f, PckCaType::kPlatform, true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1")));
}

TEST(PercentDecodeTest, DecodesEscapesAndKeepsPlus) {
  EXPECT_THAT(PercentDecode("a%2Fb%2bc+d%0A"), IsOkAndHolds(std::string("a/b+c+d\n")));
  EXPECT_THAT(PercentDecode("%"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
  EXPECT_THAT(PercentDecode("%4"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
  EXPECT_THAT(PercentDecode("%zz"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad percent")));
}

TEST(MakePcsSourceTest, RejectsNonHttpUrls) {
  EXPECT_THAT(MakePcsSource({.base_url = "file:///etc"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not http")));
}

}  // namespace
}  // namespace pml::tdx
