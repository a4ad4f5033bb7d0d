#pragma once
// A minimal DER writer for the simulators' certificate extensions (Intel's SGX extension, the
// GPU FWID and SAN extensions). Only for evidence lib/tee produces; never for parsing.

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "absl/types/span.h"
#include "lib/core/status.h"

namespace pml::tee::internal {

// tag || definite length (short form, or 0x81/0x82 long form up to 65535) || content.
inline std::vector<uint8_t> Tlv(uint8_t tag, absl::Span<const uint8_t> content) {
  std::vector<uint8_t> out = {tag};
  const size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
  } else if (n <= 0xFF) {
    out.push_back(0x81);
    out.push_back(static_cast<uint8_t>(n));
  } else {
    PML_CHECK(n <= 0xFFFF);
    out.push_back(0x82);
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(n & 0xFF));
  }
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

inline std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> items) {
  std::vector<uint8_t> out;
  for (const auto& item : items)
    out.insert(out.end(), item.begin(), item.end());
  return out;
}

// SEQUENCE of the already-encoded items.
inline std::vector<uint8_t> Seq(std::initializer_list<std::vector<uint8_t>> items) {
  return Tlv(0x30, Concat(items));
}

}  // namespace pml::tee::internal
