#pragma once
// The flags every service shares, in one CLI11 parser (STYLE.md §5: kebab-case, units and
// defaults in --help). CLI11 is only used from services and tools, never from lib/ below rpc.

#include <CLI/CLI.hpp>

#include <string>

#include "lib/rpc/logging.h"
#include "lib/rpc/server.h"

namespace pml::rpc {

struct ServerFlags {
  ServerConfig server;
  std::string metrics_listen = "127.0.0.1:0";
  LogConfig log;
  unsigned shutdown_grace_seconds = 10;
  unsigned executor_threads = 4;
  unsigned executor_queue = 256;
};

// Adds --listen, --tls-cert, --tls-key, --tls-ca, --cert-reload-seconds, --max-message-mib,
// --metrics-listen, --log-format, --log-level, --shutdown-grace-seconds, --handler-threads,
// --handler-queue to `app`, writing into `flags` (whose current values are the defaults).
// `tls_required` false (the guest agent, which may serve on a unix socket only): the TLS flags are
// optional, and Server::Start refuses a TCP listener without them.
void AddServerFlags(CLI::App& app, ServerFlags& flags, bool tls_required = true);

// Version string of this build ("0.1.0").
const char* Version();

}  // namespace pml::rpc
