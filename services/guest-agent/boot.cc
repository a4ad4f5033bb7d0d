#include "services/guest-agent/boot.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "services/guest-agent/kms_provider.h"

namespace pml::guest {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxConfigBytes = 1 << 20;

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

// A JSON object from an optional file ({} when absent).
absl::StatusOr<Json> OptionalJson(const std::string& path) {
  if (path.empty() || !core::PathExists(path))
    return Json::object();
  PML_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path, kMaxConfigBytes));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  return j;
}

// Hex bytes of field `name` ("" / absent: empty). `want` = required length when non-empty.
absl::StatusOr<std::vector<uint8_t>> HexOf(const Json& j, const char* name, size_t want,
                                           const std::string& file) {
  if (!j.contains(name) || j[name].is_null())
    return std::vector<uint8_t>();
  if (!j[name].is_string())
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", name, ": want a hex string"));
  std::string text = j[name].get<std::string>();
  if (text.rfind("0x", 0) == 0)
    text.erase(0, 2);
  if (text.empty())
    return std::vector<uint8_t>();
  auto b = core::HexDecode(text);
  if (!b.ok() || b->size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", name, ": want ", want, " bytes of hex"));
  }
  return *b;
}

bool BoolField(const Json& j, const char* name) {
  return j.contains(name) && j[name].is_boolean() && j[name].get<bool>();
}

std::string StrField(const Json& j, const char* name) {
  return j.contains(name) && j[name].is_string() ? j[name].get<std::string>() : std::string();
}

}  // namespace

absl::StatusOr<RunnerSpec> ParseRunner(const std::string& app_compose) {
  RunnerSpec r;
  Json j = Json::parse(app_compose, nullptr, false);
  if (!j.is_object())
    return r;
  r.runner = StrField(j, "runner");
  if (r.runner == "docker-compose") {
    r.script = StrField(j, "docker_compose_file");
  } else if (r.runner == "bash") {
    r.script = StrField(j, "bash_script");
  } else if (!r.runner.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "app-compose.json: runner: \"", r.runner.substr(0, 32),
        "\" is not supported (docker-compose, bash)"));
  }
  return r;
}

absl::StatusOr<BootState> RunBoot(const BootOptions& o, RuntimeEventLog& log, GpuSource* gpus) {
  if (!o.emit && log.Size() == 0) {
    return absl::FailedPreconditionError(
        "not booted: the runtime log is empty; start with `pml-guest-agent boot`");
  }
  BootState st;
  AgentIdentity& id = st.identity;
  id.tee_kind = o.tee_kind;
  id.version = o.version;

  // 1. The app config.
  std::string compose_path = o.app_compose_path;
  if (compose_path.empty() && !o.config_dir.empty())
    compose_path = o.config_dir + "/app-compose.json";
  if (compose_path.empty())
    return absl::InvalidArgumentError("no app config: give --config-dir or --app-compose");
  PML_ASSIGN_OR_RETURN(id.app_compose, core::ReadFile(compose_path, kMaxConfigBytes));
  const Json compose = Json::parse(id.app_compose, nullptr, false);
  if (compose.is_discarded() || !compose.is_object())
    return absl::InvalidArgumentError(absl::StrCat(compose_path, ": not a JSON object"));
  PML_RETURN_IF_ERROR(ParseRunner(id.app_compose).status());
  id.app_name = StrField(compose, "name");
  id.image_variant = o.image_variant;
  const std::string sys_path = o.config_dir.empty() ? "" : o.config_dir + "/.sys-config.json";
  const std::string inst_path = o.config_dir.empty() ? "" : o.config_dir + "/.instance_info";
  PML_ASSIGN_OR_RETURN(Json sys, OptionalJson(sys_path));
  PML_ASSIGN_OR_RETURN(Json inst, OptionalJson(inst_path));
  if (sys.contains("vm_config")) {
    id.vm_config = sys["vm_config"].is_string() ? sys["vm_config"].get<std::string>()
                                                : sys["vm_config"].dump();
    Json vm = Json::parse(id.vm_config, nullptr, false);
    if (vm.is_object()) {
      PML_ASSIGN_OR_RETURN(id.os_image_hash, HexOf(vm, "os_image_hash", 32, "vm_config"));
    }
  }

  // 2. Identities.
  const auto compose_hash = crypto::Sha256(id.app_compose);
  id.compose_hash.assign(compose_hash.begin(), compose_hash.end());
  if (!o.app_id_hex.empty()) {
    auto pinned = core::HexDecode(o.app_id_hex);
    if (!pinned.ok() || pinned->size() != 20)
      return absl::InvalidArgumentError("--app-id: want 20 bytes (40 hex digits)");
    id.app_id = *pinned;
  } else {
    PML_ASSIGN_OR_RETURN(id.app_id, HexOf(inst, "app_id", 20, inst_path));
    if (id.app_id.empty())
      id.app_id.assign(id.compose_hash.begin(), id.compose_hash.begin() + 20);
  }
  if (!BoolField(compose, "no_instance_id")) {
    PML_ASSIGN_OR_RETURN(std::vector<uint8_t> seed, HexOf(inst, "instance_id_seed", 20, inst_path));
    if (seed.empty()) {
      PML_ASSIGN_OR_RETURN(seed, Persisted(o.state_dir + "/instance-id-seed", 20));
    }
    std::string input(seed.begin(), seed.end());
    input.append(id.app_id.begin(), id.app_id.end());
    const auto instance = crypto::Sha256(input);
    id.instance_id.assign(instance.begin(), instance.begin() + 20);
  }

  // 3. GPUs.
  std::string gpu_event;
  if (gpus != nullptr) {
    const std::vector<uint8_t> nonce = crypto::RandomBytes(32);
    PML_ASSIGN_OR_RETURN(GpuGateResult g, RunGpuGate(*gpus, o.gpu, nonce));
    id.gpus = g.devices;
    id.gpu_evidence_json = g.evidence_json;
    gpu_event = g.event_payload;
    if (!g.devices.empty()) {
      SPDLOG_INFO("gpu_gate passed gpus={} simulated={}", g.devices.size(), gpus->simulated());
    }
  }

  // 4. The measured boot events up to boot-mr-done (or, after an agent restart, the check that
  //    the log records this same boot).
  const std::vector<RuntimeEvent> logged = log.Events();
  st.emitted = logged.empty();
  struct Expected {
    std::string name;
    std::vector<uint8_t> payload;
    bool compare_payload = true;
  };
  std::vector<Expected> head = {{"system-preparing", {}},
                                {"app-id", id.app_id},
                                {"compose-hash", id.compose_hash}};
  if (!gpu_event.empty()) {
    // A restart re-runs the gate with a fresh nonce, so only the event's presence is compared.
    head.push_back({"gpu-attestation", {gpu_event.begin(), gpu_event.end()}, false});
  }
  head.push_back({"instance-id", id.instance_id});
  head.push_back({"boot-mr-done", {}});
  size_t pos = 0;
  auto step = [&](const Expected& e) -> absl::Status {
    if (pos < logged.size()) {
      const RuntimeEvent& have = logged[pos];
      if (have.name != e.name || (e.compare_payload && have.payload != e.payload)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the runtime log of this boot records ", have.name, " ",
            core::HexEncode(have.payload).substr(0, 80), " at position ", pos, ", where this "
            "config gives ", e.name, " ", core::HexEncode(e.payload).substr(0, 80),
            ": the app config changed under a measured boot; reboot the CVM"));
      }
    } else {
      PML_RETURN_IF_ERROR(log.Emit(e.name, e.payload));
    }
    ++pos;
    return absl::OkStatus();
  };
  for (const Expected& e : head)
    PML_RETURN_IF_ERROR(step(e));

  // 5. Keys.
  std::string provider = o.key_provider;
  if (provider == "auto") {
    const std::string kp = StrField(compose, "key_provider");
    if (kp == "kms" || (kp.empty() && BoolField(compose, "kms_enabled"))) {
      provider = "kms";
    } else if (kp == "local" || BoolField(compose, "local_key_provider_enabled")) {
      provider = "local-dev";
    } else {
      provider = "none";
    }
  }
  if (provider == "kms") {
    KmsProviderOptions ko;
    std::string url = o.kms_address;
    if (url.empty() && sys.contains("kms_urls") && sys["kms_urls"].is_array() &&
        !sys["kms_urls"].empty() && sys["kms_urls"][0].is_string()) {
      url = sys["kms_urls"][0].get<std::string>();
    }
    if (url.empty()) {
      return absl::InvalidArgumentError(
          "key provider kms: no KMS address (--kms-url or .sys-config.json kms_urls)");
    }
    PML_ASSIGN_OR_RETURN(ko.address, KmsTargetFromUrl(url));
    // An explicit --kms-root-ca must exist; the config dir's is optional: the VMM delivers none,
    // and then the CA is fetched from the KMS and checked against the pin (kms_provider.h).
    if (!o.kms_root_ca.empty()) {
      ko.root_ca_pem_path = o.kms_root_ca;
    } else if (!o.config_dir.empty() && core::PathExists(o.config_dir + "/kms-root-ca.pem")) {
      ko.root_ca_pem_path = o.config_dir + "/kms-root-ca.pem";
    } else {
      SPDLOG_INFO("kms_root_ca source=fetch kms_address={:?}", ko.address);
    }
    ko.pinned_key_provider_id = StrField(compose, "key_provider_id");
    PML_ASSIGN_OR_RETURN(KmsKeys k, FetchKeysFromKms(ko, log, gpus, id));
    st.app_key = std::move(k.app_key);
    st.kms_signature = std::move(k.kms_signature);
    st.ca = std::move(k.ca);
    st.disk_key = std::move(k.disk_key);
    st.epoch = k.epoch;
    id.key_provider_info = std::move(k.key_provider_info);
    id.key_provider = KeyProviderKind::kKms;
  } else if (provider == "local-dev" || provider == "none") {
    const bool dev = provider == "local-dev";
    PML_ASSIGN_OR_RETURN(
        std::vector<uint8_t> seed,
        Persisted(o.state_dir + (dev ? "/dev-app-key-seed" : "/ephemeral-app-key-seed"), 32));
    PML_ASSIGN_OR_RETURN(LocalDevKeys keys,
                         MakeLocalDevKeys(crypto::SecretBytes(std::move(seed)), id.app_id));
    st.app_key = std::move(keys.app_key);
    st.ca = std::move(keys.ca);
    // dstack's "none": keys random per boot, kept in the state dir for agent restarts.
    id.key_provider_info = dev ? std::move(keys.key_provider_info)
                               : std::string(R"({"name":"none","id":""})");
    id.key_provider = dev ? KeyProviderKind::kLocalDev : KeyProviderKind::kNone;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--key-provider: \"", provider.substr(0, 32), "\" (auto, local-dev, kms or none)"));
  }

  // 6. The OS image (dstack measures it after the keys, before key-provider; from the VMM's
  //    vm_config), the key provider and the end of boot.
  if (!id.os_image_hash.empty()) {
    PML_RETURN_IF_ERROR(step({"os-image-hash", id.os_image_hash}));
  }
  PML_RETURN_IF_ERROR(
      step({"key-provider", {id.key_provider_info.begin(), id.key_provider_info.end()}}));
  PML_RETURN_IF_ERROR(step({"system-ready", {}}));
  return st;
}

}  // namespace pml::guest
