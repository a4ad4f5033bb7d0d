#pragma once
// Internal to lib/tdx: a checked view over a parsed collateral body (flat_json.h) for the TCB
// info / QE identity parsers. Every accessor returns kInvalidArgument
// "<CLASS>: <path>: <what>" on a missing or mistyped value, so parse errors name the field.
//
// Lifetimes: the text given to Parse must outlive every reader; the root reader owns the parsed
// document; a child reader (from Object / Array) refers to its parent (for error paths) and to the
// root's document, so it must not outlive its parent, and the key passed to Object / Array must
// outlive the child (the parsers pass literals).

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "lib/core/hex.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/internal/flat_json.h"

namespace pml::tdx::internal {

class JsonReader {
 public:
  using Type = JsonDoc::Type;

  // Parses `text` (must be an object).
  static absl::StatusOr<JsonReader> Parse(absl::string_view text, absl::string_view cls,
                                          absl::string_view root_name) {
    auto doc = JsonDoc::Parse(text);
    JsonReader r(nullptr, 0, cls, root_name, -1);
    if (!doc.ok()) {
      return r.Error(absl::StrCat("not valid json (", doc.status().message(), ")"));
    }
    r.owned_ = std::make_shared<const JsonDoc>(*std::move(doc));
    r.doc_ = r.owned_.get();
    if (r.node().type != Type::kObject) return r.Error("not a json object");
    return r;
  }

  absl::Status Error(absl::string_view detail) const {
    return MakeError(absl::StatusCode::kInvalidArgument, cls_,
                     absl::StrCat(Path(), ": ", detail));
  }

  bool Has(absl::string_view key) const { return doc_->Find(index_, key) >= 0; }

  absl::StatusOr<JsonReader> Object(absl::string_view key) const {
    const int64_t i = doc_->Find(index_, key);
    if (i < 0) return Missing(key);
    JsonReader c = Child(static_cast<uint32_t>(i), key, -1);
    if (c.node().type != Type::kObject) return c.Error("not an object");
    return c;
  }

  absl::StatusOr<std::vector<JsonReader>> Array(absl::string_view key, size_t max_items) const {
    const int64_t i = doc_->Find(index_, key);
    if (i < 0) return Missing(key);
    const JsonDoc::Node& n = doc_->node(static_cast<uint32_t>(i));
    if (n.type != Type::kArray) return Child(static_cast<uint32_t>(i), key, -1).Error("not an array");
    if (n.size > max_items) {
      return Child(static_cast<uint32_t>(i), key, -1)
          .Error(absl::StrCat("more than ", max_items, " items"));
    }
    std::vector<JsonReader> out;
    out.reserve(n.size);
    int index = 0;
    for (uint32_t c = n.first_child; c != 0; c = doc_->node(c).next_sibling) {
      out.push_back(Child(c, key, index++));
    }
    return out;
  }

  absl::StatusOr<std::string> AsString() const {
    if (node().type != Type::kString) return Error("not a string");
    return std::string(node().text);
  }

  absl::StatusOr<std::string> String(absl::string_view key) const {
    const int64_t i = doc_->Find(index_, key);
    if (i < 0) return Missing(key);
    const JsonDoc::Node& n = doc_->node(static_cast<uint32_t>(i));
    if (n.type != Type::kString) return FieldError(key, "not a string");
    return std::string(n.text);
  }

  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t min, int64_t max) const {
    const int64_t i = doc_->Find(index_, key);
    if (i < 0) return Missing(key);
    const JsonDoc::Node& n = doc_->node(static_cast<uint32_t>(i));
    if (n.type != Type::kInteger) return FieldError(key, "not an integer");
    if (n.integer < min || n.integer > max) {
      return FieldError(key, absl::StrCat("value ", n.integer, " out of range"));
    }
    return n.integer;
  }

  template <size_t N>
  absl::StatusOr<std::array<uint8_t, N>> HexArray(absl::string_view key) const {
    const int64_t i = doc_->Find(index_, key);
    if (i < 0) return Missing(key);
    const JsonDoc::Node& n = doc_->node(static_cast<uint32_t>(i));
    if (n.type != Type::kString) return FieldError(key, "not a string");
    if (n.text.size() != 2 * N) {
      return FieldError(key, absl::StrCat("hex has ", n.text.size(), " characters, want ", 2 * N));
    }
    auto bytes = core::HexDecode(n.text);
    if (!bytes.ok()) return FieldError(key, bytes.status().message());
    std::array<uint8_t, N> out{};
    std::copy(bytes->begin(), bytes->end(), out.begin());
    return out;
  }

 private:
  JsonReader(const JsonReader* parent, uint32_t index, absl::string_view cls,
             absl::string_view key, int array_index)
      : parent_(parent), index_(index), cls_(cls), key_(key), array_index_(array_index) {}

  const JsonDoc::Node& node() const { return doc_->node(index_); }

  JsonReader Child(uint32_t index, absl::string_view key, int array_index) const {
    JsonReader c(this, index, cls_, key, array_index);
    c.doc_ = doc_;
    return c;
  }

  std::string Path() const {
    std::string p = parent_ == nullptr ? std::string(key_) : absl::StrCat(parent_->Path(), ".", key_);
    if (array_index_ >= 0) absl::StrAppend(&p, "[", array_index_, "]");
    return p;
  }
  absl::Status FieldError(absl::string_view key, absl::string_view what) const {
    return MakeError(absl::StatusCode::kInvalidArgument, cls_,
                     absl::StrCat(Path(), ".", key, ": ", what));
  }
  absl::Status Missing(absl::string_view key) const {
    return Error(absl::StrCat("missing \"", key, "\""));
  }

  std::shared_ptr<const JsonDoc> owned_;  // set on the root reader only
  const JsonDoc* doc_ = nullptr;
  const JsonReader* parent_;
  uint32_t index_;
  absl::string_view cls_;
  absl::string_view key_;
  int array_index_;
};

}  // namespace pml::tdx::internal
