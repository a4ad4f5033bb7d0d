// pmlctl: the operator CLI. See `pmlctl --help` and `pmlctl <command> --help`.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "lib/rpc/client.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/status_convert.h"
#include "pml/common/v1/info.grpc.pb.h"
#include "tools/pmlctl/client_flags.h"
#include "tools/pmlctl/dev_cmd.h"
#include "tools/pmlctl/endpoint_cmd.h"
#include "tools/pmlctl/kms_cmd.h"
#include "tools/pmlctl/pki.h"
#include "tools/pmlctl/policy_cmd.h"
#include "tools/pmlctl/verify_cmd.h"
#include "tools/pmlctl/vm_cmd.h"

namespace pml::pmlctl {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "pmlctl: error: %s\n", std::string(status.ToString()).c_str());
  return 1;
}

int RunHealth(const ClientFlags& flags, const std::string& service) {
  auto channel = Connect(flags);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, absl::Seconds(flags.timeout_seconds));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
  const std::string status = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  std::printf("%s %s%s\n", flags.addr.c_str(), status.c_str(),
              service.empty() ? "" : absl::StrCat(" (", service, ")").c_str());
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 2;
}

int RunVersion(const ClientFlags& flags) {
  auto channel = Connect(flags);
  if (!channel.ok()) return Fail(channel.status());
  auto stub = pml::common::v1::ServiceInfo::NewStub(*channel);
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, absl::Seconds(flags.timeout_seconds));
  pml::common::v1::GetVersionResponse resp;
  grpc::Status s = stub->GetVersion(&ctx, {}, &resp);
  if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
  std::printf("%s: %s %s (services: %s)%s\n", flags.addr.c_str(), resp.component().c_str(),
              resp.version().c_str(), absl::StrJoin(resp.services(), ", ").c_str(),
              resp.simulated_tee() ? " [SIMULATED TEE]" : "");
  std::printf("pmlctl: %s\n", rpc::Version());
  return 0;
}

}  // namespace
}  // namespace pml::pmlctl

int main(int argc, char** argv) {
  using namespace pml::pmlctl;  // NOLINT(google-build-using-namespace): main only
  CLI::App app(
      "pmlctl: operator CLI for the PML control plane (pml-vmm, pml-kms, pml-verifier,\n"
      "pml-guest-agent), plus offline tools.",
      "pmlctl");
  app.set_version_flag("--version", pml::rpc::Version());
  app.require_subcommand(1);

  auto* pki = app.add_subcommand("pki", "development PKI");
  pki->require_subcommand(1);
  PkiOptions pki_opts;
  int validity_days = 365;
  auto* pki_init = pki->add_subcommand(
      "init",
      "write a development CA, one certificate per role (operator, viewer, vmm, kms, verifier)\n"
      "and one server certificate per service (localhost SANs); keys mode 0600");
  pki_init->add_option("--dir", pki_opts.dir, "output directory")->required();
  pki_init->add_option("--host", pki_opts.extra_hosts,
                       "extra DNS name or IP for the server certificates (repeatable)");
  pki_init->add_option("--validity-days", validity_days, "certificate lifetime in days")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));
  pki_init->add_flag("--force", pki_opts.force, "replace an existing PKI in --dir");

  ClientFlags health_flags;
  std::string health_service;
  auto* health = app.add_subcommand(
      "health", "ask a service's grpc.health.v1.Health (exit 0 when SERVING, 2 otherwise)");
  AddClientFlags(*health, health_flags);
  health->add_option("--service", health_service,
                     "service name to check, e.g. pml.vmm.v1.Vmm (default: the whole server)");

  ClientFlags version_flags;
  auto* version = app.add_subcommand("version", "print a service's component and version");
  AddClientFlags(*version, version_flags);

  AddVerifyCommands(app);
  AddVerifyEndpointCommand(*app.get_subcommand("verify"));  // AddVerifyCommands made it
  AddPolicyCommands(app);
  AddTokenCommands(app);
  AddKmsCommands(app);
  AddVmmCommands(app);
  AddDevCommands(app);
  CLI11_PARSE(app, argc, argv);

  if (pki_init->parsed()) {
    pki_opts.validity = absl::Hours(24) * validity_days;
    absl::Status s = InitPki(pki_opts);
    if (!s.ok()) return Fail(s);
    std::printf("wrote development PKI to %s (ca.pem, <role>.pem/.key, server-<service>.pem/.key)\n",
                pki_opts.dir.c_str());
    return 0;
  }
  if (health->parsed()) return RunHealth(health_flags, health_service);
  if (version->parsed()) return RunVersion(version_flags);
  return 1;
}
