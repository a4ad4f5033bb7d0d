#include "services/guest-agent/unix_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"

namespace pml::guest {
namespace {

// Per-connection state: the body gathered so far.
struct Pending {
  std::string body;
  bool too_large = false;
};

MHD_Result Send(MHD_Connection* connection, const HttpResponse& r) {
  MHD_Response* resp = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (resp == nullptr)
    return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", r.content_type.c_str());
  const MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
  return ret;
}

std::string ErrnoText(int e) { return std::string(strerror(e)); }

// A listening unix socket at `path`, created with `mode`.
absl::StatusOr<int> BindUnix(const std::string& path, mode_t mode) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path \"", path.substr(0, 200),
                                                   "\": longer than ", sizeof(addr.sun_path) - 1,
                                                   " bytes"));
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, " exists and is not a socket; not replacing it"));
    }
    unlink(path.c_str());  // a stale socket from an earlier run
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", ErrnoText(errno)));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.data(), path.size());
  // Created with the final mode: no window where the socket is more open than asked.
  const mode_t old_umask = umask(static_cast<mode_t>(~mode) & 0777);
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind ", path, ": ", ErrnoText(bind_errno)));
  }
  chmod(path.c_str(), mode);
  if (listen(fd, 128) != 0) {
    const int e = errno;
    close(fd);
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("listen ", path, ": ", ErrnoText(e)));
  }
  return fd;
}

// A listening TCP socket at "HOST:PORT"; `port` receives the bound port.
absl::StatusOr<int> BindTcp(const std::string& listen_address, int& port) {
  const std::string shown = listen_address.substr(0, 200);
  const size_t colon = listen_address.rfind(':');
  int wanted_port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(listen_address).substr(colon + 1), &wanted_port) ||
      wanted_port < 0 || wanted_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP address \"", shown, "\": want HOST:PORT (PORT 0..65535)"));
  }
  std::string host = listen_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(wanted_port);
  const int gai =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found);
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  if (gai != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("TCP address \"", shown, "\": cannot resolve: ",
                                                   gai != 0 ? gai_strerror(gai) : "no address"));
  }
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", ErrnoText(errno)));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
    const int e = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind ", shown, ": ", ErrnoText(e)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (listen(fd, 128) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    const int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("listen ", shown, ": ", ErrnoText(e)));
  }
  port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

}  // namespace

struct MhdCallbacks {
  static MHD_Result Access(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* upload_data,
                           size_t* upload_data_size, void** con_cls) {
    auto* self = static_cast<UnixHttpServer*>(cls);
    if (*con_cls == nullptr) {
      auto* p = new Pending();
      *con_cls = p;
      // Refuse a declared oversized body before reading it.
      const char* len =
          MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      if (len != nullptr && strtoull(len, nullptr, 10) > self->options_.max_body_bytes)
        p->too_large = true;
      return MHD_YES;
    }
    auto* p = static_cast<Pending*>(*con_cls);
    if (*upload_data_size != 0) {
      if (!p->too_large && p->body.size() + *upload_data_size <= self->options_.max_body_bytes) {
        p->body.append(upload_data, *upload_data_size);
      } else {
        p->too_large = true;
        p->body.clear();
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (p->too_large) {
      return Send(connection, {413, "application/json",
                               absl::StrCat("{\"error\":\"request body larger than ",
                                            self->options_.max_body_bytes, " bytes\"}")});
    }
    HttpRequest req;
    req.method = method == nullptr ? "" : method;
    req.path = url == nullptr ? "" : url;
    if (const size_t q = req.path.find('?'); q != std::string::npos) {
      req.query = req.path.substr(q + 1);
      req.path.resize(q);
    }
    req.body = std::move(p->body);
    HttpResponse resp;
    try {
      resp = self->handler_(req);
    } catch (...) {  // a handler must not throw; never let it cross the C library
      resp = {500, "application/json", "{\"error\":\"internal error\"}"};
    }
    return Send(connection, resp);
  }

  static void Completed(void* /*cls*/, MHD_Connection* /*connection*/, void** con_cls,
                        MHD_RequestTerminationCode /*toe*/) {
    delete static_cast<Pending*>(*con_cls);
    *con_cls = nullptr;
  }
};

absl::StatusOr<std::unique_ptr<UnixHttpServer>> UnixHttpServer::Start(Options options,
                                                                      HttpHandler handler) {
  if (options.socket_path.empty() == options.tcp_listen.empty())
    return absl::InvalidArgumentError("give exactly one of a socket path and a TCP address");
  std::unique_ptr<UnixHttpServer> server(
      new UnixHttpServer(std::move(options), std::move(handler)));
  const Options& o = server->options_;
  if (!o.socket_path.empty()) {
    PML_ASSIGN_OR_RETURN(server->listen_fd_, BindUnix(o.socket_path, o.mode));
  } else {
    PML_ASSIGN_OR_RETURN(server->listen_fd_, BindTcp(o.tcp_listen, server->port_));
  }
  // From here on the framing, limits and timeouts are the same for both kinds of listener.
  const std::string& where = o.socket_path.empty() ? o.tcp_listen : o.socket_path;
  server->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &MhdCallbacks::Access, server.get(), MHD_OPTION_LISTEN_SOCKET, server->listen_fd_,
      MHD_OPTION_NOTIFY_COMPLETED, &MhdCallbacks::Completed, nullptr, MHD_OPTION_THREAD_POOL_SIZE,
      static_cast<unsigned>(o.threads), MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(absl::ToInt64Seconds(o.connection_timeout)),
      MHD_OPTION_CONNECTION_LIMIT, o.max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      static_cast<size_t>(64 * 1024), MHD_OPTION_END);
  if (server->daemon_ == nullptr)
    return absl::InternalError(absl::StrCat("libmicrohttpd did not start on ", where));
  return server;
}

void UnixHttpServer::Stop() {
  if (listen_fd_ < 0)
    return;
  if (daemon_ != nullptr) {
    MHD_stop_daemon(daemon_);  // waits for handlers in flight; closes the listening socket too
    daemon_ = nullptr;
  } else {
    close(listen_fd_);  // bound, but the daemon never started
  }
  listen_fd_ = -1;
  if (!options_.socket_path.empty())
    unlink(options_.socket_path.c_str());
}

UnixHttpServer::~UnixHttpServer() { Stop(); }

}  // namespace pml::guest
