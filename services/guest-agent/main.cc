// pml-guest-agent: see --help.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "lib/tee/tee_provider.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/app_keys.h"
#include "services/guest-agent/boot.h"
#include "services/guest-agent/dstack_api.h"
#include "services/guest-agent/gpu_source.h"
#include "services/guest-agent/guest_agent_service.h"
#include "services/guest-agent/runtime_log.h"
#include "services/guest-agent/tls_key_client.h"
#include "services/guest-agent/unix_http.h"

extern char** environ;

namespace {

using namespace pml;  // NOLINT(google-build-using-namespace): main only

struct AgentFlags {
  std::string tee;
  std::string state_dir = "/run/pml-guest-agent";
  std::string dstack_socket;
  std::string tappd_socket;
  std::string grpc_socket;
  std::string dstack_http_listen;
  std::string gpus = "none";
  std::string nvml_library = "libnvidia-ml.so.1";
  bool run_app = false;
  guest::BootOptions boot;
};

// The app's runner as a child process (docker compose up, or bash), stopped at shutdown.
class Runner {
 public:
  static absl::StatusOr<std::unique_ptr<Runner>> Start(const guest::RunnerSpec& spec,
                                                       const std::string& dir,
                                                       const AgentFlags& f) {
    if (spec.runner.empty())
      return std::unique_ptr<Runner>();
    PML_RETURN_IF_ERROR(core::MakeDirs(dir, 0700));
    std::vector<std::string> argv;
    if (spec.runner == "docker-compose") {
      const std::string file = dir + "/docker-compose.yaml";
      PML_RETURN_IF_ERROR(core::WriteFileAtomic(file, spec.script, 0600));
      argv = {"docker", "compose", "-f", file, "up"};
    } else {
      const std::string file = dir + "/app.sh";
      PML_RETURN_IF_ERROR(core::WriteFileAtomic(file, spec.script, 0700));
      argv = {"/bin/bash", file};
    }
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e)
      env.emplace_back(*e);
    if (!f.dstack_socket.empty())
      env.push_back("DSTACK_SIMULATOR_ENDPOINT=" + f.dstack_socket);
    if (!f.tappd_socket.empty())
      env.push_back("TAPPD_SIMULATOR_ENDPOINT=" + f.tappd_socket);
    std::vector<char*> cargv, cenv;
    for (auto& a : argv)
      cargv.push_back(a.data());
    cargv.push_back(nullptr);
    for (auto& e : env)
      cenv.push_back(e.data());
    cenv.push_back(nullptr);
    // The RPC server blocks SIGTERM/SIGINT/SIGCHLD for its sigwait thread; the app must not
    // inherit that mask (it could not be stopped), nor any ignored disposition.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, cargv[0], nullptr, &attr, cargv.data(), cenv.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("starting the app's runner (", argv[0], "): ", std::strerror(rc)));
    }
    SPDLOG_INFO("app_runner_started runner={} pid={}", spec.runner, pid);
    return std::unique_ptr<Runner>(new Runner(pid));
  }
  ~Runner() {
    ::kill(pid_, SIGTERM);
    if (waiter_.joinable())
      waiter_.join();
  }

 private:
  explicit Runner(pid_t pid) : pid_(pid) {
    waiter_ = std::thread([pid] {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      SPDLOG_INFO("app_runner_exited pid={} status={}", pid,
                  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    });
  }
  pid_t pid_;
  std::thread waiter_;
};

// Everything the sockets serve, kept alive until shutdown.
struct Agent {
  std::unique_ptr<tee::TeeProvider> tee;
  std::unique_ptr<guest::RuntimeEventLog> log;
  std::unique_ptr<guest::GpuSource> gpus;
  guest::BootState boot;
  std::unique_ptr<guest::AppKeys> keys;
  std::unique_ptr<guest::AgentCore> core;
  std::unique_ptr<guest::DstackApi> api;
  std::vector<std::unique_ptr<guest::UnixHttpServer>> servers;
  std::unique_ptr<Runner> runner;
};

absl::StatusOr<std::unique_ptr<guest::GpuSource>> MakeGpus(const AgentFlags& f, bool simulated_tee) {
  if (f.gpus == "none")
    return std::unique_ptr<guest::GpuSource>();
  if (f.gpus == "nvml")
    return guest::MakeNvmlGpus(f.nvml_library);
  if (f.gpus == "auto") {
    auto nvml = guest::MakeNvmlGpus(f.nvml_library);
    if (!nvml.ok()) {
      SPDLOG_INFO("gpus none reason={:?}", std::string(nvml.status().message()));
      return std::unique_ptr<guest::GpuSource>();
    }
    return nvml;
  }
  int n = 0;
  if (absl::StartsWith(f.gpus, "simulated:") && absl::SimpleAtoi(f.gpus.substr(10), &n)) {
    if (!simulated_tee)
      return absl::InvalidArgumentError("--gpus simulated:N needs --tee simulated");
    return guest::MakeSimulatedGpus(n);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--gpus ", f.gpus, ": want none, auto, nvml or simulated:N"));
}

absl::StatusOr<std::shared_ptr<Agent>> StartAgent(AgentFlags f) {
  auto agent = std::make_shared<Agent>();
  if (f.tee.empty()) {
    return absl::InvalidArgumentError(
        "--tee is required: auto, configfs-tsm, tdx-guest-device or simulated");
  }
  PML_RETURN_IF_ERROR(core::MakeDirs(f.state_dir, 0700));
  tee::TeeOptions to;
  to.simulator.state_dir = f.state_dir;
  tee::TeeKind kind;
  if (f.tee == "simulated") {
    kind = tee::TeeKind::kSimulated;
  } else if (f.tee == "configfs-tsm") {
    kind = tee::TeeKind::kConfigfsTsm;
  } else if (f.tee == "tdx-guest-device") {
    kind = tee::TeeKind::kTdxGuestDevice;
  } else if (f.tee == "auto") {
    PML_ASSIGN_OR_RETURN(kind, tee::DetectTeeKind(tee::DetectOptions{}));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--tee ", f.tee, ": unknown"));
  }
  PML_ASSIGN_OR_RETURN(agent->tee, tee::MakeTeeProvider(kind, to));
  if (agent->tee->IsSimulated()) {
    SPDLOG_WARN("tee kind=simulated note={:?}",
                "SIMULATED TEE: quotes and keys prove nothing; development and CI only");
  }
  PML_ASSIGN_OR_RETURN(
      agent->log, guest::RuntimeEventLog::Open(f.state_dir + "/runtime-events.log", *agent->tee));
  PML_ASSIGN_OR_RETURN(agent->gpus, MakeGpus(f, agent->tee->IsSimulated()));

  f.boot.state_dir = f.state_dir;
  f.boot.tee_kind = std::string(tee::TeeKindName(agent->tee->Kind()));
  f.boot.version = rpc::Version();
  PML_ASSIGN_OR_RETURN(agent->boot, guest::RunBoot(f.boot, *agent->log, agent->gpus.get()));
  PML_ASSIGN_OR_RETURN(agent->keys,
                       guest::AppKeys::Create(agent->boot.app_key, agent->boot.kms_signature));
  const guest::AgentIdentity& id = agent->boot.identity;
  agent->core = std::make_unique<guest::AgentCore>(
      *agent->log, *agent->keys, agent->boot.ca.has_value() ? &*agent->boot.ca : nullptr,
      agent->gpus.get(), id);
  agent->api = std::make_unique<guest::DstackApi>(*agent->core);
  for (const std::string* path : {&f.dstack_socket, &f.tappd_socket}) {
    if (path->empty())
      continue;
    guest::UnixHttpServer::Options o;
    o.socket_path = *path;
    guest::DstackApi* api = agent->api.get();
    PML_ASSIGN_OR_RETURN(auto server,
                         guest::UnixHttpServer::Start(
                             o, [api](const guest::HttpRequest& r) { return api->Handle(r); }));
    SPDLOG_INFO("dstack_socket_serving path={:?}", *path);
    agent->servers.push_back(std::move(server));
  }
  if (!f.dstack_http_listen.empty()) {
    // The public, key-free subset for callers outside the guest (a forwarded port).
    guest::UnixHttpServer::Options o;
    o.tcp_listen = f.dstack_http_listen;
    guest::DstackApi* api = agent->api.get();
    PML_ASSIGN_OR_RETURN(
        auto server, guest::UnixHttpServer::Start(
                         o, [api](const guest::HttpRequest& r) { return api->HandlePublic(r); }));
    SPDLOG_INFO("dstack_http_serving listen={:?} port={} methods={:?}", f.dstack_http_listen,
                server->port(), "GetQuote,Attest,Info,Version,Tappd.TdxQuote,Tappd.Info");
    agent->servers.push_back(std::move(server));
  }
  SPDLOG_INFO("agent_ready app_id={} compose_hash={} instance_id={} tee={} key_provider={} "
              "gpus={} booted_now={}",
              core::HexEncode(id.app_id), core::HexEncode(id.compose_hash),
              core::HexEncode(id.instance_id), id.tee_kind, id.key_provider_info, id.gpus.size(),
              agent->boot.emitted);
  if (f.run_app) {
    PML_ASSIGN_OR_RETURN(guest::RunnerSpec spec, guest::ParseRunner(id.app_compose));
    PML_ASSIGN_OR_RETURN(agent->runner, Runner::Start(spec, f.state_dir + "/app", f));
  }
  return agent;
}

// `pml-guest-agent tls-key`: one /GetTlsKey call on the agent's socket, written as two files.
int RunTlsKey(const guest::TlsKeyClientOptions& options, const std::string& key_out,
              const std::string& cert_out) {
  absl::Status s = [&]() -> absl::Status {
    PML_ASSIGN_OR_RETURN(guest::TlsKeyFiles files, guest::RequestTlsKey(options));
    return guest::WriteTlsKeyFiles(files, key_out, cert_out);
  }();
  if (!s.ok()) {
    std::fprintf(stderr, "pml-guest-agent tls-key: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "pml-guest-agent: runs inside every CVM. `boot` measures the app into RTMR3 (app id, compose "
      "hash,\nGPU attestation, instance id, key provider), verifies the GPUs, gets the app's keys "
      "and serves;\nwithout `boot` it serves an already booted CVM (after an agent restart). It "
      "serves quotes,\nkeys, RA-TLS certificates and evidence to the app over gRPC "
      "(pml.guest.v1.GuestAgent) and\ndstack's HTTP sockets (@phala/dstack-sdk works unchanged); "
      "--dstack-http-listen adds the\nkey-free part of that API on TCP. `tls-key` is a client of "
      "a running agent.",
      "pml-guest-agent");
  pml::rpc::ServerFlags flags;
  flags.server.listen = "";
  std::string ready_file;
  AgentFlags f;
  pml::rpc::AddServerFlags(app, flags, /*tls_required=*/false);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.add_option("--tee", f.tee,
                 "TEE provider (required): auto (configfs-tsm, else /dev/tdx_guest; never the "
                 "simulator), configfs-tsm, tdx-guest-device, or simulated (UNSAFE: quotes from "
                 "lib/tee's simulator prove nothing; development and CI only)");
  app.add_option("--state-dir", f.state_dir,
                 "agent state: the runtime event log, instance-id seed, simulator RTMR3 and key "
                 "seeds (created 0700; keep it on tmpfs so it lives exactly as long as RTMR3)")
      ->capture_default_str();
  app.add_option("--config-dir", f.boot.config_dir,
                 "the VMM's config share: app-compose.json, .sys-config.json (vm_config), "
                 ".instance_info (app_id, instance_id_seed)");
  app.add_option("--app-compose", f.boot.app_compose_path,
                 "app-compose.json outside a config dir (its SHA-256 is the compose hash)");
  app.add_option("--app-id", f.boot.app_id_hex,
                 "pinned app id, 40 hex digits (default: .instance_info's, else the first 20 "
                 "bytes of the compose hash)");
  app.add_option("--key-provider", f.boot.key_provider,
                 "where the app's keys come from: auto (the app's key_provider / kms_enabled), kms "
                 "(attested key release from pml-kms), local-dev (development: derived from a "
                 "seed sealed in --state-dir; Info says local-dev), none (random per boot)")
      ->capture_default_str();
  app.add_option("--gpus", f.gpus,
                 "GPUs: none, auto (NVML when libnvidia-ml loads), nvml, or simulated:N (with "
                 "--tee simulated)")
      ->capture_default_str();
  app.add_option("--nvml-library", f.nvml_library, "NVML library to load")->capture_default_str();
  app.add_option("--kms-url", f.boot.kms_address,
                 "with the kms key provider: the KMS key-release address, host:port or "
                 "https://host:port (default: .sys-config.json kms_urls[0])");
  app.add_option("--kms-root-ca", f.boot.kms_root_ca,
                 "the KMS cluster's identity root CA, PEM (default <config-dir>/kms-root-ca.pem "
                 "when that file exists; else fetched from the KMS's GetPublicInfo over an "
                 "unverified TLS connection); either way its SPKI must equal app-compose.json "
                 "key_provider_id (measured), and the key-release connection is verified "
                 "against it");
  app.add_option("--rim-service-url", f.boot.gpu.rim_service_url,
                 "NVIDIA RIM service for the boot GPU check")
      ->capture_default_str();
  app.add_option("--ocsp-url", f.boot.gpu.ocsp_url, "NVIDIA OCSP responder")->capture_default_str();
  app.add_option("--rim-cache-dir", f.boot.gpu.rim_cache_dir, "RIM cache directory");
  app.add_flag("--gpu-offline", f.boot.gpu.offline,
               "verify GPUs from --rim-cache-dir only (no network)");
  app.add_option("--image-variant", f.boot.image_variant,
                 "the guest image's variant, as its (measured) init states it: production or "
                 "development; reported in Info and in attestation bundles (policies can refuse "
                 "development images)")
      ->check(CLI::IsMember({"", "production", "development"}));
  app.add_option("--dstack-socket", f.dstack_socket,
                 "dstack API socket for DstackClient, e.g. /var/run/dstack.sock (default: not "
                 "served)");
  app.add_option("--tappd-socket", f.tappd_socket,
                 "legacy Tappd API socket for TappdClient, e.g. /var/run/tappd.sock (default: "
                 "not served)");
  app.add_option("--dstack-http-listen", f.dstack_http_listen,
                 "also serve the dstack HTTP API on this TCP address HOST:PORT (plain HTTP, e.g. "
                 "0.0.0.0:8090 behind a forwarded port), but only its public, key-free methods: "
                 "/GetQuote, /Attest, /Info, /Version, /prpc/Tappd.TdxQuote, /prpc/Tappd.Info; "
                 "every other path answers 403 (keys stay on the unix socket). Default: not "
                 "served");
  app.add_option("--grpc-socket", f.grpc_socket,
                 "gRPC unix socket for guest-local callers, e.g. /var/run/pml-guest.sock (every "
                 "method; access by file permissions). --listen adds TCP with mTLS (read-only "
                 "methods for operator and viewer)");
  CLI::App* boot = app.add_subcommand(
      "boot", "run the boot sequence (measure the app, verify GPUs, get keys), then serve");
  boot->fallthrough();  // the agent's options may follow `boot`
  boot->add_flag("--run-app", f.run_app,
                 "then start the app's runner (docker compose up, or the bash script)");
  pml::guest::TlsKeyClientOptions tls_key;
  tls_key.socket_path = "/var/run/dstack.sock";
  std::string tls_key_out, tls_cert_out;
  CLI::App* tls = app.add_subcommand(
      "tls-key",
      "client: ask a running agent's dstack socket for a fresh TLS key and certificate chain "
      "(/GetTlsKey) and write them as files, for apps that cannot speak HTTP over a unix socket "
      "(e.g. `openssl s_server -key KEY -cert CHAIN -cert_chain CHAIN`: -cert alone sends only "
      "the leaf). Exit 0 on success, 1 with one error line");
  tls->add_option("--dstack-socket", tls_key.socket_path, "the agent's dstack API socket")
      ->capture_default_str();
  tls->add_option("--subject", tls_key.subject, "the certificate's common name")->required();
  tls->add_option("--alt-name", tls_key.alt_names,
                  "a DNS name or IP address for the subjectAltName (repeatable; default: none)");
  tls->add_flag("--ra-tls", tls_key.ra_tls,
                "add the RA-TLS extensions: a quote binding the key, the event log and the app "
                "id, so a peer can verify the certificate comes from this CVM");
  tls->add_option("--key-out", tls_key_out, "write the private key here (PEM, PKCS#8, mode 0600)")
      ->required();
  tls->add_option("--cert-out", tls_cert_out,
                  "write the certificate chain here (PEM, leaf first, then the app CA and the "
                  "root; mode 0644)")
      ->required();
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);
  if (tls->parsed())
    return RunTlsKey(tls_key, tls_key_out, tls_cert_out);
  f.boot.emit = boot->parsed();
  if (flags.server.listen.empty()) {
    if (f.grpc_socket.empty()) {
      std::fprintf(stderr, "pml-guest-agent: error: give --grpc-socket and/or --listen\n");
      return 2;
    }
    flags.server.listen = "unix:" + f.grpc_socket;
  } else if (!f.grpc_socket.empty()) {
    flags.server.local_listen = "unix:" + f.grpc_socket;
  }

  pml::rpc::ServiceMainOptions options{
      .component = "guest-agent", .simulated_tee = f.tee == "simulated", .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::guest::GuestAgentRoleTable(),
      [&](const pml::rpc::ServiceEnv& env,
          pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        PML_ASSIGN_OR_RETURN(std::shared_ptr<Agent> agent, StartAgent(f));
        pml::rpc::ServiceSet set;
        auto guest_agent = std::make_shared<pml::guest::GuestAgentService>(env, *agent->core);
        set.registered.push_back(
            {guest_agent.get(), pml::guest::v1::GuestAgent::service_full_name()});
        set.owned.push_back(guest_agent);
        set.on_shutdown = [agent]() mutable {
          agent->runner.reset();
          for (auto& s : agent->servers)
            s->Stop();
          agent.reset();
        };
        return set;
      });
}
