#include "lib/rpc/service_main.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/file.h"
#include "pml/common/v1/info.grpc.pb.h"

namespace pml::rpc {
namespace {

constexpr char kGetVersion[] = "/pml.common.v1.ServiceInfo/GetVersion";

class ServiceInfoImpl final : public pml::common::v1::ServiceInfo::CallbackService {
 public:
  ServiceInfoImpl(const ServiceEnv& env, std::string component, std::vector<std::string> services,
                  bool simulated)
      : env_(env), component_(std::move(component)), services_(std::move(services)),
        simulated_(simulated) {}

  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* ctx,
                                       const pml::common::v1::GetVersionRequest*,
                                       pml::common::v1::GetVersionResponse* resp) override {
    return RunUnary(ctx, kGetVersion, env_, [this, resp](const auto&) {
      resp->set_component(component_);
      resp->set_version(Version());
      for (const auto& s : services_) resp->add_services(s);
      resp->set_simulated_tee(simulated_);
      return absl::OkStatus();
    });
  }

 private:
  ServiceEnv env_;
  std::string component_;
  std::vector<std::string> services_;
  bool simulated_;
};

int Fail(absl::string_view component, const absl::Status& status) {
  std::fprintf(stderr, "pml-%s: error: %s\n", std::string(component).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

}  // namespace

void AddReadyFileFlag(CLI::App& app, std::string& ready_file) {
  app.add_option("--ready-file", ready_file,
                 "write {\"grpc_port\":N,\"metrics_port\":M} here once serving (for supervisors "
                 "and tests)");
}

int RunServiceMain(const ServiceMainOptions& options, const ServerFlags& flags, RoleTable roles,
                   const std::function<absl::StatusOr<ServiceSet>(const ServiceEnv&, Metrics&)>&
                       make_services) {
  BlockShutdownSignals();
  ConfigureMutexes();
  if (absl::Status s = SetupLogging(flags.log, options.component); !s.ok()) {
    return Fail(options.component, s);
  }
  roles.Set(kGetVersion, MethodAccess{AllRoles()});
  Executor executor(flags.executor_threads, flags.executor_queue);
  Metrics metrics(options.component, Version());
  ServiceEnv env{&roles, &executor};
  auto set = make_services(env, metrics);
  if (!set.ok()) return Fail(options.component, set.status());
  std::vector<std::string> names;
  for (const auto& r : set->registered) names.push_back(r.full_name);
  auto info = std::make_shared<ServiceInfoImpl>(env, options.component, names,
                                                options.simulated_tee);
  set->owned.push_back(info);
  set->registered.push_back({info.get(), pml::common::v1::ServiceInfo::service_full_name()});

  if (!flags.metrics_listen.empty()) {
    if (absl::Status s = metrics.Serve(flags.metrics_listen); !s.ok()) {
      return Fail(options.component, s);
    }
  }
  ServerConfig config = flags.server;
  config.component = options.component;
  auto server = Server::Start(config, set->registered, &metrics);
  if (!server.ok()) return Fail(options.component, server.status());
  SPDLOG_INFO("serving component={} version={} listen={} grpc_port={} metrics_port={} "
              "services={} simulated_tee={}",
              options.component, Version(), config.listen, (*server)->port(), metrics.port(),
              absl::StrJoin(names, ","), options.simulated_tee);
  if (!options.ready_file.empty()) {
    const std::string ready = absl::StrCat(R"({"grpc_port":)", (*server)->port(),
                                           R"(,"metrics_port":)", metrics.port(), "}\n");
    if (absl::Status s = core::WriteFileAtomic(options.ready_file, ready); !s.ok()) {
      return Fail(options.component, s);
    }
  }
  const int sig = WaitForShutdownSignal();
  SPDLOG_INFO("shutting_down signal={} grace_seconds={}", sig, flags.shutdown_grace_seconds);
  (*server)->Shutdown(absl::Seconds(flags.shutdown_grace_seconds));
  executor.Shutdown();
  if (set->on_shutdown) set->on_shutdown();
  SPDLOG_INFO("stopped component={}", options.component);
  return 0;
}

}  // namespace pml::rpc
