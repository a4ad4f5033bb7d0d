// pml-verifier: see --help.

#include <CLI/CLI.hpp>

#include <string>

#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "services/attestation/verifier_service.h"

int main(int argc, char** argv) {
  CLI::App app("pml-verifier: verifies Intel TDX quotes and NVIDIA GPU evidence, appraises evidence bundles\nagainst policies and issues signed attestation results. gRPC over mTLS (pml.attestation.v1).", "pml-verifier");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::rpc::ServiceMainOptions options{.component = "verifier", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::attestation::VerifierRoleTable(),
      [](const pml::rpc::ServiceEnv& env,
         pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::attestation;  // NOLINT(google-build-using-namespace): main only
        pml::rpc::ServiceSet set;
        auto attestationService = std::make_shared<AttestationService>(env);
        set.registered.push_back({attestationService.get(), v1::Attestation::service_full_name()});
        set.owned.push_back(attestationService);
        return set;
      });
}
