// pml-vmm: see --help.

#include <CLI/CLI.hpp>

#include <string>

#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "services/vmm/vmm_service.h"

int main(int argc, char** argv) {
  CLI::App app("pml-vmm: launches and supervises confidential VMs through libvirt on a GPU host.\ngRPC over mTLS (pml.vmm.v1.Vmm).", "pml-vmm");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::rpc::ServiceMainOptions options{.component = "vmm", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::vmm::VmmRoleTable(),
      [](const pml::rpc::ServiceEnv& env,
         pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::vmm;  // NOLINT(google-build-using-namespace): main only
        pml::rpc::ServiceSet set;
        auto vmmService = std::make_shared<VmmService>(env);
        set.registered.push_back({vmmService.get(), v1::Vmm::service_full_name()});
        set.owned.push_back(vmmService);
        return set;
      });
}
