// pml-verifier: see --help.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "lib/core/clock.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/gpu/online.h"
#include "lib/gpu/verify.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "lib/tdx/pcs_client.h"
#include "services/attestation/verifier_core.h"
#include "services/attestation/verifier_service.h"

int main(int argc, char** argv) {
  CLI::App app(
      "pml-verifier: verifies Intel TDX quotes and NVIDIA GPU evidence, appraises evidence "
      "bundles\nagainst policies and issues signed attestation results. gRPC over mTLS "
      "(pml.attestation.v1).",
      "pml-verifier");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  bool trust_simulated_tee = false;
  std::string cache_dir;
  std::string pcs_url;
  std::string pcs_root_ca_crl_url(pml::tdx::kIntelRootCaCrlUrl);
  bool offline = false;
  std::string rim_cache_dir;
  std::string rim_service_url(pml::gpu::kNvidiaRimServiceUrl);
  std::string ocsp_url(pml::gpu::kNvidiaOcspUrl);
  std::string state_dir;
  int64_t token_ttl_seconds = 600;
  int64_t max_token_ttl_seconds = 86400;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.add_flag("--trust-simulated-tee", trust_simulated_tee,
               "UNSAFE for production: also trust the simulated TDX and GPU roots of lib/tee; "
               "every result verified through them says simulated (default: off, simulated "
               "evidence fails as untrusted)");
  app.add_option("--collateral-cache-dir", cache_dir,
                 "directory caching Intel collateral per FMSPC (created 0700; default: none)");
  app.add_option("--pcs-url", pcs_url,
                 "Intel PCS v4 or PCCS base URL, used when a request brings no collateral and "
                 "the cache has none fresh, and by RefreshCollateral (e.g. "
                 "https://api.trustedservices.intel.com; default: none)");
  app.add_option("--pcs-root-ca-crl-url", pcs_root_ca_crl_url,
                 "where the Intel SGX Root CA CRL is fetched; empty: {pcs-url}/sgx/"
                 "certification/v4/rootcacrl (PCCS)")
      ->capture_default_str();
  app.add_flag("--offline", offline,
               "verifications never use the network: collateral, RIMs and OCSP responses come "
               "from the request or the caches (RefreshCollateral may still fetch from "
               "--pcs-url; default: off)");
  app.add_option("--rim-cache-dir", rim_cache_dir,
                 "directory of NVIDIA RIMs (<id>.xml or RIM-service <id>.json, NVAT's --rim-dir "
                 "layout); RIMs fetched from the RIM service are stored here (created 0700; "
                 "default: none)");
  app.add_option("--rim-service-url", rim_service_url,
                 "NVIDIA RIM service base URL (or a mirror); the RIM id is appended")
      ->capture_default_str();
  app.add_option("--ocsp-url", ocsp_url, "NVIDIA OCSP responder URL (or a mirror)")
      ->capture_default_str();
  app.add_option("--state-dir", state_dir,
                 "directory for the policy database (policies.db, SQLite) and the token signing "
                 "keys (token-keys/, 0600 files); created 0700. Without it, Appraise, policies "
                 "and token keys answer FAILED_PRECONDITION (default: none)");
  app.add_option("--token-ttl", token_ttl_seconds,
                 "lifetime of attestation tokens, seconds, when a request does not ask for one")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{7} * 86400));
  app.add_option("--max-token-ttl", max_token_ttl_seconds,
                 "the longest token lifetime a request may ask for, seconds; retired signing keys "
                 "stay in the JWKS this long")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{30} * 86400));
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::core::RealClock clock;
  pml::rpc::ServiceMainOptions options{
      .component = "verifier", .simulated_tee = trust_simulated_tee, .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::attestation::VerifierRoleTable(),
      [&](const pml::rpc::ServiceEnv& env,
          pml::rpc::Metrics& metrics) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::attestation;  // NOLINT(google-build-using-namespace): main only
        VerifierCoreOptions core_options;
        PML_ASSIGN_OR_RETURN(core_options.anchors, MakeTrustAnchors(trust_simulated_tee));
        core_options.cache_dir = cache_dir;
        core_options.offline = offline;
        if (!pcs_url.empty()) {
          pml::tdx::PcsOptions pcs;
          pcs.base_url = pcs_url;
          pcs.root_ca_crl_url = pcs_root_ca_crl_url;
          PML_ASSIGN_OR_RETURN(core_options.upstream, pml::tdx::MakePcsSource(std::move(pcs)));
          core_options.upstream_name = pcs_url;
        }
        if (trust_simulated_tee) {
          SPDLOG_WARN("simulated_tee_trusted anchor={} note={:?}",
                      std::string(kSimulatedRootAnchorName),
                      "quotes from the lib/tee simulator verify; they prove nothing");
        }
        PML_ASSIGN_OR_RETURN(
            std::unique_ptr<VerifierCore> core,
            VerifierCore::Create(std::move(core_options), clock, &metrics.registry()));
        GpuCoreOptions gpu_options;
        gpu_options.anchors = trust_simulated_tee
                                  ? pml::gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot()
                                  : pml::gpu::TrustAnchors::NvidiaDefault();
        gpu_options.rim_cache_dir = rim_cache_dir;
        gpu_options.offline = offline;
        gpu_options.rim_service_url = rim_service_url;
        gpu_options.ocsp_url = ocsp_url;
        PML_ASSIGN_OR_RETURN(std::unique_ptr<GpuCore> gpu,
                             GpuCore::Create(std::move(gpu_options), clock, &metrics.registry()));
        AttestationService::Parts parts;
        parts.tdx = std::move(core);
        parts.gpu = std::move(gpu);
        if (!state_dir.empty()) {
          PML_RETURN_IF_ERROR(pml::core::MakeDirs(state_dir, 0700));
          PML_ASSIGN_OR_RETURN(parts.policies, PolicyStore::Open(state_dir + "/policies.db"));
          PML_ASSIGN_OR_RETURN(parts.keys,
                               SigningKeyStore::Open(state_dir + "/token-keys", clock.Now()));
          AppraiserOptions ao;
          ao.build = pml::rpc::Version();
          ao.default_token_ttl = absl::Seconds(std::min(token_ttl_seconds, max_token_ttl_seconds));
          ao.max_token_ttl = absl::Seconds(max_token_ttl_seconds);
          parts.appraiser =
              std::make_unique<Appraiser>(*parts.tdx, *parts.gpu, parts.policies.get(), *parts.keys,
                                          clock, std::move(ao), &metrics.registry());
          SPDLOG_INFO("verifier_state dir={:?} signing_kid={}", state_dir,
                      parts.keys->CurrentKid());
        } else {
          SPDLOG_WARN("verifier_state dir=none note={:?}",
                      "no --state-dir: Appraise, policies and token keys are unavailable");
        }
        pml::rpc::ServiceSet set;
        auto attestation = std::make_shared<AttestationService>(env, std::move(parts), clock);
        set.registered.push_back({attestation.get(), v1::Attestation::service_full_name()});
        set.owned.push_back(attestation);
        return set;
      });
}
