#pragma once
// A small HTTP/1.1 server (libmicrohttpd) for the dstack-compatible guest APIs: on a unix socket
// (`dstack.sock`, `tappd.sock`) or on a TCP address (`--dstack-http-listen`, the public subset
// reached through a forwarded port). Requests are buffered up to Options::max_body_bytes and
// handed to one handler; everything about HTTP framing, slow or half-sent requests, oversized
// bodies (413 before reading them), clients that disconnect mid-response, and timeouts is
// libmicrohttpd's job, the same for both kinds of listener (same limits and timeouts).
//
// A unix socket file is created with Options::mode (default 0660) after removing a stale socket
// (never another kind of file), and removed on Stop. A TCP listener sets SO_REUSEADDR and
// serves plain HTTP (no TLS): give it only handlers whose answers are public.
//
// Thread-safety: the handler runs concurrently on the server's thread pool and must be
// thread-safe. Start/Stop are not thread-safe with each other.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct MHD_Daemon;

namespace pml::guest {

struct HttpRequest {
  std::string method;  // "POST", "GET", ...
  std::string path;    // "/GetQuote", "/prpc/Tappd.TdxQuote" (query string removed)
  std::string query;   // raw query string, without '?', "" when none
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class UnixHttpServer {
 public:
  struct Options {
    // Exactly one of the two: a unix socket path, or a TCP address "HOST:PORT" (HOST an IPv4
    // address, "[IPv6]", a name that resolves (its first address), or "" for every interface;
    // PORT 0 picks a free port, see port()).
    std::string socket_path;
    std::string tcp_listen;
    mode_t mode = 0660;  // unix socket only
    size_t max_body_bytes = 1 << 20;
    int threads = 4;
    absl::Duration connection_timeout = absl::Seconds(30);
    unsigned max_connections = 256;
  };

  // Binds and starts serving. kInvalidArgument for neither or both of socket_path and tcp_listen,
  // a socket path that is too long for sun_path, or a tcp_listen that is not HOST:PORT or does
  // not resolve; kAlreadyExists when the socket path exists and is not a socket; kUnavailable
  // when the address cannot be bound (in use, not local); kInternal with the system's reason
  // otherwise.
  static absl::StatusOr<std::unique_ptr<UnixHttpServer>> Start(Options options,
                                                               HttpHandler handler);
  ~UnixHttpServer();  // Stop()
  UnixHttpServer(const UnixHttpServer&) = delete;
  UnixHttpServer& operator=(const UnixHttpServer&) = delete;

  // Stops accepting, waits for handlers in flight, removes the socket file. Idempotent.
  void Stop();

  const std::string& socket_path() const { return options_.socket_path; }
  // The bound TCP port (the chosen one for port 0); 0 for a unix socket.
  int port() const { return port_; }

 private:
  UnixHttpServer(Options options, HttpHandler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}
  friend struct MhdCallbacks;

  const Options options_;
  const HttpHandler handler_;
  MHD_Daemon* daemon_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
};

}  // namespace pml::guest
