#pragma once
// Bounds-checked little-endian reader for binary formats (quotes, SPDM reports). Every read
// checks the remaining length; nothing is ever reinterpret_cast from the input.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pml::core {

class ByteReader {
 public:
  // `data` must outlive the reader and every span it returns. `what` names the structure in
  // error messages ("quote", "spdm response").
  explicit ByteReader(absl::Span<const uint8_t> data, absl::string_view what = "input")
      : data_(data), what_(what) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }
  absl::Span<const uint8_t> data() const { return data_; }

  // Each returns kInvalidArgument naming `field`, the offset and the shortfall when fewer
  // bytes remain than the read needs.
  absl::StatusOr<uint8_t> U8(absl::string_view field) {
    auto s = Bytes(1, field);
    if (!s.ok()) return s.status();
    return (*s)[0];
  }
  absl::StatusOr<uint16_t> U16(absl::string_view field) {
    auto s = Bytes(2, field);
    if (!s.ok()) return s.status();
    return static_cast<uint16_t>((*s)[0] | (*s)[1] << 8);
  }
  absl::StatusOr<uint32_t> U24(absl::string_view field) {
    auto s = Bytes(3, field);
    if (!s.ok()) return s.status();
    return static_cast<uint32_t>((*s)[0] | (*s)[1] << 8 | (*s)[2] << 16);
  }
  absl::StatusOr<uint32_t> U32(absl::string_view field) {
    auto s = Bytes(4, field);
    if (!s.ok()) return s.status();
    return static_cast<uint32_t>((*s)[0]) | static_cast<uint32_t>((*s)[1]) << 8 |
           static_cast<uint32_t>((*s)[2]) << 16 | static_cast<uint32_t>((*s)[3]) << 24;
  }
  absl::StatusOr<uint64_t> U64(absl::string_view field) {
    auto lo = U32(field);
    if (!lo.ok()) return lo.status();
    auto hi = U32(field);
    if (!hi.ok()) return hi.status();
    return static_cast<uint64_t>(*lo) | static_cast<uint64_t>(*hi) << 32;
  }
  absl::StatusOr<absl::Span<const uint8_t>> Bytes(size_t n, absl::string_view field) {
    if (n > remaining()) {
      return absl::InvalidArgumentError(absl::StrCat(what_, ": ", field, " at offset ", pos_,
                                                     " needs ", n, " bytes, ", remaining(),
                                                     " remain"));
    }
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  // Copies exactly N bytes into a fixed array.
  template <size_t N>
  absl::Status Array(uint8_t (&out)[N], absl::string_view field) {
    auto s = Bytes(N, field);
    if (!s.ok()) return s.status();
    std::copy(s->begin(), s->end(), out);
    return absl::OkStatus();
  }
  absl::Status Skip(size_t n, absl::string_view field) { return Bytes(n, field).status(); }

 private:
  absl::Span<const uint8_t> data_;
  std::string what_;
  size_t pos_ = 0;
};

}  // namespace pml::core
