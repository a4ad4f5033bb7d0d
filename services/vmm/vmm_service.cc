#include "services/vmm/vmm_service.h"

namespace pml::vmm {

using rpc::Role;

rpc::RoleTable VmmRoleTable() {
  return rpc::RoleTable{
      {"/pml.vmm.v1.Vmm/ListGpus", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/ListImages", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/GetHostInfo", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/CreateVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/StartVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/StopVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/RemoveVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/GetVm", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/ListVms", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/GetComposeHash", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/UpdateVm", {{Role::kOperator}}},
      {"/pml.vmm.v1.Vmm/WatchVms", {{Role::kOperator, Role::kViewer}}},
      {"/pml.vmm.v1.Vmm/StreamLogs", {{Role::kOperator, Role::kViewer}}},
  };
}

}  // namespace pml::vmm
