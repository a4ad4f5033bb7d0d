#include "lib/crypto/x509.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <climits>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"

namespace pml::crypto {
namespace {

using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, CDeleter<ASN1_OBJECT_free>>;

constexpr absl::string_view kPemCertBegin = "-----BEGIN CERTIFICATE-----";
constexpr absl::string_view kPemCertEnd = "-----END CERTIFICATE-----";

// Base64 body of a PEM block with line breaks and blanks removed.
std::string StripPemWhitespace(absl::string_view body) {
  std::string out;
  out.reserve(body.size());
  for (char c : body) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    out.push_back(c);
  }
  return out;
}

std::vector<uint8_t> BignumBytes(const BIGNUM* bn) {
  std::vector<uint8_t> out(static_cast<size_t>(BN_num_bytes(bn)));
  if (!out.empty()) BN_bn2bin(bn, out.data());
  return out;
}

std::vector<uint8_t> Asn1IntegerMagnitude(const ASN1_INTEGER* v) {
  if (v == nullptr) return {};
  BignumPtr bn(ASN1_INTEGER_to_BN(v, nullptr));
  if (bn == nullptr) return {};
  return BignumBytes(bn.get());
}

bool IsValidDottedOid(absl::string_view oid) {
  if (oid.empty()) return false;
  int arcs = 1;
  bool digit_seen = false;
  for (char c : oid) {
    if (c == '.') {
      if (!digit_seen) return false;
      digit_seen = false;
      ++arcs;
    } else if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit_seen = true;
    } else {
      return false;
    }
  }
  return digit_seen && arcs >= 2;
}

}  // namespace

absl::StatusOr<std::vector<X509Ptr>> ParsePemCertificates(absl::string_view pem,
                                                          size_t max_certs) {
  std::vector<X509Ptr> out;
  size_t pos = 0;
  while (true) {
    const size_t begin = pem.find(kPemCertBegin, pos);
    if (begin == absl::string_view::npos) break;
    const size_t body_start = begin + kPemCertBegin.size();
    const size_t end = pem.find(kPemCertEnd, body_start);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("pem certificate ", out.size(), " has no END line"));
    }
    if (out.size() >= max_certs) {
      return absl::InvalidArgumentError(
          absl::StrCat("pem bundle has more than ", max_certs, " certificates"));
    }
    const std::string b64 = StripPemWhitespace(pem.substr(body_start, end - body_start));
    auto der = core::Base64Decode(b64);
    if (!der.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pem certificate ", out.size(), ": bad base64: ", der.status().message()));
    }
    auto cert = ParseDerCertificate(*der);
    if (!cert.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pem certificate ", out.size(), ": ", cert.status().message()));
    }
    out.push_back(std::move(cert).value());
    pos = end + kPemCertEnd.size();
  }
  if (out.empty()) return absl::InvalidArgumentError("no pem certificate found");
  return out;
}

absl::StatusOr<X509Ptr> ParseDerCertificate(absl::Span<const uint8_t> der) {
  if (der.empty() || der.size() > LONG_MAX) {
    return absl::InvalidArgumentError("der certificate is empty");
  }
  ClearOpensslErrors();
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT(google-runtime-int)
  if (cert == nullptr) {
    return OpensslError("malformed der certificate", absl::StatusCode::kInvalidArgument);
  }
  if (p != der.data() + der.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "der certificate has ", der.size() - static_cast<size_t>(p - der.data()),
        " trailing bytes"));
  }
  return cert;
}

absl::StatusOr<std::vector<X509Ptr>> ParseDerCertificates(absl::Span<const uint8_t> der,
                                                          size_t max_certs) {
  std::vector<X509Ptr> out;
  size_t pos = 0;
  while (pos < der.size()) {
    if (out.size() >= max_certs) {
      return absl::InvalidArgumentError(
          absl::StrCat("der bundle has more than ", max_certs, " certificates"));
    }
    ClearOpensslErrors();
    const unsigned char* p = der.data() + pos;
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size() - pos)));  // NOLINT
    if (cert == nullptr) {
      return OpensslError(absl::StrCat("malformed der certificate ", out.size()),
                          absl::StatusCode::kInvalidArgument);
    }
    pos = static_cast<size_t>(p - der.data());
    out.push_back(std::move(cert));
  }
  if (out.empty()) return absl::InvalidArgumentError("no der certificate found");
  return out;
}

absl::StatusOr<X509CrlPtr> ParseCrl(absl::Span<const uint8_t> der_or_pem) {
  if (der_or_pem.empty() || der_or_pem.size() > INT_MAX) {
    return absl::InvalidArgumentError("crl is empty");
  }
  ClearOpensslErrors();
  if (der_or_pem.size() >= 5 && der_or_pem[0] == '-' && der_or_pem[1] == '-') {
    const std::string text = core::ToString(der_or_pem);
    BioPtr b = MemBio(text);  // borrows `text`, which outlives the read
    if (b == nullptr) return OpensslError("crl bio");
    X509CrlPtr crl(PEM_read_bio_X509_CRL(b.get(), nullptr, nullptr, nullptr));
    if (crl == nullptr) {
      return OpensslError("malformed pem crl", absl::StatusCode::kInvalidArgument);
    }
    return crl;
  }
  const unsigned char* p = der_or_pem.data();
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der_or_pem.size())));  // NOLINT
  if (crl == nullptr) return OpensslError("malformed der crl", absl::StatusCode::kInvalidArgument);
  if (p != der_or_pem.data() + der_or_pem.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "der crl has ", der_or_pem.size() - static_cast<size_t>(p - der_or_pem.data()),
        " trailing bytes"));
  }
  return crl;
}

absl::StatusOr<std::vector<uint8_t>> CertificateDer(const X509& cert) {
  ClearOpensslErrors();
  const int len = i2d_X509(&cert, nullptr);
  if (len <= 0) return OpensslError("certificate der encoding");
  std::vector<uint8_t> out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_X509(&cert, &p) != len) return OpensslError("certificate der encoding");
  return out;
}

absl::Status VerifyCertificateSignature(const X509& cert, const EVP_PKEY& issuer_key) {
  ClearOpensslErrors();
  // X509_verify takes non-const pointers but only reads (the cached TBS encoding is used).
  const int rc = X509_verify(const_cast<X509*>(&cert), const_cast<EVP_PKEY*>(&issuer_key));
  ClearOpensslErrors();
  if (rc == 1) return absl::OkStatus();
  return absl::UnauthenticatedError("certificate signature does not verify with the issuer key");
}

absl::Status VerifyCrlSignature(const X509_CRL& crl, const EVP_PKEY& issuer_key) {
  ClearOpensslErrors();
  const int rc =
      X509_CRL_verify(const_cast<X509_CRL*>(&crl), const_cast<EVP_PKEY*>(&issuer_key));
  ClearOpensslErrors();
  if (rc == 1) return absl::OkStatus();
  return absl::UnauthenticatedError("crl signature does not verify with the issuer key");
}

absl::StatusOr<const EVP_PKEY*> CertificatePublicKey(const X509& cert) {
  ClearOpensslErrors();
  const EVP_PKEY* key = X509_get0_pubkey(&cert);
  if (key == nullptr) {
    return OpensslError("certificate public key", absl::StatusCode::kInvalidArgument);
  }
  return key;
}

bool NameEquals(const X509_NAME& a, const X509_NAME& b) { return X509_NAME_cmp(&a, &b) == 0; }

bool IssuerNameMatches(const X509& cert, const X509& issuer) {
  const X509_NAME* i = X509_get_issuer_name(&cert);
  const X509_NAME* s = X509_get_subject_name(&issuer);
  return i != nullptr && s != nullptr && NameEquals(*i, *s);
}

bool CrlIssuerMatchesCertIssuer(const X509_CRL& crl, const X509& cert) {
  const X509_NAME* a = X509_CRL_get_issuer(&crl);
  const X509_NAME* b = X509_get_issuer_name(&cert);
  return a != nullptr && b != nullptr && NameEquals(*a, *b);
}

std::string CommonName(const X509_NAME& name) {
  const int idx = X509_NAME_get_index_by_NID(&name, NID_commonName, -1);
  if (idx < 0) return "";
  const X509_NAME_ENTRY* e = X509_NAME_get_entry(&name, idx);
  if (e == nullptr) return "";
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(e);
  if (data == nullptr) return "";
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0 || utf8 == nullptr) return "";
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

std::string SubjectCommonName(const X509& cert) {
  const X509_NAME* n = X509_get_subject_name(&cert);
  return n == nullptr ? "" : CommonName(*n);
}

std::string IssuerCommonName(const X509& cert) {
  const X509_NAME* n = X509_get_issuer_name(&cert);
  return n == nullptr ? "" : CommonName(*n);
}

std::string NameToString(const X509_NAME& name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return "";
  if (X509_NAME_print_ex(bio.get(), &name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int)
  if (len <= 0 || data == nullptr) return "";
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<absl::Time> Asn1TimeToTime(const ASN1_TIME& t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(&t, &tm) != 1) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError("malformed asn1 time");
  }
  const absl::CivilSecond cs(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                             tm.tm_min, tm.tm_sec);
  return absl::FromCivil(cs, absl::UTCTimeZone());
}

absl::StatusOr<Validity> CertificateValidity(const X509& cert) {
  const ASN1_TIME* nb = X509_get0_notBefore(&cert);
  const ASN1_TIME* na = X509_get0_notAfter(&cert);
  if (nb == nullptr || na == nullptr) {
    return absl::InvalidArgumentError("certificate has no validity");
  }
  Validity v;
  PML_ASSIGN_OR_RETURN(v.not_before, Asn1TimeToTime(*nb));
  PML_ASSIGN_OR_RETURN(v.not_after, Asn1TimeToTime(*na));
  return v;
}

absl::StatusOr<CrlTimes> CrlValidity(const X509_CRL& crl) {
  const ASN1_TIME* tu = X509_CRL_get0_lastUpdate(&crl);
  const ASN1_TIME* nu = X509_CRL_get0_nextUpdate(&crl);
  if (tu == nullptr) return absl::InvalidArgumentError("crl has no thisUpdate");
  CrlTimes t;
  PML_ASSIGN_OR_RETURN(t.this_update, Asn1TimeToTime(*tu));
  t.next_update = absl::InfiniteFuture();
  if (nu != nullptr) {
    PML_ASSIGN_OR_RETURN(t.next_update, Asn1TimeToTime(*nu));
  }
  return t;
}

std::vector<uint8_t> SerialNumber(const X509& cert) {
  return Asn1IntegerMagnitude(X509_get0_serialNumber(&cert));
}

std::vector<std::vector<uint8_t>> RevokedSerials(const X509_CRL& crl) {
  std::vector<std::vector<uint8_t>> out;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(const_cast<X509_CRL*>(&crl));
  if (revoked == nullptr) return out;
  const int n = sk_X509_REVOKED_num(revoked);
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    out.push_back(Asn1IntegerMagnitude(X509_REVOKED_get0_serialNumber(r)));
  }
  return out;
}

bool IsRevoked(const X509_CRL& crl, const X509& cert) {
  X509_REVOKED* entry = nullptr;
  // get0_by_serial sorts the (shared) revoked list lazily under OpenSSL's lock.
  const int rc = X509_CRL_get0_by_serial(const_cast<X509_CRL*>(&crl), &entry,
                                         X509_get0_serialNumber(&cert));
  return rc == 1;
}

absl::StatusOr<std::optional<std::vector<uint8_t>>> FindExtension(const X509& cert,
                                                                  absl::string_view oid) {
  if (!IsValidDottedOid(oid)) {
    return absl::InvalidArgumentError(absl::StrCat("bad oid \"", oid.substr(0, 64), "\""));
  }
  ClearOpensslErrors();
  const std::string oid_text(oid);
  Asn1ObjectPtr obj(OBJ_txt2obj(oid_text.c_str(), 1));
  if (obj == nullptr) return OpensslError("oid", absl::StatusCode::kInvalidArgument);
  const int idx = X509_get_ext_by_OBJ(&cert, obj.get(), -1);
  if (idx < 0) return std::optional<std::vector<uint8_t>>();
  if (X509_get_ext_by_OBJ(&cert, obj.get(), idx) >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("extension ", oid, " appears more than once"));
  }
  const X509_EXTENSION* ext = X509_get_ext(&cert, idx);
  const ASN1_OCTET_STRING* value = ext == nullptr ? nullptr : X509_EXTENSION_get_data(const_cast<X509_EXTENSION*>(ext));
  if (value == nullptr) return absl::InvalidArgumentError(absl::StrCat("extension ", oid));
  const unsigned char* data = ASN1_STRING_get0_data(value);
  const int len = ASN1_STRING_length(value);
  return std::optional<std::vector<uint8_t>>(
      std::vector<uint8_t>(data, data + (len > 0 ? len : 0)));
}

absl::StatusOr<DerTlv> DerReader::Next(absl::string_view what) {
  const size_t n = data_.size();
  if (pos_ + 2 > n) return absl::InvalidArgumentError(absl::StrCat(what, ": truncated der"));
  const uint8_t tag = data_[pos_];
  if ((tag & 0x1f) == 0x1f) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": multi-byte der tag"));
  }
  size_t p = pos_ + 1;
  size_t len = data_[p++];
  if (len == 0x80) return absl::InvalidArgumentError(absl::StrCat(what, ": indefinite length"));
  if (len > 0x80) {
    const size_t nbytes = len & 0x7f;
    if (nbytes > 4 || p + nbytes > n) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad der length"));
    }
    len = 0;
    for (size_t i = 0; i < nbytes; ++i) len = (len << 8) | data_[p++];
  }
  if (len > n - p) return absl::InvalidArgumentError(absl::StrCat(what, ": der length overruns"));
  DerTlv out;
  out.tag = tag;
  out.content = data_.subspan(p, len);
  out.raw = data_.subspan(pos_, p + len - pos_);
  pos_ = p + len;
  return out;
}

absl::StatusOr<DerTlv> DerReader::Expect(uint8_t tag, absl::string_view what) {
  PML_ASSIGN_OR_RETURN(DerTlv tlv, Next(what));
  if (tlv.tag != tag) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": der tag 0x", core::HexEncode(
        absl::Span<const uint8_t>(&tlv.tag, 1)), ", want 0x", core::HexEncode(
        absl::Span<const uint8_t>(&tag, 1))));
  }
  return tlv;
}

absl::StatusOr<std::string> DerOidToString(absl::Span<const uint8_t> content) {
  if (content.empty() || content.back() & 0x80) {
    return absl::InvalidArgumentError("malformed oid");
  }
  std::string out;
  uint64_t value = 0;
  bool first = true;
  size_t arc_bytes = 0;
  for (uint8_t b : content) {
    if (arc_bytes == 0 && b == 0x80) return absl::InvalidArgumentError("malformed oid");
    if (++arc_bytes > 9) return absl::InvalidArgumentError("oid arc too large");
    value = (value << 7) | (b & 0x7f);
    if (b & 0x80) continue;
    if (first) {
      const uint64_t a = value < 80 ? value / 40 : 2;
      absl::StrAppend(&out, a, ".", value - a * 40);
      first = false;
    } else {
      absl::StrAppend(&out, ".", value);
    }
    value = 0;
    arc_bytes = 0;
  }
  return out;
}

absl::StatusOr<int64_t> DerNonNegativeInteger(absl::Span<const uint8_t> content) {
  if (content.empty()) return absl::InvalidArgumentError("empty der integer");
  if (content[0] & 0x80) return absl::InvalidArgumentError("negative der integer");
  if (content.size() > 1 && content[0] == 0 && !(content[1] & 0x80)) {
    return absl::InvalidArgumentError("non-minimal der integer");
  }
  size_t start = content[0] == 0 ? 1 : 0;
  if (content.size() - start > 8 || (content.size() - start == 8 && content[start] & 0x80)) {
    return absl::InvalidArgumentError("der integer too large");
  }
  int64_t v = 0;
  for (size_t i = start; i < content.size(); ++i) v = (v << 8) | content[i];
  return v;
}

}  // namespace pml::crypto
