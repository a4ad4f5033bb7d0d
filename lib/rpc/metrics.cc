#include "lib/rpc/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "lib/rpc/status_convert.h"

namespace pml::rpc {
namespace {

using Type = grpc::experimental::ServerRpcInfo::Type;
using Hook = grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), type_(GrpcTypeName(info->type())) {
    auto [service, method] = SplitMethodName(info->method());
    service_ = std::move(service);
    method_ = std::move(method);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      metrics_->OnStarted(type_, service_, method_);
    }
    if (methods->QueryInterceptionHookPoint(Hook::POST_RECV_MESSAGE)) {
      metrics_->OnReceived(type_, service_, method_);
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) {
      metrics_->OnSent(type_, service_, method_);
    }
    if (methods->QueryInterceptionHookPoint(Hook::PRE_SEND_STATUS)) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->OnHandled(type_, service_, method_,
                          GrpcCodeName(methods->GetSendStatus().error_code()), secs);
    }
    methods->Proceed();
  }

 private:
  Metrics* metrics_;
  std::string type_;
  std::string service_;
  std::string method_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  Metrics* metrics_;
};

}  // namespace

std::pair<std::string, std::string> SplitMethodName(absl::string_view full_method) {
  if (full_method.size() > 1 && full_method[0] == '/') {
    const size_t slash = full_method.find('/', 1);
    if (slash != absl::string_view::npos && slash + 1 < full_method.size()) {
      return {std::string(full_method.substr(1, slash - 1)),
              std::string(full_method.substr(slash + 1))};
    }
  }
  return {"unknown", std::string(full_method)};
}

const char* GrpcTypeName(Type type) {
  switch (type) {
    case Type::UNARY:
      return "unary";
    case Type::CLIENT_STREAMING:
      return "client_stream";
    case Type::SERVER_STREAMING:
      return "server_stream";
    case Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

Metrics::Metrics(absl::string_view component, absl::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()) {
  started_ = &prometheus::BuildCounter()
                  .Name("grpc_server_started_total")
                  .Help("Total number of RPCs started on the server.")
                  .Register(*registry_);
  handled_ = &prometheus::BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help("Total number of RPCs completed on the server, regardless of success or failure.")
                  .Register(*registry_);
  received_ = &prometheus::BuildCounter()
                   .Name("grpc_server_msg_received_total")
                   .Help("Total number of RPC stream messages received on the server.")
                   .Register(*registry_);
  sent_ = &prometheus::BuildCounter()
               .Name("grpc_server_msg_sent_total")
               .Help("Total number of gRPC stream messages sent by the server.")
               .Register(*registry_);
  handling_seconds_ = &prometheus::BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help("Histogram of response latency (seconds) of gRPC that had been "
                                 "application-level handled by the server.")
                           .Register(*registry_);
  prometheus::BuildGauge()
      .Name("pml_build_info")
      .Help("Build information of this PML component; always 1.")
      .Register(*registry_)
      .Add({{"component", std::string(component)}, {"version", std::string(version)}})
      .Set(1);
}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(absl::string_view listen) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(std::string(listen), /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  auto ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

void Metrics::OnStarted(const std::string& type, const std::string& service,
                        const std::string& method) {
  started_->Add({{"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}})
      .Increment();
}

void Metrics::OnReceived(const std::string& type, const std::string& service,
                         const std::string& method) {
  received_->Add({{"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}})
      .Increment();
}

void Metrics::OnSent(const std::string& type, const std::string& service,
                     const std::string& method) {
  sent_->Add({{"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}})
      .Increment();
}

void Metrics::OnHandled(const std::string& type, const std::string& service,
                        const std::string& method, const char* code, double seconds) {
  handled_
      ->Add({{"grpc_type", type},
             {"grpc_service", service},
             {"grpc_method", method},
             {"grpc_code", code}})
      .Increment();
  handling_seconds_
      ->Add({{"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}},
            prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                    2.5, 5, 10})
      .Observe(seconds);
}

}  // namespace pml::rpc
