#pragma once
// Server bootstrap shared by every service (STYLE.md §6 "Only lib/rpc bootstraps"): TLS 1.3-
// capable mTLS with certificates reloaded from disk, grpc.health.v1.Health, server reflection,
// the metrics interceptor, message size limits and graceful shutdown.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/rpc/metrics.h"

namespace pml::rpc {

struct TlsFiles {
  std::string cert;  // PEM certificate chain (leaf first)
  std::string key;   // PEM private key (mode 0600)
  std::string ca;    // PEM CA bundle that client certificates must chain to
};

struct ServerConfig {
  std::string component;                   // "vmm", "kms", "verifier", "guest-agent"
  std::string listen = "127.0.0.1:0";      // host:port; unix:/path for a unix socket
  TlsFiles tls;                            // all empty: insecure (only for unix sockets)
  bool require_client_cert = true;         // false: guest-facing TLS listener
  unsigned cert_reload_seconds = 5;        // how often the certificate files are re-read
  int max_message_bytes = 16 << 20;        // receive and send limit
  // Also serve on this unix socket ("unix:/path"), without TLS: guest-local callers (see
  // MethodAccess::local_unix). Empty: none.
  std::string local_listen;
};

// A service to serve, with its full name ("pml.vmm.v1.Vmm") for health reporting.
struct RegisteredService {
  grpc::Service* service;
  std::string full_name;
};

// A running gRPC server. Destruction shuts it down (with a zero grace period if Shutdown was
// not called).
class Server {
 public:
  // Checks the configuration (certificate files readable and PEM, listen address bindable),
  // registers `services` plus health and reflection, and starts serving. Every service's health
  // status and the overall status ("") are SERVING once this returns. kInvalidArgument naming
  // the flag for a bad configuration, kUnavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config,
                                                       const std::vector<RegisteredService>& services,
                                                       Metrics* metrics);
  ~Server();

  // The bound TCP port (0 for unix sockets).
  int port() const { return port_; }

  // Marks every service NOT_SERVING, stops accepting calls and waits up to `grace` for
  // in-flight calls, then cancels the rest. Idempotent.
  void Shutdown(absl::Duration grace);

  grpc::Server* grpc_server() { return server_.get(); }

 private:
  Server() = default;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

// Blocks SIGTERM and SIGINT in the calling thread; call first thing in main, before any thread
// exists, so every thread inherits the mask and WaitForShutdownSignal receives them.
void BlockShutdownSignals();
// Turns off absl's Mutex deadlock detection in release builds (NDEBUG). Debian builds absl
// without NDEBUG, so by default every Mutex acquisition records edges in a global lock graph
// under a global lock: measurable on every RPC (pml-bench-kms). Debug builds and the tests keep
// detection on. Call early in main.
void ConfigureMutexes();
// Waits for SIGTERM or SIGINT and returns which one.
int WaitForShutdownSignal();

}  // namespace pml::rpc
