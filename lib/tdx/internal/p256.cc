// Deliberate use of the EC_KEY API (see p256.h for why).
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "lib/tdx/internal/p256.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>

#include <algorithm>

#include "lib/core/status.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/x509.h"

namespace pml::tdx::internal {
namespace {

using EcPointPtr = std::unique_ptr<EC_POINT, crypto::CDeleter<EC_POINT_free>>;
using EcKeyPtr = std::unique_ptr<EC_KEY, crypto::CDeleter<EC_KEY_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, crypto::CDeleter<ECDSA_SIG_free>>;

absl::Span<const uint8_t> StripZeros(absl::Span<const uint8_t> v) {
  while (!v.empty() && v.front() == 0) v.remove_prefix(1);
  return v;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const P256Group>> P256Group::Create() {
  EC_GROUP* g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  if (g == nullptr) {
    ERR_clear_error();
    return absl::InternalError("p-256 group");
  }
  return std::shared_ptr<const P256Group>(new P256Group(g));
}

P256Group::~P256Group() { EC_GROUP_free(group_); }

const std::shared_ptr<const P256Group>& P256Group::Shared() {
  static const std::shared_ptr<const P256Group>* const kGroup = [] {
    auto g = Create();
    PML_CHECK(g.ok());
    return new std::shared_ptr<const P256Group>(*std::move(g));
  }();
  return *kGroup;
}

absl::StatusOr<std::shared_ptr<const P256Key>> P256Key::FromPoint(
    const P256Group& group, absl::Span<const uint8_t> point) {
  std::array<uint8_t, 65> full{};
  if (point.size() == 64) {
    full[0] = 0x04;
    std::copy(point.begin(), point.end(), full.begin() + 1);
  } else if (point.size() == 65 && point[0] == 0x04) {
    std::copy(point.begin(), point.end(), full.begin());
  } else {
    return absl::InvalidArgumentError("p-256 public key must be an uncompressed 64/65-byte point");
  }
  EcKeyPtr key(EC_KEY_new());
  EcPointPtr p(EC_POINT_new(group.get()));
  // oct2point rejects points that are not on the curve; the infinity point has no 0x04 encoding.
  if (key == nullptr || p == nullptr || EC_KEY_set_group(key.get(), group.get()) != 1 ||
      EC_POINT_oct2point(group.get(), p.get(), full.data(), full.size(), nullptr) != 1 ||
      EC_KEY_set_public_key(key.get(), p.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("p-256 public key point is not on the curve");
  }
  return std::shared_ptr<const P256Key>(new P256Key(key.release(), full));
}

P256Key::~P256Key() { EC_KEY_free(key_); }

absl::Status P256Key::VerifyDigest(const std::array<uint8_t, 32>& digest,
                                   absl::Span<const uint8_t> r, absl::Span<const uint8_t> s) const {
  r = StripZeros(r);
  s = StripZeros(s);
  if (r.empty() || s.empty() || r.size() > 32 || s.size() > 32) {
    return absl::InvalidArgumentError("ecdsa signature component out of range");
  }
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* br = BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr);
  BIGNUM* bs = BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr);
  if (sig == nullptr || br == nullptr || bs == nullptr || ECDSA_SIG_set0(sig.get(), br, bs) != 1) {
    BN_free(br);
    BN_free(bs);
    ERR_clear_error();
    return absl::InternalError("ecdsa signature allocation");
  }
  const int rc = ECDSA_do_verify(digest.data(), static_cast<int>(digest.size()), sig.get(), key_);
  ERR_clear_error();
  if (rc == 1) return absl::OkStatus();
  return absl::UnauthenticatedError("ecdsa signature does not verify");
}

absl::Status P256Key::Verify(absl::Span<const uint8_t> message, absl::Span<const uint8_t> r,
                             absl::Span<const uint8_t> s) const {
  return VerifyDigest(Sha256(message), r, s);
}

std::array<uint8_t, 32> Sha256(absl::Span<const uint8_t> data) {
  std::array<uint8_t, 32> out{};
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data.data(), data.size());
  SHA256_Final(out.data(), &ctx);
  return out;
}

absl::Status P256Key::VerifyRaw(absl::Span<const uint8_t> message,
                                absl::Span<const uint8_t> raw_signature) const {
  if (raw_signature.size() != 64) {
    return absl::InvalidArgumentError("raw p-256 signature must be 64 bytes (r||s)");
  }
  return Verify(message, raw_signature.subspan(0, 32), raw_signature.subspan(32, 32));
}

absl::Status ParseDerEcdsaSignature(absl::Span<const uint8_t> der, absl::Span<const uint8_t>* r,
                                    absl::Span<const uint8_t>* s) {
  crypto::DerReader outer(der);
  auto seq = outer.Expect(crypto::kDerSequence, "ecdsa signature");
  if (!seq.ok()) return seq.status();
  if (!outer.empty()) return absl::InvalidArgumentError("ecdsa signature has trailing bytes");
  crypto::DerReader in(seq->content);
  for (absl::Span<const uint8_t>* out : {r, s}) {
    auto i = in.Expect(crypto::kDerInteger, "ecdsa signature component");
    if (!i.ok()) return i.status();
    const absl::Span<const uint8_t> v = i->content;
    if (v.empty() || (v[0] & 0x80) || (v.size() > 1 && v[0] == 0 && !(v[1] & 0x80))) {
      return absl::InvalidArgumentError("ecdsa signature component is not minimal positive der");
    }
    *out = v;
  }
  if (!in.empty()) return absl::InvalidArgumentError("ecdsa signature has extra fields");
  return absl::OkStatus();
}

}  // namespace pml::tdx::internal
