// pml-guest-agent: see --help.

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/service_main.h"
#include "lib/tee/tee_provider.h"
#include "services/guest-agent/app_keys.h"
#include "services/guest-agent/dstack_api.h"
#include "services/guest-agent/guest_agent_service.h"
#include "services/guest-agent/runtime_log.h"
#include "services/guest-agent/unix_http.h"

namespace {

using namespace pml;  // NOLINT(google-build-using-namespace): main only

struct AgentFlags {
  std::string tee;
  std::string state_dir = "/var/lib/pml-guest-agent";
  std::string app_compose;
  std::string app_id_hex;
  std::string dstack_socket;
  std::string tappd_socket;
  bool dev_key_provider = false;
};

// Reads `path` or, when missing, writes `n` random bytes there (0600) first.
absl::StatusOr<std::vector<uint8_t>> Persisted(const std::string& path, size_t n) {
  if (core::PathExists(path)) {
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> b, core::ReadFileBytes(path, 4096));
    if (b.size() != n)
      return absl::DataLossError(absl::StrCat(path, ": ", b.size(), " bytes, want ", n));
    return b;
  }
  std::vector<uint8_t> b = crypto::RandomBytes(n);
  PML_RETURN_IF_ERROR(core::WriteFileAtomic(path, core::ToString(b), 0600));
  return b;
}

// Everything the sockets serve, kept alive until shutdown.
struct Agent {
  std::unique_ptr<tee::TeeProvider> tee;
  std::unique_ptr<guest::RuntimeEventLog> log;
  std::unique_ptr<guest::AppKeys> keys;
  std::unique_ptr<guest::DstackApi> api;
  std::vector<std::unique_ptr<guest::UnixHttpServer>> servers;
};

absl::StatusOr<std::shared_ptr<Agent>> StartAgent(const AgentFlags& f) {
  auto agent = std::make_shared<Agent>();
  if (f.dstack_socket.empty() && f.tappd_socket.empty()) {
    SPDLOG_INFO("dstack_sockets none note={:?}", "no --dstack-socket/--tappd-socket: gRPC only");
    return agent;
  }
  if (f.tee.empty()) {
    return absl::InvalidArgumentError(
        "--tee is required with the dstack sockets: configfs-tsm, tdx-guest-device or simulated");
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

  // App identity (dstack-compat §3.2).
  guest::AgentIdentity id;
  if (!f.app_compose.empty()) {
    PML_ASSIGN_OR_RETURN(id.app_compose, core::ReadFile(f.app_compose, 1 << 20));
    auto name = nlohmann::json::parse(id.app_compose, nullptr, false);
    if (name.is_object() && name.contains("name") && name["name"].is_string())
      id.app_name = name["name"].get<std::string>();
  }
  const auto compose_hash = crypto::Sha256(id.app_compose);
  id.compose_hash.assign(compose_hash.begin(), compose_hash.end());
  if (!f.app_id_hex.empty()) {
    PML_ASSIGN_OR_RETURN(id.app_id, core::HexDecode(f.app_id_hex));
    if (id.app_id.size() != 20)
      return absl::InvalidArgumentError("--app-id: want 20 bytes (40 hex digits)");
  } else {
    id.app_id.assign(id.compose_hash.begin(), id.compose_hash.begin() + 20);
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> seed, Persisted(f.state_dir + "/instance-id-seed", 20));
  std::string instance_input(seed.begin(), seed.end());
  instance_input.append(id.app_id.begin(), id.app_id.end());
  const auto instance = crypto::Sha256(instance_input);
  id.instance_id.assign(instance.begin(), instance.begin() + 20);
  id.boot_log_json = "[]";
  id.tee_kind = std::string(tee::TeeKindName(agent->tee->Kind()));
  id.version = rpc::Version();

  // Keys: the KMS provides them (issue 7); until then only the explicit local provider.
  if (!f.dev_key_provider) {
    return absl::FailedPreconditionError(
        "no key provider: the KMS key release lands with issue 7; start with --dev-key-provider "
        "for development (keys from a seed sealed in --state-dir)");
  }
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> root, Persisted(f.state_dir + "/dev-app-key-seed", 32));
  PML_ASSIGN_OR_RETURN(
      std::vector<uint8_t> app_key,
      crypto::HkdfSha256(root, id.app_id, core::AsBytes("pml-dev-app-key:v1"), 32));
  id.key_provider_info = R"({"name":"local-dev","id":""})";
  PML_ASSIGN_OR_RETURN(agent->keys, guest::AppKeys::Create(crypto::SecretBytes(app_key), {}));

  // Boot events, once per boot (a restarted agent finds them in its log).
  if (agent->log->Size() == 0) {
    PML_RETURN_IF_ERROR(agent->log->Emit("system-preparing", {}));
    PML_RETURN_IF_ERROR(agent->log->Emit("app-id", id.app_id));
    PML_RETURN_IF_ERROR(agent->log->Emit("compose-hash", id.compose_hash));
    PML_RETURN_IF_ERROR(agent->log->Emit("instance-id", id.instance_id));
    PML_RETURN_IF_ERROR(agent->log->Emit("boot-mr-done", {}));
    PML_RETURN_IF_ERROR(agent->log->Emit("key-provider", core::AsBytes(id.key_provider_info)));
    PML_RETURN_IF_ERROR(agent->log->Emit("system-ready", {}));
  }
  agent->api = std::make_unique<guest::DstackApi>(*agent->log, *agent->keys, id);
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
  SPDLOG_INFO("agent_ready app_id={} compose_hash={} instance_id={} tee={}",
              core::HexEncode(id.app_id), core::HexEncode(id.compose_hash),
              core::HexEncode(id.instance_id), id.tee_kind);
  return agent;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "pml-guest-agent: runs inside every CVM; measures the app, fetches its keys and serves "
      "quotes,\nkeys and RA-TLS certificates to the app (pml.guest.v1.GuestAgent; "
      "dstack-compatible sockets).",
      "pml-guest-agent");
  pml::rpc::ServerFlags flags;
  std::string ready_file;
  AgentFlags f;
  pml::rpc::AddServerFlags(app, flags);
  pml::rpc::AddReadyFileFlag(app, ready_file);
  app.add_option("--tee", f.tee,
                 "TEE provider, required with the sockets: auto (configfs-tsm, else "
                 "/dev/tdx_guest; never the simulator), configfs-tsm, tdx-guest-device, or "
                 "simulated (UNSAFE: quotes from lib/tee's simulator prove nothing; development "
                 "and CI only)");
  app.add_option("--state-dir", f.state_dir,
                 "agent state: the runtime event log, the instance-id seed, the simulator's "
                 "RTMR3 and the development key seed (created 0700; put it on tmpfs so a reboot "
                 "resets it)")
      ->capture_default_str();
  app.add_option("--app-compose", f.app_compose,
                 "the app's app-compose.json as the VMM delivered it (its SHA-256 is the compose "
                 "hash)");
  app.add_option("--app-id", f.app_id_hex,
                 "pinned app id, 40 hex digits (default: the first 20 bytes of the compose hash)");
  app.add_option("--dstack-socket", f.dstack_socket,
                 "dstack API socket for DstackClient, e.g. /var/run/dstack.sock (default: not "
                 "served)");
  app.add_option("--tappd-socket", f.tappd_socket,
                 "legacy Tappd API socket for TappdClient, e.g. /var/run/tappd.sock (default: not "
                 "served)");
  app.add_flag("--dev-key-provider", f.dev_key_provider,
               "development only: derive the app key from a seed sealed in --state-dir instead "
               "of the KMS (Info's key_provider_info says local-dev)");
  app.set_version_flag("--version", pml::rpc::Version());
  CLI11_PARSE(app, argc, argv);

  pml::rpc::ServiceMainOptions options{.component = "guest-agent",
                                       .simulated_tee = f.tee == "simulated",

                                       .ready_file = ready_file};
  return pml::rpc::RunServiceMain(
      options, flags, pml::guest::GuestAgentRoleTable(),
      [&](const pml::rpc::ServiceEnv& env,
          pml::rpc::Metrics&) -> absl::StatusOr<pml::rpc::ServiceSet> {
        using namespace pml::guest;  // NOLINT(google-build-using-namespace): main only
        PML_ASSIGN_OR_RETURN(std::shared_ptr<Agent> agent, StartAgent(f));
        pml::rpc::ServiceSet set;
        auto guest_agent = std::make_shared<GuestAgentService>(env);
        set.registered.push_back({guest_agent.get(), v1::GuestAgent::service_full_name()});
        set.owned.push_back(guest_agent);
        set.on_shutdown = [agent]() mutable {
          for (auto& s : agent->servers)
            s->Stop();
          agent.reset();
        };
        return set;
      });
}
