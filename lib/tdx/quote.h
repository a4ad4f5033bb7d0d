#pragma once
// Intel DCAP quotes (TDX v4/v5, SGX v3/v5): the binary layout as a value type, parsed with
// bounds checks and no cryptography. ParseQuote is the first of the three steps
// (parse → verify → appraise, STYLE.md §1): it says the bytes are shaped like a quote, never that
// the quote is genuine; only VerifyQuote (verify.h) says that.
//
// Layout: shared/specs/tdx-quote-verification.md §2. Every declared length is checked against the
// buffer; bytes after the signature data are allowed (real quotes carry padding, §2.3).
//
// Errors are kInvalidArgument whose message starts with the Intel QVL class name
// ("UNSUPPORTED_QUOTE_FORMAT: ..."), then names the field.
// Thread-safety: ParseQuote is pure and thread-safe; a Quote is an immutable-by-convention value.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::tdx {

inline constexpr uint16_t kQuoteVersion3 = 3;
inline constexpr uint16_t kQuoteVersion4 = 4;
inline constexpr uint16_t kQuoteVersion5 = 5;
// ECDSA-256-with-P-256: the only attestation key type accepted (§2.1).
inline constexpr uint16_t kAttestationKeyTypeEcdsaP256 = 2;
inline constexpr uint32_t kTeeTypeSgx = 0x00000000;
inline constexpr uint32_t kTeeTypeTdx = 0x00000081;
// Intel's QE vendor id 939A7233F79C4CA9940A0DB3957F0607 (§2.1).
inline constexpr std::array<uint8_t, 16> kIntelQeVendorId = {
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
    0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

// v5 body types (§2.2).
enum class BodyType : uint16_t {
  kSgxEnclaveReport = 1,
  kTdReport10 = 2,
  kTdReport15 = 3,
};

// Certification data types (QVL QuoteConstants.h, §2.3).
inline constexpr uint16_t kCertDataPckCertChain = 5;
inline constexpr uint16_t kCertDataQeReport = 6;

inline constexpr size_t kHeaderSize = 48;
inline constexpr size_t kEnclaveReportSize = 384;
inline constexpr size_t kTdReport10Size = 584;
inline constexpr size_t kTdReport15Size = 648;
// Largest quote ParseQuote accepts; real ones are 5-8 KB.
inline constexpr size_t kMaxQuoteSize = 1 << 20;

using Bytes16 = std::array<uint8_t, 16>;
using Bytes32 = std::array<uint8_t, 32>;
using Bytes48 = std::array<uint8_t, 48>;
using Bytes64 = std::array<uint8_t, 64>;

struct QuoteHeader {
  uint16_t version = 0;
  uint16_t attestation_key_type = 0;
  uint32_t tee_type = 0;
  uint16_t qe_svn = 0;   // v3 only; reserved in v4+. Never used for TCB decisions.
  uint16_t pce_svn = 0;  // v3 only; reserved in v4+.
  Bytes16 qe_vendor_id{};
  std::array<uint8_t, 20> user_data{};
};

// SGX enclave report (384 bytes), also the layout of the QE report (§2.2).
struct EnclaveReport {
  Bytes16 cpu_svn{};
  uint32_t misc_select = 0;
  Bytes16 attributes{};
  Bytes32 mr_enclave{};
  Bytes32 mr_signer{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  Bytes64 report_data{};
  // The 384 bytes as they appear in the quote (what the QE report signature covers).
  std::array<uint8_t, kEnclaveReportSize> raw{};
};

// TD report body as carried in the quote (TDINFO + TEE_TCB_INFO parts, §2.2). Integers are
// little-endian in the quote and decoded here.
struct TdReport {
  Bytes16 tee_tcb_svn{};
  Bytes48 mr_seam{};
  Bytes48 mr_signer_seam{};
  uint64_t seam_attributes = 0;
  uint64_t td_attributes = 0;
  uint64_t xfam = 0;
  Bytes48 mr_td{};
  Bytes48 mr_config_id{};
  Bytes48 mr_owner{};
  Bytes48 mr_owner_config{};
  std::array<Bytes48, 4> rtmr{};
  Bytes64 report_data{};
  // TD report 1.5 only (v5 body type 3).
  std::optional<Bytes16> tee_tcb_svn_2;
  std::optional<Bytes48> mr_service_td;
};

// TDATTRIBUTES bits (§2.2): DCAP does not judge them; policy does.
inline constexpr uint64_t kTdAttributeDebug = uint64_t{1} << 0;
inline constexpr uint64_t kTdAttributeSeptVeDisable = uint64_t{1} << 28;
inline constexpr uint64_t kTdAttributePks = uint64_t{1} << 30;
inline constexpr uint64_t kTdAttributeKl = uint64_t{1} << 31;
inline constexpr uint64_t kTdAttributePerfmon = uint64_t{1} << 63;

// "ECDSA 256-bit Quote Signature Data" (§2.3). For v4/v5 the outer certification data (type 6)
// is unwrapped: the QE report fields below come from it, and `certification_data_type` /
// `certification_data` are the *inner* ones (5 = PEM PCK chain).
struct QuoteSignatureData {
  Bytes64 signature{};        // r||s over SHA-256(signed region), by the attestation key
  Bytes64 attestation_key{};  // raw x||y
  EnclaveReport qe_report;
  Bytes64 qe_report_signature{};  // r||s over the QE report, by the PCK key
  std::vector<uint8_t> qe_auth_data;
  uint16_t certification_data_type = 0;  // 1..5
  std::vector<uint8_t> certification_data;
};

// A parsed quote. Owns a copy of the input bytes, so it may outlive them.
struct Quote {
  QuoteHeader header;
  // v5 body descriptor (absent for v3/v4, whose body type follows from the version).
  std::optional<BodyType> v5_body_type;
  BodyType body_type = BodyType::kTdReport10;
  // Exactly one of these is set, per body_type.
  std::optional<EnclaveReport> enclave_report;
  std::optional<TdReport> td_report;
  QuoteSignatureData signature_data;
  // Bytes after the declared signature data (padding in real quotes; not covered by anything).
  size_t trailing_bytes = 0;

  // The whole input buffer.
  std::vector<uint8_t> raw;
  // Length of the signed region [0, signed_region_size): header + (v5 descriptor) + body.
  size_t signed_region_size = 0;

  bool is_tdx() const { return header.tee_type == kTeeTypeTdx; }
  // The bytes the quote signature covers. Valid while this Quote lives (and is not moved from).
  absl::Span<const uint8_t> signed_region() const {
    return absl::Span<const uint8_t>(raw.data(), signed_region_size);
  }
  // The PEM PCK chain when certification data type is 5 and it contains a PEM block; empty
  // otherwise (then the chain must come with the collateral). A view into
  // signature_data.certification_data: valid while this Quote lives.
  absl::string_view PckCertChainPem() const;
};

// Parses `bytes` (header, body, signature data, certification data). Structure only: no
// signature is checked and no collateral is consulted.
// Errors (kInvalidArgument; the message starts with the class name):
//   UNSUPPORTED_QUOTE_FORMAT: too short/long, unknown version/TEE type/body type, body size not
//     matching its type, a declared length overrunning the buffer, a wrong cert data type.
//   UNSUPPORTED_ATTESTATION_KEY_TYPE: attestation key type other than 2 (ECDSA P-256).
//   UNSUPPORTED_QE_VENDOR: QE vendor id is not Intel's.
absl::StatusOr<Quote> ParseQuote(absl::Span<const uint8_t> bytes);

}  // namespace pml::tdx
