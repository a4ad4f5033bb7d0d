#pragma once
// pml-vmm's gRPC surface: thin handlers that convert protos (vmm_convert.h) and call the
// VmManager (STYLE.md §1). Unary bodies run on the service executor; WatchVms and StreamLogs are
// callback-API write reactors with at most one write in flight, fed by the manager's change feed
// and by a log pump thread that polls console files of following streams.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/vmm/v1/vmm.grpc.pb.h"
#include "services/vmm/vm_manager.h"

namespace prometheus {
class Registry;
}

namespace pml::vmm {

// Who may call what (deny by default). Every method of every service below has an entry;
// vmm_service_test walks the descriptors to prove it.
rpc::RoleTable VmmRoleTable();

// Prometheus families for the VMM (registered when `registry` is non-null): pml_vmm_vms{state},
// pml_vmm_gpus{state}, pml_vmm_operation_duration_seconds{operation},
// pml_vmm_operation_failures_total{operation,code}.
class VmmMetrics final : public VmmObserver {
 public:
  explicit VmmMetrics(prometheus::Registry* registry);
  ~VmmMetrics() override;
  void OnOperation(absl::string_view op, absl::Duration took, absl::StatusCode code) override;
  void OnCounts(const std::map<VmState, int>& vms_by_state) override;
  void OnGpus(const std::vector<GpuView>& gpus);

 private:
  struct Families;
  std::unique_ptr<Families> f_;
};

class LogStream;

class VmmService final : public pml::vmm::v1::Vmm::CallbackService {
 public:
  VmmService(const rpc::ServiceEnv& env, VmManager& manager, VmmMetrics* metrics,
             std::string version);
  ~VmmService() override;

  grpc::ServerUnaryReactor* ListGpus(grpc::CallbackServerContext* ctx, const v1::ListGpusRequest* req,
                                     v1::ListGpusResponse* resp) override;
  grpc::ServerUnaryReactor* ListImages(grpc::CallbackServerContext* ctx,
                                       const v1::ListImagesRequest* req,
                                       v1::ListImagesResponse* resp) override;
  grpc::ServerUnaryReactor* GetHostInfo(grpc::CallbackServerContext* ctx,
                                        const v1::GetHostInfoRequest* req,
                                        v1::GetHostInfoResponse* resp) override;
  grpc::ServerUnaryReactor* CreateVm(grpc::CallbackServerContext* ctx, const v1::CreateVmRequest* req,
                                     v1::CreateVmResponse* resp) override;
  grpc::ServerUnaryReactor* StartVm(grpc::CallbackServerContext* ctx, const v1::StartVmRequest* req,
                                    v1::StartVmResponse* resp) override;
  grpc::ServerUnaryReactor* StopVm(grpc::CallbackServerContext* ctx, const v1::StopVmRequest* req,
                                   v1::StopVmResponse* resp) override;
  grpc::ServerUnaryReactor* RemoveVm(grpc::CallbackServerContext* ctx, const v1::RemoveVmRequest* req,
                                     v1::RemoveVmResponse* resp) override;
  grpc::ServerUnaryReactor* GetVm(grpc::CallbackServerContext* ctx, const v1::GetVmRequest* req,
                                  v1::GetVmResponse* resp) override;
  grpc::ServerUnaryReactor* ListVms(grpc::CallbackServerContext* ctx, const v1::ListVmsRequest* req,
                                    v1::ListVmsResponse* resp) override;
  grpc::ServerUnaryReactor* GetComposeHash(grpc::CallbackServerContext* ctx,
                                           const v1::GetComposeHashRequest* req,
                                           v1::GetComposeHashResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateVm(grpc::CallbackServerContext* ctx, const v1::UpdateVmRequest* req,
                                     v1::UpdateVmResponse* resp) override;
  grpc::ServerWriteReactor<v1::VmEvent>* WatchVms(grpc::CallbackServerContext* ctx,
                                                  const v1::WatchVmsRequest* req) override;
  grpc::ServerWriteReactor<v1::LogChunk>* StreamLogs(grpc::CallbackServerContext* ctx,
                                                     const v1::StreamLogsRequest* req) override;

  // Stops the log pump and finishes following log streams (before the server shuts down).
  void Stop();

  // Called by log streams.
  void AddFollower(LogStream* s);
  void RemoveFollower(LogStream* s);
  rpc::Executor& executor() { return *env_.executor; }
  VmManager& manager() { return manager_; }

 private:
  void Pump();

  rpc::ServiceEnv env_;
  VmManager& manager_;
  VmmMetrics* metrics_;
  std::string version_;
  absl::Mutex mu_;
  std::set<LogStream*> followers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread pump_;
};

}  // namespace pml::vmm
