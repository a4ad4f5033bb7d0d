#include "lib/rpc/flags.h"

namespace pml::rpc {

void AddServerFlags(CLI::App& app, ServerFlags& f, bool tls_required) {
  app.add_option("--listen", f.server.listen,
                 "gRPC listen address host:port (port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--tls-cert", f.server.tls.cert, "server certificate chain, PEM file")
      ->required(tls_required);
  app.add_option("--tls-key", f.server.tls.key, "server private key, PEM file (mode 0600)")
      ->required(tls_required);
  app.add_option("--tls-ca", f.server.tls.ca,
                 "CA bundle (PEM) that client certificates must chain to")
      ->required(tls_required);
  app.add_option("--cert-reload-seconds", f.server.cert_reload_seconds,
                 "how often the certificate, key and CA files are re-read, in seconds")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3600u));
  app.add_option_function<int>(
         "--max-message-mib", [&f](int mib) { f.server.max_message_bytes = mib << 20; },
         "largest request or response accepted, in MiB (default 16)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--metrics-listen", f.metrics_listen,
                 "Prometheus /metrics HTTP listen address host:port (empty disables)")
      ->capture_default_str();
  app.add_option("--log-format", f.log.format, "log format: text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", f.log.level, "log level: debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--shutdown-grace-seconds", f.shutdown_grace_seconds,
                 "on SIGTERM/SIGINT, how long in-flight calls may finish, in seconds")
      ->capture_default_str();
  app.add_option("--handler-threads", f.executor_threads,
                 "threads that run request handlers")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--handler-queue", f.executor_queue,
                 "requests that may wait for a handler thread before RESOURCE_EXHAUSTED")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
}

const char* Version() { return PML_VERSION; }

}  // namespace pml::rpc
