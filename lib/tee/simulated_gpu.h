#pragma once
// Simulated NVIDIA GPUs for the simulated TEE (DESIGN.md §4): Hopper-class devices that answer
// NVML's attestation calls with SPDM 1.1 reports in the real layout (GET_MEASUREMENTS request ‖
// MEASUREMENTS response, 64 measurement blocks, opaque-data TLVs as driver 595 writes them,
// ECDSA P-384 r‖s signature; shared/specs/gpu-evidence-verification.md §2-§3), signed by the
// leaf of a simulated five-certificate device chain shaped like NVIDIA's (§4: root, "Identity",
// "Provisioner ICA", per-GPU "GSP BROM" device identity, per-GPU "GSP FMC LF" attestation leaf
// carrying the Hopper FWID extension 2.23.133.5.4.1).
//
// Nothing here is secret, by design: simulated evidence proves nothing. Every key is derived
// from a fixed public label (P-384 scalar = SHA-384(label); per-GPU keys add the GPU index), and
// every certificate has a fixed serial, subject and validity, so a guest's simulator and a
// verifier in another process agree on the whole PKI without sharing files. Only ECDSA signature
// bytes differ between runs (OpenSSL 3.0 signs with random nonces): pin the root's *key*
// (kSimulatedGpuRootPublicKeyPem, also lib/tee/simulated_gpu_root.pem), never its certificate.
// The chain ends with the simulated root certificate, as NVML's chains end with NVIDIA's root.
// Every CA subject says "PML SIMULATED"; the device certificates keep NVIDIA's common-name prefix
// ("GH100 A01 GSP BROM", "GH100 A01 GSP FMC LF", which verifiers use to tell the architecture)
// followed by " (PML SIMULATED)", and every organization is kGpuOrganization.
//
// Verifiers must accept this evidence only under the same explicit flag as simulated TDX quotes
// (--trust-simulated-tee / --allow-simulated-tee), pinning kSimulatedGpuRootSpkiSha256Hex, and
// mark every result "simulated".
//
// Golden measurements: real reports are appraised against NVIDIA's driver and VBIOS RIMs, which
// NVIDIA signs and which therefore cannot be simulated. A verifier that accepted a simulated
// report must compare its measurement blocks with SimulatedGpuGoldenMeasurements() (same
// matching rule as for RIMs: RIM index = SPDM index - 1, equal values, index 35 skipped when
// NVDEC0 is disabled), never with NVIDIA RIMs, and only under the simulated flag. Simulated
// driver versions end in "-sim", so the RIM ids they imply exist nowhere.
//
// Thread-safety: SimulatedGpuPki and SimulatedGpu are immutable after Create; every method is
// const and safe to call from several threads.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"

namespace pml::tee {

// The simulated GPU root's public key (SubjectPublicKeyInfo PEM; also
// lib/tee/simulated_gpu_root.pem). SimulatedGpuPki::Create checks that the derived key still
// equals it.
inline constexpr absl::string_view kSimulatedGpuRootPublicKeyPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEa8QHLUFy1NDp4Bk4SMLgqc2NC5svSaPn\n"
    "6TR1W3V3La9jSSikOnVWpAFeuEYeqjSG5MecTXXBeTEp9iD2dtkuaIc4pWawHODk\n"
    "KWT+Ao7VBZEe+BERr12Lx/KBvUhmA2TU\n"
    "-----END PUBLIC KEY-----\n";
// SHA-256 of that key's SubjectPublicKeyInfo DER.
inline constexpr absl::string_view kSimulatedGpuRootSpkiSha256Hex =
    "dc51d5fed77feffb34e34b42faeb735672887861b15539b70284f59587ca0286";

// Labels the keys are derived from (P-384 scalar = SHA-384(label); per-GPU labels get
// " gpu <index>" appended).
inline constexpr absl::string_view kGpuRootKeyLabel = "pml simulated nvidia device identity ca v1";
inline constexpr absl::string_view kGpuIdentityCaKeyLabel =
    "pml simulated nvidia gh100 identity v1";
inline constexpr absl::string_view kGpuProvisionerCaKeyLabel =
    "pml simulated nvidia gh100 provisioner ica v1";
inline constexpr absl::string_view kGpuDeviceIdKeyLabel = "pml simulated nvidia gh100 gsp brom v1";
inline constexpr absl::string_view kGpuAttestationKeyLabel =
    "pml simulated nvidia gh100 gsp fmc lf v1";

// Subject names (real chain: spec §4).
inline constexpr absl::string_view kGpuRootCommonName = "PML SIMULATED NVIDIA Device Identity CA";
inline constexpr absl::string_view kGpuIdentityCaCommonName = "PML SIMULATED NVIDIA GH100 Identity";
inline constexpr absl::string_view kGpuProvisionerCaCommonName =
    "PML SIMULATED NVIDIA GH100 Provisioner ICA 1";
inline constexpr absl::string_view kGpuDeviceIdCommonName = "GH100 A01 GSP BROM (PML SIMULATED)";
inline constexpr absl::string_view kGpuAttestationCommonName =
    "GH100 A01 GSP FMC LF (PML SIMULATED)";
inline constexpr absl::string_view kGpuOrganization = "PML SIMULATED GPU - not NVIDIA";

// The Hopper FWID extension of the attestation leaf: SEQUENCE { INTEGER 1, SubjectPublicKeyInfo
// (the device identity key), SEQUENCE { OID sha384, OCTET STRING (48-byte FWID) } } (spec §4).
inline constexpr absl::string_view kHopperFwidOid = "2.23.133.5.4.1";

// SPDM report constants (spec §2).
inline constexpr size_t kGpuNonceSize = 32;
inline constexpr size_t kGpuMeasurementCount = 64;
inline constexpr size_t kGpuMeasurementSize = 48;  // SHA-384
inline constexpr size_t kGpuSignatureSize = 96;    // P-384 r‖s
inline constexpr size_t kGpuRequestSize = 37;
inline constexpr size_t kGpuMeasurementBlockSize = 4 + 3 + kGpuMeasurementSize;  // 55
inline constexpr size_t kGpuSwitchPdiCount = 18;  // SWITCH_PDI: one 8-byte PDI per NVLink
// Blocks 1..kGpuActiveMeasurements carry digests; the rest are all-zero, as unused blocks are on
// real H100s (which leave 43..64 zero).
inline constexpr size_t kGpuActiveMeasurements = 42;

using GpuMeasurement = std::array<uint8_t, kGpuMeasurementSize>;
// Element i is SPDM measurement block i + 1 (= RIM index i).
using GpuMeasurements = std::array<GpuMeasurement, kGpuMeasurementCount>;

// The simulated device chain's shared part (root, Identity, Provisioner ICA). Immutable after
// Create; safe to share read-only across threads.
class SimulatedGpuPki {
 public:
  // The per-GPU part: the "GSP BROM" device identity CA and the "GSP FMC LF" attestation leaf.
  // Move-only (owns keys and certificates).
  struct Device {
    uint32_t index = 0;
    GpuMeasurement fwid{};
    crypto::EvpPkeyPtr device_id_key;    // signs the leaf
    crypto::EvpPkeyPtr attestation_key;  // signs reports
    crypto::X509Ptr device_id_cert;
    crypto::X509Ptr attestation_cert;
    std::string chain_pem;  // leaf, device id, Provisioner ICA, Identity, root (as NVML returns)
  };

  // Derives the three CA keys and issues their certificates (valid 2024-01-01..9999-12-31,
  // ecdsa-with-SHA384). kInternal if OpenSSL fails or the derived root key differs from
  // kSimulatedGpuRootPublicKeyPem (a broken build, not an input error).
  static absl::StatusOr<SimulatedGpuPki> Create();

  // Derives GPU `index`'s keys and issues its device identity certificate (CA, path length 0)
  // and attestation leaf (FWID extension carrying `fwid`; SAN otherName 1.3.6.1.4.1.412.274.1
  // "PML-SIMULATED:GH100:<16 hex>"; serial = SHA-256 of a label with the index, 20 bytes).
  // Identical for equal inputs apart from signature bytes. kInternal if OpenSSL fails.
  absl::StatusOr<Device> IssueDevice(uint32_t index, const GpuMeasurement& fwid) const;

  // Borrowed; valid as long as this object.
  const X509& root_cert() const { return *root_cert_; }
  const X509& identity_ca_cert() const { return *identity_ca_cert_; }
  const X509& provisioner_ca_cert() const { return *provisioner_ca_cert_; }
  const EVP_PKEY& root_key() const { return *root_key_; }
  const EVP_PKEY& identity_ca_key() const { return *identity_ca_key_; }
  const EVP_PKEY& provisioner_ca_key() const { return *provisioner_ca_key_; }
  const std::string& root_cert_pem() const { return root_pem_; }
  // Provisioner ICA, Identity, root: what follows a device's own two certificates.
  const std::string& ca_chain_pem() const { return ca_chain_pem_; }

 private:
  SimulatedGpuPki() = default;

  crypto::EvpPkeyPtr root_key_, identity_ca_key_, provisioner_ca_key_;
  crypto::X509Ptr root_cert_, identity_ca_cert_, provisioner_ca_cert_;
  std::string root_pem_, ca_chain_pem_;
};

enum class SimulatedGpuArch { kHopper };

struct SimulatedGpuOptions {
  uint32_t index = 0;  // NVML device index; selects the per-GPU keys
  SimulatedGpuArch arch = SimulatedGpuArch::kHopper;
  // DRIVER_VERSION (ASCII, NUL-terminated in the report). At most 64 printable characters.
  std::string driver_version = "580.159.04-sim";
  // VBIOS version as NVIDIA prints it: five dot-separated two-digit hex groups, encoded in the
  // report's 8-byte VBIOS_VERSION field as real GPUs encode it (spec §2).
  std::string vbios_version = "96.00.9F.00.04";
  // The 64 measurement values; nullopt: DefaultSimulatedGpuMeasurements(driver, vbios). Override
  // one to simulate a measurement mismatch.
  std::optional<GpuMeasurements> measurements;
  // The firmware digest in the leaf's FWID extension and the report's FWID field; nullopt:
  // DefaultSimulatedGpuFwid(vbios). Same firmware, same FWID on every GPU, as on real boards.
  std::optional<GpuMeasurement> fwid;
  bool include_fwid = true;  // false: no FWID TLV in the report (as drivers 535/545)
  // NVML ccFeature. With both this and `ppcie` off, GetReport refuses, as NVML does.
  bool cc_mode = true;
  // Protected PCIe (NVML multiGpuMode 1): PROTECTED_PCIE_STATUS 0xAA, FEATURE_FLAG 2 (PPCIE) and
  // a SWITCH_PDI field; otherwise 0x55, FEATURE_FLAG 0 (SPT) and no SWITCH_PDI.
  bool ppcie = false;
  // The 18 NVLink peer PDIs of SWITCH_PDI when `ppcie` (each written little-endian; 0 = link
  // disabled). Empty: four simulated switch PDIs, each on 4-5 links, the same for every GPU.
  std::vector<uint64_t> switch_pdis;
  bool nvdec_enabled = false;  // NVDEC0_STATUS 0xAA; CC GPUs report 0x55 (disabled)
  // Board identity (opaque fields BOARD_ID, CHIP_SKU, PROJECT, PROJECT_SKU; ASCII ones <= 16).
  uint32_t board_id = 0x0508;
  std::string chip_sku = "886";
  // Not a real project ("1010", "G520"), so the VBIOS RIM id a verifier derives
  // (NV_GPU_VBIOS_PSIM_0000_886_...) names no NVIDIA RIM.
  std::string project = "PSIM";
  std::string project_sku = "0000";
};
// The report carries no debug/DEVTOOLS indication (spec §1: devToolsMode is NVML state only), so
// there is no option for it.

// A simulated GPU. Immutable after Create; GetReport is thread-safe.
class SimulatedGpu {
 public:
  // Builds GPU `options.index`'s device certificates under `pki` (null: a PKI of its own; pass
  // one to give several GPUs byte-identical CA certificates, as on a real host).
  // kInvalidArgument naming the field when driver_version is empty, longer than 64 or not
  // printable ASCII, vbios_version is not "HH.HH.HH.HH.HH", an ASCII board field is longer than
  // 16, or switch_pdis has neither 0 nor 18 entries; kInternal if the PKI cannot be built.
  static absl::StatusOr<std::unique_ptr<SimulatedGpu>> Create(
      const SimulatedGpuOptions& options, std::shared_ptr<const SimulatedGpuPki> pki = nullptr);

  // What nvmlDeviceGetConfComputeGpuAttestationReport returns for `nonce`: the 37-byte
  // GET_MEASUREMENTS request (0x11 0xE0 0x01 0xFF, nonce, slot 0) followed by the MEASUREMENTS
  // response (64 blocks of 55 bytes, a responder nonce derived from the GPU index and `nonce`,
  // the opaque data, and the ECDSA P-384 / SHA-384 signature r‖s over every preceding byte, by
  // the attestation leaf's key). Equal inputs give equal bytes except the last 96.
  // kInvalidArgument when `nonce` is not 32 bytes; kFailedPrecondition "confidential computing
  // is off" when neither cc_mode nor ppcie is set; kInternal if signing fails.
  absl::StatusOr<std::vector<uint8_t>> GetReport(absl::Span<const uint8_t> nonce) const;

  // The attestation certificate chain as NVML returns it: concatenated PEM, leaf first, ending
  // with the simulated root.
  const std::string& CertChainPem() const { return device_.chain_pem; }

  const SimulatedGpuOptions& options() const { return options_; }
  const GpuMeasurements& measurements() const { return measurements_; }
  const GpuMeasurement& fwid() const { return device_.fwid; }
  // The NVAT/NRAS arch string ("HOPPER").
  absl::string_view ArchName() const { return "HOPPER"; }
  // Borrowed; valid as long as this object.
  const SimulatedGpuPki& pki() const { return *pki_; }
  const X509& attestation_cert() const { return *device_.attestation_cert; }
  const X509& device_id_cert() const { return *device_.device_id_cert; }
  const EVP_PKEY& attestation_key() const { return *device_.attestation_key; }

 private:
  SimulatedGpu(SimulatedGpuOptions options, std::shared_ptr<const SimulatedGpuPki> pki,
               SimulatedGpuPki::Device device, const GpuMeasurements& measurements);

  const SimulatedGpuOptions options_;
  const std::shared_ptr<const SimulatedGpuPki> pki_;
  const SimulatedGpuPki::Device device_;
  const GpuMeasurements measurements_;
};

// The measurement values a simulated GPU reports by default for this firmware: blocks
// 1..kGpuActiveMeasurements = SHA-384("pml simulated gh100 measurement v1|<driver>|<vbios>|<n>")
// (n = block index), the rest all-zero. Pure.
GpuMeasurements DefaultSimulatedGpuMeasurements(absl::string_view driver_version,
                                                absl::string_view vbios_version);
// The default FWID: SHA-384("pml simulated gh100 fmc fwid v1|<vbios>"). Pure.
GpuMeasurement DefaultSimulatedGpuFwid(absl::string_view vbios_version);

// One golden value, in RIM terms.
struct SimulatedGoldenMeasurement {
  uint32_t index = 0;  // 0-based RIM index (= SPDM block index - 1)
  GpuMeasurement value{};
};
// The stand-in for NVIDIA's driver + VBIOS RIMs of a simulated GPU running this firmware: the
// non-zero default measurements (every "active" index), by index, ascending. See the top of this
// file for when a verifier may use them. Pure.
struct SimulatedGpuGolden {
  std::string driver_version;
  std::string vbios_version;
  std::vector<SimulatedGoldenMeasurement> measurements;
};
SimulatedGpuGolden SimulatedGpuGoldenMeasurements(absl::string_view driver_version,
                                                  absl::string_view vbios_version);

// Encodes "AA.BB.CC.DD.EE" into the report's 8-byte VBIOS_VERSION field: DD CC BB AA EE 00 00 00
// (the inverse of NVIDIA's decoding, spec §2). kInvalidArgument when malformed. Exposed for tests.
absl::StatusOr<std::array<uint8_t, 8>> EncodeGpuVbiosVersion(absl::string_view version);

// The DER value of the Hopper FWID extension for a device identity key and FWID. Exposed for
// tests. kInternal if the key cannot be encoded.
absl::StatusOr<std::vector<uint8_t>> EncodeHopperFwidExtension(const EVP_PKEY& device_id_key,
                                                               const GpuMeasurement& fwid);

}  // namespace pml::tee
