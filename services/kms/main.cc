// pml-kms: see --help.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/core/hex.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/rpc/client.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/server.h"
#include "lib/rpc/service_main.h"
#include "lib/rpc/wipe.h"
#include "lib/store/sql.h"
#include "lib/tee/tee_provider.h"
#include "services/kms/join.h"
#include "services/kms/key_release.h"
#include "services/kms/kms_service.h"
#include "services/kms/kms_store.h"
#include "services/kms/root_keys.h"

namespace {

using namespace pml;  // NOLINT(google-build-using-namespace): main only

struct KmsFlags {
  std::string state_dir = "/var/lib/pml-kms";
  std::string store;
  std::string node_name = "kms-0";
  std::string guest_listen;
  std::string verifier;
  std::string verifier_cert, verifier_key, verifier_ca;
  std::string replica_policy_id;
  std::string replica_join_token_file;
  std::string join_token_file;
  std::string join;
  std::string join_ca;
  std::string advertised_url;
  std::string tee;
  std::vector<std::string> guest_tls_names = {"localhost", "127.0.0.1"};
};

// Everything the services use, alive until shutdown.
struct Kms {
  std::unique_ptr<kms::KmsStore> store;
  std::unique_ptr<kms::RootKeys> keys;
  std::unique_ptr<kms::GrpcVerifierClient> verifier;
  std::unique_ptr<kms::KeyReleaseCore> core;
  std::unique_ptr<rpc::Server> guest_server;
};

absl::StatusOr<std::shared_ptr<Kms>> StartKms(const KmsFlags& f, const rpc::ServerFlags& sf) {
  auto k = std::make_shared<Kms>();
  if (f.verifier.empty())
    return absl::InvalidArgumentError("--verifier is required (pml-verifier's address)");
  if (f.guest_listen.empty())
    return absl::InvalidArgumentError("--guest-listen is required (the key-release listener)");
  const std::string url = f.store.empty() ? absl::StrCat("sqlite:", f.state_dir, "/kms.db")
                                          : f.store;
  PML_RETURN_IF_ERROR(core::MakeDirs(f.state_dir, 0700));
  PML_ASSIGN_OR_RETURN(k->store, kms::KmsStore::OpenUrl(url));
  SPDLOG_INFO("kms_store kind={} url={:?}", k->store->kind(), store::RedactDbUrl(url));

  rpc::ClientConfig vc;
  vc.target = f.verifier;
  vc.tls.cert = f.verifier_cert.empty() ? sf.server.tls.cert : f.verifier_cert;
  vc.tls.key = f.verifier_key.empty() ? sf.server.tls.key : f.verifier_key;
  vc.tls.ca = f.verifier_ca.empty() ? sf.server.tls.ca : f.verifier_ca;
  vc.idempotent_methods = {"/pml.attestation.v1.Attestation/Appraise"};
  PML_ASSIGN_OR_RETURN(k->verifier, kms::GrpcVerifierClient::Create(vc));

  // This node's own attestation (--tee): its evidence when it joins, and in its guest TLS
  // certificate and GetPublicInfo.
  std::unique_ptr<tee::TeeProvider> tee;
  if (!f.tee.empty()) {
    tee::TeeOptions to;
    tee::TeeKind kind = tee::TeeKind::kSimulated;
    if (f.tee == "configfs-tsm") {
      kind = tee::TeeKind::kConfigfsTsm;
    } else if (f.tee == "tdx-guest-device") {
      kind = tee::TeeKind::kTdxGuestDevice;
    } else if (f.tee != "simulated") {
      return absl::InvalidArgumentError(absl::StrCat("--tee ", f.tee, ": unknown"));
    }
    to.simulator.state_dir = f.state_dir + "/tee";
    PML_RETURN_IF_ERROR(core::MakeDirs(to.simulator.state_dir, 0700));
    PML_ASSIGN_OR_RETURN(tee, tee::MakeTeeProvider(kind, to));
    if (tee->IsSimulated())
      SPDLOG_WARN("kms_tee SIMULATED: this node's evidence proves nothing (development and CI)");
  }
  if (!f.join.empty() && !core::PathExists(f.state_dir + "/cluster.key")) {
    if (tee == nullptr)
      return absl::InvalidArgumentError("--join needs --tee (this node's own attestation)");
    if (f.join_token_file.empty())
      return absl::InvalidArgumentError("--join needs --join-token-file (the operator's token)");
    PML_ASSIGN_OR_RETURN(std::string token, core::ReadFile(f.join_token_file, 4096));
    kms::JoinOptions jo{f.join, f.join_ca, f.node_name, f.advertised_url,
                        std::string(absl::StripAsciiWhitespace(token))};
    PML_ASSIGN_OR_RETURN(pml::kms::v1::RootSecrets secrets, kms::FetchRootSecrets(jo, *tee));
    absl::Cleanup wipe = [&secrets] { rpc::WipeMessage(secrets); };  // on every path out
    // The secrets must be those of the cluster --join-ca names (its identity CA derives from
    // epoch 1), not merely come from a node that CA vouches for.
    if (secrets.epochs_size() == 0 || secrets.epochs(0).epoch() != 1)
      return absl::DataLossError("JoinCluster answer: no epoch 1");
    PML_ASSIGN_OR_RETURN(crypto::EvpPkeyPtr e1,
                         crypto::PrivateKeyFromPkcs8Der(core::AsBytes(secrets.epochs(0).ca_key())));
    PML_ASSIGN_OR_RETURN(crypto::SecretBytes e1_scalar, crypto::PrivateKeyToScalar(*e1));
    PML_ASSIGN_OR_RETURN(std::string got, kms::IdentityKeyProviderId(e1_scalar));
    PML_ASSIGN_OR_RETURN(std::string ca_pem, core::ReadFile(f.join_ca, 1 << 20));
    PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> ca, crypto::ParsePemCertificates(ca_pem));
    if (ca.size() != 1)
      return absl::InvalidArgumentError("--join-ca: want one certificate");
    PML_ASSIGN_OR_RETURN(const EVP_PKEY* ca_key, crypto::CertificatePublicKey(*ca[0]));
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> ca_spki, crypto::PublicKeyToDer(*ca_key));
    if (got != core::HexEncode(ca_spki)) {
      return absl::FailedPreconditionError(
          "the joined node's root secrets are not those of the cluster --join-ca names");
    }
    PML_ASSIGN_OR_RETURN(k->keys,
                         kms::RootKeys::Join(f.state_dir, *k->store, f.node_name, secrets));
    SPDLOG_INFO("kms_joined source={:?} epochs={}", f.join, secrets.epochs_size());
  } else {
    PML_ASSIGN_OR_RETURN(k->keys, kms::RootKeys::Open(f.state_dir, *k->store, f.node_name));
  }
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const kms::Epoch> cur, k->keys->Current());
  // The key-release listener's certificate comes from the identity root CA, so guests that pin the
  // cluster's key_provider_id authenticate this node (re-issued every start).
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const kms::IdentityCa> identity, k->keys->Identity());
  PML_ASSIGN_OR_RETURN(kms::GuestTls tls,
                       kms::IssueGuestTls(*identity, f.node_name, f.guest_tls_names, tee.get()));
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(f.state_dir + "/guest-tls.key", tls.key_pem, 0600));
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(f.state_dir + "/guest-tls.pem", tls.chain_pem, 0644));
  PML_RETURN_IF_ERROR(
      core::WriteFileAtomic(f.state_dir + "/kms-root-ca.pem", tls.root_pem, 0644));
  kms::KeyReleaseOptions o;
  o.node_name = f.node_name;
  o.replica_policy_id = f.replica_policy_id;
  if (!f.replica_join_token_file.empty()) {
    PML_ASSIGN_OR_RETURN(std::string token, core::ReadFile(f.replica_join_token_file, 4096));
    const std::string t(absl::StripAsciiWhitespace(token));
    if (t.size() < 16)
      return absl::InvalidArgumentError("--replica-join-token-file: at least 16 characters");
    const auto h = crypto::Sha256(t);
    o.replica_join_token_sha256.assign(h.begin(), h.end());
  }
  o.version = rpc::Version();
  o.kms_evidence = tls.evidence;
  k->core = std::make_unique<kms::KeyReleaseCore>(*k->keys, *k->store, *k->verifier, o);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  PML_RETURN_IF_ERROR(k->store->UpsertReplica(
      f.node_name, f.advertised_url.empty() ? f.guest_listen : f.advertised_url, now, now));
  SPDLOG_INFO("kms_ready node={} epoch={} key_provider_id={} root_ca={:?}", f.node_name,
              cur->secret.epoch, identity->key_provider_id, f.state_dir + "/kms-root-ca.pem");
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "pml-kms: holds root keys and releases per-app keys only to CVMs whose attestation passes\n"
      "the verifier under the app's policy. Operator API over mTLS on --listen "
      "(pml.kms.v1.KmsAdmin);\nguest-facing key release over TLS without client certificates on "
      "--guest-listen\n(pml.kms.v1.KeyRelease: GetAppKeys, SignCert, GetAppEnvEncryptPubKey, "
      "GetPublicInfo, JoinCluster).",
      "pml-kms");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  KmsFlags f;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.add_option("--state-dir", f.state_dir,
                 "node state: cluster.key (0600; seals the root keys at rest) and the default "
                 "SQLite store kms.db")
      ->capture_default_str();
  app.add_option("--store", f.store,
                 "store URL: sqlite:PATH (default: <state-dir>/kms.db) or postgresql://... so "
                 "several KMS replicas serve the same apps");
  app.add_option("--node-name", f.node_name, "this node's name in the replica list and audit log")
      ->capture_default_str();
  app.add_option("--guest-listen", f.guest_listen,
                 "key-release listener host:port: TLS with a certificate from the cluster's "
                 "identity root CA (see --guest-tls-names), no client certificates (the caller's "
                 "identity is its attestation)");
  app.add_option("--verifier", f.verifier, "pml-verifier address host:port (mTLS)");
  app.add_option("--verifier-cert", f.verifier_cert,
                 "client certificate with the kms role for the verifier (default --tls-cert)");
  app.add_option("--verifier-key", f.verifier_key, "its key (default --tls-key)");
  app.add_option("--verifier-ca", f.verifier_ca, "CA of the verifier's certificate (default --tls-ca)");
  app.add_option("--replica-policy-id", f.replica_policy_id,
                 "verifier policy joining KMS replicas must pass (default: replication refused)");
  app.add_option("--replica-join-token-file", f.replica_join_token_file,
                 "file holding the operator's join token (>= 16 characters) a joining replica must "
                 "present besides passing --replica-policy-id (default: replication refused)");
  app.add_option("--join-token-file", f.join_token_file,
                 "with --join: file holding the operator's join token");
  app.add_option("--join", f.join,
                 "join an existing KMS cluster: the key-release address host:port of a member; "
                 "used only when --state-dir has no cluster.key");
  app.add_option("--join-ca", f.join_ca,
                 "the cluster's identity root CA (PEM; a member's <state-dir>/kms-root-ca.pem): "
                 "the member's key-release certificate must chain to it");
  app.add_option("--advertised-url", f.advertised_url,
                 "where this node serves key release, for the replica list (default --guest-listen)");
  app.add_option("--guest-tls-names", f.guest_tls_names,
                 "DNS names / IP addresses in the key-release listener's certificate (issued by "
                 "the cluster's identity root CA, written to <state-dir>/guest-tls.pem)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--tee", f.tee,
                 "this node's TEE for its own evidence: configfs-tsm, tdx-guest-device, or "
                 "simulated (development; labelled SIMULATED everywhere). Required with --join "
                 "(the evidence the member appraises); on any node it also makes the guest TLS "
                 "certificate an RA-TLS one (a quote binding its key; `pmlctl verify endpoint` "
                 "appraises it) and fills GetPublicInfo.kms_evidence");
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);
  if (!f.join.empty() && f.join_ca.empty()) {
    std::fprintf(stderr, "pml-kms: error: --join needs --join-ca (the cluster's root CA)\n");
    return 2;
  }

  pml::rpc::ServiceMainOptions options{
      .component = "kms", .simulated_tee = f.tee == "simulated", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::kms::KmsRoleTable(),
      [&](const pml::rpc::ServiceEnv& env,
          pml::rpc::Metrics& metrics) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::kms;  // NOLINT(google-build-using-namespace): main only
        PML_ASSIGN_OR_RETURN(std::shared_ptr<Kms> k, StartKms(f, flags));
        pml::rpc::ServiceSet set;
        auto admin = std::make_shared<KmsAdminService>(env, *k->store, *k->keys, *k->core,
                                                       *k->verifier);
        set.registered.push_back({admin.get(), v1::KmsAdmin::service_full_name()});
        set.owned.push_back(admin);
        auto release = std::make_shared<KeyReleaseService>(env, *k->core, &metrics.registry());
        pml::rpc::ServerConfig gc = flags.server;
        gc.component = "kms-guest";
        gc.listen = f.guest_listen;
        gc.require_client_cert = false;
        gc.tls.ca.clear();
        gc.tls.cert = f.state_dir + "/guest-tls.pem";
        gc.tls.key = f.state_dir + "/guest-tls.key";
        PML_ASSIGN_OR_RETURN(k->guest_server,
                             pml::rpc::Server::Start(
                                 gc, {{release.get(), v1::KeyRelease::service_full_name()}},
                                 &metrics));
        SPDLOG_INFO("kms_guest_listener address={:?}", f.guest_listen);
        set.on_shutdown = [k, release]() mutable {
          k->guest_server->Shutdown(absl::Seconds(5));
          k.reset();
        };
        return set;
      });
}
