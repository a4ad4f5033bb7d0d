#pragma once
// Operator commands for pml-vmm (proto/pml/vmm/v1/vmm.proto): the host inventory and the VM
// lifecycle. Every command but a local `vm compose-hash` calls pml.vmm.v1.Vmm over mTLS with the
// client flags of client_flags.h (--addr HOST:PORT, --pki-dir/--as or --ca/--cert/--key,
// --timeout-seconds: the deadline of each call). The operator role may run everything; viewer
// may run the read-only commands (ls, get, info, logs, watch, compose-hash --remote).
//
//   pmlctl gpu ls [--state free|claimed|unusable] [--json]        ListGpus, as dstack's lsgpu
//   pmlctl image ls [--json]                                      ListImages
//   pmlctl host info [--json]                                     GetHostInfo
//   pmlctl vm create --name N --image I (--compose F | --app-compose F | --bash-script F)
//                    --tee tdx|none [--vcpus N] [--memory SIZE] [--disk SIZE] [--gpu SLOT]...
//                    [--gpus all] [--port SPEC]... [--hugepages] [--pin-numa] [--numa-node N]
//                    [--kms-url URL]... [--encrypted-env-file F] [--app-id HEX40]
//                    [--request-id ID] [--start] [--json]
//       CreateVm (BuildCreateVmRequest). The request id (a fresh UUID unless given) is printed to
//       standard error first, so a failed or timed-out create can be retried idempotently.
//   pmlctl vm start|get VM [--json]                               StartVm, GetVm
//   pmlctl vm stop VM [--force] [--timeout DURATION] [--json]     StopVm
//   pmlctl vm rm VM [--force]                                     RemoveVm
//   pmlctl vm ls [--state S]... [--name SUBSTR] [--page-size N] [--page-token T] [--all] [--json]
//   pmlctl vm logs VM [-f|--follow] [--tail BYTES] [--max-duration D]
//       StreamLogs: the console bytes, raw, to standard output (flushed per chunk).
//   pmlctl vm watch [VM]... [--initial] [--max-duration D] [--json]
//       WatchVms: one line per event (FormatVmEvent) or one protobuf-JSON object per line.
//   pmlctl vm update VM [--compose F | --app-compose F | --bash-script F] [--vcpus N]
//                    [--memory SIZE] [--disk SIZE] [--port SPEC]... [--no-ports] [--gpu SLOT]...
//                    [--gpus all] [--no-gpus] [--kms-url URL]... [--no-kms-urls]
//                    [--encrypted-env-file F] [--[no-]hugepages] [--[no-]pin-numa]
//                    [--numa-node N | --no-numa-node] [--json]
//       GetVm, then UpdateVm with the field mask of the flags given (BuildUpdateVmRequest).
//   pmlctl vm compose-hash (--compose F --name N | --bash-script F --name N | --app-compose F)
//                          [--kms-enabled] [--remote --addr HOST:PORT ...] [--json]
//       ComputeComposeHash locally (no server), or GetComposeHash with --remote.
//
// VM arguments take a VM id or a VM name (ResolveVmRef). --json prints the response as protobuf
// JSON (proto field names, every field, bytes as base64).
//
// Exit codes (as `pmlctl kms`): 0 done; 1 refused by the service (its gRPC code and message are
// printed; UNAVAILABLE and DEADLINE_EXCEEDED included) or a VM argument that names no VM or
// several; 2 usage or local I/O error (a malformed --port/--memory/--disk/--app-id, conflicting
// flags, an unreadable file). Errors the argument parser finds (a missing --addr, a non-numeric
// --vcpus) exit with CLI11's codes (100 and up).
//
// The functions below are the commands' pure parts, exposed for tests. Thread-safety: all are
// thread-safe (no shared state); the Build* functions read the files their flags name.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pml/vmm/v1/vmm.pb.h"

namespace pml::pmlctl {

// Registers `gpu` (ls), `image` (ls), `host` (info) and `vm` (create, start, stop, rm, get, ls,
// logs, watch, update, compose-hash) on `app`. Each subcommand's callback runs the command and
// ends parsing with CLI::RuntimeError(exit code), like `kms`.
void AddVmmCommands(CLI::App& app);

// ---- flag parsing (kInvalidArgument naming the flag and the bad value, at most 64 characters)

// A port forward "PROTO:HOST_ADDR:HOST_PORT:GUEST_PORT" or "PROTO:HOST_PORT:GUEST_PORT" (host
// address 127.0.0.1). PROTO is tcp or udp (either case); HOST_ADDR an IPv4 or IPv6 literal, IPv6
// in brackets ("tcp:[::1]:8080:80"); ports 1-65535 in decimal. The message starts with
// `--port "<spec>": ` and names the part that is wrong.
absl::StatusOr<vmm::v1::PortForward> ParsePortSpec(absl::string_view spec);

// The spec form of `p` ("tcp:127.0.0.1:10022:22"); an empty host address prints as 127.0.0.1.
std::string FormatPortSpec(const vmm::v1::PortForward& p);

// A memory size in MiB: a whole number with an optional unit M/MiB, G/GiB or T/TiB (either case;
// powers of 1024); no unit = MiB. "2G", "2048M" and "2048" are all 2048. kInvalidArgument for
// anything else (MB/GB are refused as ambiguous), for 0 and on overflow.
absl::StatusOr<uint64_t> ParseMemoryMib(absl::string_view flag, absl::string_view text);

// A disk size in GiB: the same forms, but no unit = GiB, and a size in M/MiB must be a whole
// number of GiB. 0 (no data disk) is allowed. kInvalidArgument otherwise or above 2^32-1 GiB.
absl::StatusOr<uint32_t> ParseDiskGib(absl::string_view flag, absl::string_view text);

// StopVm's graceful-shutdown timeout in whole seconds: an absl duration ("30s", "2m", "1m30s")
// or a bare number of seconds. 0 = the server's default (30 s). kInvalidArgument for negative,
// fractional, unparseable or above 2^32-1 seconds.
absl::StatusOr<uint32_t> ParseStopTimeoutSeconds(absl::string_view text);

// The short names of the proto enums, lower case without the prefix ("running", "free",
// "state-changed", "tdx"); "unspecified" for 0 and "unknown(N)" for values this build lacks.
std::string VmStateName(vmm::v1::VmState state);
std::string GpuStateName(vmm::v1::GpuState state);
std::string VmEventTypeName(vmm::v1::VmEventType type);
std::string TeeModeName(common::v1::TeeMode mode);

// The inverse for flags (--state, --tee). kInvalidArgument listing the choices for anything else,
// including "unspecified".
absl::StatusOr<vmm::v1::VmState> ParseVmState(absl::string_view name);
absl::StatusOr<vmm::v1::GpuState> ParseGpuState(absl::string_view name);
absl::StatusOr<common::v1::TeeMode> ParseTeeMode(absl::string_view name);

// How the VM's TEE mode reads in summaries: "tdx", or for none "none (no TEE: the guest uses the
// SIMULATED TDX; development only)".
std::string TeeModeDescription(common::v1::TeeMode mode);

// ---- app-compose.json

enum class ComposeRunner { kDockerCompose, kBash };

// app-compose.json for `script` (a docker-compose file, or a bash script) as dstack's tooling
// writes it: {"allowed_envs":[], "bash_script" or "docker_compose_file": script,
// "gateway_enabled":false, "kms_enabled": kms_enabled, "local_key_provider_enabled":false,
// "manifest_version":2, "name": name, "no_instance_id":false, "public_logs":true,
// "public_sysinfo":true, "public_tcbinfo":true, "runner": "bash"|"docker-compose",
// "secure_time":false}, serialized deterministically: keys sorted, compact, UTF-8 unescaped
// (dstack docs/normalized-app-compose.md), because the compose hash is SHA-256 of these exact
// bytes. kInvalidArgument when `name` or `script` is not valid UTF-8.
absl::StatusOr<std::string> WrapAppCompose(ComposeRunner runner, absl::string_view name,
                                           absl::string_view script, bool kms_enabled);

// Where the app config comes from: exactly one of the three files.
struct ComposeFlags {
  std::string compose_file;      // --compose: a docker-compose file, wrapped by WrapAppCompose
  std::string app_compose_file;  // --app-compose: app-compose.json, sent byte for byte
  std::string bash_script_file;  // --bash-script: a script for runner "bash", wrapped

  bool Given() const {
    return !compose_file.empty() || !app_compose_file.empty() || !bash_script_file.empty();
  }
};

// The app-compose.json bytes the flags stand for; `name` and `kms_enabled` feed WrapAppCompose.
// kInvalidArgument when none or several files are given, when an --app-compose file is not a
// JSON object, or when the result exceeds the VMM's 1 MiB limit; a file's read error keeps its
// code (kNotFound, kPermissionDenied, ...) and names the path.
absl::StatusOr<std::string> LoadAppCompose(const ComposeFlags& flags, absl::string_view name,
                                           bool kms_enabled);

// What GetComposeHash answers, computed here: compose_hash = SHA-256(app_compose),
// app_id = compose_hash[0..20], mrconfigid = 0x01 ‖ compose_hash ‖ 15 zero bytes (48 bytes).
vmm::v1::GetComposeHashResponse ComputeComposeHash(absl::string_view app_compose);

// "compose hash: <64 hex>\napp id:       <40 hex>\nmrconfigid:   <96 hex>\n".
std::string FormatComposeHash(const vmm::v1::GetComposeHashResponse& hashes);

// ---- requests

// `vm create`'s flags as parsed (sizes and ports still text).
struct CreateVmFlags {
  std::string name;
  std::string image;
  ComposeFlags compose;
  std::string tee;  // "tdx" or "none"
  uint32_t vcpus = 2;
  std::string memory = "2G";
  std::string disk = "20G";
  std::vector<std::string> gpus;  // --gpu SLOT
  bool all_gpus = false;          // --gpus all
  std::vector<std::string> ports;
  bool hugepages = false;
  bool pin_numa = false;
  std::optional<int32_t> numa_node;
  std::vector<std::string> kms_urls;
  std::string encrypted_env_file;
  std::string app_id;      // 40 hex digits, or empty
  std::string request_id;  // copied as is; the command fills in NewRequestId() when not given
  bool start = false;
};

// The CreateVm request. kms_enabled in a wrapped compose is true when kms_urls is non-empty.
// kInvalidArgument naming the flag for a bad --tee/--memory/--disk/--port/--app-id, --gpu with
// --gpus all, or a --request-id outside 1-128 characters; LoadAppCompose's errors; a read error of
// --encrypted-env-file keeps its code. Checks nothing the server checks (name syntax, limits).
absl::StatusOr<vmm::v1::CreateVmRequest> BuildCreateVmRequest(const CreateVmFlags& flags);

// `vm update`'s flags: an unset optional / empty list / false means "leave as is".
struct UpdateVmFlags {
  ComposeFlags compose;
  std::optional<uint32_t> vcpus;
  std::optional<std::string> memory;
  std::optional<std::string> disk;
  std::vector<std::string> ports;  // replaces the whole list
  bool no_ports = false;
  std::vector<std::string> gpus;  // replaces the selection
  bool all_gpus = false;
  bool no_gpus = false;
  std::vector<std::string> kms_urls;  // replaces the list
  bool no_kms_urls = false;
  std::string encrypted_env_file;
  std::optional<bool> hugepages;
  std::optional<bool> pin_numa;
  std::optional<int32_t> numa_node;
  bool no_numa_node = false;  // back to "the GPUs' node"
};

// The UpdateVm request for VM `vm_id`: spec holds the new values and update_mask their VmSpec
// paths, in VmSpec field order (app_compose, vcpus, memory_mib, disk_size_gib, gpus, ports,
// hugepages, pin_numa, numa_node, kms_urls, encrypted_env). A new --compose/--bash-script is
// wrapped with `current`'s name and kms_enabled = whether the VM will have KMS URLs (the new
// --kms-url list, else current's). kInvalidArgument when no flag is given ("nothing to update"),
// for contradicting flags (--port with --no-ports, --gpu with --gpus all or --no-gpus, --kms-url
// with --no-kms-urls, --numa-node with --no-numa-node) and for the parse errors of
// BuildCreateVmRequest.
absl::StatusOr<vmm::v1::UpdateVmRequest> BuildUpdateVmRequest(absl::string_view vm_id,
                                                              const UpdateVmFlags& flags,
                                                              const vmm::v1::Vm& current);

// A random (version 4) UUID in lower-case text, for CreateVmRequest.request_id.
std::string NewRequestId();

// ---- VM arguments

// True when `ref` is UUID text (8-4-4-4-12 hex digits, either case), the form of VM ids: such an
// argument is used as the id without a lookup.
bool LooksLikeVmId(absl::string_view ref);

// The id of the one VM in `candidates` (ListVms answers for name_filter = name) whose name is
// exactly `name`. kNotFound when none is; kFailedPrecondition listing the ids when several are.
absl::StatusOr<std::string> PickVmByName(absl::string_view name,
                                         const std::vector<vmm::v1::Vm>& candidates);

// ---- output (text ends in a newline unless said otherwise)

// `gpu ls`: SLOT KIND NAME NUMA IOMMU DRIVER STATE VM/REASON (VM name, else id, for claimed
// devices; the reason for unusable ones). -1 and empty values print as "-".
std::string FormatGpuTable(const vmm::v1::ListGpusResponse& resp);

// `image ls`: NAME VERSION VARIANT TDX OS-IMAGE-HASH STATUS ("ok" or the image's error).
std::string FormatImageTable(const vmm::v1::ListImagesResponse& resp);

// `host info`: "key: value" lines, then the NUMA nodes as a table.
std::string FormatHostInfo(const vmm::v1::GetHostInfoResponse& info);

// One VM as "key: value" lines (id, name, state, tee mode via TeeModeDescription, image,
// resources, GPUs, ports, KMS URLs, compose hash, app id, instance id, mrconfigid, domain, times,
// request id, failure reason when set); bytes as lower-case hex.
std::string FormatVm(const vmm::v1::Vm& vm);

// `vm ls`: ID NAME STATE TEE VCPUS MEMORY GPUS PORTS CREATED.
std::string FormatVmTable(const std::vector<vmm::v1::Vm>& vms);

// One event, one line without newline: time, type, VM id, VM name, state (with " (was S)" for
// state changes) and the reason quoted and C-escaped ("-" when empty).
std::string FormatVmEvent(const vmm::v1::VmEvent& event);

// `message` as protobuf JSON with proto field names and every field; one line unless `pretty`
// (then indented, ending in a newline).
std::string ProtoJson(const google::protobuf::Message& message, bool pretty);

}  // namespace pml::pmlctl
