#include "lib/crypto/key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "lib/core/status.h"

namespace pml::crypto {
namespace {

const char* CurveName(Curve c) {
  switch (c) {
    case Curve::kP256:
      return "prime256v1";
    case Curve::kP384:
      return "secp384r1";
    case Curve::kSecp256k1:
      return "secp256k1";
  }
  return "prime256v1";
}

size_t CurveBytes(Curve c) { return c == Curve::kP384 ? 48 : 32; }

const EVP_MD* Md(Digest d) { return d == Digest::kSha384 ? EVP_sha384() : EVP_sha256(); }

}  // namespace

absl::StatusOr<EvpPkeyPtr> GenerateEcKey(Curve curve) {
  ClearOpensslErrors();
  EvpPkeyPtr key(EVP_EC_gen(CurveName(curve)));
  if (key == nullptr) return OpensslError("ec key generation");
  return key;
}

absl::StatusOr<SecretBytes> PrivateKeyToPem(const EVP_PKEY& key) {
  ClearOpensslErrors();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PrivateKey(bio.get(), &key, nullptr, nullptr, 0, nullptr,
                                                 nullptr) != 1) {
    return OpensslError("private key pem encoding");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int)
  SecretBytes out(absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(data),
                                            static_cast<size_t>(len)));
  (void)BIO_reset(bio.get());
  return out;
}

absl::StatusOr<SecretBytes> PrivateKeyToPkcs8Der(const EVP_PKEY& key) {
  ClearOpensslErrors();
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, CDeleter<PKCS8_PRIV_KEY_INFO_free>> p8(
      EVP_PKEY2PKCS8(&key));
  unsigned char* der = nullptr;
  const int n = p8 == nullptr ? -1 : i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der);
  if (n <= 0)
    return OpensslError("pkcs8 encoding");
  SecretBytes out(absl::Span<const uint8_t>(der, static_cast<size_t>(n)));
  OPENSSL_clear_free(der, static_cast<size_t>(n));
  return out;
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPkcs8Der(absl::Span<const uint8_t> der) {
  ClearOpensslErrors();
  const unsigned char* p = der.data();
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, CDeleter<PKCS8_PRIV_KEY_INFO_free>> p8(
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (p8 == nullptr || p != der.data() + der.size()) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError("not PKCS#8 DER");
  }
  EvpPkeyPtr key(EVP_PKCS82PKEY(p8.get()));
  if (key == nullptr) {
    ClearOpensslErrors();
    return absl::InvalidArgumentError("PKCS#8 DER holds no usable private key");
  }
  return key;
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem) {
  ClearOpensslErrors();
  BioPtr bio = MemBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return OpensslError("malformed pem private key", absl::StatusCode::kInvalidArgument);
  }
  return key;
}

absl::StatusOr<EvpPkeyPtr> PublicKeyFromPem(absl::string_view pem) {
  ClearOpensslErrors();
  BioPtr bio = MemBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return OpensslError("malformed pem public key", absl::StatusCode::kInvalidArgument);
  }
  return key;
}

absl::StatusOr<std::vector<uint8_t>> PublicKeyToDer(const EVP_PKEY& key) {
  ClearOpensslErrors();
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(&key, &der);
  if (len <= 0) return OpensslError("public key der encoding");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<std::string> PublicKeyToPem(const EVP_PKEY& key) {
  ClearOpensslErrors();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), &key) != 1) {
    return OpensslError("public key pem encoding");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(google-runtime-int)
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<EvpPkeyPtr> PublicKeyFromDer(absl::Span<const uint8_t> der) {
  ClearOpensslErrors();
  const unsigned char* p = der.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (key == nullptr || p != der.data() + der.size()) {
    return OpensslError("malformed der public key", absl::StatusCode::kInvalidArgument);
  }
  return key;
}

absl::StatusOr<EvpPkeyPtr> PublicKeyFromRawPoint(Curve curve, absl::Span<const uint8_t> point) {
  const size_t n = CurveBytes(curve);
  std::vector<uint8_t> uncompressed;
  if (point.size() == 2 * n) {
    uncompressed.push_back(0x04);
    uncompressed.insert(uncompressed.end(), point.begin(), point.end());
  } else if (point.size() == 2 * n + 1 && point[0] == 0x04) {
    uncompressed.assign(point.begin(), point.end());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("public key point has ", point.size(), " bytes, want ", 2 * n));
  }
  ClearOpensslErrors();
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, CurveName(curve), 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, uncompressed.data(),
                                       uncompressed.size()) != 1) {
    return OpensslError("ec public key params");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return OpensslError("public key point is not on the curve", absl::StatusCode::kInvalidArgument);
  }
  EvpPkeyPtr key(raw);
  // EVP_PKEY_fromdata does not always validate the point; do it explicitly.
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
    return OpensslError("public key point is not on the curve", absl::StatusCode::kInvalidArgument);
  }
  return key;
}

absl::StatusOr<std::vector<uint8_t>> PublicKeyToRawPoint(const EVP_PKEY& key) {
  ClearOpensslErrors();
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(&key, OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0, &len) != 1) {
    return OpensslError("ec public point");
  }
  std::vector<uint8_t> out(len);
  if (EVP_PKEY_get_octet_string_param(&key, OSSL_PKEY_PARAM_PUB_KEY, out.data(), out.size(),
                                      &len) != 1) {
    return OpensslError("ec public point");
  }
  out.resize(len);
  return out;
}

absl::StatusOr<SecretBytes> PrivateKeyToScalar(const EVP_PKEY& key) {
  ClearOpensslErrors();
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(&key, OSSL_PKEY_PARAM_PRIV_KEY, &raw) != 1) {
    return OpensslError("ec private scalar");
  }
  BignumPtr bn(raw);
  const int bits = EVP_PKEY_get_bits(&key);
  std::vector<uint8_t> out(static_cast<size_t>((bits + 7) / 8));
  if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(out.size())) < 0) {
    BN_clear(bn.get());
    return OpensslError("ec private scalar");
  }
  BN_clear(bn.get());
  return SecretBytes(std::move(out));
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromScalar(Curve curve, absl::Span<const uint8_t> scalar) {
  if (scalar.size() != CurveBytes(curve)) {
    return absl::InvalidArgumentError(absl::StrCat("private scalar has ", scalar.size(),
                                                   " bytes, want ", CurveBytes(curve)));
  }
  ClearOpensslErrors();
  BignumPtr priv(BN_bin2bn(scalar.data(), static_cast<int>(scalar.size()), nullptr));
  EcGroupPtr group(EC_GROUP_new_by_curve_name(OBJ_txt2nid(CurveName(curve))));
  if (priv == nullptr || group == nullptr || BN_is_zero(priv.get()) ||
      BN_cmp(priv.get(), EC_GROUP_get0_order(group.get())) >= 0) {
    return absl::InvalidArgumentError("private scalar out of range");
  }
  EcPointPtr pub(EC_POINT_new(group.get()));
  if (pub == nullptr || EC_POINT_mul(group.get(), pub.get(), priv.get(), nullptr, nullptr, nullptr) != 1) {
    return OpensslError("ec public point from scalar");
  }
  std::vector<uint8_t> point(2 * CurveBytes(curve) + 1);
  if (EC_POINT_point2oct(group.get(), pub.get(), POINT_CONVERSION_UNCOMPRESSED, point.data(),
                         point.size(), nullptr) != point.size()) {
    return OpensslError("ec point encoding");
  }
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, CurveName(curve), 0) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return OpensslError("ec private key params");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_KEYPAIR, params.get()) != 1) {
    return OpensslError("ec private key import");
  }
  BN_clear(priv.get());
  return EvpPkeyPtr(raw);
}

absl::StatusOr<std::vector<uint8_t>> SignEcdsaDer(const EVP_PKEY& key, Digest digest,
                                                  absl::Span<const uint8_t> message) {
  ClearOpensslErrors();
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, Md(digest), nullptr, const_cast<EVP_PKEY*>(&key)) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
    return OpensslError("ecdsa sign");
  }
  std::vector<uint8_t> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1) {
    return OpensslError("ecdsa sign");
  }
  sig.resize(len);
  return sig;
}

absl::StatusOr<std::vector<uint8_t>> SignEcdsaRaw(const EVP_PKEY& key, Digest digest,
                                                  absl::Span<const uint8_t> message,
                                                  size_t component_size) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, SignEcdsaDer(key, digest, message));
  return EcdsaDerToRaw(der, component_size);
}

absl::StatusOr<std::vector<uint8_t>> EcdsaRawToDer(absl::Span<const uint8_t> raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 132) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw ecdsa signature has bad length ", raw.size()));
  }
  const size_t half = raw.size() / 2;
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return OpensslError("ecdsa signature");
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return OpensslError("ecdsa signature der");
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> EcdsaDerToRaw(absl::Span<const uint8_t> der,
                                                   size_t component_size) {
  ClearOpensslErrors();
  const unsigned char* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (sig == nullptr || p != der.data() + der.size()) {
    return absl::InvalidArgumentError("malformed der ecdsa signature");
  }
  std::vector<uint8_t> out(2 * component_size);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out.data(), static_cast<int>(component_size)) < 0 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out.data() + component_size,
                   static_cast<int>(component_size)) < 0) {
    return absl::InvalidArgumentError("ecdsa signature component too large");
  }
  return out;
}

absl::Status VerifyEcdsaDer(const EVP_PKEY& key, Digest digest, absl::Span<const uint8_t> message,
                            absl::Span<const uint8_t> der_signature) {
  ClearOpensslErrors();
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, Md(digest), nullptr, const_cast<EVP_PKEY*>(&key)) != 1) {
    return OpensslError("ecdsa verify init");
  }
  const int rc = EVP_DigestVerify(ctx.get(), der_signature.data(), der_signature.size(),
                                  message.data(), message.size());
  ClearOpensslErrors();
  if (rc == 1) return absl::OkStatus();
  if (rc == 0) return absl::UnauthenticatedError("ecdsa signature does not verify");
  return absl::InvalidArgumentError("malformed ecdsa signature");
}

absl::Status VerifyEcdsaRaw(const EVP_PKEY& key, Digest digest, absl::Span<const uint8_t> message,
                            absl::Span<const uint8_t> raw_signature) {
  PML_ASSIGN_OR_RETURN(std::vector<uint8_t> der, EcdsaRawToDer(raw_signature));
  return VerifyEcdsaDer(key, digest, message, der);
}

}  // namespace pml::crypto
