#pragma once
// The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1,
// shared/specs/tdx-quote-verification.md §3): PPID, TCB component SVNs, PCESVN, CPUSVN, PCE-ID,
// FMSPC and SGX type. Parsing only; whether the certificate is genuine is the verifier's job.
// Thread-safety: pure functions.

#include <array>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"

namespace pml::tdx {

inline constexpr absl::string_view kSgxExtensionOid = "1.2.840.113741.1.13.1";

using Fmspc = std::array<uint8_t, 6>;
using PceId = std::array<uint8_t, 2>;

// Which PCK CA issued the certificate; selects the PCK CRL (`ca=platform|processor`).
enum class PckCaType { kPlatform, kProcessor };
// "platform" / "processor" (the PCS query value).
absl::string_view PckCaTypeName(PckCaType type);

struct PckCertInfo {
  std::array<uint8_t, 16> ppid{};
  // .2.1-.2.16: the SGX TCB component SVNs QVL compares against tcbLevels (§3).
  std::array<uint8_t, 16> tcb_components{};
  uint16_t pce_svn = 0;
  std::array<uint8_t, 16> cpu_svn{};
  PceId pce_id{};
  Fmspc fmspc{};
  int sgx_type = 0;  // 0 Standard, 1 Scalable, 2 Scalable with integrity
  std::optional<std::array<uint8_t, 16>> platform_instance_id;
};

// Parses the SGX extension of `cert`. kInvalidArgument ("INVALID_PCK_CERT: ...") when it is
// missing, malformed, or lacks a required item.
absl::StatusOr<PckCertInfo> ParsePckCertInfo(const X509& cert);
// The same from the extension's value (the DER content of its extnValue OCTET STRING).
absl::StatusOr<PckCertInfo> ParsePckCertInfoFromExtension(absl::Span<const uint8_t> der);

// The CA type from the issuer CN ("Intel SGX PCK Platform CA" / "... Processor CA").
// kInvalidArgument ("INVALID_PCK_CERT: ...") for any other issuer.
absl::StatusOr<PckCaType> PckCaTypeFromIssuer(const X509& pck_cert);
absl::StatusOr<PckCaType> PckCaTypeFromIssuerCn(absl::string_view issuer_cn);

}  // namespace pml::tdx
