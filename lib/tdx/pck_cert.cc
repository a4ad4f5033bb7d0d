#include "lib/tdx/pck_cert.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"
#include "lib/tdx/errors.h"

namespace pml::tdx {
namespace {

absl::Status PckError(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kInvalidPckCert, detail);
}

// Relabels DER walker errors.
template <typename T>
absl::StatusOr<T> P(absl::StatusOr<T> r) {
  if (!r.ok()) return PckError(absl::StrCat("sgx extension: ", r.status().message()));
  return r;
}

template <size_t N>
absl::Status CopyOctets(const crypto::DerTlv& tlv, std::array<uint8_t, N>& out,
                        absl::string_view what) {
  if (tlv.tag != crypto::kDerOctetString || tlv.content.size() != N) {
    return PckError(absl::StrCat("sgx extension ", what, " is not a ", N, "-byte octet string"));
  }
  std::copy(tlv.content.begin(), tlv.content.end(), out.begin());
  return absl::OkStatus();
}

// DER content of OID 1.2.840.113741.1.13.1 (the SGX extension); its items are
// prefix + one byte per further arc (all arcs used are < 128).
constexpr uint8_t kSgxOidPrefix[] = {0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01};

// The arcs after the SGX prefix (at most two), or false when `oid` is not under it.
bool SgxArcs(absl::Span<const uint8_t> oid, int* a, int* b) {
  constexpr size_t n = sizeof(kSgxOidPrefix);
  if (oid.size() <= n || oid.size() > n + 2 || !std::equal(kSgxOidPrefix, kSgxOidPrefix + n,
                                                           oid.begin())) {
    return false;
  }
  for (size_t i = n; i < oid.size(); ++i) {
    if (oid[i] & 0x80) return false;
  }
  *a = oid[n];
  *b = oid.size() == n + 2 ? oid[n + 1] : -1;
  return true;
}

absl::StatusOr<uint16_t> SmallInt(const crypto::DerTlv& tlv, absl::string_view what,
                                  int64_t max) {
  if (tlv.tag != crypto::kDerInteger && tlv.tag != crypto::kDerEnumerated) {
    return PckError(absl::StrCat("sgx extension ", what, " is not an integer"));
  }
  PML_ASSIGN_OR_RETURN(int64_t v, P(crypto::DerNonNegativeInteger(tlv.content)));
  if (v > max) return PckError(absl::StrCat("sgx extension ", what, " is out of range"));
  return static_cast<uint16_t>(v);
}

// The TCB item (.2): a SEQUENCE of {OID .2.N, value}.
absl::Status ParseTcb(absl::Span<const uint8_t> content, PckCertInfo& info) {
  uint32_t seen = 0;
  crypto::DerReader r(content);
  while (!r.empty()) {
    PML_ASSIGN_OR_RETURN(crypto::DerTlv item, P(r.Expect(crypto::kDerSequence, "tcb item")));
    crypto::DerReader ir(item.content);
    PML_ASSIGN_OR_RETURN(crypto::DerTlv oid, P(ir.Expect(crypto::kDerOid, "tcb item oid")));
    PML_ASSIGN_OR_RETURN(crypto::DerTlv value, P(ir.Next("tcb item value")));
    int arc = 0, n = 0;
    if (!SgxArcs(oid.content, &arc, &n) || arc != 2 || n < 0) continue;
    if (n >= 1 && n <= 16) {
      PML_ASSIGN_OR_RETURN(uint16_t svn, SmallInt(value, absl::StrCat("tcb component ", n), 255));
      info.tcb_components[static_cast<size_t>(n - 1)] = static_cast<uint8_t>(svn);
    } else if (n == 17) {
      PML_ASSIGN_OR_RETURN(info.pce_svn, SmallInt(value, "pcesvn", 0xffff));
    } else if (n == 18) {
      PML_RETURN_IF_ERROR(CopyOctets(value, info.cpu_svn, "cpusvn"));
    } else {
      continue;
    }
    if (seen & (1u << n)) return PckError(absl::StrCat("sgx extension tcb item ", n, " repeats"));
    seen |= 1u << n;
  }
  const uint32_t want = ((1u << 19) - 1) & ~1u;  // items 1..18
  if ((seen & want) != want) return PckError("sgx extension tcb lacks a component");
  return absl::OkStatus();
}

}  // namespace

absl::string_view PckCaTypeName(PckCaType type) {
  return type == PckCaType::kPlatform ? "platform" : "processor";
}

absl::StatusOr<PckCertInfo> ParsePckCertInfo(const X509& cert) {
  auto ext = crypto::FindExtension(cert, kSgxExtensionOid);
  if (!ext.ok()) return PckError(ext.status().message());
  if (!ext->has_value()) return PckError("certificate has no sgx extension");
  return ParsePckCertInfoFromExtension(**ext);
}

absl::StatusOr<PckCertInfo> ParsePckCertInfoFromExtension(absl::Span<const uint8_t> der) {
  crypto::DerReader outer(der);
  PML_ASSIGN_OR_RETURN(crypto::DerTlv seq, P(outer.Expect(crypto::kDerSequence, "sgx extension")));
  if (!outer.empty()) return PckError("sgx extension has trailing bytes");

  PckCertInfo info;
  enum : uint32_t { kPpid = 1, kTcb = 2, kPceId = 3, kFmspc = 4, kSgxType = 5, kPlatformId = 6 };
  uint32_t seen = 0;
  crypto::DerReader r(seq.content);
  while (!r.empty()) {
    PML_ASSIGN_OR_RETURN(crypto::DerTlv item, P(r.Expect(crypto::kDerSequence, "sgx item")));
    crypto::DerReader ir(item.content);
    PML_ASSIGN_OR_RETURN(crypto::DerTlv oid, P(ir.Expect(crypto::kDerOid, "sgx item oid")));
    PML_ASSIGN_OR_RETURN(crypto::DerTlv value, P(ir.Next("sgx item value")));
    int arc = 0, sub = 0;
    if (!SgxArcs(oid.content, &arc, &sub) || sub >= 0) continue;
    const uint32_t n = static_cast<uint32_t>(arc);
    switch (n) {
      case kPpid:
        PML_RETURN_IF_ERROR(CopyOctets(value, info.ppid, "ppid"));
        break;
      case kTcb:
        if (value.tag != crypto::kDerSequence) return PckError("sgx extension tcb is not a sequence");
        PML_RETURN_IF_ERROR(ParseTcb(value.content, info));
        break;
      case kPceId:
        PML_RETURN_IF_ERROR(CopyOctets(value, info.pce_id, "pceid"));
        break;
      case kFmspc:
        PML_RETURN_IF_ERROR(CopyOctets(value, info.fmspc, "fmspc"));
        break;
      case kSgxType: {
        PML_ASSIGN_OR_RETURN(uint16_t t, SmallInt(value, "sgx type", 2));
        info.sgx_type = t;
        break;
      }
      case kPlatformId: {
        std::array<uint8_t, 16> id{};
        PML_RETURN_IF_ERROR(CopyOctets(value, id, "platform instance id"));
        info.platform_instance_id = id;
        break;
      }
      default:
        continue;  // .7 configuration and future items are not used for verification
    }
    if (seen & (1u << n)) return PckError(absl::StrCat("sgx extension item ", n, " repeats"));
    seen |= 1u << n;
  }
  const uint32_t required = (1u << kPpid) | (1u << kTcb) | (1u << kPceId) | (1u << kFmspc);
  if ((seen & required) != required) {
    return PckError("sgx extension lacks ppid, tcb, pceid or fmspc");
  }
  return info;
}

absl::StatusOr<PckCaType> PckCaTypeFromIssuer(const X509& pck_cert) {
  return PckCaTypeFromIssuerCn(crypto::IssuerCommonName(pck_cert));
}

absl::StatusOr<PckCaType> PckCaTypeFromIssuerCn(absl::string_view cn) {
  if (absl::StrContains(cn, "Platform")) return PckCaType::kPlatform;
  if (absl::StrContains(cn, "Processor")) return PckCaType::kProcessor;
  return PckError(absl::StrCat("pck issuer \"", cn.substr(0, 64),
                               "\" is neither a platform nor a processor ca"));
}

}  // namespace pml::tdx
