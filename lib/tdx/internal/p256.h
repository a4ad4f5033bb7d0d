#pragma once
// Internal to lib/tdx: ECDSA P-256/SHA-256 verification on the hot path. OpenSSL 3.0's EVP layer
// costs ~250 us to import a raw public key and ~10% extra per verification (provider fetches);
// DCAP verification imports five keys and checks up to ten signatures per cold quote, so this
// file uses the EC_KEY / ECDSA_do_verify interface directly. It is deprecated in OpenSSL 3 but
// supported throughout 3.x; only this file uses it.
//
// Thread-safety: a P256Group and P256Key are immutable after creation and may be shared.

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

// OpenSSL's types, forward-declared so that this header stays light.
struct ec_group_st;
struct ec_key_st;

namespace pml::tdx::internal {

// The P-256 group (creating one costs ~35 us, so callers keep one).
class P256Group {
 public:
  static absl::StatusOr<std::shared_ptr<const P256Group>> Create();
  // One immutable group for the process, created on first use and never destroyed (like
  // OpenSSL's own built-in curve tables, it is a constant, not state). Aborts only if OpenSSL
  // cannot allocate it.
  static const std::shared_ptr<const P256Group>& Shared();
  ~P256Group();
  P256Group(const P256Group&) = delete;
  P256Group& operator=(const P256Group&) = delete;
  const ec_group_st* get() const { return group_; }

 private:
  explicit P256Group(ec_group_st* g) : group_(g) {}
  ec_group_st* group_;
};

class P256Key {
 public:
  // From the raw point X||Y (64 bytes) or 0x04||X||Y (65 bytes). kInvalidArgument when the
  // length is wrong or the point is not on the curve.
  static absl::StatusOr<std::shared_ptr<const P256Key>> FromPoint(const P256Group& group,
                                                                  absl::Span<const uint8_t> point);
  ~P256Key();
  P256Key(const P256Key&) = delete;
  P256Key& operator=(const P256Key&) = delete;

  // 0x04||X||Y.
  const std::array<uint8_t, 65>& point() const { return point_; }

  // Verifies a signature (r, s as big-endian bytes, each at most 32 bytes after leading zeros
  // are dropped) over SHA-256(message) / over a precomputed SHA-256 digest. OK or
  // kUnauthenticated; kInvalidArgument for an out-of-range component.
  absl::Status Verify(absl::Span<const uint8_t> message, absl::Span<const uint8_t> r,
                      absl::Span<const uint8_t> s) const;
  absl::Status VerifyDigest(const std::array<uint8_t, 32>& digest, absl::Span<const uint8_t> r,
                            absl::Span<const uint8_t> s) const;
  // Raw r||s (64 bytes).
  absl::Status VerifyRaw(absl::Span<const uint8_t> message,
                         absl::Span<const uint8_t> raw_signature) const;

 private:
  P256Key(ec_key_st* key, const std::array<uint8_t, 65>& point) : key_(key), point_(point) {}
  ec_key_st* key_;
  std::array<uint8_t, 65> point_;
};

// SHA-256 through OpenSSL's direct implementation: the EVP one-shot fetches the algorithm on
// every call, which is measurable at a dozen digests per verification.
std::array<uint8_t, 32> Sha256(absl::Span<const uint8_t> data);

// Splits a DER ECDSA-Sig-Value SEQUENCE { INTEGER r, INTEGER s } (strict DER, positive, minimal)
// into the magnitudes of r and s (spans into `der`). kInvalidArgument when malformed.
absl::Status ParseDerEcdsaSignature(absl::Span<const uint8_t> der, absl::Span<const uint8_t>* r,
                                    absl::Span<const uint8_t>* s);

}  // namespace pml::tdx::internal
