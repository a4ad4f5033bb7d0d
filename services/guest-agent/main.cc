// pml-guest-agent: see --help.

#include <CLI/CLI.hpp>

#include <string>

#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "services/guest-agent/guest_agent_service.h"

int main(int argc, char** argv) {
  CLI::App app("pml-guest-agent: runs inside every CVM; measures the app, fetches its keys and serves quotes,\nkeys and RA-TLS certificates to the app (pml.guest.v1.GuestAgent; dstack-compatible sockets).", "pml-guest-agent");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::rpc::ServiceMainOptions options{.component = "guest-agent", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::guest::GuestAgentRoleTable(),
      [](const pml::rpc::ServiceEnv& env,
         pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::guest;  // NOLINT(google-build-using-namespace): main only
        pml::rpc::ServiceSet set;
        auto guestAgentService = std::make_shared<GuestAgentService>(env);
        set.registered.push_back({guestAgentService.get(), v1::GuestAgent::service_full_name()});
        set.owned.push_back(guestAgentService);
        return set;
      });
}
