#pragma once
// Secret key material. No stream or fmt formatter exists, so logging one does not compile;
// memory is wiped with OPENSSL_cleanse on destruction; equality is constant-time.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace pml::crypto {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  explicit SecretBytes(absl::Span<const uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}
  SecretBytes(const SecretBytes&) = default;
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  absl::Span<const uint8_t> span() const { return bytes_; }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  // Constant-time comparison (CRYPTO_memcmp); sizes are not secret.
  friend bool operator==(const SecretBytes& a, const SecretBytes& b);

 private:
  void Wipe();
  std::vector<uint8_t> bytes_;
};

// Constant-time equality of two byte strings of possibly different length (length leaks).
bool ConstantTimeEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b);

}  // namespace pml::crypto
