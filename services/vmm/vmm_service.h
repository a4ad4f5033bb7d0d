#pragma once
// pml-vmm's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/vmm/v1/vmm.grpc.pb.h"

namespace pml::vmm {

// Who may call what (deny by default). Every method of every service below has an entry;
// vmm_service_test walks the descriptors to prove it.
rpc::RoleTable VmmRoleTable();

class VmmService final : public pml::vmm::v1::Vmm::CallbackService {
 public:
  explicit VmmService(const rpc::ServiceEnv& env) : env_(env) {}
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, ListGpus, "GPU inventory lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, ListImages, "image inventory lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, GetHostInfo, "host inventory lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, CreateVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, StartVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, StopVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, RemoveVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, GetVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, ListVms, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, GetComposeHash, "the app model lands with issue 8 (VMM)")
  PML_UNIMPLEMENTED_UNARY("pml.vmm.v1.Vmm", v1, UpdateVm, "CVM lifecycle through libvirt lands with issue 8 (VMM)")
  grpc::ServerWriteReactor<v1::VmEvent>* WatchVms(grpc::CallbackServerContext* ctx,
                                               const v1::WatchVmsRequest*) override {
    return rpc::UnimplementedStream<v1::VmEvent>(ctx, "/pml.vmm.v1.Vmm/WatchVms", env_,
                                                "VM state streaming lands with issue 8 (VMM)");
  }
  grpc::ServerWriteReactor<v1::LogChunk>* StreamLogs(grpc::CallbackServerContext* ctx,
                                               const v1::StreamLogsRequest*) override {
    return rpc::UnimplementedStream<v1::LogChunk>(ctx, "/pml.vmm.v1.Vmm/StreamLogs", env_,
                                                "serial console streaming lands with issue 8 (VMM)");
  }
 private:
  rpc::ServiceEnv env_;
};

}  // namespace pml::vmm
