#pragma once
// The body every service's main() shares: logging, the handler executor, metrics, the server
// with health/reflection/ServiceInfo, a ready file for supervisors and tests, and graceful
// shutdown on SIGTERM/SIGINT. A service's main parses its flags and supplies its services.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/rpc/authz.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/metrics.h"
#include "lib/rpc/unary.h"

namespace pml::rpc {

struct ServiceSet {
  std::vector<std::shared_ptr<grpc::Service>> owned;  // kept alive until shutdown
  std::vector<RegisteredService> registered;
  // Runs after the server stopped and the executor drained (close stores, join workers).
  std::function<void()> on_shutdown;
};

struct ServiceMainOptions {
  std::string component;  // "vmm"
  bool simulated_tee = false;
  std::string ready_file;  // when set, written (JSON with ports) once serving
};

// Everything after flag parsing. `roles` must cover every method the services register (the
// ServiceInfo entry is added here). Returns the process exit code: 0 after a clean shutdown,
// 1 with a one-line "<binary>: error: <reason>" on stderr for a bad configuration.
int RunServiceMain(const ServiceMainOptions& options, const ServerFlags& flags, RoleTable roles,
                   const std::function<absl::StatusOr<ServiceSet>(const ServiceEnv&, Metrics&)>&
                       make_services);

// Adds --ready-file to `app`.
void AddReadyFileFlag(CLI::App& app, std::string& ready_file);

}  // namespace pml::rpc
