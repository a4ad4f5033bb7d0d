#include "services/guest-agent/unix_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

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
  sockaddr_un addr{};
  if (options.socket_path.empty() || options.socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path \"", options.socket_path,
                                                   "\": empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  struct stat st {};
  if (lstat(options.socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat(options.socket_path, " exists and is not a socket; not replacing it"));
    }
    unlink(options.socket_path.c_str());  // a stale socket from an earlier run
  }
  std::unique_ptr<UnixHttpServer> server(
      new UnixHttpServer(std::move(options), std::move(handler)));
  const Options& o = server->options_;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", ErrnoText(errno)));
  server->listen_fd_ = fd;
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, o.socket_path.data(), o.socket_path.size());
  // Created with the final mode: no window where the socket is more open than asked.
  const mode_t old_umask = umask(static_cast<mode_t>(~o.mode) & 0777);
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) {
    return absl::UnavailableError(
        absl::StrCat("bind ", o.socket_path, ": ", ErrnoText(bind_errno)));
  }
  chmod(o.socket_path.c_str(), o.mode);
  if (listen(fd, 128) != 0)
    return absl::InternalError(absl::StrCat("listen: ", ErrnoText(errno)));
  server->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &MhdCallbacks::Access, server.get(), MHD_OPTION_LISTEN_SOCKET, fd,
      MHD_OPTION_NOTIFY_COMPLETED, &MhdCallbacks::Completed, nullptr, MHD_OPTION_THREAD_POOL_SIZE,
      static_cast<unsigned>(o.threads), MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(absl::ToInt64Seconds(o.connection_timeout)),
      MHD_OPTION_CONNECTION_LIMIT, o.max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      static_cast<size_t>(64 * 1024), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return absl::InternalError(absl::StrCat("libmicrohttpd did not start on ", o.socket_path));
  }
  return server;
}

void UnixHttpServer::Stop() {
  if (daemon_ != nullptr) {
    MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(options_.socket_path.c_str());
  }
}

UnixHttpServer::~UnixHttpServer() { Stop(); }

}  // namespace pml::guest
