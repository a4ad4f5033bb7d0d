// pml-bench-guest-agent: GetQuote latency and throughput through pml-guest-agent's two APIs,
// against the simulated TEE called directly, in one process and one run (issue 6,
// "Performance"). A report, not a test: it exits 0 whatever the verdicts, 2 when it cannot run.
// See bench/README.md.
//
// The agent is wired as services/guest-agent/main.cc wires it (simulated TEE with a temp state
// dir, RTMR3 runtime log, boot sequence with the local-dev key provider, AgentCore), and served on
// two unix sockets in a temp dir:
//   dstack HTTP  UnixHttpServer (libmicrohttpd) + DstackApi; a minimal HTTP/1.1 client here POSTs
//                /GetQuote {"report_data":"<128 hex>"}, keeping the connection alive when the
//                server allows it (the report says whether it did);
//   gRPC         rpc::Server (with the metrics interceptor, as the agent runs it) +
//                GuestAgentService on its bounded executor; GuestAgent::GetQuote through
//                grpc::CreateChannel("unix:...", InsecureChannelCredentials()).
// Rows measured, each for --seconds of wall-clock time per client-thread count:
//   provider     TdxSimulator::GetQuote(64 bytes), the bound;
//   agent core   AgentCore::GetQuote in-process (adds the event log and copies; no transport);
//   HTTP, gRPC   the two sockets, end to end, client included.
// Targets (sequential, one client thread): agent overhead = (path p50 - provider p50) /
// provider p50 < 10%, and path p99 < 2 ms.
//
//   pml-bench-guest-agent [--seconds S] [--threads 1,4]

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/rpc/executor.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/metrics.h"
#include "lib/rpc/server.h"
#include "lib/rpc/unary.h"
#include "lib/tee/simulator.h"
#include "pml/guest/v1/guest.grpc.pb.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/app_keys.h"
#include "services/guest-agent/boot.h"
#include "services/guest-agent/dstack_api.h"
#include "services/guest-agent/guest_agent_service.h"
#include "services/guest-agent/runtime_log.h"
#include "services/guest-agent/unix_http.h"

namespace pml::bench {
namespace {

using Json = nlohmann::json;

constexpr char kProgram[] = "pml-bench-guest-agent";
constexpr double kOverheadTarget = 0.10;  // (path p50 - provider p50) / provider p50
constexpr double kP99TargetUs = 2000;     // 2 ms
constexpr auto kClientDeadline = std::chrono::seconds(10);

// One GetQuote by one client; a failure or a wrong answer is an error.
using Call = std::function<absl::Status()>;
// Makes one client (its own connection or stub) per measuring thread.
using CallFactory = std::function<absl::StatusOr<Call>()>;

struct Result : LoadResult {
  int threads = 0;

  double p50() const { return Percentile(latency_us, 0.50); }
  double p99() const { return Percentile(latency_us, 0.99); }
};

// Runs `threads` clients from `factory`, each calling back to back for `seconds` of wall time
// after a short warm-up, and records every call's latency. The first failure stops the run.
absl::StatusOr<Result> Measure(int threads, double seconds, const CallFactory& factory) {
  std::vector<Call> calls;
  for (int t = 0; t < threads; ++t) {
    PML_ASSIGN_OR_RETURN(Call call, factory());
    for (int i = 0; i < 20; ++i)
      PML_RETURN_IF_ERROR(call());  // warm-up: connections, caches, allocator
    calls.push_back(std::move(call));
  }
  Result r;
  r.threads = threads;
  LoadOptions options;
  options.reserve_per_thread = 1 << 16;
  PML_RETURN_IF_ERROR(RunClosedLoop(calls, seconds, options, &r));
  return r;
}

// ---- A minimal HTTP/1.1 client over AF_UNIX -------------------------------------------------

struct HttpCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> closed_by_server{0};  // responses that ended their connection
};

struct HttpReply {
  int status = 0;
  std::string body;
};

// One connection at a time to a unix-socket HTTP server; POST with a Content-Length body, and a
// response framed by Content-Length (or by EOF). Keeps the connection for the next request unless
// the server answers "Connection: close" or HTTP/1.0. Not thread-safe: one per thread.
class UnixHttpClient {
 public:
  UnixHttpClient(std::string socket_path, HttpCounters& counters)
      : path_(std::move(socket_path)), counters_(counters) {}
  ~UnixHttpClient() { Close(); }
  UnixHttpClient(const UnixHttpClient&) = delete;
  UnixHttpClient& operator=(const UnixHttpClient&) = delete;

  absl::Status Post(absl::string_view target, absl::string_view body, HttpReply& reply) {
    request_.clear();
    absl::StrAppend(&request_, "POST ", target,
                    " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    "Content-Length: ",
                    body.size(), "\r\n\r\n", body);
    counters_.requests.fetch_add(1, std::memory_order_relaxed);
    const bool reused = fd_ >= 0;
    absl::Status s = Exchange(reply);
    if (!s.ok() && reused && nothing_received_) {
      // The server closed an idle kept-alive connection between requests: retry once, fresh.
      Close();
      s = Exchange(reply);
    }
    if (!s.ok())
      Close();
    return s;
  }

 private:
  absl::Status Exchange(HttpReply& reply) {
    nothing_received_ = true;
    if (fd_ < 0)
      PML_RETURN_IF_ERROR(Connect());
    PML_RETURN_IF_ERROR(WriteAll(request_));
    return ReadResponse(reply);
  }

  absl::Status Connect() {
    sockaddr_un addr{};
    if (path_.size() >= sizeof(addr.sun_path))
      return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path_));
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0)
      return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    // The client's deadline: a server that stops answering fails the run instead of hanging it.
    timeval tv{};
    tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kClientDeadline).count();
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path_.data(), path_.size());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      const int e = errno;
      Close();
      return absl::UnavailableError(absl::StrCat("connect ", path_, ": ", strerror(e)));
    }
    counters_.connections.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  void Close() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  absl::Status WriteAll(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // Appends what one recv returns to in_; false at EOF.
  absl::StatusOr<bool> ReadSome() {
    char buf[64 * 1024];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK
                   ? absl::DeadlineExceededError("no response within the client deadline")
                   : absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
      }
      if (n > 0)
        nothing_received_ = false;
      in_.append(buf, static_cast<size_t>(n));
      return n > 0;
    }
  }

  absl::Status ReadResponse(HttpReply& reply) {
    in_.clear();
    size_t header_end = std::string::npos;
    while ((header_end = in_.find("\r\n\r\n")) == std::string::npos) {
      PML_ASSIGN_OR_RETURN(bool more, ReadSome());
      if (!more)
        return absl::UnavailableError("connection closed before the response header");
      if (in_.size() > 64 * 1024)
        return absl::InternalError("response header larger than 64 KiB");
    }
    const absl::string_view head(in_.data(), header_end);
    std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
    // "HTTP/1.1 200 OK"
    const absl::string_view status_line = lines[0];
    if (!absl::StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 ||
        !absl::SimpleAtoi(status_line.substr(9, 3), &reply.status)) {
      return absl::InternalError(
          absl::StrCat("bad status line: ", status_line.substr(0, 64)));
    }
    bool keep = status_line[7] == '1';  // HTTP/1.1 keeps alive by default, 1.0 does not
    std::optional<size_t> content_length;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos)
        continue;
      const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      const std::string value =
          absl::AsciiStrToLower(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      if (name == "content-length") {
        size_t n = 0;
        if (!absl::SimpleAtoi(value, &n))
          return absl::InternalError("bad Content-Length");
        content_length = n;
      } else if (name == "connection") {
        if (absl::StrContains(value, "close"))
          keep = false;
        else if (absl::StrContains(value, "keep-alive"))
          keep = true;
      } else if (name == "transfer-encoding" && value != "identity") {
        return absl::UnimplementedError("chunked responses are not supported by this client");
      }
    }
    const size_t body_start = header_end + 4;
    if (content_length.has_value()) {
      while (in_.size() < body_start + *content_length) {
        PML_ASSIGN_OR_RETURN(bool more, ReadSome());
        if (!more)
          return absl::UnavailableError("connection closed inside the response body");
      }
      reply.body.assign(in_, body_start, *content_length);
    } else {
      keep = false;  // framed by EOF
      for (;;) {
        PML_ASSIGN_OR_RETURN(bool more, ReadSome());
        if (!more)
          break;
      }
      reply.body.assign(in_, body_start, std::string::npos);
    }
    if (!keep) {
      counters_.closed_by_server.fetch_add(1, std::memory_order_relaxed);
      Close();
    }
    return absl::OkStatus();
  }

  const std::string path_;
  HttpCounters& counters_;
  int fd_ = -1;
  bool nothing_received_ = true;
  std::string request_;
  std::string in_;
};

// ---- The agent, wired as main.cc wires it ----------------------------------------------------

struct Agent {
  std::unique_ptr<tee::TdxSimulator> tee;
  std::unique_ptr<guest::RuntimeEventLog> log;
  guest::BootState boot;
  std::unique_ptr<guest::AppKeys> keys;
  std::unique_ptr<guest::AgentCore> core;
  std::unique_ptr<guest::DstackApi> api;
  std::unique_ptr<guest::UnixHttpServer> http;
  rpc::RoleTable roles;
  std::unique_ptr<rpc::Executor> executor;
  std::unique_ptr<rpc::Metrics> metrics;
  std::unique_ptr<guest::GuestAgentService> service;
  std::unique_ptr<rpc::Server> grpc;
  std::string http_socket;
  std::string grpc_socket;

  ~Agent() {  // the order main.cc shuts down in
    if (grpc != nullptr)
      grpc->Shutdown(absl::Seconds(1));
    if (executor != nullptr)
      executor->Shutdown();
    if (http != nullptr)
      http->Stop();
  }
};

// Defaults of pml-guest-agent's flags (lib/rpc/flags.h ServerFlags, unix_http.h Options).
constexpr unsigned kHandlerThreads = 4;
constexpr unsigned kHandlerQueue = 256;

absl::StatusOr<std::unique_ptr<Agent>> StartAgent(const std::string& dir) {
  auto agent = std::make_unique<Agent>();
  const std::string state = dir + "/state";
  PML_RETURN_IF_ERROR(core::MakeDirs(state, 0700));
  tee::SimulatorOptions so;
  so.state_dir = state;
  PML_ASSIGN_OR_RETURN(agent->tee, tee::TdxSimulator::Create(so));
  PML_ASSIGN_OR_RETURN(agent->log,
                       guest::RuntimeEventLog::Open(state + "/runtime-events.log", *agent->tee));
  const std::string compose = dir + "/app-compose.json";
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(
      compose, R"({"manifest_version":2,"name":"bench","runner":"bash","bash_script":"true",)"
               R"("key_provider":"local"})"));
  guest::BootOptions boot;
  boot.app_compose_path = compose;
  boot.state_dir = state;
  boot.key_provider = "local-dev";  // MakeLocalDevKeys, as --key-provider=local-dev
  boot.tee_kind = "simulated";
  boot.version = rpc::Version();
  PML_ASSIGN_OR_RETURN(agent->boot, guest::RunBoot(boot, *agent->log, /*gpus=*/nullptr));
  PML_ASSIGN_OR_RETURN(agent->keys,
                       guest::AppKeys::Create(agent->boot.app_key, agent->boot.kms_signature));
  agent->core = std::make_unique<guest::AgentCore>(
      *agent->log, *agent->keys, agent->boot.ca.has_value() ? &*agent->boot.ca : nullptr,
      /*gpus=*/nullptr, agent->boot.identity);
  agent->api = std::make_unique<guest::DstackApi>(*agent->core);

  agent->http_socket = dir + "/dstack.sock";
  guest::UnixHttpServer::Options ho;
  ho.socket_path = agent->http_socket;
  const guest::DstackApi* api = agent->api.get();
  PML_ASSIGN_OR_RETURN(agent->http,
                       guest::UnixHttpServer::Start(
                           ho, [api](const guest::HttpRequest& r) { return api->Handle(r); }));

  agent->grpc_socket = dir + "/guest.sock";
  agent->roles = guest::GuestAgentRoleTable();
  agent->executor = std::make_unique<rpc::Executor>(kHandlerThreads, kHandlerQueue);
  agent->metrics = std::make_unique<rpc::Metrics>("guest-agent", rpc::Version());
  const rpc::ServiceEnv env{&agent->roles, agent->executor.get()};
  agent->service = std::make_unique<guest::GuestAgentService>(env, *agent->core);
  rpc::ServerConfig config;
  config.component = "guest-agent";
  config.listen = "unix:" + agent->grpc_socket;  // insecure: guest-local callers
  PML_ASSIGN_OR_RETURN(
      agent->grpc,
      rpc::Server::Start(config,
                         {{agent->service.get(), guest::v1::GuestAgent::service_full_name()}},
                         agent->metrics.get()));
  return agent;
}

// ---- The four paths --------------------------------------------------------------------------

// The report data every call asks for (64 bytes, so nothing is padded).
std::vector<uint8_t> BenchReportData() {
  std::vector<uint8_t> rd(64);
  for (size_t i = 0; i < rd.size(); ++i)
    rd[i] = static_cast<uint8_t>(0xA0 ^ i);
  return rd;
}

struct Expected {
  std::vector<uint8_t> report_data;  // 64 bytes
  size_t quote_bytes = 0;
  size_t http_body_bytes = 0;
  std::string http_body;  // the real /GetQuote answer, replayed by the transport floor
};

// The transport floor of the HTTP path: a minimal HTTP/1.1 server on its own unix socket that
// answers every request with the agent's real /GetQuote response bytes (no libmicrohttpd, no
// JSON, no quote), one thread per connection, keep-alive. What any unix-socket HTTP API pays.
class EchoServer {
 public:
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(const std::string& path,
                                                           std::string body) {
    auto s = std::unique_ptr<EchoServer>(new EchoServer());
    s->response_ = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: ", body.size(), "\r\n\r\n", body);
    s->fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (s->fd_ < 0 || path.size() >= sizeof(addr.sun_path))
      return absl::InternalError("echo socket");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::bind(s->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(s->fd_, 64) != 0)
      return absl::InternalError(absl::StrCat("echo socket: ", strerror(errno)));
    s->acceptor_ = std::thread([raw = s.get()] { raw->Accept(); });
    return s;
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (acceptor_.joinable())
      acceptor_.join();
    for (int c : conns_)
      ::shutdown(c, SHUT_RDWR);
    for (auto& t : workers_)
      t.join();
    for (int c : conns_)
      ::close(c);
  }

 private:
  EchoServer() = default;
  void Accept() {
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0)
        return;
      conns_.push_back(c);
      workers_.emplace_back([this, c] { Serve(c); });
    }
  }
  void Serve(int c) {
    std::string in;
    char buf[16384];
    for (;;) {
      const size_t head = in.find("\r\n\r\n");
      if (head != std::string::npos) {
        size_t length = 0;
        const size_t cl = in.find("Content-Length: ");
        if (cl != std::string::npos && cl < head)
          length = std::strtoul(in.c_str() + cl + 16, nullptr, 10);
        if (in.size() >= head + 4 + length) {
          in.erase(0, head + 4 + length);
          size_t off = 0;
          while (off < response_.size()) {
            const ssize_t n = ::send(c, response_.data() + off, response_.size() - off, MSG_NOSIGNAL);
            if (n <= 0)
              return;
            off += static_cast<size_t>(n);
          }
          continue;
        }
      }
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0)
        return;
      in.append(buf, static_cast<size_t>(n));
    }
  }
  int fd_ = -1;
  std::string response_;
  std::thread acceptor_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

// The dstack API's request handling without a socket: JSON in, the core's quote, JSON out.
CallFactory HandlerCalls(const guest::DstackApi& api, const std::string& body, const Expected& e) {
  return [&api, &body, &e]() -> absl::StatusOr<Call> {
    return Call([&api, &body, &e]() -> absl::Status {
      guest::HttpResponse r = api.Handle({"POST", "/GetQuote", "", body});
      if (r.status != 200 || r.body.size() != e.http_body_bytes)
        return absl::InternalError(absl::StrCat("handler answered ", r.status));
      return absl::OkStatus();
    });
  };
}

// The transport floor of the gRPC path: the standard health Check on the agent's own server and
// channel (gRPC's framing, HTTP/2 and the callback machinery, without the agent's executor hop).
CallFactory HealthCalls(const std::shared_ptr<grpc::Channel>& channel) {
  return [channel]() -> absl::StatusOr<Call> {
    std::shared_ptr<grpc::health::v1::Health::Stub> stub =
        grpc::health::v1::Health::NewStub(channel);
    return Call([stub]() -> absl::Status {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kClientDeadline);
      grpc::health::v1::HealthCheckRequest req;
      grpc::health::v1::HealthCheckResponse resp;
      const grpc::Status s = stub->Check(&ctx, req, &resp);
      if (!s.ok())
        return absl::UnavailableError(absl::StrCat("health: ", s.error_message()));
      return absl::OkStatus();
    });
  };
}

CallFactory ProviderCalls(tee::TdxSimulator& tee, const Expected& e) {
  return [&tee, &e]() -> absl::StatusOr<Call> {
    return Call([&tee, &e]() -> absl::Status {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> q, tee.GetQuote(e.report_data));
      if (q.size() != e.quote_bytes)
        return absl::InternalError(absl::StrCat("provider quote of ", q.size(), " bytes"));
      return absl::OkStatus();
    });
  };
}

CallFactory CoreCalls(const guest::AgentCore& core, const Expected& e) {
  return [&core, &e]() -> absl::StatusOr<Call> {
    return Call([&core, &e]() -> absl::Status {
      PML_ASSIGN_OR_RETURN(guest::QuoteResult q, core.GetQuote(e.report_data));
      if (q.quote.size() != e.quote_bytes)
        return absl::InternalError(absl::StrCat("core quote of ", q.quote.size(), " bytes"));
      return absl::OkStatus();
    });
  };
}

CallFactory HttpCalls(const std::string& socket, const std::string& body, const Expected& e,
                      HttpCounters& counters) {
  return [&socket, &body, &e, &counters]() -> absl::StatusOr<Call> {
    auto client = std::make_shared<UnixHttpClient>(socket, counters);
    auto reply = std::make_shared<HttpReply>();
    return Call([client, reply, &body, &e]() -> absl::Status {
      PML_RETURN_IF_ERROR(client->Post("/GetQuote", body, *reply));
      if (reply->status != 200 || reply->body.size() != e.http_body_bytes) {
        return absl::InternalError(absl::StrCat("HTTP ", reply->status, " with ",
                                                reply->body.size(), " bytes: ",
                                                reply->body.substr(0, 64)));
      }
      return absl::OkStatus();
    });
  };
}

CallFactory GrpcCalls(const std::shared_ptr<grpc::Channel>& channel, const Expected& e) {
  return [channel, &e]() -> absl::StatusOr<Call> {
    std::shared_ptr<guest::v1::GuestAgent::Stub> stub = guest::v1::GuestAgent::NewStub(channel);
    auto request = std::make_shared<guest::v1::GetQuoteRequest>();
    request->set_report_data(core::ToString(e.report_data));
    return Call([stub, request, &e]() -> absl::Status {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kClientDeadline);
      guest::v1::GetQuoteResponse response;
      const grpc::Status s = stub->GetQuote(&ctx, *request, &response);
      if (!s.ok()) {
        return absl::UnavailableError(
            absl::StrCat("gRPC GetQuote: code ", s.error_code(), ": ", s.error_message()));
      }
      if (response.quote().size() != e.quote_bytes)
        return absl::InternalError(absl::StrCat("gRPC quote of ", response.quote().size()));
      return absl::OkStatus();
    });
  };
}

// One call on each path, checked in full (the measured calls check sizes and status only).
absl::StatusOr<Expected> Probe(Agent& agent, const std::string& http_body,
                               const std::shared_ptr<grpc::Channel>& channel,
                               HttpCounters& counters) {
  Expected e;
  e.report_data = BenchReportData();
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> quote, agent.tee->GetQuote(e.report_data));
  e.quote_bytes = quote.size();
  PML_ASSIGN_OR_RETURN(guest::QuoteResult core_quote, agent.core->GetQuote(e.report_data));
  if (core_quote.quote.size() != e.quote_bytes || core_quote.report_data != e.report_data)
    return absl::InternalError("the agent core's quote differs from the provider's in shape");

  UnixHttpClient http(agent.http_socket, counters);
  HttpReply reply;
  PML_RETURN_IF_ERROR(http.Post("/GetQuote", http_body, reply));
  const Json j = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (reply.status != 200 || !j.is_object() || !j.contains("quote") || !j["quote"].is_string() ||
      j["quote"].get<std::string>().size() != 2 * e.quote_bytes ||
      j.value("report_data", "") != core::HexEncode(e.report_data)) {
    return absl::InternalError(absl::StrCat("HTTP /GetQuote answered ", reply.status, ": ",
                                            reply.body.substr(0, 200)));
  }
  e.http_body_bytes = reply.body.size();
  e.http_body = reply.body;

  auto stub = guest::v1::GuestAgent::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kClientDeadline);
  guest::v1::GetQuoteRequest request;
  request.set_report_data(core::ToString(e.report_data));
  guest::v1::GetQuoteResponse response;
  const grpc::Status s = stub->GetQuote(&ctx, request, &response);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("gRPC GetQuote: code ", s.error_code(), ": ", s.error_message()));
  }
  if (response.quote().size() != e.quote_bytes ||
      response.report_data() != core::ToString(e.report_data) || !response.simulated()) {
    return absl::InternalError("gRPC GetQuote answered a quote of the wrong shape");
  }
  return e;
}

const char* Verdict(bool pass) { return pass ? "PASS" : "FAIL"; }

struct Options {
  double seconds = 2.0;
  std::vector<int> threads = {1, 4};
};

int Run(Options o) {
  o.threads.push_back(1);  // the sequential run always happens: the targets use it
  std::sort(o.threads.begin(), o.threads.end());
  o.threads.erase(std::unique(o.threads.begin(), o.threads.end()), o.threads.end());

  auto dir = TempDir::Make("", "pml-bench-ga");
  if (!dir.ok())
    return Fail(kProgram, dir.status());
  auto agent = StartAgent(dir->path());
  if (!agent.ok())
    return Fail(kProgram, agent.status());
  Agent& a = **agent;
  HttpCounters http_counters;
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel("unix:" + a.grpc_socket, grpc::InsecureChannelCredentials());

  // The request body is fixed, so it is built once (the client's own cost stays small).
  const std::string http_body =
      Json{{"report_data", core::HexEncode(BenchReportData())}}.dump();
  auto probed = Probe(a, http_body, channel, http_counters);
  if (!probed.ok())
    return Fail(kProgram, probed.status());
  const Expected e = *std::move(probed);
  const size_t event_log_bytes = [&] {
    auto q = a.core->GetQuote(e.report_data);
    return q.ok() ? q->event_log.size() : 0;
  }();

  struct Path {
    const char* name;
    CallFactory factory;
    std::vector<Result> results;  // one per entry of o.threads
  };
  const std::string echo_socket = dir->path() + "/echo.sock";
  auto echo = EchoServer::Start(echo_socket, e.http_body);
  if (!echo.ok())
    return Fail(kProgram, echo.status());
  HttpCounters floor_counters;
  std::vector<Path> paths = {
      {"provider direct (TdxSimulator)", ProviderCalls(*a.tee, e), {}},
      {"agent core in-process (AgentCore)", CoreCalls(*a.core, e), {}},
      {"dstack HTTP /GetQuote (unix socket)", HttpCalls(a.http_socket, http_body, e, http_counters),
       {}},
      {"gRPC GuestAgent.GetQuote (unix socket)", GrpcCalls(channel, e), {}},
      {"dstack JSON handler in-process (no socket)", HandlerCalls(*a.api, http_body, e), {}},
      {"floor: same bytes, bare unix HTTP echo", HttpCalls(echo_socket, http_body, e,
                                                          floor_counters), {}},
      {"floor: gRPC health Check, same server", HealthCalls(channel), {}},
  };
  const uint64_t http_connections0 = http_counters.connections.load();
  const uint64_t http_requests0 = http_counters.requests.load();
  const uint64_t http_closed0 = http_counters.closed_by_server.load();
  for (int threads : o.threads) {
    for (Path& p : paths) {
      auto r = Measure(threads, o.seconds, p.factory);
      if (!r.ok())
        return Fail(kProgram, absl::Status(r.status().code(),
                                           absl::StrCat(p.name, ", ", threads,
                                                        " threads: ", r.status().message())));
      p.results.push_back(*std::move(r));
    }
  }
  const uint64_t http_connections = http_counters.connections.load() - http_connections0;
  const uint64_t http_requests = http_counters.requests.load() - http_requests0;
  const uint64_t http_closed = http_counters.closed_by_server.load() - http_closed0;
  const bool keep_alive = http_closed == 0 && http_connections < http_requests;

  std::printf(
      "pml-bench-guest-agent: GetQuote with the simulated TDX TEE (TdxSimulator), 64-byte report "
      "data, %.1f s wall per measurement\n",
      o.seconds);
  std::printf(
      "  quote %zu bytes, event log %zu bytes (boot events), HTTP response %zu bytes; server: %u "
      "HTTP threads, %u gRPC handler threads; %u CPUs available\n",
      e.quote_bytes, event_log_bytes, e.http_body_bytes, guest::UnixHttpServer::Options{}.threads,
      kHandlerThreads, std::thread::hardware_concurrency());
  std::printf("  HTTP client: %s (%llu connections for %llu requests%s)\n",
              keep_alive ? "keep-alive, one connection per client thread"
                         : "one connection per request (server closes)",
              static_cast<unsigned long long>(http_connections),
              static_cast<unsigned long long>(http_requests),
              http_closed > 0 ? absl::StrCat(", ", http_closed, " closed by the server").c_str()
                              : "");
  for (size_t i = 0; i < o.threads.size(); ++i) {
    const int threads = o.threads[i];
    std::printf("%s\n", threads == 1 ? "sequential (1 client thread)"
                                     : absl::StrCat(threads, " concurrent client threads").c_str());
    std::printf("  %-40s %9s %9s %9s %11s %10s\n", "", "p50 us", "p99 us", "req/s", "CPU us/req",
                "vs provider");
    const double provider_rate = paths[0].results[i].PerSecond();
    for (const Path& p : paths) {
      const Result& r = p.results[i];
      std::printf("  %-40s %9.1f %9.1f %9.0f %11.1f %9.2fx\n", p.name, r.p50(), r.p99(),
                  r.PerSecond(), r.CpuUsPerRequest(),
                  provider_rate > 0 ? r.PerSecond() / provider_rate : 0);
    }
  }

  // Targets, on the sequential run.
  const Result& provider = paths[0].results[0];
  const Result& core_seq = paths[1].results[0];
  std::printf("targets (sequential; the bound is the provider's p50 %.1f us in this run)\n",
              provider.p50());
  std::printf("  %-6s added %7.1f us p50, overhead %6.1f%% (no target: the agent core alone)\n",
              "core", core_seq.p50() - provider.p50(),
              100 * (core_seq.p50() - provider.p50()) / provider.p50());
  for (size_t k = 2; k < 4; ++k) {
    const Result& r = paths[k].results[0];
    const char* label = k == 2 ? "HTTP" : "gRPC";
    const double added = r.p50() - provider.p50();
    const double overhead = added / provider.p50();
    std::printf(
        "  %-6s end to end: added %7.1f us p50 over the provider, %6.1f%% (target < %.0f%%)  %s\n",
        label, added, 100 * overhead, 100 * kOverheadTarget, Verdict(overhead < kOverheadTarget));
    // The agent's own share: what the path adds beyond the provider and beyond the bare transport
    // (the same bytes over the same kind of socket, measured in this run).
    const double floor = paths[k + 3].results[0].p50();
    const double own = r.p50() - provider.p50() - floor;
    std::printf(
        "  %-6s agent's own: %7.1f us p50 (path - provider - transport floor %.1f us), %6.1f%% of "
        "the provider (target < %.0f%%)  %s\n",
        label, own, floor, 100 * own / provider.p50(), 100 * kOverheadTarget,
        Verdict(own / provider.p50() < kOverheadTarget));
  }
  for (size_t k = 2; k < 4; ++k) {
    const Result& r = paths[k].results[0];
    std::printf("  %-6s p99 %8.3f ms (target < %.0f ms)  %s\n", k == 2 ? "HTTP" : "gRPC",
                r.p99() / 1000, kP99TargetUs / 1000, Verdict(r.p99() < kP99TargetUs));
  }
  return 0;
}

}  // namespace
}  // namespace pml::bench

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // the boot sequence's info lines are not the report
  pml::bench::Options o;
  CLI::App app(
      "pml-bench-guest-agent: GetQuote latency (p50/p99) and throughput over the guest agent's "
      "dstack HTTP socket and gRPC socket, against the simulated TEE called directly, in one "
      "process (see bench/README.md). Always exits 0 once measured; 2 when it cannot run.",
      "pml-bench-guest-agent");
  app.add_option("--seconds", o.seconds, "wall-clock seconds per measurement (0.01 to 600)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 600.0));
  app.add_option("--threads", o.threads,
                 "client thread counts to measure, comma-separated (1 always runs: the "
                 "sequential latency the targets use)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  return pml::bench::ParseAndRun(app, argc, argv, pml::bench::kProgram,
                                 [&o] { return pml::bench::Run(o); });
}
