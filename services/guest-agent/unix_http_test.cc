#include "services/guest-agent/unix_http.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

int Connect(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int ConnectTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `raw` on `fd` and reads until the peer closes (Connection: close); closes `fd`.
std::string ExchangeOn(int fd, const std::string& raw) {
  if (fd < 0)
    return "connect failed";
  size_t off = 0;
  while (off < raw.size()) {
    const ssize_t n = write(fd, raw.data() + off, raw.size() - off);
    if (n <= 0)
      break;
    off += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::string Exchange(const std::string& path, const std::string& raw) {
  return ExchangeOn(Connect(path), raw);
}

std::string PostRequest(const std::string& url, const std::string& body) {
  return absl::StrCat("POST ", url, " HTTP/1.1\r\nHost: localhost\r\n",
                      "Content-Type: application/json\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

std::string Post(const std::string& path, const std::string& url, const std::string& body) {
  return Exchange(path, PostRequest(url, body));
}

std::string PostTcp(int port, const std::string& url, const std::string& body) {
  return ExchangeOn(ConnectTcp(port), PostRequest(url, body));
}

class UnixHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-http-", getpid(), "-", reinterpret_cast<uintptr_t>(this) % 100000);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "t.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<UnixHttpServer> StartEcho(size_t max_body = 1 << 20,
                                            const std::string& tcp_listen = "") {
    UnixHttpServer::Options o;
    (tcp_listen.empty() ? o.socket_path : o.tcp_listen) = tcp_listen.empty() ? path_ : tcp_listen;
    o.max_body_bytes = max_body;
    o.connection_timeout = absl::Seconds(2);
    auto s = UnixHttpServer::Start(o, [this](const HttpRequest& r) {
      ++calls_;
      return HttpResponse{200, "application/json",
                          absl::StrCat("{\"path\":\"", r.path, "\",\"len\":", r.body.size(), "}")};
    });
    EXPECT_THAT(s, IsOk());
    return s.ok() ? *std::move(s) : nullptr;
  }

  std::filesystem::path dir_;
  std::string path_;
  std::atomic<int> calls_{0};
};

TEST_F(UnixHttpTest, ServesAPostWithContentLength) {
  auto s = StartEcho();
  const std::string r = Post(path_, "/GetQuote?x=1", "{\"report_data\":\"00\"}");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(r, HasSubstr("Content-Length: 29"));
  EXPECT_THAT(r, HasSubstr("{\"path\":\"/GetQuote\",\"len\":20}"));
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660);
}

TEST_F(UnixHttpTest, OversizedBodiesAreRefusedAndTheServerKeepsServing) {
  auto s = StartEcho(1024);
  EXPECT_THAT(Post(path_, "/x", std::string(10 << 20, 'a')), HasSubstr("413"));
  // Chunked, without a declared length: cut off while reading.
  const std::string chunk(2000, 'b');
  const std::string chunked = absl::StrCat(
      "POST /x HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      absl::Hex(chunk.size()), "\r\n", chunk, "\r\n0\r\n\r\n");
  EXPECT_THAT(Exchange(path_, chunked), HasSubstr("413"));
  EXPECT_THAT(Post(path_, "/ok", "{}"), HasSubstr("200"));
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(UnixHttpTest, HalfSentRequestsAndEarlyDisconnectsDoNotStopIt) {
  auto s = StartEcho();
  for (int i = 0; i < 20; ++i) {
    const int fd = Connect(path_);
    ASSERT_GE(fd, 0);
    const std::string half = "POST /GetQuote HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"rep";
    ASSERT_EQ(write(fd, half.data(), half.size()), static_cast<ssize_t>(half.size()));
    close(fd);  // gone before the body is complete
  }
  {
    const int fd = Connect(path_);  // full request, then leave without reading the answer
    const std::string req = "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    close(fd);
  }
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&] {
      if (Post(path_, "/b", "{}").find("200 OK") != std::string::npos)
        ++ok;
    });
  }
  for (auto& t : clients)
    t.join();
  EXPECT_EQ(ok.load(), 8);
}

TEST_F(UnixHttpTest, ReplacesAStaleSocketButNeverAFile) {
  { auto first = StartEcho(); }  // stopped: removes its socket
  EXPECT_FALSE(std::filesystem::exists(path_));
  // A stale socket left by a crash is replaced.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  auto second = StartEcho();
  EXPECT_THAT(Post(path_, "/x", "{}"), HasSubstr("200"));
  second.reset();
  std::ofstream(path_) << "not a socket";
  UnixHttpServer::Options o;
  o.socket_path = path_;
  EXPECT_THAT(UnixHttpServer::Start(o, [](const HttpRequest&) { return HttpResponse{}; }),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("not a socket")));
  o.socket_path = std::string(200, 'x');
  EXPECT_THAT(UnixHttpServer::Start(o, [](const HttpRequest&) { return HttpResponse{}; }),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(UnixHttpTest, TcpListenerServesWithTheSameFramingAndLimits) {
  auto s = StartEcho(1024, "127.0.0.1:0");
  ASSERT_NE(s, nullptr);
  ASSERT_GT(s->port(), 0);
  EXPECT_TRUE(s->socket_path().empty());
  const std::string r = PostTcp(s->port(), "/Info?q", "{}");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(r, HasSubstr("{\"path\":\"/Info\",\"len\":2}"));
  EXPECT_THAT(PostTcp(s->port(), "/x", std::string(4096, 'a')), HasSubstr("413"));
  // A half-sent request does not stop it.
  const int fd = ConnectTcp(s->port());
  ASSERT_GE(fd, 0);
  const std::string half = "POST /GetQuote HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"rep";
  ASSERT_EQ(write(fd, half.data(), half.size()), static_cast<ssize_t>(half.size()));
  close(fd);
  EXPECT_THAT(PostTcp(s->port(), "/ok", "{}"), HasSubstr("200"));
  EXPECT_EQ(calls_.load(), 2);
  const int port = s->port();
  s->Stop();
  EXPECT_EQ(ConnectTcp(port), -1);  // stopped: nothing listens there any more
}

TEST_F(UnixHttpTest, BadOrBusyTcpAddressesAreRefused) {
  auto busy = StartEcho(1024, "127.0.0.1:0");
  ASSERT_NE(busy, nullptr);
  const HttpHandler h = [](const HttpRequest&) { return HttpResponse{}; };
  struct Case {
    const char* name;
    std::string socket_path;
    std::string tcp_listen;
    absl::StatusCode code;
    const char* message;
  } cases[] = {
      {"neither", "", "", absl::StatusCode::kInvalidArgument, "exactly one"},
      {"both", path_ + "2", "127.0.0.1:0", absl::StatusCode::kInvalidArgument, "exactly one"},
      {"no port", "", "127.0.0.1", absl::StatusCode::kInvalidArgument, "HOST:PORT"},
      {"port too large", "", "127.0.0.1:65536", absl::StatusCode::kInvalidArgument, "HOST:PORT"},
      {"port not a number", "", "127.0.0.1:http", absl::StatusCode::kInvalidArgument, "HOST:PORT"},
      {"unresolvable", "", "no such host .invalid:80", absl::StatusCode::kInvalidArgument,
       "cannot resolve"},
      {"in use", "", absl::StrCat("127.0.0.1:", busy->port()), absl::StatusCode::kUnavailable,
       "bind"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    UnixHttpServer::Options o;
    o.socket_path = c.socket_path;
    o.tcp_listen = c.tcp_listen;
    EXPECT_THAT(UnixHttpServer::Start(o, h), StatusIs(c.code, HasSubstr(c.message)));
  }
  EXPECT_THAT(PostTcp(busy->port(), "/still", "{}"), HasSubstr("200"));
}

}  // namespace
}  // namespace pml::guest
