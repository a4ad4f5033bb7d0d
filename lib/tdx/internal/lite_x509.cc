#include "lib/tdx/internal/lite_x509.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"

namespace pml::tdx::internal {
namespace {

using crypto::DerReader;
using crypto::DerTlv;

constexpr uint8_t kBoolean = 0x01;
constexpr uint8_t kBitString = 0x03;
constexpr uint8_t kUtcTime = 0x17;
constexpr uint8_t kGeneralizedTime = 0x18;
constexpr uint8_t kSet = 0x31;
constexpr uint8_t kContext0 = 0xa0;
constexpr uint8_t kContext3 = 0xa3;

// OID contents (the bytes after tag and length).
constexpr uint8_t kOidEcdsaWithSha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
constexpr uint8_t kOidEcPublicKey[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
constexpr uint8_t kOidPrime256v1[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr uint8_t kOidCommonName[] = {0x55, 0x04, 0x03};
constexpr uint8_t kOidCertificateIssuer[] = {0x55, 0x1d, 0x1d};  // 2.5.29.29

bool Equals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Extensions this verifier understands (a critical extension outside this list is an error).
bool KnownExtension(absl::string_view oid) {
  static constexpr absl::string_view kKnown[] = {
      "2.5.29.14",  // subjectKeyIdentifier
      "2.5.29.15",  // keyUsage
      "2.5.29.17",  // subjectAltName
      "2.5.29.19",  // basicConstraints
      "2.5.29.31",  // cRLDistributionPoints
      "2.5.29.32",  // certificatePolicies
      "2.5.29.35",  // authorityKeyIdentifier
      "2.5.29.37",  // extKeyUsage
      "1.2.840.113741.1.13.1",  // Intel SGX extension
  };
  return std::find(std::begin(kKnown), std::end(kKnown), oid) != std::end(kKnown);
}

// CRL extensions that do not change what the CRL means to us.
bool KnownCrlExtension(absl::string_view oid) {
  return oid == "2.5.29.20" /* cRLNumber */ || oid == "2.5.29.35" /* AKI */;
}

// A Span-returning wrapper that prefixes errors with `what`.
absl::Status Bad(absl::string_view what, absl::string_view detail) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", detail));
}

template <typename T>
absl::StatusOr<T> Ctx(absl::StatusOr<T> r, absl::string_view what) {
  if (!r.ok()) return Bad(what, r.status().message());
  return r;
}

int Digits(absl::Span<const uint8_t> s, size_t pos, size_t n, bool* ok) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (i >= s.size() || !absl::ascii_isdigit(s[i])) {
      *ok = false;
      return 0;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

absl::StatusOr<absl::Time> ParseTime(const DerTlv& t, absl::string_view what) {
  const absl::Span<const uint8_t> s = t.content;
  bool ok = true;
  int year = 0;
  size_t p = 0;
  if (t.tag == kUtcTime && s.size() == 13) {
    const int yy = Digits(s, 0, 2, &ok);
    year = yy < 50 ? 2000 + yy : 1900 + yy;  // RFC 5280 §4.1.2.5.1
    p = 2;
  } else if (t.tag == kGeneralizedTime && s.size() == 15) {
    year = Digits(s, 0, 4, &ok);
    p = 4;
  } else {
    return Bad(what, "not a UTCTime/GeneralizedTime in Zulu form");
  }
  const int month = Digits(s, p, 2, &ok);
  const int day = Digits(s, p + 2, 2, &ok);
  const int hour = Digits(s, p + 4, 2, &ok);
  const int minute = Digits(s, p + 6, 2, &ok);
  const int second = Digits(s, p + 8, 2, &ok);
  ok = ok && s.back() == 'Z' && month >= 1 && month <= 12 && day >= 1 && day <= 31 &&
       hour <= 23 && minute <= 59 && second <= 59;
  if (!ok) return Bad(what, "malformed time");
  const absl::CivilSecond cs(year, month, day, hour, minute, second);
  if (cs.day() != day) return Bad(what, "malformed time");
  return absl::FromCivil(cs, absl::UTCTimeZone());
}

// First commonName of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
absl::StatusOr<std::string> CommonName(const DerTlv& name, absl::string_view what) {
  DerReader rdns(name.content);
  std::string cn;
  bool found = false;
  while (!rdns.empty()) {
    PML_ASSIGN_OR_RETURN(DerTlv set, Ctx(rdns.Expect(kSet, "rdn"), what));
    DerReader atvs(set.content);
    while (!atvs.empty()) {
      PML_ASSIGN_OR_RETURN(DerTlv atv, Ctx(atvs.Expect(crypto::kDerSequence, "atv"), what));
      DerReader parts(atv.content);
      PML_ASSIGN_OR_RETURN(DerTlv oid, Ctx(parts.Expect(crypto::kDerOid, "atv type"), what));
      PML_ASSIGN_OR_RETURN(DerTlv value, Ctx(parts.Next("atv value"), what));
      if (!found && Equals(oid.content, kOidCommonName)) {
        cn.assign(value.content.begin(), value.content.end());
        found = true;
      }
    }
  }
  return cn;
}

// AlgorithmIdentifier must be ecdsa-with-SHA256 with absent parameters.
absl::Status CheckSignatureAlgorithm(const DerTlv& alg, absl::string_view what) {
  DerReader r(alg.content);
  PML_ASSIGN_OR_RETURN(DerTlv oid, Ctx(r.Expect(crypto::kDerOid, "algorithm"), what));
  if (!Equals(oid.content, kOidEcdsaWithSha256) || !r.empty()) {
    return Bad(what, "signature algorithm is not ecdsa-with-SHA256");
  }
  return absl::OkStatus();
}

absl::Status ReadSignature(const DerTlv& bits, std::vector<uint8_t>* r, std::vector<uint8_t>* s,
                           absl::string_view what) {
  if (bits.tag != kBitString || bits.content.empty() || bits.content[0] != 0) {
    return Bad(what, "signature is not a whole-byte bit string");
  }
  absl::Span<const uint8_t> rs, ss;
  const absl::Status st = ParseDerEcdsaSignature(bits.content.subspan(1), &rs, &ss);
  if (!st.ok()) return Bad(what, st.message());
  r->assign(rs.begin(), rs.end());
  s->assign(ss.begin(), ss.end());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> PositiveInteger(const DerTlv& i, absl::string_view what) {
  if (i.tag != crypto::kDerInteger || i.content.empty()) return Bad(what, "not an integer");
  if (i.content[0] & 0x80) return Bad(what, "negative integer");
  absl::Span<const uint8_t> v = i.content;
  while (v.size() > 1 && v[0] == 0) v.remove_prefix(1);
  return std::vector<uint8_t>(v.begin(), v.end());
}

absl::Status ReadExtensions(absl::Span<const uint8_t> content, bool certificate,
                            std::vector<LiteExtension>* out, absl::string_view what) {
  DerReader seq_reader(content);
  PML_ASSIGN_OR_RETURN(DerTlv seq, Ctx(seq_reader.Expect(crypto::kDerSequence, "extensions"), what));
  if (!seq_reader.empty()) return Bad(what, "extensions have trailing bytes");
  DerReader exts(seq.content);
  while (!exts.empty()) {
    PML_ASSIGN_OR_RETURN(DerTlv ext, Ctx(exts.Expect(crypto::kDerSequence, "extension"), what));
    DerReader e(ext.content);
    PML_ASSIGN_OR_RETURN(DerTlv oid, Ctx(e.Expect(crypto::kDerOid, "extension id"), what));
    LiteExtension x;
    PML_ASSIGN_OR_RETURN(x.oid, Ctx(crypto::DerOidToString(oid.content), what));
    if (e.PeekTag() == kBoolean) {
      PML_ASSIGN_OR_RETURN(DerTlv b, Ctx(e.Next("critical"), what));
      if (b.content.size() != 1) return Bad(what, "malformed critical flag");
      x.critical = b.content[0] != 0;
    }
    PML_ASSIGN_OR_RETURN(DerTlv value,
                         Ctx(e.Expect(crypto::kDerOctetString, "extension value"), what));
    if (!e.empty()) return Bad(what, "extension has trailing fields");
    x.value.assign(value.content.begin(), value.content.end());
    const bool known = certificate ? KnownExtension(x.oid) : KnownCrlExtension(x.oid);
    if (x.critical && !known) {
      return Bad(what, absl::StrCat("unsupported critical extension ", x.oid));
    }
    for (const LiteExtension& prior : *out) {
      if (prior.oid == x.oid) return Bad(what, absl::StrCat("extension ", x.oid, " repeats"));
    }
    out->push_back(std::move(x));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const LiteCert>> LiteCert::Parse(std::vector<uint8_t> der,
                                                                const P256Group& group) {
  constexpr absl::string_view what = "certificate";
  std::shared_ptr<LiteCert> c(new LiteCert());
  c->der_ = std::move(der);
  c->digest_ = Sha256(c->der_);
  DerReader top(c->der_);
  PML_ASSIGN_OR_RETURN(DerTlv cert, Ctx(top.Expect(crypto::kDerSequence, "certificate"), what));
  if (!top.empty()) return Bad(what, "trailing bytes");
  DerReader parts(cert.content);
  PML_ASSIGN_OR_RETURN(DerTlv tbs, Ctx(parts.Expect(crypto::kDerSequence, "tbs"), what));
  PML_ASSIGN_OR_RETURN(DerTlv alg, Ctx(parts.Expect(crypto::kDerSequence, "signature alg"), what));
  PML_ASSIGN_OR_RETURN(DerTlv sig, Ctx(parts.Next("signature"), what));
  if (!parts.empty()) return Bad(what, "extra fields after the signature");
  PML_RETURN_IF_ERROR(CheckSignatureAlgorithm(alg, what));
  PML_RETURN_IF_ERROR(ReadSignature(sig, &c->sig_r_, &c->sig_s_, what));
  c->tbs_digest_ = Sha256(tbs.raw);

  DerReader t(tbs.content);
  PML_ASSIGN_OR_RETURN(DerTlv first, Ctx(t.Next("version or serial"), what));
  bool v3 = false;
  if (first.tag == kContext0) {
    DerReader vr(first.content);
    PML_ASSIGN_OR_RETURN(DerTlv v, Ctx(vr.Expect(crypto::kDerInteger, "version"), what));
    PML_ASSIGN_OR_RETURN(int64_t version, Ctx(crypto::DerNonNegativeInteger(v.content), what));
    if (version > 2 || !vr.empty()) return Bad(what, "unsupported version");
    v3 = version == 2;
    PML_ASSIGN_OR_RETURN(first, Ctx(t.Next("serial"), what));
  }
  PML_ASSIGN_OR_RETURN(c->serial_, PositiveInteger(first, "certificate serial"));
  PML_ASSIGN_OR_RETURN(DerTlv inner_alg, Ctx(t.Expect(crypto::kDerSequence, "tbs alg"), what));
  if (!Equals(inner_alg.raw, alg.raw)) return Bad(what, "tbs and outer signature algorithms differ");
  PML_ASSIGN_OR_RETURN(DerTlv issuer, Ctx(t.Expect(crypto::kDerSequence, "issuer"), what));
  c->issuer_.assign(issuer.raw.begin(), issuer.raw.end());
  PML_ASSIGN_OR_RETURN(c->issuer_cn_, CommonName(issuer, "certificate issuer"));
  PML_ASSIGN_OR_RETURN(DerTlv validity, Ctx(t.Expect(crypto::kDerSequence, "validity"), what));
  {
    DerReader vr(validity.content);
    PML_ASSIGN_OR_RETURN(DerTlv nb, Ctx(vr.Next("notBefore"), what));
    PML_ASSIGN_OR_RETURN(DerTlv na, Ctx(vr.Next("notAfter"), what));
    if (!vr.empty()) return Bad(what, "validity has extra fields");
    PML_ASSIGN_OR_RETURN(c->not_before_, ParseTime(nb, "certificate notBefore"));
    PML_ASSIGN_OR_RETURN(c->not_after_, ParseTime(na, "certificate notAfter"));
  }
  PML_ASSIGN_OR_RETURN(DerTlv subject, Ctx(t.Expect(crypto::kDerSequence, "subject"), what));
  c->subject_.assign(subject.raw.begin(), subject.raw.end());
  PML_ASSIGN_OR_RETURN(c->subject_cn_, CommonName(subject, "certificate subject"));
  PML_ASSIGN_OR_RETURN(DerTlv spki, Ctx(t.Expect(crypto::kDerSequence, "spki"), what));
  {
    DerReader sr(spki.content);
    PML_ASSIGN_OR_RETURN(DerTlv kalg, Ctx(sr.Expect(crypto::kDerSequence, "key alg"), what));
    PML_ASSIGN_OR_RETURN(DerTlv bits, Ctx(sr.Expect(kBitString, "key"), what));
    if (!sr.empty()) return Bad(what, "spki has extra fields");
    DerReader ar(kalg.content);
    PML_ASSIGN_OR_RETURN(DerTlv koid, Ctx(ar.Expect(crypto::kDerOid, "key alg oid"), what));
    PML_ASSIGN_OR_RETURN(DerTlv curve, Ctx(ar.Expect(crypto::kDerOid, "key curve"), what));
    if (!Equals(koid.content, kOidEcPublicKey) || !Equals(curve.content, kOidPrime256v1) ||
        !ar.empty()) {
      return Bad(what, "subject key is not an ec key on prime256v1");
    }
    if (bits.content.size() != 66 || bits.content[0] != 0) {
      return Bad(what, "subject key is not an uncompressed p-256 point");
    }
    PML_ASSIGN_OR_RETURN(c->key_, Ctx(P256Key::FromPoint(group, bits.content.subspan(1)), what));
  }
  while (!t.empty()) {
    PML_ASSIGN_OR_RETURN(DerTlv opt, Ctx(t.Next("optional field"), what));
    if (opt.tag == 0x81 || opt.tag == 0x82 || opt.tag == 0xa1 || opt.tag == 0xa2) continue;
    if (opt.tag != kContext3 || !v3 || !t.empty()) return Bad(what, "unexpected tbs field");
    PML_RETURN_IF_ERROR(ReadExtensions(opt.content, /*certificate=*/true, &c->extensions_, what));
  }
  if (const LiteExtension* bc = c->FindExtension("2.5.29.19")) {
    DerReader br(bc->value);
    PML_ASSIGN_OR_RETURN(DerTlv seq, Ctx(br.Expect(crypto::kDerSequence, "basicConstraints"), what));
    DerReader fields(seq.content);
    if (fields.PeekTag() == kBoolean) {
      PML_ASSIGN_OR_RETURN(DerTlv ca, Ctx(fields.Next("cA"), what));
      c->is_ca_ = ca.content.size() == 1 && ca.content[0] != 0;
    }
  }
  return std::shared_ptr<const LiteCert>(std::move(c));
}

const LiteExtension* LiteCert::FindExtension(absl::string_view oid) const {
  for (const LiteExtension& e : extensions_) {
    if (e.oid == oid) return &e;
  }
  return nullptr;
}

absl::Status LiteCert::VerifySignedBy(const P256Key& issuer_key) const {
  return issuer_key.VerifyDigest(tbs_digest_, sig_r_, sig_s_);
}

absl::StatusOr<std::shared_ptr<const LiteCrl>> LiteCrl::Parse(absl::Span<const uint8_t> der) {
  constexpr absl::string_view what = "crl";
  std::shared_ptr<LiteCrl> c(new LiteCrl());
  DerReader top(der);
  PML_ASSIGN_OR_RETURN(DerTlv crl, Ctx(top.Expect(crypto::kDerSequence, "crl"), what));
  if (!top.empty()) return Bad(what, "trailing bytes");
  DerReader parts(crl.content);
  PML_ASSIGN_OR_RETURN(DerTlv tbs, Ctx(parts.Expect(crypto::kDerSequence, "tbs"), what));
  PML_ASSIGN_OR_RETURN(DerTlv alg, Ctx(parts.Expect(crypto::kDerSequence, "signature alg"), what));
  PML_ASSIGN_OR_RETURN(DerTlv sig, Ctx(parts.Next("signature"), what));
  if (!parts.empty()) return Bad(what, "extra fields after the signature");
  PML_RETURN_IF_ERROR(CheckSignatureAlgorithm(alg, what));
  PML_RETURN_IF_ERROR(ReadSignature(sig, &c->sig_r_, &c->sig_s_, what));
  c->tbs_digest_ = Sha256(tbs.raw);

  DerReader t(tbs.content);
  if (t.PeekTag() == crypto::kDerInteger) {
    PML_ASSIGN_OR_RETURN(DerTlv v, Ctx(t.Next("version"), what));
    PML_ASSIGN_OR_RETURN(int64_t version, Ctx(crypto::DerNonNegativeInteger(v.content), what));
    if (version > 1) return Bad(what, "unsupported version");
  }
  PML_ASSIGN_OR_RETURN(DerTlv inner_alg, Ctx(t.Expect(crypto::kDerSequence, "tbs alg"), what));
  if (!Equals(inner_alg.raw, alg.raw)) return Bad(what, "tbs and outer signature algorithms differ");
  PML_ASSIGN_OR_RETURN(DerTlv issuer, Ctx(t.Expect(crypto::kDerSequence, "issuer"), what));
  c->issuer_.assign(issuer.raw.begin(), issuer.raw.end());
  PML_ASSIGN_OR_RETURN(c->issuer_cn_, CommonName(issuer, "crl issuer"));
  PML_ASSIGN_OR_RETURN(DerTlv this_update, Ctx(t.Next("thisUpdate"), what));
  PML_ASSIGN_OR_RETURN(c->this_update_, ParseTime(this_update, "crl thisUpdate"));
  c->next_update_ = absl::InfiniteFuture();
  if (t.PeekTag() == kUtcTime || t.PeekTag() == kGeneralizedTime) {
    PML_ASSIGN_OR_RETURN(DerTlv next_update, Ctx(t.Next("nextUpdate"), what));
    PML_ASSIGN_OR_RETURN(c->next_update_, ParseTime(next_update, "crl nextUpdate"));
  }
  if (t.PeekTag() == crypto::kDerSequence) {
    PML_ASSIGN_OR_RETURN(DerTlv revoked, Ctx(t.Next("revokedCertificates"), what));
    DerReader rr(revoked.content);
    while (!rr.empty()) {
      PML_ASSIGN_OR_RETURN(DerTlv entry, Ctx(rr.Expect(crypto::kDerSequence, "revoked entry"), what));
      DerReader er(entry.content);
      PML_ASSIGN_OR_RETURN(DerTlv serial, Ctx(er.Next("revoked serial"), what));
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> s, PositiveInteger(serial, "crl serial"));
      PML_ASSIGN_OR_RETURN(DerTlv date, Ctx(er.Next("revocation date"), what));
      if (date.tag != kUtcTime && date.tag != kGeneralizedTime) {
        return Bad(what, "revocation date is not a time");
      }
      // Entry extensions (reason code, ...) do not change whether the serial is revoked; a
      // certificateIssuer entry extension would (indirect CRLs), and is refused.
      if (!er.empty()) {
        PML_ASSIGN_OR_RETURN(DerTlv exts, Ctx(er.Expect(crypto::kDerSequence, "entry extensions"), what));
        DerReader xr(exts.content);
        while (!xr.empty()) {
          PML_ASSIGN_OR_RETURN(DerTlv x, Ctx(xr.Expect(crypto::kDerSequence, "entry extension"), what));
          DerReader xe(x.content);
          PML_ASSIGN_OR_RETURN(DerTlv oid, Ctx(xe.Expect(crypto::kDerOid, "entry extension id"), what));
          if (Equals(oid.content, kOidCertificateIssuer)) {
            return Bad(what, "indirect crl entries are not supported");
          }
        }
      }
      if (!er.empty()) return Bad(what, "revoked entry has extra fields");
      c->revoked_.push_back(std::move(s));
    }
  }
  if (t.PeekTag() == kContext0) {
    PML_ASSIGN_OR_RETURN(DerTlv exts, Ctx(t.Next("crlExtensions"), what));
    std::vector<LiteExtension> ignored;
    PML_RETURN_IF_ERROR(ReadExtensions(exts.content, /*certificate=*/false, &ignored, what));
  }
  if (!t.empty()) return Bad(what, "unexpected tbs field");
  std::sort(c->revoked_.begin(), c->revoked_.end());
  return std::shared_ptr<const LiteCrl>(std::move(c));
}

bool LiteCrl::IsRevoked(absl::Span<const uint8_t> serial) const {
  const std::vector<uint8_t> key(serial.begin(), serial.end());
  return std::binary_search(revoked_.begin(), revoked_.end(), key);
}

absl::Status LiteCrl::VerifySignedBy(const P256Key& issuer_key) const {
  return issuer_key.VerifyDigest(tbs_digest_, sig_r_, sig_s_);
}

namespace {
constexpr absl::string_view kPemBegin = "-----BEGIN CERTIFICATE-----";
constexpr absl::string_view kPemEnd = "-----END CERTIFICATE-----";
}  // namespace

absl::StatusOr<std::vector<absl::string_view>> SplitPemCertificates(absl::string_view pem,
                                                                    size_t max_certs) {
  std::vector<absl::string_view> out;
  size_t pos = 0;
  while (true) {
    const size_t begin = pem.find(kPemBegin, pos);
    if (begin == absl::string_view::npos) break;
    const size_t end = pem.find(kPemEnd, begin + kPemBegin.size());
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("pem certificate ", out.size(),
                                                     " has no END line"));
    }
    if (out.size() >= max_certs) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", max_certs, " certificates"));
    }
    pos = end + kPemEnd.size();
    out.push_back(pem.substr(begin, pos - begin));
  }
  if (out.empty()) return absl::InvalidArgumentError("no pem certificate found");
  return out;
}

absl::StatusOr<std::vector<uint8_t>> DecodePemCertificate(absl::string_view block) {
  if (block.size() < kPemBegin.size() + kPemEnd.size()) {
    return absl::InvalidArgumentError("pem certificate block is too short");
  }
  const absl::string_view body =
      block.substr(kPemBegin.size(), block.size() - kPemBegin.size() - kPemEnd.size());
  // Strict RFC 4648 base64 with line breaks and blanks ignored; one pass, no copy of the text.
  std::vector<uint8_t> out;
  out.reserve(body.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t symbols = 0;
  size_t padding = 0;
  for (char ch : body) {
    if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t') continue;
    int v;
    if (ch >= 'A' && ch <= 'Z') {
      v = ch - 'A';
    } else if (ch >= 'a' && ch <= 'z') {
      v = ch - 'a' + 26;
    } else if (ch >= '0' && ch <= '9') {
      v = ch - '0' + 52;
    } else if (ch == '+') {
      v = 62;
    } else if (ch == '/') {
      v = 63;
    } else if (ch == '=') {
      ++padding;
      ++symbols;
      continue;
    } else {
      return absl::InvalidArgumentError("pem certificate has bad base64");
    }
    if (padding != 0) return absl::InvalidArgumentError("pem certificate has bad base64 padding");
    ++symbols;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  // Whole quanta only, at most two '=', and the unused bits of the last symbol must be zero.
  if (symbols % 4 != 0 || padding > 2 || acc != 0) {
    return absl::InvalidArgumentError("pem certificate has bad base64 length or padding");
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> PemCertificatesToDer(absl::string_view pem,
                                                                       size_t max_certs) {
  PML_ASSIGN_OR_RETURN(std::vector<absl::string_view> blocks, SplitPemCertificates(pem, max_certs));
  std::vector<std::vector<uint8_t>> out;
  for (absl::string_view block : blocks) {
    auto der = DecodePemCertificate(block);
    if (!der.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("pem certificate ", out.size(), ": ",
                                                     der.status().message()));
    }
    out.push_back(std::move(der).value());
  }
  return out;
}

}  // namespace pml::tdx::internal
