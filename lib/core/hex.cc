#include "lib/core/hex.h"

#include <array>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace pml::core {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Returns true when every character of `text` is in the base64 alphabet of `url_safe`, with
// padding only at the end (standard alphabet) or absent (URL alphabet).
bool IsStrictBase64(absl::string_view text, bool url_safe) {
  size_t pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    const bool extra = url_safe ? (c == '-' || c == '_') : (c == '+' || c == '/');
    if (c == '=' && !url_safe) {
      ++pad;
      continue;
    }
    if (pad > 0 || !(alnum || extra)) return false;
  }
  if (url_safe) return text.size() % 4 != 1;
  return pad <= 2 && text.size() % 4 == 0;
}

}  // namespace

std::string HexEncode(absl::Span<const uint8_t> bytes) {
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string HexEncode(absl::string_view bytes) { return HexEncode(AsBytes(bytes)); }

absl::StatusOr<std::vector<uint8_t>> HexDecode(absl::string_view hex) {
  if (hex.size() >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) hex.remove_prefix(2);
  if (hex.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hex string has odd length ", hex.size()));
  }
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("non-hex character at offset ", 2 * i + (hi < 0 ? 0 : 1)));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::string Base64Encode(absl::Span<const uint8_t> bytes) {
  return absl::Base64Escape(ToString(bytes));
}

std::string Base64UrlEncode(absl::Span<const uint8_t> bytes) {
  return absl::WebSafeBase64Escape(ToString(bytes));
}

std::string Base64UrlEncode(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

absl::StatusOr<std::vector<uint8_t>> Base64Decode(absl::string_view text) {
  std::string out;
  if (!IsStrictBase64(text, /*url_safe=*/false) || !absl::Base64Unescape(text, &out)) {
    return absl::InvalidArgumentError("invalid base64");
  }
  return std::vector<uint8_t>(out.begin(), out.end());
}

absl::StatusOr<std::vector<uint8_t>> Base64UrlDecode(absl::string_view text) {
  std::string out;
  if (!IsStrictBase64(text, /*url_safe=*/true) || !absl::WebSafeBase64Unescape(text, &out)) {
    return absl::InvalidArgumentError("invalid base64url");
  }
  return std::vector<uint8_t>(out.begin(), out.end());
}

}  // namespace pml::core
