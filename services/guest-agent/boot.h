#pragma once
// The boot sequence of `pml-guest-agent boot` (DESIGN.md §4 and §7, dstack-compat.md §3):
//
//   1. Read the app config the VMM delivered (config dir: app-compose.json, .sys-config.json,
//      .instance_info; or an explicit app-compose path).
//   2. Compute compose hash (SHA-256 of the exact bytes), app id (pinned in .instance_info or by
//      flag, else compose_hash[:20]) and instance id (SHA-256(seed ‖ app id)[:20]; the 20-byte
//      seed from .instance_info, else created once in the state dir; none with no_instance_id).
//   3. Verify the GPUs (gpu_gate.h) when any are attached: refuse to boot if one is not in CC
//      mode or its evidence fails.
//   4. Emit the boot events into RTMR3 in order: system-preparing, app-id, compose-hash,
//      gpu-attestation (with GPUs), instance-id, boot-mr-done.
//   5. Get the app's keys from the key provider: the KMS (kms_provider.h; its evidence carries
//      the log up to boot-mr-done), the local development provider, or none.
//   6. Emit key-provider (which KMS root supplied the keys) and system-ready.
//
// Restart: when the runtime log already holds this boot's events (an agent restart within one
// boot), each logged boot event must equal the one computed now (gpu-attestation by name: the
// gate re-runs with a fresh nonce), else kFailedPrecondition (the config changed under a measured
// boot: reboot the CVM); events a crashed boot did not reach are emitted now, in order.
//
// Thread-safety: RunBoot is called once, before serving.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/gpu_gate.h"
#include "services/guest-agent/gpu_source.h"
#include "services/guest-agent/runtime_log.h"

namespace pml::guest {

struct BootOptions {
  // Directory with the VMM's files (app-compose.json, .sys-config.json, .instance_info).
  std::string config_dir;
  // app-compose.json outside a config dir (overrides config_dir's).
  std::string app_compose_path;
  // Pinned app id, 40 hex digits ("" = from .instance_info, else compose_hash[:20]).
  std::string app_id_hex;
  // The image variant the (measured) init states: "production", "development" or "".
  std::string image_variant;
  // Agent state: the instance-id seed when the VMM gave none, the local-dev key seed.
  std::string state_dir;
  // "auto" (the app's key_provider / kms_enabled; "local" and local_key_provider_enabled mean
  // local-dev), "local-dev", "kms" or "none".
  std::string key_provider = "auto";
  GpuGateOptions gpu;
  // Key provider "kms": the key-release address, host:port or https://host[:port] (default:
  // .sys-config.json kms_urls[0]), and the KMS identity root CA PEM (default:
  // <config dir>/kms-root-ca.pem when it exists, else fetched from the KMS), which must match
  // app-compose.json key_provider_id.
  std::string kms_address;
  std::string kms_root_ca;
  // false (`pml-guest-agent` without `boot`): never emit; the log must already hold this boot's
  // events, else kFailedPrecondition "not booted".
  bool emit = true;
  std::string tee_kind;  // for the identity
  std::string version;
};

// What boot produced: the identity and the keys the agent serves.
struct BootState {
  AgentIdentity identity;
  crypto::SecretBytes app_key;
  std::vector<uint8_t> kms_signature;
  std::optional<AppCa> ca;
  crypto::SecretBytes disk_key;  // from the KMS (per instance); empty otherwise
  uint32_t epoch = 0;            // KMS key epoch
  bool emitted = false;  // false when the events were already in the log (restart)
};

// The app's runner, from app-compose.json.
struct RunnerSpec {
  std::string runner;  // "docker-compose", "bash", or "" (none)
  std::string script;  // docker_compose_file or bash_script contents
};

// Runs the sequence above. `gpus` may be null (no GPUs). Errors: kInvalidArgument naming the
// file and field for a malformed config; kFailedPrecondition for a refused GPU, a KMS that cannot
// be authenticated or refuses, or a config that changed under a measured boot;
// the log's and the TEE's errors pass through.
absl::StatusOr<BootState> RunBoot(const BootOptions& options, RuntimeEventLog& log,
                                  GpuSource* gpus);

// The runner of an app-compose.json (already validated by RunBoot).
absl::StatusOr<RunnerSpec> ParseRunner(const std::string& app_compose);

}  // namespace pml::guest
