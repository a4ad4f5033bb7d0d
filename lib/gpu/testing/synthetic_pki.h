#pragma once
// Test-only synthetic PKI shaped like NVIDIA's device chain (spec §4) and OCSP responses, for
// tests and benchmarks of revocation handling (NVIDIA's OCSP responses are not in the vectors).

#include <memory>
#include <string>
#include <vector>

#include <openssl/ocsp.h>

#include "absl/time/time.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/ossl.h"

namespace pml::gpu::testing {

using OcspBasicPtr = std::unique_ptr<OCSP_BASICRESP, crypto::CDeleter<OCSP_BASICRESP_free>>;
using OcspRespPtr = std::unique_ptr<OCSP_RESPONSE, crypto::CDeleter<OCSP_RESPONSE_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, crypto::CDeleter<ASN1_TIME_free>>;

struct Pki {
  std::vector<crypto::EvpPkeyPtr> keys;  // leaf, brom, ica, identity, root
  std::vector<crypto::X509Ptr> certs;
  std::string chain_pem;
};

// A chain shaped like NVIDIA's (spec §4): leaf "GH100 A01 GSP FMC LF" carrying a
// 2.23.133.5.4.1 extension whose last 48 bytes are `fwid`, then BROM, ICA, identity, root.
inline Pki MakePki(const std::vector<uint8_t>& fwid, absl::Time now) {
  Pki p;
  const char* names[] = {"GH100 A01 GSP FMC LF", "GH100 A01 GSP BROM", "Test Provisioner ICA",
                         "Test GH100 Identity", "Test Device Identity CA"};
  for (int i = 0; i < 5; ++i)
    p.keys.push_back(*crypto::GenerateEcKey(crypto::Curve::kP384));
  p.certs.resize(5);
  for (int i = 4; i >= 0; --i) {
    crypto::CertSpec spec;
    spec.common_name = names[i];
    spec.is_ca = i > 0;
    spec.digest = crypto::Digest::kSha384;
    spec.not_before = now - absl::Hours(24 * 365);
    spec.not_after = now + absl::Hours(24 * 365);
    if (i == 0) {
      std::vector<uint8_t> der = {0x30, 0x32, 0x04, 0x30};
      der.insert(der.end(), fwid.begin(), fwid.end());
      spec.extensions.push_back({.oid = "2.23.133.5.4.1", .critical = false, .der_value = der});
    }
    const EVP_PKEY& issuer_key = i == 4 ? *p.keys[4] : *p.keys[i + 1];
    const X509* issuer = i == 4 ? nullptr : p.certs[i + 1].get();
    p.certs[i] = *crypto::IssueCertificate(spec, *p.keys[i], issuer_key, issuer);
  }
  for (const auto& c : p.certs)
    p.chain_pem += *crypto::CertificateToPem(*c);
  return p;
}

// A DER OCSP response about `cert` (issued by `issuer`), signed by the issuer's key.
inline std::vector<uint8_t> MakeOcsp(const X509& cert, const X509& issuer,
                                     const EVP_PKEY& issuer_key, int status, int reason,
                                     absl::Time this_update, absl::Time next_update) {
  OcspBasicPtr basic(OCSP_BASICRESP_new());
  OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), &cert, &issuer);
  Asn1TimePtr tu(ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(this_update)));
  Asn1TimePtr nu(ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(next_update)));
  Asn1TimePtr rev(ASN1_GENERALIZEDTIME_set(nullptr, absl::ToTimeT(this_update)));
  OCSP_basic_add1_status(basic.get(), id, status, reason,
                         status == V_OCSP_CERTSTATUS_REVOKED ? rev.get() : nullptr, tu.get(),
                         nu.get());
  OCSP_CERTID_free(id);
  OCSP_basic_sign(basic.get(), const_cast<X509*>(&issuer), const_cast<EVP_PKEY*>(&issuer_key),
                  EVP_sha384(), nullptr, 0);
  OcspRespPtr resp(OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
  unsigned char* der = nullptr;
  const int len = i2d_OCSP_RESPONSE(resp.get(), &der);
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

}  // namespace pml::gpu::testing
