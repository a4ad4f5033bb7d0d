#include "tools/pmlctl/client_flags.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace pml::pmlctl {

void AddClientFlags(CLI::App& cmd, ClientFlags& f) {
  cmd.add_option("--addr", f.addr, "service address host:port")->required();
  const char* env_pki = std::getenv("PML_PKI_DIR");
  f.pki_dir = env_pki != nullptr ? env_pki : "";
  cmd.add_option("--pki-dir", f.pki_dir,
                 "directory made by `pmlctl pki init` (default $PML_PKI_DIR)");
  cmd.add_option("--as", f.as_role,
                 "which role's certificate from --pki-dir to present (operator, viewer, vmm, kms, "
                 "verifier)")
      ->capture_default_str();
  cmd.add_option("--ca", f.ca, "CA bundle (PEM) to verify the server; overrides --pki-dir");
  cmd.add_option("--cert", f.cert, "client certificate (PEM); overrides --pki-dir");
  cmd.add_option("--key", f.key, "client private key (PEM); overrides --pki-dir");
  cmd.add_option("--timeout-seconds", f.timeout_seconds, "deadline for each call, in seconds")
      ->capture_default_str();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ClientFlags& f) {
  rpc::ClientConfig config;
  config.target = f.addr;
  config.tls.ca = f.ca;
  config.tls.cert = f.cert;
  config.tls.key = f.key;
  if (!f.pki_dir.empty()) {
    if (config.tls.ca.empty()) config.tls.ca = absl::StrCat(f.pki_dir, "/ca.pem");
    if (config.tls.cert.empty()) config.tls.cert = absl::StrCat(f.pki_dir, "/", f.as_role, ".pem");
    if (config.tls.key.empty()) config.tls.key = absl::StrCat(f.pki_dir, "/", f.as_role, ".key");
  }
  if (config.tls.ca.empty()) {
    return absl::InvalidArgumentError("give --pki-dir (or $PML_PKI_DIR), or --ca/--cert/--key");
  }
  return rpc::MakeChannel(config);
}

}  // namespace pml::pmlctl
