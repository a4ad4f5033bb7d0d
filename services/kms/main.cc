// pml-kms: see --help.

#include <CLI/CLI.hpp>

#include <string>

#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "services/kms/kms_service.h"

int main(int argc, char** argv) {
  CLI::App app("pml-kms: holds root keys and releases per-app keys only to CVMs whose attestation passes.\nOperator API over mTLS (pml.kms.v1.KmsAdmin); guest-facing key release (pml.kms.v1.KeyRelease).", "pml-kms");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::rpc::ServiceMainOptions options{.component = "kms", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::kms::KmsRoleTable(),
      [](const pml::rpc::ServiceEnv& env,
         pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::kms;  // NOLINT(google-build-using-namespace): main only
        pml::rpc::ServiceSet set;
        auto kmsAdminService = std::make_shared<KmsAdminService>(env);
        set.registered.push_back({kmsAdminService.get(), v1::KmsAdmin::service_full_name()});
        set.owned.push_back(kmsAdminService);
        auto keyReleaseService = std::make_shared<KeyReleaseService>(env);
        set.registered.push_back({keyReleaseService.get(), v1::KeyRelease::service_full_name()});
        set.owned.push_back(keyReleaseService);
        return set;
      });
}
