#pragma once
// Digests (SHA-256/384/512) and HMAC/HKDF over OpenSSL. Pure and thread-safe.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::crypto {

using Sha256Digest = std::array<uint8_t, 32>;
using Sha384Digest = std::array<uint8_t, 48>;
using Sha512Digest = std::array<uint8_t, 64>;

Sha256Digest Sha256(absl::Span<const uint8_t> data);
Sha256Digest Sha256(absl::string_view data);
Sha384Digest Sha384(absl::Span<const uint8_t> data);
Sha384Digest Sha384(absl::string_view data);
Sha512Digest Sha512(absl::Span<const uint8_t> data);
Sha512Digest Sha512(absl::string_view data);
// Digest of the concatenation of `parts`, without copying them together.
Sha384Digest Sha384Concat(std::initializer_list<absl::Span<const uint8_t>> parts);
Sha512Digest Sha512Concat(std::initializer_list<absl::Span<const uint8_t>> parts);

// HMAC-SHA256.
Sha256Digest HmacSha256(absl::Span<const uint8_t> key, absl::Span<const uint8_t> data);

// HKDF-SHA256 (RFC 5869) producing `length` bytes. kInvalidArgument when length is 0 or
// exceeds 255*32.
absl::StatusOr<std::vector<uint8_t>> HkdfSha256(absl::Span<const uint8_t> ikm,
                                                absl::Span<const uint8_t> salt,
                                                absl::Span<const uint8_t> info, size_t length);

// Fills a buffer with cryptographically secure random bytes. PML_CHECKs success.
std::vector<uint8_t> RandomBytes(size_t n);

}  // namespace pml::crypto
