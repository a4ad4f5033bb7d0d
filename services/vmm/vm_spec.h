#pragma once
// VmSpec rules: validation (every field, with the field named), the app identity dstack derives
// from app-compose.json, and the spec's stored form (JSON) and hash. Pure and thread-safe.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {

// Limits on one spec (host-wide limits are the VmManager's).
inline constexpr uint32_t kMaxVcpus = 1024;
inline constexpr uint64_t kMinMemoryMib = 64;
inline constexpr uint64_t kMaxMemoryMib = 16ull << 20;  // 16 TiB
inline constexpr uint32_t kMaxDiskGib = 64 << 10;       // 64 TiB
inline constexpr size_t kMaxAppComposeBytes = 1 << 20;
inline constexpr size_t kMaxEncryptedEnvBytes = 64 << 10;
inline constexpr size_t kMaxKmsUrls = 8;
inline constexpr size_t kMaxPorts = 64;

// A VM name: 1-63 characters of [A-Za-z0-9._-], not starting with '.' or '-'.
// kInvalidArgument naming `field` otherwise.
absl::Status ValidateName(absl::string_view value, absl::string_view field);

// A PCI address as sysfs spells it: "0000:18:00.0" (lowercase hex).
bool IsPciSlot(absl::string_view slot);

// Checks every field of `spec`; kInvalidArgument whose message starts with the field's proto name
// ("spec.memory_mib: ..."). app_compose must be a JSON object with "runner" "docker-compose" or
// "bash" (then with a string "bash_script"); ports unique per (protocol, host port); host_address
// an IPv4 or IPv6 literal; kms_urls http(s) URLs; encrypted_env empty or at least 60 bytes
// (eph_pk 32 ‖ iv 12 ‖ tag 16).
absl::Status ValidateSpec(const VmSpec& spec);

// dstack's identities of an app (specs/dstack-compat.md §3.2).
struct AppIdentity {
  std::array<uint8_t, 32> compose_hash{};  // SHA-256 of the exact app-compose bytes
  std::vector<uint8_t> app_id;             // pinned, or compose_hash[0..20]
  std::array<uint8_t, 48> mrconfigid{};    // 0x01 ‖ compose_hash ‖ zeros (dstack's V1)
};
AppIdentity ComputeAppIdentity(absl::string_view app_compose, absl::Span<const uint8_t> pinned_app_id);

// SHA-256(seed ‖ app_id)[0..20].
std::vector<uint8_t> ComputeInstanceId(absl::Span<const uint8_t> seed, absl::Span<const uint8_t> app_id);

// A random (version 4) UUID in text form: VM ids, domain UUIDs, the store's instance id.
std::string NewUuid();

// The stored form of a spec: compact JSON with sorted keys (bytes as hex). SpecFromJson accepts
// only what SpecToJson writes (kDataLoss for anything else: the store is ours). SpecHash is the
// hex SHA-256 of SpecToJson, stamped into the domain's metadata.
std::string SpecToJson(const VmSpec& spec);
absl::StatusOr<VmSpec> SpecFromJson(absl::string_view json);
std::string SpecHash(const VmSpec& spec);

// The files the guest reads from its config share (dstack's shared-directory names):
// app-compose.json (exact bytes), .sys-config.json ({kms_urls, vm_config}), .instance_info
// ({app_id, instance_id_seed, instance_id} as hex) and .encrypted-env (when set).
struct ConfigFile {
  std::string name;
  std::string content;
};
std::vector<ConfigFile> GuestConfigFiles(const VmSpec& spec, const ImageInfo& image,
                                         absl::Span<const uint8_t> app_id,
                                         absl::Span<const uint8_t> instance_id_seed,
                                         absl::Span<const uint8_t> instance_id,
                                         size_t num_gpus, size_t num_nvswitches);

}  // namespace pml::vmm
