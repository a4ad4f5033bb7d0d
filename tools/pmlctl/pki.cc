#include "tools/pmlctl/pki.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"

namespace pml::pmlctl {
namespace {

bool IsIp(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

absl::Status WriteKeyAndCert(const std::string& dir, const std::string& stem,
                             const EVP_PKEY& key, const X509& cert) {
  PML_ASSIGN_OR_RETURN(crypto::SecretBytes key_pem, crypto::PrivateKeyToPem(key));
  PML_ASSIGN_OR_RETURN(std::string cert_pem, crypto::CertificateToPem(cert));
  PML_RETURN_IF_ERROR(
      core::WriteFileAtomic(absl::StrCat(dir, "/", stem, ".key"), core::ToString(key_pem.span()), 0600));
  return core::WriteFileAtomic(absl::StrCat(dir, "/", stem, ".pem"), cert_pem, 0644);
}

}  // namespace

const std::vector<std::string>& PkiRoles() {
  static const auto* const kRoles =
      new std::vector<std::string>{"operator", "viewer", "vmm", "kms", "verifier"};
  return *kRoles;
}

const std::vector<std::string>& PkiServices() {
  static const auto* const kServices =
      new std::vector<std::string>{"vmm", "kms", "verifier", "guest-agent"};
  return *kServices;
}

absl::Status InitPki(const PkiOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("--dir is required");
  const std::string ca_path = absl::StrCat(options.dir, "/", kCaCert);
  if (core::PathExists(ca_path) && !options.force) {
    return absl::AlreadyExistsError(
        absl::StrCat(ca_path, " exists; pass --force to replace the whole PKI"));
  }
  std::vector<std::string> dns = {"localhost"};
  std::vector<std::string> ips = {"127.0.0.1", "::1"};
  for (const auto& h : options.extra_hosts) {
    if (h.empty() || h.find_first_of(", \t\n/") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--host: not a host name or IP: ", h));
    }
    (IsIp(h) ? ips : dns).push_back(h);
  }
  PML_RETURN_IF_ERROR(core::MakeDirs(options.dir, 0700));
  const absl::Time now = absl::Now();
  const absl::Time nb = now - absl::Hours(1);
  const absl::Time na = now + options.validity;

  PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr ca_key, crypto::GenerateEcKey(crypto::Curve::kP256));
  crypto::CertSpec ca_spec{.common_name = "PML development CA",
                           .organization = "PML development (not for production)",
                           .not_before = nb,
                           .not_after = na,
                           .is_ca = true,
                           .path_len = 0};
  PML_ASSIGN_OR_RETURN(crypto::X509Ptr ca, crypto::IssueCertificate(ca_spec, *ca_key, *ca_key, nullptr));
  PML_RETURN_IF_ERROR(WriteKeyAndCert(options.dir, "ca", *ca_key, *ca));

  for (const auto& role : PkiRoles()) {
    PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
    crypto::CertSpec spec{.common_name = absl::StrCat("pml ", role),
                          .organization = "PML development",
                          .uri_sans = {absl::StrCat("spiffe://pml/", role, "/", role)},
                          .not_before = nb,
                          .not_after = na,
                          .client_auth = true};
    PML_ASSIGN_OR_RETURN(crypto::X509Ptr cert, crypto::IssueCertificate(spec, *key, *ca_key, ca.get()));
    PML_RETURN_IF_ERROR(WriteKeyAndCert(options.dir, role, *key, *cert));
  }
  for (const auto& svc : PkiServices()) {
    PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
    crypto::CertSpec spec{.common_name = absl::StrCat("pml-", svc),
                          .organization = "PML development",
                          .dns_sans = dns,
                          .ip_sans = ips,
                          .not_before = nb,
                          .not_after = na,
                          .server_auth = true,
                          .client_auth = true};
    // A service that calls others presents this certificate as a client with its own role.
    for (const auto& role : PkiRoles()) {
      if (role == svc) spec.uri_sans.push_back(absl::StrCat("spiffe://pml/", role, "/", svc));
    }
    PML_ASSIGN_OR_RETURN(crypto::X509Ptr cert, crypto::IssueCertificate(spec, *key, *ca_key, ca.get()));
    PML_RETURN_IF_ERROR(WriteKeyAndCert(options.dir, absl::StrCat("server-", svc), *key, *cert));
  }
  return absl::OkStatus();
}

}  // namespace pml::pmlctl
