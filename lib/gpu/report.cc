#include "lib/gpu/report.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "lib/core/byte_reader.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/gpu/errors.h"

namespace pml::gpu {
namespace {

// SPDM 1.1 codes (DSP0274 §10.11): GET_MEASUREMENTS request / MEASUREMENTS response.
constexpr uint8_t kSpdmVersion11 = 0x11;
constexpr uint8_t kGetMeasurements = 0xE0;
constexpr uint8_t kMeasurements = 0x60;
constexpr uint8_t kDmtfMeasurementSpec = 0x01;
// Versioned opaque data (CUDA 13.5+) starts with this magic; not supported yet (spec §2).
constexpr absl::string_view kVersionedOpaqueMagic = "NVDAOD";

absl::Status Malformed(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kReportMalformed, detail);
}

template <typename T>
absl::StatusOr<T> Classify(absl::StatusOr<T> v) {
  if (!v.ok())
    return WithClass(v.status(), error_class::kReportMalformed);
  return v;
}

absl::StatusOr<const OpaqueField*> Require(const Report& report, uint16_t type) {
  const OpaqueField* f = report.FindOpaque(type);
  if (f == nullptr) {
    return MakeError(absl::StatusCode::kNotFound, error_class::kReportMalformed,
                     absl::StrCat(opaque::TypeName(type), " absent"));
  }
  return f;
}

absl::Status WrongSize(uint16_t type, size_t got, absl::string_view want) {
  return Malformed(absl::StrCat(opaque::TypeName(type), " has ", got, " bytes, want ", want));
}

absl::StatusOr<uint16_t> U16Field(const OpaqueField& f) {
  if (f.value.size() != 2)
    return WrongSize(f.type, f.value.size(), "2");
  return static_cast<uint16_t>(f.value[0] | f.value[1] << 8);
}

absl::StatusOr<std::optional<uint16_t>> OptionalU16(const Report& report, uint16_t type) {
  const OpaqueField* f = report.FindOpaque(type);
  if (f == nullptr)
    return std::optional<uint16_t>();
  PML_ASSIGN_OR_RETURN(uint16_t v, U16Field(*f));
  return std::optional<uint16_t>(v);
}

std::string StripDots(absl::string_view v) {
  return absl::AsciiStrToUpper(absl::StrReplaceAll(v, {{".", ""}}));
}

}  // namespace

absl::string_view ArchName(Arch arch) {
  switch (arch) {
    case Arch::kHopper:
      return "HOPPER";
    case Arch::kBlackwell:
      return "BLACKWELL";
    case Arch::kLs10:
      return "LS10";
  }
  return "UNKNOWN";
}

absl::StatusOr<Arch> ParseArch(absl::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  if (upper == "HOPPER")
    return Arch::kHopper;
  if (upper == "BLACKWELL")
    return Arch::kBlackwell;
  if (upper == "LS10")
    return Arch::kLs10;
  return MakeError(
      absl::StatusCode::kInvalidArgument, error_class::kUnsupportedArch,
      absl::StrCat("arch \"", name.substr(0, 32), "\" is not HOPPER, BLACKWELL or LS10"));
}

namespace opaque {
absl::string_view TypeName(uint16_t type) {
  static constexpr absl::string_view kNames[] = {"INVALID",
                                                 "CERT_ISSUER_NAME",
                                                 "CERT_AUTHORITY_KEY_IDENTIFIER",
                                                 "DRIVER_VERSION",
                                                 "GPU_INFO",
                                                 "SKU",
                                                 "VBIOS_VERSION",
                                                 "MANUFACTURER_ID",
                                                 "TAMPER_DETECTION",
                                                 "SMC",
                                                 "VPR",
                                                 "NVDEC0_STATUS",
                                                 "MSRSCNT",
                                                 "CPRINFO",
                                                 "BOARD_ID",
                                                 "CHIP_SKU",
                                                 "CHIP_SKU_MOD",
                                                 "PROJECT",
                                                 "PROJECT_SKU",
                                                 "PROJECT_SKU_MOD",
                                                 "FWID",
                                                 "PROTECTED_PCIE_STATUS",
                                                 "SWITCH_PDI",
                                                 "FLOORSWEPT_PORTS",
                                                 "POSITION_ID",
                                                 "LOCK_SWITCH_STATUS",
                                                 "SWITCH_GPU_PDIS",
                                                 "SWITCH_PORTS",
                                                 "UNKNOWN_28",
                                                 "UNKNOWN_29",
                                                 "UNKNOWN_30",
                                                 "UNKNOWN_31",
                                                 "GPU_LINK_CONN",
                                                 "SYS_ENABLE_STATUS",
                                                 "OPAQUE_DATA_VERSION",
                                                 "CHIP_INFO",
                                                 "FEATURE_FLAG"};
  if (type < sizeof(kNames) / sizeof(kNames[0]))
    return kNames[type];
  return "UNKNOWN";
}
}  // namespace opaque

absl::Span<const uint8_t> Report::SignedBytes() const {
  if (raw.size() < kSignatureSize)
    return {};
  return absl::MakeConstSpan(raw).first(raw.size() - kSignatureSize);
}
absl::Span<const uint8_t> Report::Signature() const {
  if (raw.size() < kSignatureSize)
    return {};
  return absl::MakeConstSpan(raw).last(kSignatureSize);
}

const MeasurementBlock* Report::FindBlock(uint8_t index) const {
  for (const auto& b : blocks) {
    if (b.index == index)
      return &b;
  }
  return nullptr;
}

const OpaqueField* Report::FindOpaque(uint16_t type) const {
  for (const auto& f : opaque) {
    if (f.type == type)
      return &f;
  }
  return nullptr;
}

absl::StatusOr<Report> ParseReport(absl::Span<const uint8_t> bytes) {
  if (bytes.size() > kMaxReportSize) {
    return Malformed(
        absl::StrCat("report is ", bytes.size(), " bytes, more than ", kMaxReportSize));
  }
  Report out;
  out.raw.assign(bytes.begin(), bytes.end());
  core::ByteReader r(out.raw, "spdm report");

  // GET_MEASUREMENTS request (spec §2, offsets 0..36).
  PML_ASSIGN_OR_RETURN(uint8_t req_version, Classify(r.U8("request SPDMVersion")));
  if (req_version != kSpdmVersion11) {
    return Malformed(absl::StrCat("request SPDMVersion 0x",
                                  core::HexEncode(absl::MakeConstSpan(&req_version, 1)),
                                  " is not 0x11"));
  }
  PML_ASSIGN_OR_RETURN(uint8_t req_code, Classify(r.U8("request code")));
  if (req_code != kGetMeasurements) {
    return Malformed(absl::StrCat("request code 0x",
                                  core::HexEncode(absl::MakeConstSpan(&req_code, 1)),
                                  " is not GET_MEASUREMENTS (0xe0)"));
  }
  PML_ASSIGN_OR_RETURN(out.request_param1, Classify(r.U8("request Param1")));
  PML_ASSIGN_OR_RETURN(out.request_param2, Classify(r.U8("request Param2")));
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> nonce,
                       Classify(r.Bytes(kNonceSize, "request nonce")));
  std::copy(nonce.begin(), nonce.end(), out.nonce.begin());
  PML_ASSIGN_OR_RETURN(out.slot_id, Classify(r.U8("request SlotIDParam")));

  // MEASUREMENTS response.
  PML_ASSIGN_OR_RETURN(uint8_t resp_version, Classify(r.U8("response SPDMVersion")));
  if (resp_version != kSpdmVersion11) {
    return Malformed(absl::StrCat("response SPDMVersion 0x",
                                  core::HexEncode(absl::MakeConstSpan(&resp_version, 1)),
                                  " is not 0x11"));
  }
  PML_ASSIGN_OR_RETURN(uint8_t resp_code, Classify(r.U8("response code")));
  if (resp_code != kMeasurements) {
    return Malformed(absl::StrCat("response code 0x",
                                  core::HexEncode(absl::MakeConstSpan(&resp_code, 1)),
                                  " is not MEASUREMENTS (0x60)"));
  }
  PML_ASSIGN_OR_RETURN(out.response_param1, Classify(r.U8("response Param1")));
  PML_ASSIGN_OR_RETURN(out.response_param2, Classify(r.U8("response Param2")));
  PML_ASSIGN_OR_RETURN(uint8_t num_blocks, Classify(r.U8("NumberOfBlocks")));
  if (num_blocks == 0)
    return Malformed("NumberOfBlocks is 0");
  PML_ASSIGN_OR_RETURN(uint32_t record_len, Classify(r.U24("MeasurementRecordLength")));
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> record,
                       Classify(r.Bytes(record_len, "MeasurementRecord")));

  core::ByteReader rec(record, "measurement record");
  for (unsigned i = 0; i < num_blocks; ++i) {
    MeasurementBlock block;
    PML_ASSIGN_OR_RETURN(block.index, Classify(rec.U8("block Index")));
    PML_ASSIGN_OR_RETURN(uint8_t spec, Classify(rec.U8("block MeasurementSpecification")));
    if (spec != kDmtfMeasurementSpec) {
      return Malformed(absl::StrCat("block ", block.index, " MeasurementSpecification ", spec,
                                    " is not DMTF (1)"));
    }
    PML_ASSIGN_OR_RETURN(uint16_t size, Classify(rec.U16("block MeasurementSize")));
    PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> m,
                         Classify(rec.Bytes(size, "block Measurement")));
    core::ByteReader mr(m, "dmtf measurement");
    PML_ASSIGN_OR_RETURN(block.value_type, Classify(mr.U8("DMTFSpecMeasurementValueType")));
    PML_ASSIGN_OR_RETURN(uint16_t value_size, Classify(mr.U16("DMTFSpecMeasurementValueSize")));
    if (value_size != mr.remaining()) {
      return Malformed(absl::StrCat("block ", block.index, " value size ", value_size,
                                    " disagrees with MeasurementSize ", size));
    }
    PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> value,
                         Classify(mr.Bytes(value_size, "DMTFSpecMeasurementValue")));
    block.value.assign(value.begin(), value.end());
    if (out.FindBlock(block.index) != nullptr) {
      return Malformed(absl::StrCat("measurement index ", block.index, " repeats"));
    }
    out.blocks.push_back(std::move(block));
  }
  if (rec.remaining() != 0) {
    return Malformed(absl::StrCat("measurement record has ", rec.remaining(), " bytes after block ",
                                  static_cast<int>(num_blocks)));
  }

  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> rnonce,
                       Classify(r.Bytes(kNonceSize, "responder nonce")));
  std::copy(rnonce.begin(), rnonce.end(), out.responder_nonce.begin());
  PML_ASSIGN_OR_RETURN(uint16_t opaque_len, Classify(r.U16("OpaqueLength")));
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> opaque_data,
                       Classify(r.Bytes(opaque_len, "OpaqueData")));
  if (opaque_data.size() >= kVersionedOpaqueMagic.size() &&
      std::equal(kVersionedOpaqueMagic.begin(), kVersionedOpaqueMagic.end(), opaque_data.begin())) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kOpaqueDataUnsupported,
                     "versioned opaque data (NVDAOD) is not supported");
  }
  core::ByteReader od(opaque_data, "opaque data");
  while (od.remaining() > 0) {
    OpaqueField f;
    PML_ASSIGN_OR_RETURN(f.type, Classify(od.U16("opaque type")));
    PML_ASSIGN_OR_RETURN(uint16_t len, Classify(od.U16("opaque length")));
    PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> v, Classify(od.Bytes(len, "opaque value")));
    if (f.type == 0 || f.type > opaque::kMaxKnownType) {
      return Malformed(
          absl::StrCat("opaque type ", f.type, " is outside 1..", opaque::kMaxKnownType));
    }
    if (out.FindOpaque(f.type) != nullptr) {
      return Malformed(absl::StrCat("opaque ", opaque::TypeName(f.type), " repeats"));
    }
    f.value.assign(v.begin(), v.end());
    out.opaque.push_back(std::move(f));
  }
  PML_RETURN_IF_ERROR(Classify(r.Bytes(kSignatureSize, "signature")).status());
  if (r.remaining() != 0) {
    return Malformed(absl::StrCat(r.remaining(), " trailing bytes after the signature"));
  }
  PML_ASSIGN_OR_RETURN(std::optional<uint16_t> version, OpaqueDataVersion(out));
  if (version.has_value() && *version > 1) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kOpaqueDataUnsupported,
                     absl::StrCat("OPAQUE_DATA_VERSION ", *version, " is newer than 1"));
  }
  return out;
}

absl::StatusOr<std::string> OpaqueString(const Report& report, uint16_t type) {
  PML_ASSIGN_OR_RETURN(const OpaqueField* f, Require(report, type));
  size_t n = f->value.size();
  while (n > 0 && f->value[n - 1] == 0)
    --n;
  std::string s(f->value.begin(), f->value.begin() + static_cast<std::ptrdiff_t>(n));
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) {
      return Malformed(absl::StrCat(opaque::TypeName(type), " is not printable ASCII"));
    }
  }
  return s;
}

absl::StatusOr<std::string> DriverVersion(const Report& report) {
  return OpaqueString(report, opaque::kDriverVersion);
}

absl::StatusOr<std::string> VbiosVersion(const Report& report, Arch arch) {
  if (IsSwitch(arch))
    return OpaqueString(report, opaque::kVbiosVersion);
  PML_ASSIGN_OR_RETURN(const OpaqueField* f, Require(report, opaque::kVbiosVersion));
  if (f->value.size() != 8)
    return WrongSize(f->type, f->value.size(), "8");
  // NVIDIA's formatting (NVAT gpu_opaque_data_parser; spec §2): hex of the reversed bytes, then
  // its second half followed by the two digits just before the middle, split into pairs.
  std::vector<uint8_t> rev(f->value.rbegin(), f->value.rend());
  const std::string hex = absl::AsciiStrToUpper(core::HexEncode(rev));
  const std::string digits = hex.substr(8) + hex.substr(6, 2);
  std::string out;
  for (size_t i = 0; i < digits.size(); i += 2) {
    if (i > 0)
      out += '.';
    out += digits.substr(i, 2);
  }
  return out;
}

absl::StatusOr<uint8_t> Nvdec0Status(const Report& report) {
  PML_ASSIGN_OR_RETURN(const OpaqueField* f, Require(report, opaque::kNvdec0Status));
  if (f->value.size() != 1)
    return WrongSize(f->type, f->value.size(), "1");
  return f->value[0];
}

absl::StatusOr<std::optional<std::vector<uint8_t>>> Fwid(const Report& report) {
  const OpaqueField* f = report.FindOpaque(opaque::kFwid);
  if (f == nullptr)
    return std::optional<std::vector<uint8_t>>();
  if (f->value.size() != 48)
    return WrongSize(f->type, f->value.size(), "48");
  return std::optional<std::vector<uint8_t>>(f->value);
}

absl::StatusOr<std::optional<uint16_t>> OpaqueDataVersion(const Report& report) {
  return OptionalU16(report, opaque::kOpaqueDataVersion);
}

absl::StatusOr<std::optional<uint16_t>> FeatureFlag(const Report& report) {
  return OptionalU16(report, opaque::kFeatureFlag);
}

absl::StatusOr<std::optional<uint8_t>> ProtectedPcieStatus(const Report& report) {
  const OpaqueField* f = report.FindOpaque(opaque::kProtectedPcieStatus);
  if (f == nullptr)
    return std::optional<uint8_t>();
  if (f->value.size() != 1)
    return WrongSize(f->type, f->value.size(), "1");
  return std::optional<uint8_t>(f->value[0]);
}

absl::StatusOr<std::vector<std::string>> GpuSwitchPdis(const Report& report) {
  std::vector<std::string> out;
  const OpaqueField* f = report.FindOpaque(opaque::kSwitchPdi);
  if (f == nullptr)
    return out;
  if (f->value.size() % 8 != 0)
    return WrongSize(f->type, f->value.size(), "a multiple of 8");
  for (size_t i = 0; i < f->value.size(); i += 8) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b)
      v = v << 8 | f->value[i + static_cast<size_t>(b)];
    if (v == 0)
      continue;  // link disabled
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
    out.emplace_back(buf);
  }
  return out;
}

absl::StatusOr<std::string> SwitchDevicePdi(const Report& report) {
  PML_ASSIGN_OR_RETURN(const OpaqueField* f, Require(report, opaque::kSwitchPdi));
  if (f->value.size() != 8)
    return WrongSize(f->type, f->value.size(), "8");
  return core::HexEncode(f->value);
}

absl::StatusOr<std::vector<std::string>> SwitchGpuPdis(const Report& report) {
  PML_ASSIGN_OR_RETURN(const OpaqueField* f, Require(report, opaque::kSwitchGpuPdis));
  if (f->value.size() < 64)
    return WrongSize(f->type, f->value.size(), "at least 64");
  std::vector<std::string> out;
  for (size_t i = 0; i < 64; i += 8) {
    out.push_back(core::HexEncode(absl::MakeConstSpan(f->value).subspan(i, 8)));
  }
  return out;
}

absl::StatusOr<std::string> DriverRimId(const Report& report, Arch arch) {
  PML_ASSIGN_OR_RETURN(std::string driver, DriverVersion(report));
  switch (arch) {
    case Arch::kHopper:
      return absl::StrCat("NV_GPU_DRIVER_GH100_", driver);
    case Arch::kBlackwell: {
      std::string chip = "GB100";  // NVAT's fallback when CHIP_INFO is absent
      if (report.FindOpaque(opaque::kChipInfo) != nullptr) {
        PML_ASSIGN_OR_RETURN(chip, OpaqueString(report, opaque::kChipInfo));
      }
      return absl::StrCat("NV_GPU_CC_DRIVER_", chip, "_", driver);
    }
    case Arch::kLs10:
      break;
  }
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kUnsupportedArch,
                   "LS10 switches have no driver RIM");
}

absl::StatusOr<std::string> VbiosRimId(const Report& report, Arch arch) {
  PML_ASSIGN_OR_RETURN(std::string vbios, VbiosVersion(report, arch));
  if (IsSwitch(arch)) {
    // Project, SKU and chip are fixed for LS10 (NVAT switch/evidence.cpp).
    return absl::StrCat("NV_SWITCH_BIOS_5612_0002_890_", StripDots(vbios));
  }
  PML_ASSIGN_OR_RETURN(std::string project, OpaqueString(report, opaque::kProject));
  PML_ASSIGN_OR_RETURN(std::string project_sku, OpaqueString(report, opaque::kProjectSku));
  PML_ASSIGN_OR_RETURN(std::string chip_sku, OpaqueString(report, opaque::kChipSku));
  return absl::StrCat("NV_GPU_VBIOS_", project, "_", project_sku, "_", chip_sku, "_",
                      StripDots(vbios));
}

}  // namespace pml::gpu
