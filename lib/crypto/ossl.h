#pragma once
// OpenSSL RAII: one alias per handle type, wrapped on the line that creates it (STYLE.md §4).
// Ownership reminder: *_get0_* is borrowed; *_get1_*, *_new, *_dup, d2i_*, PEM_read_* are owned.

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::crypto {

template <auto kFree>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};

}  // namespace pml::crypto


namespace pml::crypto {

using X509Ptr = std::unique_ptr<X509, CDeleter<X509_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, CDeleter<X509_CRL_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, CDeleter<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, CDeleter<X509_STORE_CTX_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, CDeleter<X509_NAME_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, CDeleter<X509_REQ_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, CDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, CDeleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CDeleter<EVP_CIPHER_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, CDeleter<BIO_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, CDeleter<BN_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, CDeleter<ECDSA_SIG_free>>;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, CDeleter<ASN1_OCTET_STRING_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, CDeleter<EC_POINT_free>>;
using EcGroupPtr = std::unique_ptr<EC_GROUP, CDeleter<EC_GROUP_free>>;
using OsslParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, CDeleter<OSSL_PARAM_BLD_free>>;
using OsslParamPtr = std::unique_ptr<OSSL_PARAM, CDeleter<OSSL_PARAM_free>>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, CDeleter<EVP_KDF_CTX_free>>;
using EvpKdfPtr = std::unique_ptr<EVP_KDF, CDeleter<EVP_KDF_free>>;

// Clears the calling thread's OpenSSL error queue. Call before an OpenSSL operation whose
// failure you will report with OpensslError.
void ClearOpensslErrors();

// Drains the thread's OpenSSL error queue into a Status: `code` with "context: <first reason>".
absl::Status OpensslError(absl::string_view context,
                          absl::StatusCode code = absl::StatusCode::kInternal);

// A read-only memory BIO over `data` (which must outlive it).
BioPtr MemBio(absl::string_view data);

}  // namespace pml::crypto
