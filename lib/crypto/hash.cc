#include "lib/crypto/hash.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/ossl.h"

namespace pml::crypto {
namespace {

template <size_t N>
std::array<uint8_t, N> DigestParts(const EVP_MD* md,
                                   std::initializer_list<absl::Span<const uint8_t>> parts) {
  std::array<uint8_t, N> out{};
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  PML_CHECK(ctx != nullptr);
  PML_CHECK(EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1);
  for (const auto& p : parts) PML_CHECK(EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1);
  unsigned int len = 0;
  PML_CHECK(EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == N);
  return out;
}

}  // namespace

Sha256Digest Sha256(absl::Span<const uint8_t> data) {
  return DigestParts<32>(EVP_sha256(), {data});
}
Sha256Digest Sha256(absl::string_view data) { return Sha256(core::AsBytes(data)); }
Sha384Digest Sha384(absl::Span<const uint8_t> data) {
  return DigestParts<48>(EVP_sha384(), {data});
}
Sha384Digest Sha384(absl::string_view data) { return Sha384(core::AsBytes(data)); }
Sha512Digest Sha512(absl::Span<const uint8_t> data) {
  return DigestParts<64>(EVP_sha512(), {data});
}
Sha512Digest Sha512(absl::string_view data) { return Sha512(core::AsBytes(data)); }
Sha384Digest Sha384Concat(std::initializer_list<absl::Span<const uint8_t>> parts) {
  return DigestParts<48>(EVP_sha384(), parts);
}
Sha512Digest Sha512Concat(std::initializer_list<absl::Span<const uint8_t>> parts) {
  return DigestParts<64>(EVP_sha512(), parts);
}

Sha256Digest HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> data) {
  Sha256Digest out{};
  unsigned int len = 0;
  PML_CHECK(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
                 out.data(), &len) != nullptr &&
            len == out.size());
  return out;
}

absl::StatusOr<std::vector<uint8_t>> HkdfSha256(absl::Span<const uint8_t> ikm,
                                                absl::Span<const uint8_t> salt,
                                                absl::Span<const uint8_t> info, size_t length) {
  if (length == 0 || length > 255 * 32) {
    return absl::InvalidArgumentError(absl::StrCat("hkdf output length ", length, " out of range"));
  }
  ClearOpensslErrors();
  // Fetched once: an implicit fetch per call (EVP_PKEY_CTX_new_id) costs more than the HKDF.
  // (Should that fetch have failed, each call fetches for itself and reports its own failure.)
  static EVP_KDF* const kHkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  std::unique_ptr<EVP_KDF, CDeleter<EVP_KDF_free>> own;
  EVP_KDF* kdf = kHkdf;
  if (kdf == nullptr) {
    own.reset(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
    kdf = own.get();
    if (kdf == nullptr)
      return OpensslError("hkdf-sha256: fetch");
  }
  std::unique_ptr<EVP_KDF_CTX, CDeleter<EVP_KDF_CTX_free>> ctx(EVP_KDF_CTX_new(kdf));
  std::vector<uint8_t> out(length);
  char digest[] = "SHA256";
  // An absent salt is HKDF's default (HashLen zeros), which is what an empty salt means too.
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  if (ctx == nullptr || EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpensslError("hkdf-sha256");
  }
  return out;
}

std::vector<uint8_t> RandomBytes(size_t n) {
  std::vector<uint8_t> out(n);
  PML_CHECK(n == 0 || RAND_bytes(out.data(), static_cast<int>(n)) == 1);
  return out;
}

}  // namespace pml::crypto
