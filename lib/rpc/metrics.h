#pragma once
// Prometheus metrics for every service: a registry served on its own HTTP port, the
// go-grpc-prometheus server metrics (same names and labels, so existing dashboards work) and
// pml_build_info. Services add their own pml_<component>_<thing>_<unit> families to registry().

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prometheus {
class Registry;
class Exposer;
template <typename T>
class Family;
class Counter;
class Histogram;
class Gauge;
}  // namespace prometheus

namespace pml::rpc {

// Splits "/pkg.Service/Method" into ("pkg.Service", "Method"). Malformed names give
// ("unknown", name).
std::pair<std::string, std::string> SplitMethodName(absl::string_view full_method);

// "unary", "client_stream", "server_stream", "bidi_stream" (go-grpc-prometheus grpc_type).
const char* GrpcTypeName(grpc::experimental::ServerRpcInfo::Type type);

class Metrics {
 public:
  // `component` is the service's short name ("vmm", "kms", ...); `version` goes into
  // pml_build_info.
  Metrics(absl::string_view component, absl::string_view version);
  ~Metrics();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  // Serves /metrics on `listen` ("127.0.0.1:9464"; port 0 picks one). kUnavailable with the
  // reason when the address cannot be bound (in use, bad address).
  absl::Status Serve(absl::string_view listen);
  // The bound port, after Serve.
  int port() const { return port_; }

  // The interceptor factory to register on the gRPC server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // Called by the interceptor; public so tests can drive them.
  void OnStarted(const std::string& type, const std::string& service, const std::string& method);
  void OnReceived(const std::string& type, const std::string& service, const std::string& method);
  void OnSent(const std::string& type, const std::string& service, const std::string& method);
  void OnHandled(const std::string& type, const std::string& service, const std::string& method,
                 const char* code, double seconds);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  prometheus::Family<prometheus::Counter>* started_;
  prometheus::Family<prometheus::Counter>* handled_;
  prometheus::Family<prometheus::Counter>* received_;
  prometheus::Family<prometheus::Counter>* sent_;
  prometheus::Family<prometheus::Histogram>* handling_seconds_;
};

}  // namespace pml::rpc
