#include "lib/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"

namespace pml::rpc {
namespace {

absl::Status CheckPemFile(const std::string& path, absl::string_view flag,
                          absl::string_view marker) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " is required"));
  auto content = core::ReadFile(path, 1 << 20);
  if (!content.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", content.status().message()));
  }
  if (!absl::StrContains(*content, marker)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " does not contain a PEM ", marker));
  }
  return absl::OkStatus();
}

// gRPC logs a multi-line error and returns nothing useful when a port cannot be bound, so try
// the bind first and fail with one clear line. (A race with another process is harmless: gRPC
// then fails the same way.)
absl::Status CheckBindable(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return absl::OkStatus();
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: want host:port, got ", listen));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: cannot resolve ", listen));
  }
  absl::Status result = absl::OkStatus();
  const int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      result = absl::UnavailableError(
          absl::StrCat("cannot listen on ", listen, ": ", std::strerror(errno)));
    }
    ::close(fd);
  }
  freeaddrinfo(res);
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config,
                                                      const std::vector<RegisteredService>& services,
                                                      Metrics* metrics) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  const bool insecure = config.tls.cert.empty() && config.tls.key.empty() && config.tls.ca.empty();
  if (insecure) {
    if (!absl::StartsWith(config.listen, "unix:")) {
      return absl::InvalidArgumentError(
          "--tls-cert, --tls-key and --tls-ca are required for a TCP listener");
    }
    creds = grpc::InsecureServerCredentials();
  } else {
    PML_RETURN_IF_ERROR(CheckPemFile(config.tls.cert, "--tls-cert", "-----BEGIN CERTIFICATE-----"));
    PML_RETURN_IF_ERROR(CheckPemFile(config.tls.key, "--tls-key", "PRIVATE KEY-----"));
    if (config.require_client_cert || !config.tls.ca.empty()) {
      PML_RETURN_IF_ERROR(CheckPemFile(config.tls.ca, "--tls-ca", "-----BEGIN CERTIFICATE-----"));
    }
    // The provider re-reads the files every cert_reload_seconds; a failed reload keeps the
    // previous credentials (gRPC logs it), so a half-written file never takes a server down.
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        config.tls.key, config.tls.cert, config.tls.ca, std::max(1u, config.cert_reload_seconds));
    grpc::experimental::TlsServerCredentialsOptions opts(provider);
    opts.watch_identity_key_cert_pairs();
    if (!config.tls.ca.empty()) opts.watch_root_certs();
    opts.set_cert_request_type(config.require_client_cert
                                   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    creds = grpc::experimental::TlsServerCredentials(opts);
  }

  PML_RETURN_IF_ERROR(CheckBindable(config.listen));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  auto server = std::unique_ptr<Server>(new Server());
  builder.AddListeningPort(config.listen, creds, &server->port_);
  if (!config.local_listen.empty()) {
    if (!absl::StartsWith(config.local_listen, "unix:"))
      return absl::InvalidArgumentError("the local listener must be unix:/path");
    builder.AddListeningPort(config.local_listen, grpc::InsecureServerCredentials());
  }
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  for (const auto& s : services) builder.RegisterService(s.service);
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
    f.push_back(metrics->InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(f));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr ||
      (server->port_ == 0 && !absl::StartsWith(config.listen, "unix:"))) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen,
                                               " (address in use or not valid)"));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  if (health != nullptr) {
    for (const auto& s : services) {
      health->SetServingStatus(s.full_name, true);
    }
    health->SetServingStatus(true);
  }
  return server;
}

Server::~Server() {
  if (!shut_down_) Shutdown(absl::ZeroDuration());
}

void Server::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  if (auto* health = server_->GetHealthCheckService()) health->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void ConfigureMutexes() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

int WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

}  // namespace pml::rpc
