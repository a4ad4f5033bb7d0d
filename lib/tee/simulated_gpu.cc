#include "lib/tee/simulated_gpu.h"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/hash.h"
#include "lib/crypto/key.h"
#include "lib/tee/internal/der_writer.h"

namespace pml::tee {
namespace {

// SPDM 1.1 codes (spec §2).
constexpr uint8_t kSpdmVersion11 = 0x11;
constexpr uint8_t kGetMeasurements = 0xE0;
constexpr uint8_t kMeasurements = 0x60;
constexpr uint8_t kParamSignatureRequested = 0x01;
constexpr uint8_t kParamAllMeasurements = 0xFF;
constexpr uint8_t kDmtfMeasurementSpec = 0x01;
constexpr uint8_t kDmtfValueTypeMutableFirmware = 0x01;  // as every H100 block
constexpr size_t kMaxReportSize = 0x2000;                // NVML_CC_GPU_ATTESTATION_REPORT_SIZE

// Opaque data TLV types (spec §2 table).
constexpr uint16_t kOpaqueDriverVersion = 3;
constexpr uint16_t kOpaqueGpuInfo = 4;
constexpr uint16_t kOpaqueVbiosVersion = 6;
constexpr uint16_t kOpaqueNvdec0Status = 11;
constexpr uint16_t kOpaqueMsrsCnt = 12;
constexpr uint16_t kOpaqueCprInfo = 13;
constexpr uint16_t kOpaqueBoardId = 14;
constexpr uint16_t kOpaqueChipSku = 15;
constexpr uint16_t kOpaqueChipSkuMod = 16;
constexpr uint16_t kOpaqueProject = 17;
constexpr uint16_t kOpaqueProjectSku = 18;
constexpr uint16_t kOpaqueProjectSkuMod = 19;
constexpr uint16_t kOpaqueFwid = 20;
constexpr uint16_t kOpaqueProtectedPcieStatus = 21;
constexpr uint16_t kOpaqueSwitchPdi = 22;
constexpr uint16_t kOpaqueDataVersion = 34;
constexpr uint16_t kOpaqueFeatureFlag = 36;

constexpr uint8_t kStatusEnabled = 0xAA;
constexpr uint8_t kStatusDisabled = 0x55;
constexpr uint16_t kFeatureSpt = 0;
constexpr uint16_t kFeaturePpcie = 2;

// Fixed bytes copied from real H100 reports (vector h100nvl-595.71.05-azure-nras).
constexpr std::array<uint8_t, 8> kGpuInfo = {0x80, 0x01, 0, 0, 0, 0, 0, 0};
constexpr std::array<uint8_t, 4> kCprInfo = {0x00, 0xC0, 0x01, 0x00};
// Real reports pad CHIP_SKU to 9 bytes and PROJECT/PROJECT_SKU/CHIP_SKU_MOD to 5 with NULs.
constexpr size_t kChipSkuFieldSize = 9;
constexpr size_t kProjectFieldSize = 5;
constexpr size_t kMaxBoardStringSize = 16;
constexpr size_t kMaxDriverVersionSize = 64;

constexpr absl::string_view kSanOtherNameOid = "1.3.6.1.4.1.412.274.1";
constexpr absl::string_view kSha384Oid = "2.16.840.1.101.3.4.2.2";
constexpr absl::string_view kSubjectAltNameOid = "2.5.29.17";

// Fixed validity of every simulated certificate (NVIDIA's run to 9999-12-31 too), so that
// independent processes issue the same TBSCertificate.
absl::Time CertNotBefore() {
  return absl::FromCivil(absl::CivilSecond(2024, 1, 1, 0, 0, 0), absl::UTCTimeZone());
}
absl::Time CertNotAfter() {
  return absl::FromCivil(absl::CivilSecond(9999, 12, 31, 23, 59, 59), absl::UTCTimeZone());
}

using internal::Concat;
using internal::Tlv;

std::vector<uint8_t> Seq(std::initializer_list<std::vector<uint8_t>> items) {
  return Tlv(0x30, Concat(items));
}

// OBJECT IDENTIFIER from dotted text (first arc 1 or 2, as all ours are).
std::vector<uint8_t> Oid(absl::string_view dotted) {
  std::vector<uint64_t> arcs;
  for (absl::string_view part : absl::StrSplit(dotted, '.')) {
    uint64_t v = 0;
    PML_CHECK(absl::SimpleAtoi(part, &v));
    arcs.push_back(v);
  }
  PML_CHECK(arcs.size() >= 2);
  std::vector<uint8_t> content;
  auto base128 = [&content](uint64_t v) {
    uint8_t buf[10];
    int n = 0;
    do {
      buf[n++] = static_cast<uint8_t>(v & 0x7F);
      v >>= 7;
    } while (v != 0);
    for (int i = n - 1; i >= 0; --i) {
      content.push_back(buf[i] | (i > 0 ? 0x80 : 0x00));
    }
  };
  base128(arcs[0] * 40 + arcs[1]);
  for (size_t i = 2; i < arcs.size(); ++i) {
    base128(arcs[i]);
  }
  return Tlv(0x06, content);
}

// --- Keys, serials, labels. ---

absl::StatusOr<crypto::EvpPkeyPtr> DeriveKey(absl::string_view label) {
  const crypto::Sha384Digest scalar = crypto::Sha384(label);
  auto key = crypto::PrivateKeyFromScalar(crypto::Curve::kP384, scalar);
  if (!key.ok()) {
    return absl::InternalError(
        absl::StrCat("simulated gpu key from label \"", label, "\": ", key.status().message()));
  }
  return std::move(key).value();
}

std::string GpuLabel(absl::string_view label, uint32_t index) {
  return absl::StrCat(label, " gpu ", index);
}

std::vector<uint8_t> SerialFor(absl::string_view label) {
  const crypto::Sha256Digest h = crypto::Sha256(absl::StrCat("serial:", label));
  std::vector<uint8_t> serial(h.begin(), h.begin() + 20);
  serial[0] = static_cast<uint8_t>((serial[0] & 0x7F) | 0x40);  // positive, 20 significant bytes
  return serial;
}

crypto::CertSpec Spec(absl::string_view cn, absl::string_view serial_label) {
  crypto::CertSpec s;
  s.common_name = std::string{cn};
  s.organization = std::string{kGpuOrganization};
  s.not_before = CertNotBefore();
  s.not_after = CertNotAfter();
  s.serial = SerialFor(serial_label);
  s.digest = crypto::Digest::kSha384;  // ecdsa-with-SHA384, as every NVIDIA device certificate
  return s;
}

// SAN with NVIDIA's otherName (spec §4: 1.3.6.1.4.1.412.274.1 = "NVIDIA:GH100:<hex>").
std::vector<uint8_t> SanExtension(uint32_t index) {
  const crypto::Sha256Digest id =
      crypto::Sha256(GpuLabel("pml simulated gh100 device id v1", index));
  const std::string text =
      absl::StrCat("PML-SIMULATED:GH100:",
                   absl::AsciiStrToUpper(core::HexEncode(absl::MakeConstSpan(id).first(8))));
  const std::vector<uint8_t> utf8 = Tlv(0x0C, core::AsBytes(text));
  return Seq({Tlv(0xA0, Concat({Oid(kSanOtherNameOid), Tlv(0xA0, utf8)}))});
}

// --- Report building. ---

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(v); }
  void U16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v));
    out_.push_back(static_cast<uint8_t>(v >> 8));
  }
  void U24(uint32_t v) {
    for (int i = 0; i < 3; ++i) {
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  void Bytes(absl::Span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // One opaque-data TLV.
  void Field(uint16_t type, absl::Span<const uint8_t> value) {
    PML_CHECK(value.size() <= 0xFFFF);
    U16(type);
    U16(static_cast<uint16_t>(value.size()));
    Bytes(value);
  }
  size_t Size() const { return out_.size(); }
  std::vector<uint8_t>& Data() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

// ASCII padded with NULs to `size` (at least one NUL).
std::vector<uint8_t> PaddedAscii(absl::string_view s, size_t size) {
  std::vector<uint8_t> out(core::AsBytes(s).begin(), core::AsBytes(s).end());
  out.resize(std::max(size, s.size() + 1), 0);
  return out;
}

bool IsPrintableAscii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}

bool IsZero(const GpuMeasurement& m) {
  return std::all_of(m.begin(), m.end(), [](uint8_t b) { return b == 0; });
}

// Four simulated NVSwitch PDIs on the 18 links (links 16 and 17 disabled), as PPCIe GPUs see
// their four switches.
std::vector<uint64_t> DefaultSwitchPdis() {
  std::array<uint64_t, 4> pdis{};
  for (size_t i = 0; i < pdis.size(); ++i) {
    const crypto::Sha256Digest h =
        crypto::Sha256(absl::StrCat("pml simulated nvswitch pdi v1 switch ", i));
    for (size_t b = 0; b < 8; ++b) {
      pdis[i] = (pdis[i] << 8) | h[b];
    }
  }
  std::vector<uint64_t> out(kGpuSwitchPdiCount, 0);
  for (size_t link = 0; link < 16; ++link) {
    out[link] = pdis[link % pdis.size()];
  }
  return out;
}

absl::Status ValidateOptions(const SimulatedGpuOptions& o) {
  if (o.driver_version.empty() || o.driver_version.size() > kMaxDriverVersionSize ||
      !IsPrintableAscii(o.driver_version)) {
    return absl::InvalidArgumentError("driver_version must be 1..64 printable ASCII characters");
  }
  PML_RETURN_IF_ERROR(EncodeGpuVbiosVersion(o.vbios_version).status());
  auto check_board = [](absl::string_view name, absl::string_view value) {
    if (value.size() > kMaxBoardStringSize || !IsPrintableAscii(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be at most 16 printable ASCII characters"));
    }
    return absl::OkStatus();
  };
  PML_RETURN_IF_ERROR(check_board("chip_sku", o.chip_sku));
  PML_RETURN_IF_ERROR(check_board("project", o.project));
  PML_RETURN_IF_ERROR(check_board("project_sku", o.project_sku));
  if (!o.switch_pdis.empty() && o.switch_pdis.size() != kGpuSwitchPdiCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("switch_pdis has ", o.switch_pdis.size(), " entries, want 0 or 18"));
  }
  return absl::OkStatus();
}

}  // namespace

// --- Free functions. ---

absl::StatusOr<std::array<uint8_t, 8>> EncodeGpuVbiosVersion(absl::string_view version) {
  const std::vector<absl::string_view> parts = absl::StrSplit(version, '.');
  std::array<uint8_t, 5> v{};
  bool ok = parts.size() == v.size();
  for (size_t i = 0; ok && i < parts.size(); ++i) {
    auto b = core::HexDecode(parts[i]);
    ok = parts[i].size() == 2 && b.ok() && b->size() == 1;
    if (ok) {
      v[i] = (*b)[0];
    }
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("vbios_version \"", version.substr(0, 64), "\" is not HH.HH.HH.HH.HH"));
  }
  // NVIDIA decodes: reverse the 8 bytes, take hex of the second half then the byte before it.
  return std::array<uint8_t, 8>{v[3], v[2], v[1], v[0], v[4], 0, 0, 0};
}

absl::StatusOr<std::vector<uint8_t>> EncodeHopperFwidExtension(const EVP_PKEY& device_id_key,
                                                               const GpuMeasurement& fwid) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> spki, crypto::PublicKeyToDer(device_id_key));
  return Seq(
      {Tlv(0x02, std::vector<uint8_t>{0x01}), spki, Seq({Oid(kSha384Oid), Tlv(0x04, fwid)})});
}

GpuMeasurements DefaultSimulatedGpuMeasurements(absl::string_view driver_version,
                                                absl::string_view vbios_version) {
  GpuMeasurements out{};
  for (size_t i = 0; i < kGpuActiveMeasurements; ++i) {
    out[i] = crypto::Sha384(absl::StrCat("pml simulated gh100 measurement v1|", driver_version, "|",
                                         vbios_version, "|", i + 1));
  }
  return out;
}

GpuMeasurement DefaultSimulatedGpuFwid(absl::string_view vbios_version) {
  return crypto::Sha384(absl::StrCat("pml simulated gh100 fmc fwid v1|", vbios_version));
}

SimulatedGpuGolden SimulatedGpuGoldenMeasurements(absl::string_view driver_version,
                                                  absl::string_view vbios_version) {
  SimulatedGpuGolden g;
  g.driver_version = std::string{driver_version};
  g.vbios_version = std::string{vbios_version};
  const GpuMeasurements m = DefaultSimulatedGpuMeasurements(driver_version, vbios_version);
  for (size_t i = 0; i < m.size(); ++i) {
    if (!IsZero(m[i])) {
      g.measurements.push_back({static_cast<uint32_t>(i), m[i]});
    }
  }
  return g;
}

// --- SimulatedGpuPki. ---

absl::StatusOr<SimulatedGpuPki> SimulatedGpuPki::Create() {
  SimulatedGpuPki pki;
  PML_ASSIGN_OR_RETURN(pki.root_key_, DeriveKey(kGpuRootKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.identity_ca_key_, DeriveKey(kGpuIdentityCaKeyLabel));
  PML_ASSIGN_OR_RETURN(pki.provisioner_ca_key_, DeriveKey(kGpuProvisionerCaKeyLabel));

  PML_ASSIGN_OR_RETURN(std::string root_pub, crypto::PublicKeyToPem(*pki.root_key_));
  if (root_pub != kSimulatedGpuRootPublicKeyPem) {
    return absl::InternalError(
        "derived simulated gpu root key differs from kSimulatedGpuRootPublicKeyPem");
  }

  crypto::CertSpec root = Spec(kGpuRootCommonName, kGpuRootKeyLabel);
  root.is_ca = true;
  PML_ASSIGN_OR_RETURN(pki.root_cert_,
                       crypto::IssueCertificate(root, *pki.root_key_, *pki.root_key_, nullptr));

  crypto::CertSpec identity = Spec(kGpuIdentityCaCommonName, kGpuIdentityCaKeyLabel);
  identity.is_ca = true;
  PML_ASSIGN_OR_RETURN(pki.identity_ca_cert_,
                       crypto::IssueCertificate(identity, *pki.identity_ca_key_, *pki.root_key_,
                                                pki.root_cert_.get()));

  crypto::CertSpec provisioner = Spec(kGpuProvisionerCaCommonName, kGpuProvisionerCaKeyLabel);
  provisioner.is_ca = true;
  PML_ASSIGN_OR_RETURN(
      pki.provisioner_ca_cert_,
      crypto::IssueCertificate(provisioner, *pki.provisioner_ca_key_, *pki.identity_ca_key_,
                               pki.identity_ca_cert_.get()));

  PML_ASSIGN_OR_RETURN(pki.root_pem_, crypto::CertificateToPem(*pki.root_cert_));
  PML_ASSIGN_OR_RETURN(std::string identity_pem, crypto::CertificateToPem(*pki.identity_ca_cert_));
  PML_ASSIGN_OR_RETURN(std::string provisioner_pem,
                       crypto::CertificateToPem(*pki.provisioner_ca_cert_));
  pki.ca_chain_pem_ = absl::StrCat(provisioner_pem, identity_pem, pki.root_pem_);
  return pki;
}

absl::StatusOr<SimulatedGpuPki::Device> SimulatedGpuPki::IssueDevice(
    uint32_t index, const GpuMeasurement& fwid) const {
  Device d;
  d.index = index;
  d.fwid = fwid;
  const std::string device_id_label = GpuLabel(kGpuDeviceIdKeyLabel, index);
  const std::string attestation_label = GpuLabel(kGpuAttestationKeyLabel, index);
  PML_ASSIGN_OR_RETURN(d.device_id_key, DeriveKey(device_id_label));
  PML_ASSIGN_OR_RETURN(d.attestation_key, DeriveKey(attestation_label));

  crypto::CertSpec device_id = Spec(kGpuDeviceIdCommonName, device_id_label);
  device_id.is_ca = true;
  device_id.path_len = 0;
  PML_ASSIGN_OR_RETURN(d.device_id_cert,
                       crypto::IssueCertificate(device_id, *d.device_id_key, *provisioner_ca_key_,
                                                provisioner_ca_cert_.get()));

  crypto::CertSpec leaf = Spec(kGpuAttestationCommonName, attestation_label);
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> fwid_ext,
                       EncodeHopperFwidExtension(*d.device_id_key, fwid));
  leaf.extensions.push_back(
      crypto::CustomExtension{std::string{kSubjectAltNameOid}, false, SanExtension(index)});
  leaf.extensions.push_back(
      crypto::CustomExtension{std::string{kHopperFwidOid}, false, std::move(fwid_ext)});
  PML_ASSIGN_OR_RETURN(
      d.attestation_cert,
      crypto::IssueCertificate(leaf, *d.attestation_key, *d.device_id_key, d.device_id_cert.get()));

  PML_ASSIGN_OR_RETURN(std::string leaf_pem, crypto::CertificateToPem(*d.attestation_cert));
  PML_ASSIGN_OR_RETURN(std::string device_id_pem, crypto::CertificateToPem(*d.device_id_cert));
  d.chain_pem = absl::StrCat(leaf_pem, device_id_pem, ca_chain_pem_);
  return d;
}

// --- SimulatedGpu. ---

SimulatedGpu::SimulatedGpu(SimulatedGpuOptions options, std::shared_ptr<const SimulatedGpuPki> pki,
                           SimulatedGpuPki::Device device, const GpuMeasurements& measurements)
    : options_(std::move(options)),
      pki_(std::move(pki)),
      device_(std::move(device)),
      measurements_(measurements) {}

absl::StatusOr<std::unique_ptr<SimulatedGpu>> SimulatedGpu::Create(
    const SimulatedGpuOptions& options, std::shared_ptr<const SimulatedGpuPki> pki) {
  PML_RETURN_IF_ERROR(ValidateOptions(options));
  if (pki == nullptr) {
    PML_ASSIGN_OR_RETURN(SimulatedGpuPki own, SimulatedGpuPki::Create());
    pki = std::make_shared<const SimulatedGpuPki>(std::move(own));
  }
  const GpuMeasurement fwid = options.fwid.value_or(DefaultSimulatedGpuFwid(options.vbios_version));
  PML_ASSIGN_OR_RETURN(SimulatedGpuPki::Device device, pki->IssueDevice(options.index, fwid));
  const GpuMeasurements measurements = options.measurements.value_or(
      DefaultSimulatedGpuMeasurements(options.driver_version, options.vbios_version));
  return std::unique_ptr<SimulatedGpu>(
      new SimulatedGpu(options, std::move(pki), std::move(device), measurements));
}

absl::StatusOr<std::vector<uint8_t>> SimulatedGpu::GetReport(
    absl::Span<const uint8_t> nonce) const {
  if (nonce.size() != kGpuNonceSize) {
    return absl::InvalidArgumentError(absl::StrCat("nonce has ", nonce.size(), " bytes, want 32"));
  }
  if (!options_.cc_mode && !options_.ppcie) {
    return absl::FailedPreconditionError(
        absl::StrCat("confidential computing is off on simulated GPU ", options_.index));
  }

  Writer w;
  // GET_MEASUREMENTS request (37 bytes).
  w.U8(kSpdmVersion11);
  w.U8(kGetMeasurements);
  w.U8(kParamSignatureRequested);
  w.U8(kParamAllMeasurements);
  w.Bytes(nonce);
  w.U8(0);  // SlotIDParam
  PML_CHECK(w.Size() == kGpuRequestSize);

  // MEASUREMENTS response header.
  w.U8(kSpdmVersion11);
  w.U8(kMeasurements);
  w.U8(0);  // Param1
  w.U8(0);  // Param2: slot 0
  w.U8(static_cast<uint8_t>(kGpuMeasurementCount));
  w.U24(static_cast<uint32_t>(kGpuMeasurementCount * kGpuMeasurementBlockSize));
  for (size_t i = 0; i < kGpuMeasurementCount; ++i) {
    w.U8(static_cast<uint8_t>(i + 1));  // Index, 1-based
    w.U8(kDmtfMeasurementSpec);
    w.U16(static_cast<uint16_t>(3 + kGpuMeasurementSize));  // MeasurementSize
    w.U8(kDmtfValueTypeMutableFirmware);
    w.U16(static_cast<uint16_t>(kGpuMeasurementSize));
    w.Bytes(measurements_[i]);
  }
  // Responder nonce: a real GPU draws it at random; ours is derived so that equal requests give
  // equal signed bytes.
  const crypto::Sha256Digest responder_nonce = crypto::Sha256(absl::StrCat(
      "pml simulated gpu responder nonce v1|", options_.index, "|", core::ToString(nonce)));
  w.Bytes(responder_nonce);

  // Opaque data, in the order driver 590/595 writes it.
  Writer op;
  PML_ASSIGN_OR_RETURN(auto vbios, EncodeGpuVbiosVersion(options_.vbios_version));
  op.Field(kOpaqueVbiosVersion, vbios);
  {
    Writer v;
    v.U32(options_.board_id);
    op.Field(kOpaqueBoardId, v.Data());
  }
  op.Field(kOpaqueChipSku, PaddedAscii(options_.chip_sku, kChipSkuFieldSize));
  op.Field(kOpaqueChipSkuMod, PaddedAscii("0", kProjectFieldSize));
  op.Field(kOpaqueProject, PaddedAscii(options_.project, kProjectFieldSize));
  op.Field(kOpaqueProjectSku, PaddedAscii(options_.project_sku, kProjectFieldSize));
  op.Field(kOpaqueProjectSkuMod, std::vector<uint8_t>(2, 0));
  op.Field(kOpaqueDriverVersion, PaddedAscii(options_.driver_version, 0));
  op.Field(kOpaqueGpuInfo, kGpuInfo);
  {
    Writer v;  // how often each block was extended: 1 for a used block, 0 for an unused one
    for (const GpuMeasurement& m : measurements_) {
      v.U32(IsZero(m) ? 0 : 1);
    }
    op.Field(kOpaqueMsrsCnt, v.Data());
  }
  op.Field(kOpaqueCprInfo, kCprInfo);
  op.Field(kOpaqueNvdec0Status,
           std::vector<uint8_t>{options_.nvdec_enabled ? kStatusEnabled : kStatusDisabled});
  if (options_.include_fwid) {
    op.Field(kOpaqueFwid, device_.fwid);
  }
  op.Field(kOpaqueProtectedPcieStatus,
           std::vector<uint8_t>{options_.ppcie ? kStatusEnabled : kStatusDisabled});
  if (options_.ppcie) {
    Writer v;
    for (uint64_t pdi : options_.switch_pdis.empty() ? DefaultSwitchPdis() : options_.switch_pdis) {
      v.U64(pdi);
    }
    op.Field(kOpaqueSwitchPdi, v.Data());
  }
  {
    Writer v;
    v.U16(1);
    op.Field(kOpaqueDataVersion, v.Data());
  }
  {
    Writer v;
    v.U16(options_.ppcie ? kFeaturePpcie : kFeatureSpt);
    op.Field(kOpaqueFeatureFlag, v.Data());
  }
  PML_CHECK(op.Size() <= 0xFFFF);
  w.U16(static_cast<uint16_t>(op.Size()));
  w.Bytes(op.Data());

  // Signature over everything so far (spec §3).
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> sig,
                       crypto::SignEcdsaRaw(*device_.attestation_key, crypto::Digest::kSha384,
                                            w.Data(), kGpuMeasurementSize));
  PML_CHECK(sig.size() == kGpuSignatureSize);
  w.Bytes(sig);
  PML_CHECK(w.Size() <= kMaxReportSize);
  return std::move(w.Data());
}

}  // namespace pml::tee
