#pragma once
// Client bootstrap for service-to-service calls and pmlctl: mTLS channels, deadlines, and
// retries only for idempotent methods.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/rpc/server.h"

namespace pml::rpc {

struct ClientConfig {
  std::string target;  // host:port, or unix:/path
  TlsFiles tls;        // ca required for TLS; cert+key for mTLS (may be empty for guest-facing)
  bool insecure = false;  // plaintext (unix sockets only)
  // Full method names ("/pml.vmm.v1.Vmm/GetVm") that are safe to retry on UNAVAILABLE.
  std::vector<std::string> idempotent_methods;
  int max_message_bytes = 16 << 20;
};

// Builds a channel. Reads the PEM files now (kInvalidArgument naming the file when unreadable).
// The channel connects lazily.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientConfig& config);

// The gRPC service config that retries `methods` (up to 3 attempts, exponential backoff from
// 100 ms) on UNAVAILABLE. Exposed for tests.
std::string RetryServiceConfigJson(const std::vector<std::string>& methods);

// Sets a deadline `timeout` from now on `ctx`. Every client call must have one.
inline void SetTimeout(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace pml::rpc
