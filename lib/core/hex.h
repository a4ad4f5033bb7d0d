#pragma once
// Hex and base64 codecs. absl::HexStringToBytes accepts bad input (STYLE.md "version traps"),
// so decoding lives here and rejects anything that is not exactly what it claims to be.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::core {

// Lower-case hex of `bytes`. Pure and thread-safe.
std::string HexEncode(absl::Span<const uint8_t> bytes);
std::string HexEncode(absl::string_view bytes);

// Decodes hex (either case). An optional "0x" prefix is accepted. kInvalidArgument when the
// length is odd or a character is not a hex digit (the message gives its offset).
absl::StatusOr<std::vector<uint8_t>> HexDecode(absl::string_view hex);

// Standard base64 with padding (RFC 4648 §4).
std::string Base64Encode(absl::Span<const uint8_t> bytes);
// URL-safe base64 without padding (RFC 4648 §5), as JWTs use.
std::string Base64UrlEncode(absl::Span<const uint8_t> bytes);
std::string Base64UrlEncode(absl::string_view bytes);
// Strict decoders: kInvalidArgument on any character outside the alphabet or bad padding.
absl::StatusOr<std::vector<uint8_t>> Base64Decode(absl::string_view text);
absl::StatusOr<std::vector<uint8_t>> Base64UrlDecode(absl::string_view text);

// Views a byte vector / string as the other type (no copy for spans).
inline absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string ToString(absl::Span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace pml::core
