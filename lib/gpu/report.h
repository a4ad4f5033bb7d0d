#pragma once
// NVIDIA GPU / NVSwitch SPDM attestation reports: structure only (no cryptography, no I/O).
//
// A report is what NVML (GPUs) or NSCQ (LS10 switches) returns: the SPDM 1.1 GET_MEASUREMENTS
// request (37 bytes, carrying the verifier's 32-byte nonce at offset 4) followed by the
// MEASUREMENTS response (blocks, responder nonce, opaque data, a 96-byte ECDSA P-384 r||s
// signature). Layout: shared/specs/gpu-evidence-verification.md §2; signature rule §3.
//
// ParseReport checks every length and rejects trailing bytes, unknown opaque TLV types, duplicate
// measurement indices, and the "versioned opaque data" format (magic "NVDAOD", not supported: it
// fails closed). The opaque-field accessors decode individual fields by name.
//
// Thread-safety: all functions are pure; a Report is an immutable value.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::gpu {

inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kSignatureSize = 96;  // ECDSA P-384 raw r||s
inline constexpr size_t kRequestSize = 37;
inline constexpr size_t kMaxReportSize = 0x2000;  // NVML_CC_GPU_ATTESTATION_REPORT_SIZE

using Nonce = std::array<uint8_t, kNonceSize>;

// Device architectures. The leaf certificate's common name fixes it during verification.
enum class Arch { kHopper, kBlackwell, kLs10 };
absl::string_view ArchName(Arch arch);  // "HOPPER", "BLACKWELL", "LS10" (NVAT's spelling)
// Parses "HOPPER" / "BLACKWELL" / "LS10" (case-insensitive). kInvalidArgument otherwise.
absl::StatusOr<Arch> ParseArch(absl::string_view name);
inline bool IsSwitch(Arch arch) { return arch == Arch::kLs10; }

// Opaque data TLV types (spec §2 table; NVAT gpu/switch opaque parsers).
namespace opaque {
inline constexpr uint16_t kCertIssuerName = 1;
inline constexpr uint16_t kCertAuthorityKeyId = 2;
inline constexpr uint16_t kDriverVersion = 3;
inline constexpr uint16_t kGpuInfo = 4;
inline constexpr uint16_t kSku = 5;
inline constexpr uint16_t kVbiosVersion = 6;
inline constexpr uint16_t kManufacturerId = 7;
inline constexpr uint16_t kTamperDetection = 8;
inline constexpr uint16_t kSmc = 9;
inline constexpr uint16_t kVpr = 10;
inline constexpr uint16_t kNvdec0Status = 11;
inline constexpr uint16_t kMsrsCnt = 12;
inline constexpr uint16_t kCprInfo = 13;
inline constexpr uint16_t kBoardId = 14;
inline constexpr uint16_t kChipSku = 15;
inline constexpr uint16_t kChipSkuMod = 16;
inline constexpr uint16_t kProject = 17;
inline constexpr uint16_t kProjectSku = 18;
inline constexpr uint16_t kProjectSkuMod = 19;
inline constexpr uint16_t kFwid = 20;
inline constexpr uint16_t kProtectedPcieStatus = 21;
inline constexpr uint16_t kSwitchPdi = 22;  // GPU: 18 NVLink peer PDIs; switch: its own DEVICE_PDI
inline constexpr uint16_t kFloorsweptPorts = 23;
inline constexpr uint16_t kPositionId = 24;
inline constexpr uint16_t kLockSwitchStatus = 25;
inline constexpr uint16_t kSwitchGpuPdis = 26;  // switch only
inline constexpr uint16_t kSwitchPorts = 27;
inline constexpr uint16_t kGpuLinkConn = 32;
inline constexpr uint16_t kSysEnableStatus = 33;
inline constexpr uint16_t kOpaqueDataVersion = 34;
inline constexpr uint16_t kChipInfo = 35;
inline constexpr uint16_t kFeatureFlag = 36;
inline constexpr uint16_t kMaxKnownType = 36;
// Name of a type ("DRIVER_VERSION"); "UNKNOWN" for others.
absl::string_view TypeName(uint16_t type);
}  // namespace opaque

// One DMTF measurement block (SPDM 1.1 §10.11).
struct MeasurementBlock {
  uint8_t index = 0;  // 1-based
  uint8_t value_type = 0;
  std::vector<uint8_t> value;
};

struct OpaqueField {
  uint16_t type = 0;
  std::vector<uint8_t> value;
};

struct Report {
  std::vector<uint8_t> raw;    // the whole report as given
  uint8_t request_param1 = 0;  // 0x01: signature requested
  uint8_t request_param2 = 0;  // 0xFF: all measurements
  Nonce nonce{};               // the verifier's nonce (request offset 4)
  uint8_t slot_id = 0;
  uint8_t response_param1 = 0;
  uint8_t response_param2 = 0;
  std::vector<MeasurementBlock> blocks;  // in report order, indices unique
  Nonce responder_nonce{};
  std::vector<OpaqueField> opaque;  // in report order, types unique

  // The bytes the device signed: everything but the last 96 bytes (spec §3). Views into `raw`:
  // valid while this Report lives and is not modified. Empty when `raw` is shorter than a
  // signature (only for a Report not made by ParseReport).
  absl::Span<const uint8_t> SignedBytes() const;
  absl::Span<const uint8_t> Signature() const;

  // The block with 1-based `index`, or nullptr.
  const MeasurementBlock* FindBlock(uint8_t index) const;
  // The opaque field of `type`, or nullptr.
  const OpaqueField* FindOpaque(uint16_t type) const;
};

// Parses a report. kInvalidArgument "REPORT_MALFORMED: <field> ..." on any structural error:
// size outside [kRequestSize + 1, kMaxReportSize], SPDM version != 0x11, wrong request/response
// codes, zero blocks, a record whose blocks do not exactly fill MeasurementRecordLength, a block
// whose specification is not DMTF or whose sizes disagree, duplicate indices, opaque TLVs that
// overrun or repeat, an opaque type outside 1..36, or trailing bytes after the signature.
// kInvalidArgument "OPAQUE_DATA_UNSUPPORTED: ..." for versioned opaque data ("NVDAOD") and
// OPAQUE_DATA_VERSION > 1.
absl::StatusOr<Report> ParseReport(absl::Span<const uint8_t> bytes);

// ---- Opaque fields by name. Each returns kNotFound "REPORT_MALFORMED: <NAME> absent" when the
// field is missing and kInvalidArgument "REPORT_MALFORMED: <NAME> ..." when it has the wrong size.

// ASCII fields with trailing NULs stripped (DRIVER_VERSION, PROJECT, PROJECT_SKU, CHIP_SKU,
// CHIP_INFO, ...). kInvalidArgument when a byte is not printable ASCII.
absl::StatusOr<std::string> OpaqueString(const Report& report, uint16_t type);
absl::StatusOr<std::string> DriverVersion(const Report& report);
// VBIOS version as NVIDIA prints it ("96.00.9F.00.04"). GPUs encode it in 8 bytes (spec §2
// VBIOS_VERSION); LS10 switches as ASCII.
absl::StatusOr<std::string> VbiosVersion(const Report& report, Arch arch);
// NVDEC0_STATUS byte (0xAA enabled, 0x55 disabled).
absl::StatusOr<uint8_t> Nvdec0Status(const Report& report);
// FWID (48 bytes); nullopt when absent (535/545 drivers).
absl::StatusOr<std::optional<std::vector<uint8_t>>> Fwid(const Report& report);
// OPAQUE_DATA_VERSION (u16); nullopt when absent.
absl::StatusOr<std::optional<uint16_t>> OpaqueDataVersion(const Report& report);
// FEATURE_FLAG (u16: 0 SPT, 1 MPT, 2 PPCIE); nullopt when absent.
absl::StatusOr<std::optional<uint16_t>> FeatureFlag(const Report& report);
// PROTECTED_PCIE_STATUS byte (0xAA on, 0x55 off); nullopt when absent.
absl::StatusOr<std::optional<uint8_t>> ProtectedPcieStatus(const Report& report);
// GPU SWITCH_PDI: each 8-byte entry read little-endian, as 16 lower-case hex digits, zeros
// (disabled links) dropped, in report order (duplicates kept). Empty when absent.
absl::StatusOr<std::vector<std::string>> GpuSwitchPdis(const Report& report);
// Switch DEVICE_PDI (type 22 in switch reports): the 8 raw bytes as hex, no reversal.
absl::StatusOr<std::string> SwitchDevicePdi(const Report& report);
// Switch SWITCH_GPU_PDIS: the first eight 8-byte entries as raw hex.
absl::StatusOr<std::vector<std::string>> SwitchGpuPdis(const Report& report);

// ---- RIM ids (spec §5).
// Hopper "NV_GPU_DRIVER_GH100_<driver>"; Blackwell "NV_GPU_CC_DRIVER_<CHIP_INFO or
// GB100>_<driver>". kInvalidArgument for LS10 (switches have no driver RIM).
absl::StatusOr<std::string> DriverRimId(const Report& report, Arch arch);
// GPUs "NV_GPU_VBIOS_<PROJECT>_<PROJECT_SKU>_<CHIP_SKU>_<VBIOS without dots>";
// LS10 "NV_SWITCH_BIOS_5612_0002_890_<VBIOS without dots>".
absl::StatusOr<std::string> VbiosRimId(const Report& report, Arch arch);

}  // namespace pml::gpu
