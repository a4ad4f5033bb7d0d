#include "lib/crypto/x509_ext.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509_vfy.h>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"

namespace pml::crypto {
namespace {

using OcspResponsePtr = std::unique_ptr<OCSP_RESPONSE, CDeleter<OCSP_RESPONSE_free>>;
using OcspBasicRespPtr = std::unique_ptr<OCSP_BASICRESP, CDeleter<OCSP_BASICRESP_free>>;
using OcspRequestPtr = std::unique_ptr<OCSP_REQUEST, CDeleter<OCSP_REQUEST_free>>;
using OcspCertIdPtr = std::unique_ptr<OCSP_CERTID, CDeleter<OCSP_CERTID_free>>;

struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

bool IsSelfSigned(const X509& cert) {
  return X509_check_issued(const_cast<X509*>(&cert), const_cast<X509*>(&cert)) == X509_V_OK;
}

absl::StatusOr<X509StackPtr> StackOf(absl::Span<const X509Ptr> certs, bool skip_self_signed) {
  X509StackPtr stack(sk_X509_new_null());
  if (stack == nullptr)
    return absl::InternalError("sk_X509_new_null failed");
  for (const auto& c : certs) {
    if (c == nullptr)
      continue;
    if (skip_self_signed && IsSelfSigned(*c))
      continue;
    X509Ptr copy = CopyCertificate(*c);
    if (sk_X509_push(stack.get(), copy.get()) <= 0)
      return absl::InternalError("sk_X509_push failed");
    copy.release();  // owned by the stack now
  }
  return stack;
}

absl::StatusOr<X509StorePtr> StoreWithAnchor(const X509& anchor, std::optional<absl::Time> at,
                                             bool strict) {
  X509StorePtr store(X509_STORE_new());
  if (store == nullptr)
    return absl::InternalError("X509_STORE_new failed");
  if (X509_STORE_add_cert(store.get(), const_cast<X509*>(&anchor)) != 1) {
    return OpensslError("X509_STORE_add_cert");
  }
  unsigned long flags = 0;
  if (strict)
    flags |= X509_V_FLAG_X509_STRICT;
  if (at.has_value()) {
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), absl::ToTimeT(*at));
  } else {
    flags |= X509_V_FLAG_NO_CHECK_TIME;
  }
  X509_STORE_set_flags(store.get(), flags);
  return store;
}

absl::string_view ReasonName(int reason) {
  switch (reason) {
    case OCSP_REVOKED_STATUS_UNSPECIFIED:
      return "unspecified";
    case OCSP_REVOKED_STATUS_KEYCOMPROMISE:
      return "keyCompromise";
    case OCSP_REVOKED_STATUS_CACOMPROMISE:
      return "cACompromise";
    case OCSP_REVOKED_STATUS_AFFILIATIONCHANGED:
      return "affiliationChanged";
    case OCSP_REVOKED_STATUS_SUPERSEDED:
      return "superseded";
    case OCSP_REVOKED_STATUS_CESSATIONOFOPERATION:
      return "cessationOfOperation";
    case OCSP_REVOKED_STATUS_CERTIFICATEHOLD:
      return "certificateHold";
    case OCSP_REVOKED_STATUS_REMOVEFROMCRL:
      return "removeFromCRL";
    default:
      return "unspecified";
  }
}

}  // namespace

absl::StatusOr<Sha256Digest> SpkiSha256(const X509& cert) {
  const X509_PUBKEY* pk = X509_get_X509_PUBKEY(&cert);
  unsigned char* der = nullptr;
  const int len = i2d_X509_PUBKEY(const_cast<X509_PUBKEY*>(pk), &der);
  if (len <= 0)
    return OpensslError("i2d_X509_PUBKEY");
  Sha256Digest d = Sha256(absl::MakeConstSpan(der, static_cast<size_t>(len)));
  OPENSSL_free(der);
  return d;
}

X509Ptr CopyCertificate(const X509& cert) {
  X509_up_ref(const_cast<X509*>(&cert));
  return X509Ptr(const_cast<X509*>(&cert));
}

absl::StatusOr<std::vector<X509Ptr>> VerifyChainToAnchor(absl::Span<const X509Ptr> certs,
                                                         const X509& anchor,
                                                         const ChainVerifyOptions& options) {
  if (certs.empty() || certs[0] == nullptr) {
    return absl::InvalidArgumentError("certificate chain is empty");
  }
  ClearOpensslErrors();
  PML_ASSIGN_OR_RETURN(X509StorePtr store, StoreWithAnchor(anchor, options.at, options.strict));
  PML_ASSIGN_OR_RETURN(X509StackPtr untrusted, StackOf(certs.subspan(1), true));
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (ctx == nullptr)
    return absl::InternalError("X509_STORE_CTX_new failed");
  if (X509_STORE_CTX_init(ctx.get(), store.get(), certs[0].get(), untrusted.get()) != 1) {
    return OpensslError("X509_STORE_CTX_init");
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ClearOpensslErrors();
    return absl::FailedPreconditionError(absl::StrCat(
        "chain does not verify to the pinned anchor: ", X509_verify_cert_error_string(err),
        " at depth ", depth));
  }
  std::vector<X509Ptr> out;
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 0; i < sk_X509_num(chain); ++i)
    out.push_back(CopyCertificate(*sk_X509_value(chain, i)));
  if (out.empty() || X509_cmp(out.back().get(), &anchor) != 0) {
    return absl::FailedPreconditionError("chain does not end at the pinned anchor");
  }
  return out;
}

absl::string_view OcspCertStatusName(OcspCertStatus s) {
  switch (s) {
    case OcspCertStatus::kGood:
      return "good";
    case OcspCertStatus::kRevoked:
      return "revoked";
    case OcspCertStatus::kUnknown:
      return "unknown";
  }
  return "unknown";
}

absl::StatusOr<std::vector<uint8_t>> BuildOcspRequest(const X509& cert, const X509& issuer,
                                                      absl::Span<const uint8_t> nonce) {
  ClearOpensslErrors();
  OcspRequestPtr req(OCSP_REQUEST_new());
  if (req == nullptr)
    return OpensslError("OCSP_REQUEST_new");
  OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), &cert, &issuer);
  if (id == nullptr)
    return OpensslError("OCSP_cert_to_id");
  if (OCSP_request_add0_id(req.get(), id) == nullptr) {
    OCSP_CERTID_free(id);
    return OpensslError("OCSP_request_add0_id");
  }
  if (!nonce.empty() && OCSP_request_add1_nonce(req.get(), const_cast<unsigned char*>(nonce.data()),
                                                static_cast<int>(nonce.size())) != 1) {
    return OpensslError("OCSP_request_add1_nonce");
  }
  unsigned char* der = nullptr;
  const int len = i2d_OCSP_REQUEST(req.get(), &der);
  if (len <= 0)
    return OpensslError("i2d_OCSP_REQUEST");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<OcspResult> CheckOcspResponse(absl::Span<const uint8_t> der, const X509& cert,
                                             const X509& issuer, const X509& anchor,
                                             absl::Span<const X509Ptr> intermediates,
                                             absl::Time now, absl::Duration skew) {
  ClearOpensslErrors();
  const unsigned char* p = der.data();
  OcspResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (resp == nullptr || p != der.data() + der.size()) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError("ocsp response is not valid DER");
  }
  const int rstatus = OCSP_response_status(resp.get());
  if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return absl::FailedPreconditionError(
        absl::StrCat("ocsp responseStatus is ", OCSP_response_status_str(rstatus)));
  }
  OcspBasicRespPtr basic(OCSP_response_get1_basic(resp.get()));
  if (basic == nullptr) {
    ClearOpensslErrors();
    return absl::FailedPreconditionError("ocsp response has no basic response");
  }
  // Responder chain: the response's certificates plus the caller's intermediates, to `anchor`
  // at `now`. OCSP_basic_verify also accepts a response signed directly by `issuer`.
  std::vector<X509Ptr> extra;
  for (const auto& c : intermediates)
    extra.push_back(CopyCertificate(*c));
  extra.push_back(CopyCertificate(issuer));
  PML_ASSIGN_OR_RETURN(X509StackPtr untrusted, StackOf(extra, true));
  PML_ASSIGN_OR_RETURN(X509StorePtr store, StoreWithAnchor(anchor, now, false));
  if (OCSP_basic_verify(basic.get(), untrusted.get(), store.get(), 0) != 1) {
    ClearOpensslErrors();
    return absl::FailedPreconditionError(
        "ocsp response signature or responder chain does not verify");
  }
  int status = -1;
  int reason = -1;
  ASN1_GENERALIZEDTIME* rev = nullptr;
  ASN1_GENERALIZEDTIME* thisupd = nullptr;
  ASN1_GENERALIZEDTIME* nextupd = nullptr;
  bool found = false;
  for (const EVP_MD* md : {EVP_sha1(), EVP_sha384(), EVP_sha256()}) {
    OcspCertIdPtr id(OCSP_cert_to_id(md, &cert, &issuer));
    if (id == nullptr)
      return OpensslError("OCSP_cert_to_id");
    if (OCSP_resp_find_status(basic.get(), id.get(), &status, &reason, &rev, &thisupd, &nextupd) ==
        1) {
      found = true;
      break;
    }
  }
  if (!found) {
    return absl::FailedPreconditionError("ocsp response has no status for the certificate");
  }
  OcspResult out;
  if (thisupd == nullptr)
    return absl::InvalidArgumentError("ocsp response has no thisUpdate");
  PML_ASSIGN_OR_RETURN(out.this_update, Asn1TimeToTime(*thisupd));
  if (nextupd != nullptr) {
    PML_ASSIGN_OR_RETURN(out.next_update, Asn1TimeToTime(*nextupd));
  }
  if (out.this_update > now + skew) {
    return absl::FailedPreconditionError("ocsp response thisUpdate is in the future");
  }
  if (out.next_update < now - skew) {
    return absl::FailedPreconditionError(
        absl::StrCat("ocsp response expired at nextUpdate ", absl::FormatTime(out.next_update)));
  }
  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      out.status = OcspCertStatus::kGood;
      break;
    case V_OCSP_CERTSTATUS_REVOKED:
      out.status = OcspCertStatus::kRevoked;
      out.revocation_reason = std::string(ReasonName(reason));
      break;
    default:
      out.status = OcspCertStatus::kUnknown;
      break;
  }
  const int idx = OCSP_BASICRESP_get_ext_by_NID(basic.get(), NID_id_pkix_OCSP_Nonce, -1);
  if (idx >= 0) {
    X509_EXTENSION* ext = OCSP_BASICRESP_get_ext(basic.get(), idx);
    const ASN1_OCTET_STRING* v = X509_EXTENSION_get_data(ext);
    // The extension value is an OCTET STRING wrapping the nonce (RFC 6960 §4.4.1).
    const unsigned char* q = ASN1_STRING_get0_data(v);
    Asn1OctetStringPtr inner(d2i_ASN1_OCTET_STRING(nullptr, &q, ASN1_STRING_length(v)));
    if (inner != nullptr) {
      const unsigned char* d = ASN1_STRING_get0_data(inner.get());
      out.nonce = std::vector<uint8_t>(d, d + ASN1_STRING_length(inner.get()));
    } else {
      // Some responders put the raw nonce in extnValue without the inner OCTET STRING.
      ClearOpensslErrors();
      const unsigned char* raw = ASN1_STRING_get0_data(v);
      out.nonce = std::vector<uint8_t>(raw, raw + ASN1_STRING_length(v));
    }
  }
  return out;
}

}  // namespace pml::crypto
