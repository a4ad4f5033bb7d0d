#include "lib/tdx/quote.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/byte_reader.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/tdx/errors.h"

namespace pml::tdx {
namespace {

absl::Status FormatError(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kUnsupportedQuoteFormat,
                   detail);
}

// Re-labels a ByteReader bounds error with the quote format class.
absl::Status Relabel(const absl::Status& s) {
  return s.ok() ? s : FormatError(s.message());
}

// Relabels a ByteReader result's error with the quote format class.
template <typename T>
absl::StatusOr<T> Q(absl::StatusOr<T> r) {
  if (!r.ok()) return Relabel(r.status());
  return r;
}

template <size_t N>
absl::Status ReadArray(core::ByteReader& r, std::array<uint8_t, N>& out, absl::string_view field) {
  auto s = r.Bytes(N, field);
  if (!s.ok()) return Relabel(s.status());
  std::copy(s->begin(), s->end(), out.begin());
  return absl::OkStatus();
}

// SGX enclave report / QE report, §2.2 (offsets in the comments are within the 384 bytes).
absl::StatusOr<EnclaveReport> ParseEnclaveReport(core::ByteReader& r, absl::string_view what) {
  EnclaveReport rep;
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> raw, Q(r.Bytes(kEnclaveReportSize, what)));
  std::copy(raw.begin(), raw.end(), rep.raw.begin());
  core::ByteReader b(raw, what);
  PML_RETURN_IF_ERROR(ReadArray(b, rep.cpu_svn, "cpu_svn"));           // @0
  PML_ASSIGN_OR_RETURN(rep.misc_select, Q(b.U32("misc_select")));               // @16
  PML_RETURN_IF_ERROR(Relabel(b.Skip(28, "reserved1")));                // @20
  PML_RETURN_IF_ERROR(ReadArray(b, rep.attributes, "attributes"));     // @48
  PML_RETURN_IF_ERROR(ReadArray(b, rep.mr_enclave, "mr_enclave"));     // @64
  PML_RETURN_IF_ERROR(Relabel(b.Skip(32, "reserved2")));                // @96
  PML_RETURN_IF_ERROR(ReadArray(b, rep.mr_signer, "mr_signer"));       // @128
  PML_RETURN_IF_ERROR(Relabel(b.Skip(96, "reserved3")));                // @160
  PML_ASSIGN_OR_RETURN(rep.isv_prod_id, Q(b.U16("isv_prod_id")));               // @256
  PML_ASSIGN_OR_RETURN(rep.isv_svn, Q(b.U16("isv_svn")));                       // @258
  PML_RETURN_IF_ERROR(Relabel(b.Skip(60, "reserved4")));                // @260
  PML_RETURN_IF_ERROR(ReadArray(b, rep.report_data, "report_data"));   // @320
  return rep;
}

// TD report body 1.0 / 1.5, §2.2 table.
absl::StatusOr<TdReport> ParseTdReport(core::ByteReader& r, bool v15) {
  TdReport td;
  PML_RETURN_IF_ERROR(ReadArray(r, td.tee_tcb_svn, "tee_tcb_svn"));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_seam, "mr_seam"));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_signer_seam, "mr_signer_seam"));
  PML_ASSIGN_OR_RETURN(td.seam_attributes, Q(r.U64("seam_attributes")));
  PML_ASSIGN_OR_RETURN(td.td_attributes, Q(r.U64("td_attributes")));
  PML_ASSIGN_OR_RETURN(td.xfam, Q(r.U64("xfam")));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_td, "mr_td"));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_config_id, "mr_config_id"));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_owner, "mr_owner"));
  PML_RETURN_IF_ERROR(ReadArray(r, td.mr_owner_config, "mr_owner_config"));
  for (size_t i = 0; i < td.rtmr.size(); ++i) {
    PML_RETURN_IF_ERROR(ReadArray(r, td.rtmr[i], absl::StrCat("rtmr", i)));
  }
  PML_RETURN_IF_ERROR(ReadArray(r, td.report_data, "report_data"));
  if (v15) {
    Bytes16 svn2;
    Bytes48 service_td;
    PML_RETURN_IF_ERROR(ReadArray(r, svn2, "tee_tcb_svn_2"));
    PML_RETURN_IF_ERROR(ReadArray(r, service_td, "mr_service_td"));
    td.tee_tcb_svn_2 = svn2;
    td.mr_service_td = service_td;
  }
  return td;
}

absl::StatusOr<std::vector<uint8_t>> ReadSized16(core::ByteReader& r, absl::string_view field) {
  PML_ASSIGN_OR_RETURN(uint16_t n, Q(r.U16(absl::StrCat(field, "_size"))));
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> data, Q(r.Bytes(n, field)));
  return std::vector<uint8_t>(data.begin(), data.end());
}

absl::Status CheckInnerCertType(uint16_t type) {
  if (type < 1 || type > kCertDataPckCertChain) {
    return FormatError(absl::StrCat("certification data type ", type,
                                    " is not supported (want 1..5)"));
  }
  return absl::OkStatus();
}

// v4/v5 signature data (§2.3): sig, key, then certification data type 6 wrapping the QE report.
absl::Status ParseSignatureDataV4(core::ByteReader& r, QuoteSignatureData& out) {
  PML_RETURN_IF_ERROR(ReadArray(r, out.signature, "quote_signature"));
  PML_RETURN_IF_ERROR(ReadArray(r, out.attestation_key, "attestation_key"));
  PML_ASSIGN_OR_RETURN(uint16_t outer_type, Q(r.U16("certification_data_type")));
  if (outer_type != kCertDataQeReport) {
    return FormatError(absl::StrCat("certification data type ", outer_type,
                                    " is not supported in v4/v5 quotes (want 6)"));
  }
  PML_ASSIGN_OR_RETURN(uint32_t outer_size, Q(r.U32("certification_data_size")));
  if (outer_size > r.remaining()) {
    return FormatError(absl::StrCat("certification data size ", outer_size, " exceeds the ",
                                    r.remaining(), " bytes of signature data left"));
  }
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> outer, Q(r.Bytes(outer_size, "certification_data")));
  core::ByteReader c(outer, "qe report certification data");
  PML_ASSIGN_OR_RETURN(out.qe_report, ParseEnclaveReport(c, "qe_report"));
  PML_RETURN_IF_ERROR(ReadArray(c, out.qe_report_signature, "qe_report_signature"));
  PML_ASSIGN_OR_RETURN(out.qe_auth_data, ReadSized16(c, "qe_auth_data"));
  PML_ASSIGN_OR_RETURN(out.certification_data_type, Q(c.U16("inner_certification_data_type")));
  PML_RETURN_IF_ERROR(CheckInnerCertType(out.certification_data_type));
  PML_ASSIGN_OR_RETURN(uint32_t inner_size, Q(c.U32("inner_certification_data_size")));
  if (inner_size > c.remaining()) {
    return FormatError(absl::StrCat("inner certification data size ", inner_size, " exceeds the ",
                                    c.remaining(), " bytes of certification data left"));
  }
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> inner, Q(c.Bytes(inner_size, "inner_certification_data")));
  out.certification_data.assign(inner.begin(), inner.end());
  if (c.remaining() != 0) {
    return FormatError(absl::StrCat("certification data has ", c.remaining(),
                                    " bytes after the pck certification data"));
  }
  return absl::OkStatus();
}

// v3 signature data: the same items without the type-6 wrapper.
absl::Status ParseSignatureDataV3(core::ByteReader& r, QuoteSignatureData& out) {
  PML_RETURN_IF_ERROR(ReadArray(r, out.signature, "quote_signature"));
  PML_RETURN_IF_ERROR(ReadArray(r, out.attestation_key, "attestation_key"));
  PML_ASSIGN_OR_RETURN(out.qe_report, ParseEnclaveReport(r, "qe_report"));
  PML_RETURN_IF_ERROR(ReadArray(r, out.qe_report_signature, "qe_report_signature"));
  PML_ASSIGN_OR_RETURN(out.qe_auth_data, ReadSized16(r, "qe_auth_data"));
  PML_ASSIGN_OR_RETURN(out.certification_data_type, Q(r.U16("certification_data_type")));
  PML_RETURN_IF_ERROR(CheckInnerCertType(out.certification_data_type));
  PML_ASSIGN_OR_RETURN(uint32_t size, Q(r.U32("certification_data_size")));
  if (size > r.remaining()) {
    return FormatError(absl::StrCat("certification data size ", size, " exceeds the ",
                                    r.remaining(), " bytes of signature data left"));
  }
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> data, Q(r.Bytes(size, "certification_data")));
  out.certification_data.assign(data.begin(), data.end());
  return absl::OkStatus();
}

}  // namespace

absl::string_view Quote::PckCertChainPem() const {
  if (signature_data.certification_data_type != kCertDataPckCertChain) return "";
  const absl::string_view pem(
      reinterpret_cast<const char*>(signature_data.certification_data.data()),
      signature_data.certification_data.size());
  if (!absl::StrContains(pem, "-----BEGIN CERTIFICATE-----")) return "";
  return pem;
}

absl::StatusOr<Quote> ParseQuote(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) {
    return FormatError(absl::StrCat("quote has ", bytes.size(), " bytes, less than the ",
                                    kHeaderSize, "-byte header"));
  }
  if (bytes.size() > kMaxQuoteSize) {
    return FormatError(absl::StrCat("quote has ", bytes.size(), " bytes, more than ",
                                    kMaxQuoteSize));
  }
  Quote q;
  q.raw.assign(bytes.begin(), bytes.end());
  core::ByteReader r(q.raw, "quote");

  // Header, §2.1.
  QuoteHeader& h = q.header;
  PML_ASSIGN_OR_RETURN(h.version, Q(r.U16("version")));
  PML_ASSIGN_OR_RETURN(h.attestation_key_type, Q(r.U16("attestation_key_type")));
  PML_ASSIGN_OR_RETURN(h.tee_type, Q(r.U32("tee_type")));
  PML_ASSIGN_OR_RETURN(h.qe_svn, Q(r.U16("qe_svn")));
  PML_ASSIGN_OR_RETURN(h.pce_svn, Q(r.U16("pce_svn")));
  PML_RETURN_IF_ERROR(ReadArray(r, h.qe_vendor_id, "qe_vendor_id"));
  PML_RETURN_IF_ERROR(ReadArray(r, h.user_data, "user_data"));
  if (h.version != kQuoteVersion3 && h.version != kQuoteVersion4 &&
      h.version != kQuoteVersion5) {
    return FormatError(absl::StrCat("quote version ", h.version, " is not supported (want 3-5)"));
  }
  if (h.attestation_key_type != kAttestationKeyTypeEcdsaP256) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     error_class::kUnsupportedAttestationKeyType,
                     absl::StrCat("attestation key type ", h.attestation_key_type,
                                  " is not supported (want 2, ECDSA P-256)"));
  }
  if (h.tee_type != kTeeTypeSgx && h.tee_type != kTeeTypeTdx) {
    return FormatError(absl::StrCat("tee type 0x", core::HexEncode(absl::Span<const uint8_t>(
                                                       q.raw.data() + 4, 4)),
                                    " is not supported"));
  }
  if (h.version == kQuoteVersion3 && h.tee_type != kTeeTypeSgx) {
    return FormatError("v3 quotes must have tee type sgx");
  }
  if (h.qe_vendor_id != kIntelQeVendorId) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kUnsupportedQeVendor,
                     absl::StrCat("qe vendor id ", core::HexEncode(h.qe_vendor_id),
                                  " is not intel's"));
  }

  // Body, §2.2.
  if (h.version == kQuoteVersion5) {
    PML_ASSIGN_OR_RETURN(uint16_t type, Q(r.U16("body_type")));
    PML_ASSIGN_OR_RETURN(uint32_t size, Q(r.U32("body_size")));
    size_t want = 0;
    switch (type) {
      case static_cast<uint16_t>(BodyType::kSgxEnclaveReport):
        want = kEnclaveReportSize;
        break;
      case static_cast<uint16_t>(BodyType::kTdReport10):
        want = kTdReport10Size;
        break;
      case static_cast<uint16_t>(BodyType::kTdReport15):
        want = kTdReport15Size;
        break;
      default:
        return FormatError(absl::StrCat("v5 body type ", type, " is not supported (want 1-3)"));
    }
    if (size != want) {
      return FormatError(
          absl::StrCat("v5 body size ", size, " does not match body type ", type, " (", want, ")"));
    }
    q.body_type = static_cast<BodyType>(type);
    q.v5_body_type = q.body_type;
    const bool sgx_body = q.body_type == BodyType::kSgxEnclaveReport;
    if (sgx_body != (h.tee_type == kTeeTypeSgx)) {
      return FormatError(absl::StrCat("v5 body type ", type, " does not match the tee type"));
    }
  } else {
    q.body_type = h.tee_type == kTeeTypeSgx ? BodyType::kSgxEnclaveReport : BodyType::kTdReport10;
  }
  if (q.body_type == BodyType::kSgxEnclaveReport) {
    PML_ASSIGN_OR_RETURN(q.enclave_report, ParseEnclaveReport(r, "enclave_report"));
  } else {
    PML_ASSIGN_OR_RETURN(q.td_report, ParseTdReport(r, q.body_type == BodyType::kTdReport15));
  }
  q.signed_region_size = r.offset();

  // Signature data, §2.3.
  PML_ASSIGN_OR_RETURN(uint32_t sig_len, Q(r.U32("signature_data_size")));
  if (sig_len > r.remaining()) {
    return FormatError(absl::StrCat("signature data exceeds quote: declares ", sig_len,
                                    " bytes, ", r.remaining(), " remain"));
  }
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> sig, Q(r.Bytes(sig_len, "signature_data")));
  core::ByteReader s(sig, "signature data");
  if (h.version == kQuoteVersion3) {
    PML_RETURN_IF_ERROR(ParseSignatureDataV3(s, q.signature_data));
  } else {
    PML_RETURN_IF_ERROR(ParseSignatureDataV4(s, q.signature_data));
  }
  if (s.remaining() != 0) {
    return FormatError(absl::StrCat("signature data has ", s.remaining(),
                                    " bytes after the certification data"));
  }
  q.trailing_bytes = r.remaining();
  return q;
}

}  // namespace pml::tdx
