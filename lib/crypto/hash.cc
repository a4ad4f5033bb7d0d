#include "lib/crypto/hash.h"

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
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  std::vector<uint8_t> out(length);
  size_t out_len = length;
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.data(), static_cast<int>(salt.size())) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &out_len) != 1 || out_len != length) {
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
