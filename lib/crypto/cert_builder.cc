#include "lib/crypto/cert_builder.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"

namespace pml::crypto {
namespace {

using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, CDeleter<ASN1_INTEGER_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, CDeleter<ASN1_TIME_free>>;
using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, CDeleter<ASN1_OBJECT_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, CDeleter<X509_EXTENSION_free>>;

const EVP_MD* Md(Digest d) { return d == Digest::kSha384 ? EVP_sha384() : EVP_sha256(); }

absl::StatusOr<Asn1IntegerPtr> SerialToAsn1(const std::vector<uint8_t>& serial) {
  BignumPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (bn == nullptr) return OpensslError("serial");
  Asn1IntegerPtr out(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (out == nullptr) return OpensslError("serial");
  return out;
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpensslError(absl::StrCat("certificate extension ", OBJ_nid2sn(nid), "=", value),
                        absl::StatusCode::kInvalidArgument);
  }
  return absl::OkStatus();
}

bool IsSafeSanText(const std::string& s) {
  // X509V3_EXT_conf parses commas and colons; reject anything that could smuggle another entry.
  for (char c : s) {
    if (c == ',' || c == '\n' || c == '\r' || c == '\0') return false;
  }
  return !s.empty();
}

}  // namespace

absl::StatusOr<X509Ptr> IssueCertificate(const CertSpec& spec, const EVP_PKEY& subject_key,
                                         const EVP_PKEY& issuer_key, const X509* issuer_cert) {
  ClearOpensslErrors();
  const absl::Time nb =
      spec.not_before == absl::InfinitePast() ? absl::Now() - absl::Hours(1) : spec.not_before;
  const absl::Time na =
      spec.not_after == absl::InfinitePast() ? nb + absl::Hours(24 * 365) : spec.not_after;
  if (na <= nb) return absl::InvalidArgumentError("certificate not_after is not after not_before");

  X509Ptr cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), 2) != 1) return OpensslError("x509 new");
  std::vector<uint8_t> serial = spec.serial;
  if (serial.empty()) {
    serial = RandomBytes(16);
    serial[0] &= 0x7f;  // positive
    serial[0] |= 0x01;  // never zero-length after DER minimisation
  }
  PML_ASSIGN_OR_RETURN(Asn1IntegerPtr asn1_serial, SerialToAsn1(serial));
  if (X509_set_serialNumber(cert.get(), asn1_serial.get()) != 1) return OpensslError("serial");

  X509NamePtr name(X509_NAME_new());
  if (name == nullptr) return OpensslError("x509 name");
  if (!spec.organization.empty() &&
      X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.organization.c_str()),
                                 -1, -1, 0) != 1) {
    return OpensslError("subject organization", absl::StatusCode::kInvalidArgument);
  }
  if (X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return OpensslError("subject common name", absl::StatusCode::kInvalidArgument);
  }
  if (X509_set_subject_name(cert.get(), name.get()) != 1) return OpensslError("subject");
  const X509_NAME* issuer_name =
      issuer_cert != nullptr ? X509_get_subject_name(issuer_cert) : name.get();
  if (X509_set_issuer_name(cert.get(), issuer_name) != 1) return OpensslError("issuer");

  Asn1TimePtr t1(ASN1_TIME_set(nullptr, absl::ToTimeT(nb)));
  Asn1TimePtr t2(ASN1_TIME_set(nullptr, absl::ToTimeT(na)));
  if (t1 == nullptr || t2 == nullptr || X509_set1_notBefore(cert.get(), t1.get()) != 1 ||
      X509_set1_notAfter(cert.get(), t2.get()) != 1) {
    return OpensslError("validity");
  }
  if (X509_set_pubkey(cert.get(), const_cast<EVP_PKEY*>(&subject_key)) != 1) {
    return OpensslError("subject public key");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert != nullptr ? const_cast<X509*>(issuer_cert) : cert.get(),
                 cert.get(), nullptr, nullptr, 0);
  std::string bc = spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  if (spec.is_ca && spec.path_len.has_value()) absl::StrAppend(&bc, ",pathlen:", *spec.path_len);
  PML_RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_basic_constraints, bc));
  PML_RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_key_usage,
                                   spec.is_ca ? "critical,keyCertSign,cRLSign"
                                              : "critical,digitalSignature,keyAgreement"));
  PML_RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  if (issuer_cert != nullptr) {
    PML_RETURN_IF_ERROR(
        AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  }
  std::vector<std::string> eku;
  if (spec.server_auth) eku.push_back("serverAuth");
  if (spec.client_auth) eku.push_back("clientAuth");
  if (!eku.empty()) {
    PML_RETURN_IF_ERROR(
        AddExtension(cert.get(), &ctx, NID_ext_key_usage, absl::StrJoin(eku, ",")));
  }
  std::vector<std::string> sans;
  for (const auto& d : spec.dns_sans) {
    if (!IsSafeSanText(d)) return absl::InvalidArgumentError("malformed dns san");
    sans.push_back(absl::StrCat("DNS:", d));
  }
  for (const auto& ip : spec.ip_sans) {
    if (!IsSafeSanText(ip)) return absl::InvalidArgumentError("malformed ip san");
    sans.push_back(absl::StrCat("IP:", ip));
  }
  for (const auto& u : spec.uri_sans) {
    if (!IsSafeSanText(u)) return absl::InvalidArgumentError("malformed uri san");
    sans.push_back(absl::StrCat("URI:", u));
  }
  if (!sans.empty()) {
    PML_RETURN_IF_ERROR(
        AddExtension(cert.get(), &ctx, NID_subject_alt_name, absl::StrJoin(sans, ",")));
  }
  for (const auto& ext : spec.extensions) {
    Asn1ObjectPtr obj(OBJ_txt2obj(ext.oid.c_str(), /*no_name=*/1));
    Asn1OctetStringPtr value(ASN1_OCTET_STRING_new());
    if (obj == nullptr || value == nullptr ||
        ASN1_OCTET_STRING_set(value.get(), ext.der_value.data(),
                              static_cast<int>(ext.der_value.size())) != 1) {
      return OpensslError(absl::StrCat("custom extension ", ext.oid),
                          absl::StatusCode::kInvalidArgument);
    }
    X509ExtensionPtr x(
        X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), ext.critical ? 1 : 0, value.get()));
    if (x == nullptr || X509_add_ext(cert.get(), x.get(), -1) != 1) {
      return OpensslError(absl::StrCat("custom extension ", ext.oid));
    }
  }
  if (X509_sign(cert.get(), const_cast<EVP_PKEY*>(&issuer_key), Md(spec.digest)) <= 0) {
    return OpensslError("certificate signing");
  }
  return cert;
}

absl::StatusOr<X509CrlPtr> IssueCrl(const X509& issuer_cert, const EVP_PKEY& issuer_key,
                                    const std::vector<std::vector<uint8_t>>& revoked_serials,
                                    absl::Time this_update, absl::Time next_update,
                                    Digest digest) {
  ClearOpensslErrors();
  X509CrlPtr crl(X509_CRL_new());
  if (crl == nullptr || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(&issuer_cert)) != 1) {
    return OpensslError("crl new");
  }
  Asn1TimePtr t1(ASN1_TIME_set(nullptr, absl::ToTimeT(this_update)));
  Asn1TimePtr t2(ASN1_TIME_set(nullptr, absl::ToTimeT(next_update)));
  if (t1 == nullptr || t2 == nullptr || X509_CRL_set1_lastUpdate(crl.get(), t1.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), t2.get()) != 1) {
    return OpensslError("crl validity");
  }
  for (const auto& serial : revoked_serials) {
    X509_REVOKED* rev = X509_REVOKED_new();
    PML_ASSIGN_OR_RETURN(Asn1IntegerPtr s, SerialToAsn1(serial));
    if (rev == nullptr || X509_REVOKED_set_serialNumber(rev, s.get()) != 1 ||
        X509_REVOKED_set_revocationDate(rev, t1.get()) != 1 || X509_CRL_add0_revoked(crl.get(), rev) != 1) {
      X509_REVOKED_free(rev);
      return OpensslError("crl entry");
    }
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), const_cast<EVP_PKEY*>(&issuer_key), Md(digest)) <= 0) {
    return OpensslError("crl signing");
  }
  return crl;
}

absl::StatusOr<std::string> CertificateToPem(const X509& cert) {
  ClearOpensslErrors();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), &cert) != 1) return OpensslError("cert pem");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int)
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::vector<uint8_t>> CertificateToDer(const X509& cert) {
  ClearOpensslErrors();
  unsigned char* der = nullptr;
  const int len = i2d_X509(&cert, &der);
  if (len <= 0) return OpensslError("cert der");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> CrlToDer(const X509_CRL& crl) {
  ClearOpensslErrors();
  unsigned char* der = nullptr;
  const int len = i2d_X509_CRL(const_cast<X509_CRL*>(&crl), &der);
  if (len <= 0) return OpensslError("crl der");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<std::string> CrlToPem(const X509_CRL& crl) {
  ClearOpensslErrors();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509_CRL(bio.get(), const_cast<X509_CRL*>(&crl)) != 1) {
    return OpensslError("crl pem");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int)
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace pml::crypto
